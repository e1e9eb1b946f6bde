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

/// The failing case of a run that checked nothing (finish adds it; JUnit of an unfinished
/// report too, so no suite is ever empty).
fn no_checks_ran() -> Check {
    Check::fail(
        "runner",
        "no checks ran",
        "the tool finished without running a single check",
    )
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
    /// The pipeline run this report belongs to (`DEPLOYKIT_DEPLOYMENT_ID`, else the build, else
    /// `manual`): in the JSON document and as a JUnit property, so one filter finds it all.
    pub deployment_id: String,
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
    /// A tool's own page for `--html` (charts, a history); without one the checks' table.
    #[serde(skip)]
    page: Option<String>,
    /// What the run left the environment in, for the Pushgateway (crate::deploy_metrics).
    #[serde(skip)]
    states: Vec<crate::deploy_metrics::State>,
}

impl Report {
    pub fn new(tool: &str, environment: &str) -> Self {
        Report {
            tool: tool.into(),
            environment: environment.into(),
            deployment_id: crate::deploy_metrics::deployment_id(),
            started: chrono::Utc::now(),
            duration_ms: Duration::ZERO,
            outcome: Outcome::Pass,
            checks: vec![],
            notes: vec![],
            inconclusive: false,
            page: None,
            states: vec![],
        }
    }

    /// Record what the run left the environment in (pushed after the run when the environment
    /// has a Pushgateway).
    pub fn state(&mut self, s: crate::deploy_metrics::State) {
        self.states.push(s);
    }

    pub fn states(&self) -> &[crate::deploy_metrics::State] {
        &self.states
    }

    /// The page `--html` writes for this run, instead of the checks' table.
    pub fn set_page(&mut self, html: String) {
        self.page = Some(html);
    }

    /// HTML: the tool's own page, else every check in a table — one more renderer of the
    /// same model, redacted like the others.
    pub fn render_html(&self) -> String {
        if let Some(p) = &self.page {
            return crate::redact::redact(p);
        }
        crate::html::report_page(self)
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
        // A run that checked nothing has shown nothing healthy: every output says so alike
        // (exit 1, a failing case in JUnit, a [FAIL] line), never a silent pass.
        if self.checks.is_empty() {
            self.checks.push(no_checks_ran());
        }
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

    /// JUnit XML that Jenkins' `junit` step and the xUnit plugin's schema (junit-10) both
    /// accept: `<testsuite>` carries `tests failures errors skipped time timestamp`, never
    /// `disabled`; the root carries only `name tests failures errors time`. Test names are
    /// stable and unique within the suite (history keys on classname + name); a repeated name
    /// gets ` (2)`, ` (3)`… Never an empty suite: Jenkins drops those silently, so a run with no
    /// checks becomes a failing "no checks ran" case. Written with quick-xml directly: the
    /// quick-junit crate always writes a root attribute the schema rejects (decision 0010).
    pub fn render_junit(&self) -> String {
        use quick_xml::Writer;
        use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
        let mut checks = self.checks.clone();
        if checks.is_empty() {
            checks.push(no_checks_ran());
        }
        let mut seen: std::collections::HashMap<(String, String), usize> = Default::default();
        for c in &mut checks {
            let n = seen.entry((c.group.clone(), c.name.clone())).or_default();
            *n += 1;
            if *n > 1 {
                c.name = format!("{} ({n})", c.name);
            }
        }
        let count = |s: Status| checks.iter().filter(|c| c.status == s).count().to_string();
        let (tests, failures, skipped) = (
            checks.len().to_string(),
            count(Status::Fail),
            count(Status::Skip),
        );
        let secs = |d: Duration| format!("{:.3}", d.as_secs_f64());
        let total = secs(self.duration_ms);
        let suite_name = format!("{}.{}", self.tool, self.environment);
        let timestamp = self.started.format("%Y-%m-%dT%H:%M:%S").to_string();
        let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
        let ok = "in-memory XML writes cannot fail";
        w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))
            .expect(ok);
        let root = BytesStart::new("testsuites").with_attributes([
            ("name", self.tool.as_str()),
            ("tests", tests.as_str()),
            ("failures", failures.as_str()),
            ("errors", "0"),
            ("time", total.as_str()),
        ]);
        w.write_event(Event::Start(root)).expect(ok);
        let suite = BytesStart::new("testsuite").with_attributes([
            ("name", suite_name.as_str()),
            ("tests", tests.as_str()),
            ("failures", failures.as_str()),
            ("errors", "0"),
            ("skipped", skipped.as_str()),
            ("time", total.as_str()),
            ("timestamp", timestamp.as_str()),
        ]);
        w.write_event(Event::Start(suite)).expect(ok);
        // Jenkins shows suite properties with the results; the schema puts them first.
        w.write_event(Event::Start(BytesStart::new("properties")))
            .expect(ok);
        for (name, value) in [
            ("deployment_id", self.deployment_id.as_str()),
            ("environment", self.environment.as_str()),
        ] {
            let value = redact(value);
            let p = BytesStart::new("property")
                .with_attributes([("name", name), ("value", value.as_str())]);
            w.write_event(Event::Empty(p)).expect(ok);
        }
        w.write_event(Event::End(BytesEnd::new("properties")))
            .expect(ok);
        for c in &checks {
            let classname = format!("{}.{}", self.tool, c.group);
            let time = secs(c.duration_ms);
            let name = redact(&c.name);
            let message = c.message.as_deref().map(redact).unwrap_or_default();
            let detail = redact(
                &[c.message.as_deref(), c.hint.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join("\n"),
            );
            let tc = BytesStart::new("testcase").with_attributes([
                ("name", name.as_str()),
                ("classname", classname.as_str()),
                ("time", time.as_str()),
            ]);
            w.write_event(Event::Start(tc)).expect(ok);
            match c.status {
                Status::Fail => {
                    let f = BytesStart::new("failure")
                        .with_attributes([("message", message.as_str()), ("type", "check")]);
                    w.write_event(Event::Start(f)).expect(ok);
                    w.write_event(Event::Text(BytesText::new(&detail)))
                        .expect(ok);
                    w.write_event(Event::End(BytesEnd::new("failure")))
                        .expect(ok);
                }
                Status::Skip => {
                    let sk =
                        BytesStart::new("skipped").with_attributes([("message", message.as_str())]);
                    w.write_event(Event::Empty(sk)).expect(ok);
                }
                Status::Ok | Status::Warn => {}
            }
            // What passed, and why a warning: readable in Jenkins' test page.
            let out = match c.status {
                Status::Warn if !detail.is_empty() => Some(format!("WARN: {detail}")),
                Status::Ok if !detail.is_empty() => Some(detail.clone()),
                _ => None,
            };
            if let Some(out) = out {
                w.write_event(Event::Start(BytesStart::new("system-out")))
                    .expect(ok);
                w.write_event(Event::Text(BytesText::new(&out))).expect(ok);
                w.write_event(Event::End(BytesEnd::new("system-out")))
                    .expect(ok);
            }
            w.write_event(Event::End(BytesEnd::new("testcase")))
                .expect(ok);
        }
        w.write_event(Event::End(BytesEnd::new("testsuite")))
            .expect(ok);
        w.write_event(Event::End(BytesEnd::new("testsuites")))
            .expect(ok);
        let mut xml = String::from_utf8(w.into_inner()).expect("UTF-8 in, UTF-8 out");
        xml.push('\n');
        xml
    }

    pub fn write_junit(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
        }
        std::fs::write(path, self.render_junit())
            .map_err(|e| Error::io("write JUnit report", path, e))
    }
}
