//! The Jenkinsfile and scripts/pipeline/ against the binaries' own clap definitions: a renamed
//! flag breaks this test, not a deploy.

use crate::support::{TOOLS, repo_root};
use clap::Parser;
use std::collections::BTreeMap;

fn parses(tool: &str, args: &[String]) -> Result<(), String> {
    let argv: Vec<String> = std::iter::once(tool.to_string())
        .chain(args.iter().cloned())
        .collect();
    use deploykit::cmd::*;
    let r = match tool {
        "verify_env" => verify_env::Args::try_parse_from(&argv).map(|_| ()),
        "smoke_tests" => smoke_tests::Args::try_parse_from(&argv).map(|_| ()),
        "db_migrate" => db_migrate::Args::try_parse_from(&argv).map(|_| ()),
        "measure_latency" => measure_latency::Args::try_parse_from(&argv).map(|_| ()),
        "compare_metrics" => compare_metrics::Args::try_parse_from(&argv).map(|_| ()),
        "cutover" => cutover::Args::try_parse_from(&argv).map(|_| ()),
        "maintenance_mode" => maintenance_mode::Args::try_parse_from(&argv).map(|_| ()),
        "emergency_stop" => emergency_stop::Args::try_parse_from(&argv).map(|_| ()),
        "emergency_rollback" => emergency_rollback::Args::try_parse_from(&argv).map(|_| ()),
        "show_config" => show_config::Args::try_parse_from(&argv).map(|_| ()),
        "isolate_server" => isolate_server::Args::try_parse_from(&argv).map(|_| ()),
        "validate_config" => validate_config::Args::try_parse_from(&argv).map(|_| ()),
        "strategy_rollout" => strategy_rollout::Args::try_parse_from(&argv).map(|_| ()),
        "generate_deployment_report" => {
            generate_deployment_report::Args::try_parse_from(&argv).map(|_| ())
        }
        "notify" => notify::Args::try_parse_from(&argv).map(|_| ()),
        other => return Err(format!("unknown tool {other}")),
    };
    r.map_err(|e| e.to_string())
}

/// Values for the variables the scripts use, so an invocation parses as it would run.
fn value_of(var: &str) -> &'static str {
    match var {
        "ENVIRONMENT" => "staging",
        "COLOR" => "green",
        "VERSION" => "1.1.0",
        "TO_VERSION" => "3.2.1",
        "WATCH" | "HOLD" => "5m",
        "EVENT" => "success",
        "SOURCE_ENVIRONMENT" => "production",
        "ANONYMIZE_RULES" => "config/anonymize.toml",
        "REPORT_SINCE" => "30days",
        "TITLE" => "staging deploy of 1.1.0",
        "LATENCY_DURATION" | "COMPARE_DURATION" => "30s",
        "LATENCY_WARMUP" => "5s",
        "LATENCY_THRESHOLD" => "10",
        "COMPARE_BASELINE" => "yesterday",
        "COMPARE_CURRENT" => "today",
        "STRATEGY" => "MM_EQ_001",
        "THEN_STRATEGIES" => "STAT_ARB_PAIRS_001,MOMENTUM_ST_001",
        "REPORTS" => "reports",
        "BIN" => "target/release",
        "LATENCY_BASELINE" => "baselines/staging-latency.json",
        "LATENCY_AGAINST" => "accepted",
        "CONFIG_TYPE" | "type" => "risk-limits",
        "STEP" => "deploy",
        "APPROVE_INCREASE" => "CHG-123456 approved by rita",
        "file" => "config/production/risk_limits.yaml",
        "name" => "risk_limits.yaml",
        "e" => "production",
        "WORKING_ORDERS" => "cancel",
        "SERVER" => "trade-blue-01",
        _ => "x",
    }
}

/// Shell words of one command (quotes, `$VAR`, `${VAR:-d}`, `${VAR:?m}` substituted, and
/// `${VAR:+words}` as it runs when VAR is set: its words); stops at a redirection, pipe or
/// command separator.
fn words(rest: &str) -> Vec<String> {
    let var = regex::Regex::new(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)(?:[:?\-][^}]*)?\}?").unwrap();
    let when_set = regex::Regex::new(r"\$\{[A-Za-z_][A-Za-z0-9_]*:\+([^}]*)\}").unwrap();
    let rest = when_set.replace_all(rest, "$1");
    let mut out = vec![];
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut has = false;
    for ch in rest.chars() {
        match (quote, ch) {
            (None, '\'' | '"') => {
                quote = Some(ch);
                has = true;
            }
            (Some(q), c) if c == q => quote = None,
            (None, ' ' | '\t') => {
                if has {
                    out.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            (None, '>' | '|' | ';' | '&' | ')') => break,
            (_, c) => {
                cur.push(c);
                has = true;
            }
        }
    }
    if has {
        out.push(cur);
    }
    out.into_iter()
        .filter(|w| !w.contains("[@]"))
        .map(|w| {
            var.replace_all(&w, |c: &regex::Captures| value_of(&c[1]).to_string())
                .into_owned()
        })
        .collect()
}

fn invocations() -> Vec<(String, String, Vec<String>)> {
    let mut files = vec![repo_root().join("Jenkinsfile")];
    for e in std::fs::read_dir(repo_root().join("scripts/pipeline")).unwrap() {
        files.push(e.unwrap().path());
    }
    let call =
        regex::Regex::new(r#""?(?:\$\{BIN\}|\$BIN|target/release)/([a-z_]+)"?(.*)"#).unwrap();
    let mut out = vec![];
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap().replace("\\\n", " ");
        for line in text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#') && !l.trim_start().starts_with("//"))
        {
            for c in call.captures_iter(line) {
                // A binary this test does not know is a gap in the contract, not a pass.
                assert!(
                    TOOLS.contains(&&c[1]) || &c[1] == "trading_sim",
                    "{}: `{}` is not in this test's TOOLS",
                    f.display(),
                    &c[1]
                );
                {
                    out.push((
                        f.file_name().unwrap().to_string_lossy().into_owned(),
                        c[1].to_string(),
                        words(&c[2]),
                    ));
                }
            }
        }
    }
    out
}

#[test]
fn every_binary_invocation_parses_with_that_binarys_clap_definition() {
    let calls = invocations();
    let mut per_tool: BTreeMap<&str, usize> = BTreeMap::new();
    for (file, tool, args) in &calls {
        if let Err(e) = parses(tool, args) {
            panic!("{file}: `{tool} {}` does not parse:\n{e}", args.join(" "));
        }
        *per_tool.entry(tool.as_str()).or_default() += 1;
    }
    for t in TOOLS.iter() {
        assert!(
            per_tool.contains_key(t),
            "no invocation of {t} found in the pipelines: {per_tool:?}"
        );
    }
    assert!(calls.len() >= 18, "only {} invocations found", calls.len());
}

#[test]
fn a_renamed_flag_breaks_the_contract() {
    assert!(parses("smoke_tests", &["--colour".into(), "green".into()]).is_err());
    assert!(parses("cutover", &["run".into(), "--to".into(), "purple".into()]).is_err());
    assert!(parses("smoke_tests", &["--color".into(), "green".into()]).is_ok());
    assert_eq!(
        words(r#"-e "$ENVIRONMENT" --watch "${WATCH:-5m}" > "$REPORTS/x.json""#),
        vec!["-e", "staging", "--watch", "5m"]
    );
}

#[test]
fn the_jenkinsfile_has_every_pipeline_of_the_guide() {
    let j = std::fs::read_to_string(repo_root().join("Jenkinsfile")).unwrap();
    for needle in [
        "stage('Deploy to dev')",
        "stage('Staging')",
        "stage('Production blue-green')",
        "stage('Staging rollback')",
        "cron(",
        "H 2 * * 6",
        "twoApprovals(",
        "submitterParameter: 'approver'",
        "lock('env-production')",
        "hotfix/",
        "runStage('rollback.sh')",
        "stage('Weekly staging refresh')",
        "runStage('refresh.sh')",
        "runStage('report.sh')",
        "runStage(\"notify.sh failure",
        "TimerTrigger",
        "junit",
    ] {
        assert!(j.contains(needle), "Jenkinsfile lacks {needle}");
    }
    // Production deploys to the idle colour the load balancers name, never a fixed one: a
    // fixed colour restarts the live one on every second release.
    let prod = &j[j.find("stage('Production blue-green')").unwrap()
        ..j.find("stage('Staging rollback')").unwrap()];
    assert!(
        prod.contains("runStage('idle.sh')") && prod.contains("env.DEPLOY_COLOR"),
        "{prod}"
    );
    assert!(
        prod.contains("BLUE_GREEN: '1'"),
        "the deploy stage must guard the live colour"
    );
    for fixed in ["'green'", "'blue'", "\"green\"", "\"blue\""] {
        assert!(!prod.contains(fixed), "production names a colour: {fixed}");
    }
    // Every stage script the Jenkinsfile runs exists.
    for c in regex::Regex::new(r#"runStage\(["']([a-z_]+\.sh)"#)
        .unwrap()
        .captures_iter(&j)
    {
        assert!(
            repo_root().join("scripts/pipeline").join(&c[1]).is_file(),
            "Jenkinsfile runs {} which does not exist",
            &c[1]
        );
    }
    // Every stage has a timeout; no secret is interpolated into an sh string.
    assert!(
        !regex::Regex::new(
            r#"sh\s+["'][^"']*\$\{?(DATABASE_URL|PROD_DATABASE_URL|DEPLOYKIT_ADMIN_TOKEN)"#
        )
        .unwrap()
        .is_match(&j)
    );
}

#[test]
fn the_crontab_line_runs_the_refresh_stage_script_on_saturdays() {
    let text = std::fs::read_to_string(repo_root().join("scripts/staging-refresh.cron")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .expect("a crontab entry");
    let fields: Vec<&str> = line.split_whitespace().collect();
    // minute hour day-of-month month day-of-week: Saturday early morning.
    assert_eq!(&fields[2..5], &["*", "*", "6"], "{line}");
    assert!(fields[1].parse::<u8>().unwrap() < 6, "{line}");
    assert!(line.contains("bash scripts/pipeline/refresh.sh"), "{line}");
    assert!(line.contains("ENVIRONMENT=staging"), "{line}");
    // `%` ends a crontab command unless escaped.
    assert!(!line.replace("\\%", "").contains('%'), "{line}");
    assert!(repo_root().join("scripts/pipeline/refresh.sh").is_file());
}

#[test]
fn groovy_parses_the_jenkinsfile() {
    let j = std::fs::read_to_string(repo_root().join("Jenkinsfile")).unwrap();
    let t = crate::support::groovy::parse(&j).unwrap();
    assert!(crate::support::groovy::section(&t, "pipeline").is_some());
}
