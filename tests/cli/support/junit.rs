//! Every JUnit file a test run makes is checked here, as the consumers Jenkins uses would read
//! it: the xUnit plugin validates against its JUnit schema (junit-10: which attributes each
//! element may carry, `skipped` not `disabled`), the `junit` step keys test history by
//! classname + name (so names must be unique and stable across runs). A copy of the first file
//! per tool and mode (pass, fail, could-not-run) goes to `target/junit-samples/`, where
//! `scripts/test` loads them with a real consumer (junitparser) and the schema
//! (tests/cli/fixtures/junit-xunit.xsd).

use std::collections::HashSet;
use std::path::Path;

const ROOT_ATTRS: &[&str] = &["name", "time", "tests", "failures", "errors"];
const SUITE_ATTRS: &[&str] = &[
    "name",
    "tests",
    "failures",
    "errors",
    "group",
    "time",
    "skipped",
    "timestamp",
    "hostname",
    "id",
    "package",
    "file",
    "log",
    "url",
];
const CASE_ATTRS: &[&str] = &["name", "time", "classname", "group"];
const CASE_CHILDREN: &[&str] = &["skipped", "error", "failure", "system-out", "system-err"];
const RESULT_ATTRS: &[&str] = &["type", "message"];

fn attrs_within(n: roxmltree::Node, allowed: &[&str]) -> Result<(), String> {
    for a in n.attributes() {
        if !allowed.contains(&a.name()) {
            return Err(format!(
                "<{}> carries `{}`, which the xUnit JUnit schema does not allow (allowed: {})",
                n.tag_name().name(),
                a.name(),
                allowed.join(", ")
            ));
        }
    }
    Ok(())
}

fn required(n: roxmltree::Node, names: &[&str]) -> Result<(), String> {
    for k in names {
        if n.attribute(*k).is_none() {
            return Err(format!("<{}> has no `{k}`", n.tag_name().name()));
        }
    }
    Ok(())
}

fn time_ok(n: roxmltree::Node) -> Result<(), String> {
    let re = regex::Regex::new(r"^[0-9]*(\.[0-9]*)?$").unwrap();
    match n.attribute("time") {
        Some(t) if re.is_match(t) => Ok(()),
        Some(t) => Err(format!(
            "<{}> time `{t}` is not a decimal number",
            n.tag_name().name()
        )),
        None => Ok(()),
    }
}

fn count_of(n: roxmltree::Node, k: &str) -> usize {
    n.attribute(k)
        .and_then(|v| v.parse().ok())
        .unwrap_or(usize::MAX)
}

/// The schema's rules and ours (counts, unique and stable names); Err says which broke.
pub fn check(xml: &str) -> Result<(), String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("not XML: {e}"))?;
    let root = doc.root_element();
    if root.tag_name().name() != "testsuites" {
        return Err(format!(
            "root is <{}>, not <testsuites>",
            root.tag_name().name()
        ));
    }
    attrs_within(root, ROOT_ATTRS)?;
    time_ok(root)?;
    let unstable = regex::Regex::new(r"://|127\.0\.0\.1|localhost:\d|\b\d{10,}\b").unwrap();
    let suites: Vec<_> = root.children().filter(|n| n.is_element()).collect();
    if suites.is_empty() {
        return Err("no <testsuite>: Jenkins drops an empty report".into());
    }
    for s in suites {
        if s.tag_name().name() != "testsuite" {
            return Err(format!("<testsuites> holds <{}>", s.tag_name().name()));
        }
        attrs_within(s, SUITE_ATTRS)?;
        required(
            s,
            &[
                "name",
                "tests",
                "failures",
                "errors",
                "skipped",
                "time",
                "timestamp",
            ],
        )?;
        time_ok(s)?;
        let cases: Vec<_> = s
            .children()
            .filter(|n| n.has_tag_name("testcase"))
            .collect();
        if cases.is_empty() {
            return Err("an empty <testsuite>".into());
        }
        let mut names = HashSet::new();
        let (mut failures, mut skipped) = (0, 0);
        for c in &cases {
            attrs_within(*c, CASE_ATTRS)?;
            required(*c, &["name", "classname", "time"])?;
            time_ok(*c)?;
            let key = (
                c.attribute("classname").unwrap(),
                c.attribute("name").unwrap(),
            );
            if !names.insert(key) {
                return Err(format!("test {key:?} appears twice in one suite"));
            }
            for k in [key.0, key.1] {
                if unstable.is_match(k) {
                    return Err(format!(
                        "test name `{k}` holds a URL, port or run id: it changes between runs"
                    ));
                }
            }
            for ch in c.children().filter(|n| n.is_element()) {
                let t = ch.tag_name().name();
                if !CASE_CHILDREN.contains(&t) {
                    return Err(format!("<testcase> holds <{t}>"));
                }
                if t == "failure" || t == "skipped" || t == "error" {
                    attrs_within(ch, RESULT_ATTRS)?;
                }
                failures += (t == "failure") as usize;
                skipped += (t == "skipped") as usize;
            }
        }
        for (k, n) in [
            ("tests", cases.len()),
            ("failures", failures),
            ("skipped", skipped),
        ] {
            if count_of(s, k) != n {
                return Err(format!(
                    "testsuite {k}={} but {n} found",
                    s.attribute(k).unwrap()
                ));
            }
        }
    }
    Ok(())
}

/// A run's JUnit file, pointed at a temp file before the run and checked after it.
pub struct Capture {
    tool: String,
    file: Option<(tempfile::TempDir, std::path::PathBuf)>,
}

impl Capture {
    /// Points `cmd`'s JUnit at a temp file, unless `tool` is not one of ours, the test chose its
    /// own file, or the run only prints help or the version (no run, no report).
    pub fn attach(
        cmd: &mut std::process::Command,
        tool: &str,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Capture {
        let own = args.contains(&"--junit")
            || envs.iter().any(|(k, _)| *k == "DEPLOYKIT_JUNIT")
            || args
                .iter()
                .any(|a| ["--help", "-h", "--version", "-V", "help"].contains(a));
        let file = (!own && super::TOOLS.contains(&tool)).then(|| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("junit.xml");
            cmd.env("DEPLOYKIT_JUNIT", &path);
            (dir, path)
        });
        Capture {
            tool: tool.to_string(),
            file,
        }
    }

    /// Checks the file the run wrote (a run killed by a signal, `code` -1, is not judged).
    pub fn verify(self, code: i32) {
        if let Some((_dir, path)) = &self.file
            && code != -1
        {
            verify(&self.tool, code, path);
        }
    }
}

/// Checks the JUnit file a run of `tool` wrote (exit `code`) and keeps the first one per tool
/// and mode for scripts/test's consumer check. A usage error (exit 2) writes none.
pub fn verify(tool: &str, code: i32, path: &Path) {
    if code == 2 {
        return;
    }
    let xml = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "{tool} exited {code} without writing its JUnit file {}: {e}",
            path.display()
        )
    });
    if let Err(e) = check(&xml) {
        panic!("{tool} (exit {code}) wrote JUnit that a consumer rejects: {e}\n{xml}");
    }
    let mode = match code {
        0 => "pass",
        1 => "fail",
        3..=5 => "could-not-run",
        6 => "inconclusive",
        _ => "interrupted",
    };
    // The verdict and the JUnit agree: failures exactly when the run failed or could not run.
    let failures = xml.matches("<failure ").count();
    match mode {
        "pass" | "inconclusive" if failures > 0 => {
            panic!("{tool} exited {code} but its JUnit holds {failures} failure(s):\n{xml}")
        }
        "fail" | "could-not-run" if failures == 0 => {
            panic!("{tool} exited {code} but its JUnit holds no failure:\n{xml}")
        }
        _ => {}
    }
    let dir = super::repo_root().join("target/junit-samples");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dir.join(format!("{tool}.{mode}.xml")))
        .and_then(|mut f| std::io::Write::write_all(&mut f, xml.as_bytes()));
}
