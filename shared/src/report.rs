//! One result model for every tool, rendered three ways: the guide's human lines, one JSON
//! document, and JUnit XML for Jenkins' `junit` step. Tools never print results by hand.
//! Every rendering passes through [`crate::redact`], so a secret cannot leak through a check
//! message someone wrote carelessly.

use crate::error::{Error, Result};
use crate::exit;
use crate::redact::redact;
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Fail,
    Warn,
    Skip,
}

impl Status {
    fn tag(self) -> &'static str {
        match self {
            Status::Ok => "[OK]",
            Status::Fail => "[FAIL]",
            Status::Warn => "[WARN]",
            Status::Skip => "[SKIP]",
        }
    }
    fn ansi(self) -> &'static str {
        match self {
            Status::Ok => "\x1b[32m",
            Status::Fail => "\x1b[31;1m",
            Status::Warn => "\x1b[33m",
            Status::Skip => "\x1b[2m",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub group: String,
    pub status: Status,
    #[serde(serialize_with = "ser_ms")]
    pub duration_ms: Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e3)
}

impl Check {
    pub fn new(group: impl Into<String>, name: impl Into<String>, status: Status) -> Self {
        Check {
            name: name.into(),
            group: group.into(),
            status,
            duration_ms: Duration::ZERO,
            message: None,
            hint: None,
            data: serde_json::Value::Null,
        }
    }
    pub fn ok(group: impl Into<String>, name: impl Into<String>) -> Self {
        Self::new(group, name, Status::Ok)
    }
    pub fn fail(
        group: impl Into<String>,
        name: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(group, name, Status::Fail).message(message)
    }
    pub fn warn(
        group: impl Into<String>,
        name: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(group, name, Status::Warn).message(message)
    }
    pub fn skip(
        group: impl Into<String>,
        name: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(group, name, Status::Skip).message(message)
    }
    pub fn message(mut self, m: impl Into<String>) -> Self {
        self.message = Some(m.into());
        self
    }
    pub fn hint(mut self, h: impl Into<String>) -> Self {
        self.hint = Some(h.into());
        self
    }
    pub fn data(mut self, d: serde_json::Value) -> Self {
        self.data = d;
        self
    }
    pub fn took(mut self, d: Duration) -> Self {
        self.duration_ms = d;
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    Inconclusive,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub tool: String,
    pub environment: String,
    pub started: chrono::DateTime<chrono::Utc>,
    #[serde(serialize_with = "ser_ms")]
    pub duration_ms: Duration,
    pub outcome: Outcome,
    pub checks: Vec<Check>,
    /// Free-form facts for the summary (e.g. what was cleaned up), shown after the checks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    #[serde(skip)]
    inconclusive: bool,
}

impl Report {
    pub fn new(tool: &str, environment: &str) -> Self {
        Report {
            tool: tool.into(),
            environment: environment.into(),
            started: chrono::Utc::now(),
            duration_ms: Duration::ZERO,
            outcome: Outcome::Pass,
            checks: vec![],
            notes: vec![],
            inconclusive: false,
        }
    }

    pub fn push(&mut self, c: Check) {
        self.checks.push(c);
        self.outcome = self.compute_outcome();
    }

    pub fn note(&mut self, n: impl Into<String>) {
        self.notes.push(n.into());
    }

    /// Mark the run as not judgeable (exit 6) unless a check already failed.
    pub fn set_inconclusive(&mut self) {
        self.inconclusive = true;
        self.outcome = self.compute_outcome();
    }

    pub fn finish(&mut self, elapsed: Duration) {
        self.duration_ms = elapsed;
        self.outcome = self.compute_outcome();
    }

    fn compute_outcome(&self) -> Outcome {
        if self.checks.iter().any(|c| c.status == Status::Fail) {
            Outcome::Fail
        } else if self.inconclusive {
            Outcome::Inconclusive
        } else {
            Outcome::Pass
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self.outcome {
            Outcome::Pass => exit::OK,
            Outcome::Fail => exit::CHECK_FAILED,
            Outcome::Inconclusive => exit::INCONCLUSIVE,
        }
    }

    fn count(&self, s: Status) -> usize {
        self.checks.iter().filter(|c| c.status == s).count()
    }

    /// The guide's lines: `[OK] Git repository clean`, `[FAIL] name — message; hint`.
    pub fn render_human(&self, color: bool) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let tag = if color {
                format!("{}{}\x1b[0m", c.status.ansi(), c.status.tag())
            } else {
                c.status.tag().to_string()
            };
            out.push_str(&format!("{tag} {}", c.name));
            if let Some(m) = &c.message {
                out.push_str(&format!(" — {m}"));
            }
            if let Some(h) = &c.hint
                && c.status != Status::Ok
            {
                out.push_str(&format!("; {h}"));
            }
            out.push('\n');
        }
        for n in &self.notes {
            out.push_str(&format!("  note: {n}\n"));
        }
        let verdict = match self.outcome {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
            Outcome::Inconclusive => "INCONCLUSIVE",
        };
        out.push_str(&format!(
            "{} {}: {} ok, {} failed, {} warnings, {} skipped in {} ms — {verdict}\n",
            self.tool,
            self.environment,
            self.count(Status::Ok),
            self.count(Status::Fail),
            self.count(Status::Warn),
            self.count(Status::Skip),
            self.duration_ms.as_millis()
        ));
        redact(&out)
    }

    pub fn render_json(&self) -> String {
        let s = serde_json::to_string_pretty(self).expect("report serialises");
        redact(&s) + "\n"
    }

    /// JUnit XML as Jenkins' junit plugin reads it. Never an empty suite: Jenkins drops those
    /// silently, so a run with no checks becomes a failing "no checks ran" case.
    pub fn render_junit(&self) -> String {
        use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, TestSuite};
        let mut report = quick_junit::Report::new(self.tool.as_str());
        let mut suite = TestSuite::new(format!("{}.{}", self.tool, self.environment));
        suite.set_timestamp(self.started.fixed_offset());
        let mut checks = self.checks.clone();
        if checks.is_empty() {
            checks.push(Check::fail(
                "runner",
                "no checks ran",
                "the tool finished without running a single check",
            ));
        }
        for c in &checks {
            let detail = [c.message.as_deref(), c.hint.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("\n");
            let status = match c.status {
                Status::Ok | Status::Warn => TestCaseStatus::success(),
                Status::Fail => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    if let TestCaseStatus::NonSuccess {
                        message,
                        description,
                        ..
                    } = &mut s
                    {
                        *message = c.message.as_deref().map(|m| redact(m).into());
                        *description = Some(redact(&detail).into());
                    }
                    s
                }
                Status::Skip => {
                    let mut s = TestCaseStatus::skipped();
                    if let TestCaseStatus::Skipped { message, .. } = &mut s {
                        *message = c.message.as_deref().map(|m| redact(m).into());
                    }
                    s
                }
            };
            let mut tc = TestCase::new(c.name.as_str(), status);
            tc.set_classname(format!("{}.{}", self.tool, c.group));
            tc.set_time(c.duration_ms);
            if c.status == Status::Warn && !detail.is_empty() {
                tc.set_system_out(format!("WARN: {}", redact(&detail)));
            }
            suite.add_test_case(tc);
        }
        report.add_test_suite(suite);
        redact(&report.to_string().expect("junit serialises"))
    }

    pub fn write_junit(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
        }
        std::fs::write(path, self.render_junit())
            .map_err(|e| Error::io("write JUnit report", path, e))
    }
}
