//! The Jenkinsfile run as Jenkins would run it (support::jenkins): each build in a workspace
//! cloned from an origin with the build's branches, checked out on a **detached HEAD**, with the
//! variables Jenkins sets (BRANCH_NAME, GIT_BRANCH, GIT_COMMIT, TAG_NAME, BUILD_NUMBER,
//! BUILD_TAG, BUILD_URL, WORKSPACE) and credentials from a store; the stage list comes from the
//! Jenkinsfile. Staging is a stack without a load balancer in its config, production one with
//! HAProxy. Each pipeline runs end to end; the failure scenarios are injected where their names
//! say and end as the guide asks (state, rollback, notification).
//!
//! What the harness sets that Jenkins would not (Build::overrides): BIN = the suite's own build
//! (not a second release build), and shorter holds (WATCH, HOLD, LATENCY_*, COMPARE_* windows)
//! so a production pipeline takes about a minute. Everything else is the Jenkinsfile's.

use crate::notify::{Receiver, receiver};
use crate::support::jenkins::{Build, Outcome, Runner, Verdict, stage_lists};
use crate::support::stack::Stack;
use crate::support::{bin_dir, git, psql, repo_root};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const PIPES: [&str; 8] = [
    "dev",
    "staging",
    "production",
    "hotfix",
    "staging-rollback",
    "staging-refresh",
    "emergency",
    "config",
];

fn jenkinsfile() -> String {
    std::fs::read_to_string(repo_root().join("Jenkinsfile")).unwrap()
}

/// The stage list of every pipeline, read from the Jenkinsfile: a renamed, added or removed
/// stage changes this snapshot; every stage has a timeout and every pipeline that changes an
/// environment holds that environment's lock.
#[test]
fn every_pipelines_stage_list_comes_from_the_jenkinsfile_with_locks_and_timeouts() {
    let lists = stage_lists(&jenkinsfile(), &PIPES);
    let mut text = String::new();
    for (pipe, stages) in &lists {
        text += &format!("## {pipe}\n");
        for s in stages {
            assert!(!s.contains("NO TIMEOUT"), "{pipe}: {s} has no timeout");
            text += &format!("{s}\n");
        }
    }
    for (pipe, env) in [
        ("dev", "env-dev"),
        ("staging", "env-staging"),
        ("production", "env-production"),
        ("hotfix", "env-production"),
        ("hotfix", "env-staging"),
        ("staging-rollback", "env-staging"),
        ("staging-refresh", "env-staging"),
        ("config", "env-staging"),
        ("config", "env-production"),
    ] {
        assert!(
            lists[pipe]
                .iter()
                .any(|s| s.contains(&format!("lock {env}"))),
            "{pipe} does not hold {env}"
        );
    }
    // Deliberately lock-free: an emergency stop must not queue behind the deploy it stops.
    assert!(
        !lists["emergency"].iter().any(|s| s.contains("lock ")),
        "{:?}",
        lists["emergency"]
    );
    insta::assert_snapshot!(text);
}

/// A stage list that changes in the Jenkinsfile is seen (the snapshot above fails); a stage
/// script renamed in the Jenkinsfile, or missing from the workspace, fails the run at that stage.
#[test]
fn a_renamed_or_missing_stage_script_or_a_changed_stage_list_fails_the_harness() {
    let j = jenkinsfile();
    let removed = j.replacen(
        "stage('Smoke idle colour')",
        "stage('Smoke the idle colour')",
        1,
    );
    assert_ne!(
        stage_lists(&j, &["production"]),
        stage_lists(&removed, &["production"])
    );
    // The first stage script every build runs, renamed in the Jenkinsfile / gone from the workspace.
    let ws = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(ws.path().join("scripts/pipeline")).unwrap();
    let build = Build {
        env: BTreeMap::from([("BRANCH_NAME".into(), "feature/x".into())]),
        params: BTreeMap::from([("PIPELINE".into(), "dev".into())]),
        credentials: BTreeMap::from([
            ("dev-database-url".into(), "postgres://x".into()),
            ("dev-admin-token".into(), "t".into()),
            ("team-webhook".into(), "http://127.0.0.1:9/".into()),
        ]),
        ..Default::default()
    };
    for (file, why) in [
        (
            j.replace("runStage('package.sh'", "runStage('package_release.sh'"),
            "package_release.sh",
        ),
        (j.clone(), "package.sh"),
    ] {
        let b = build.clone();
        let p = ws.path().to_path_buf();
        let e = std::panic::catch_unwind(move || Runner::new(&p, b).run(&file))
            .expect_err("a missing stage script must fail the harness");
        let msg = e.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(
            msg.contains(&format!(
                "scripts/pipeline/{why}, which the workspace does not have"
            )),
            "{msg}"
        );
    }
}

/// An origin repository holding this checkout's commit (with its uncommitted tracked changes)
/// as every branch a scenario builds, and a tag.
struct Origin {
    dir: tempfile::TempDir,
    sha: String,
}

impl Origin {
    fn new(branches: &[&str], tags: &[&str]) -> Origin {
        let root = repo_root();
        let sha = match git(&root, &["stash", "create"]) {
            s if s.is_empty() => git(&root, &["rev-parse", "HEAD"]),
            s => s,
        };
        let dir = tempfile::tempdir().unwrap();
        let origin = dir.path().join("origin.git");
        git(
            dir.path(),
            &["init", "-q", "--bare", origin.to_str().unwrap()],
        );
        git(
            &root,
            &[
                "push",
                "-q",
                origin.to_str().unwrap(),
                &format!("{sha}:refs/heads/{}", branches[0]),
            ],
        );
        for b in &branches[1..] {
            git(&origin, &["update-ref", &format!("refs/heads/{b}"), &sha]);
        }
        for t in tags {
            git(&origin, &["update-ref", &format!("refs/tags/{t}"), &sha]);
        }
        Origin { dir, sha }
    }

    /// Jenkins' checkout of `branch`: a clone, on a detached HEAD at the built commit.
    fn workspace(&self, branch: &str) -> PathBuf {
        let ws = self
            .dir
            .path()
            .join(format!("workspace-{}", branch.replace('/', "_")));
        if !ws.exists() {
            git(
                self.dir.path(),
                &[
                    "clone",
                    "-q",
                    self.dir.path().join("origin.git").to_str().unwrap(),
                    ws.to_str().unwrap(),
                ],
            );
            git(&ws, &["checkout", "-q", "--detach", &self.sha]);
            git(&ws, &["config", "user.email", "jenkins@example.com"]);
            git(&ws, &["config", "user.name", "Jenkins"]);
        }
        ws
    }
}

/// An environment's section of the harness config, from a stack's own: the stack's services,
/// database, Prometheus and (production only) its HAProxy, under the environment's name.
fn env_toml(stack: &Stack, env: &str, load_balancer: bool, db_var: &str, extra: &str) -> String {
    let text = std::fs::read_to_string(stack.dir.path().join("s/deploy.toml")).unwrap();
    let mut out = String::new();
    let mut skip = false;
    for line in text.lines() {
        if line.starts_with('[') {
            skip = !load_balancer && line.contains("load_balancers");
        }
        if skip || line.starts_with('#') {
            continue;
        }
        out += &line
            .replace("environments.local", &format!("environments.{env}"))
            .replace(
                "database = { url_env = \"DATABASE_URL\" }",
                &format!("database = {{ url_env = \"{db_var}\" }}"),
            );
        out.push('\n');
    }
    out + extra
}

struct World {
    origin: Origin,
    cfg: tempfile::TempDir,
    webhook: Receiver,
    build_no: u32,
    env: BTreeMap<String, String>,
    credentials: BTreeMap<String, String>,
}

impl World {
    /// Staging (and dev) on `staging`, production on `production`.
    async fn new(staging: Option<&Stack>, production: &Stack) -> World {
        let origin = Origin::new(
            &["main", "develop", "hotfix/order-rounding", "feature/ticker"],
            &["1.2.0"],
        );
        let cfg = tempfile::tempdir().unwrap();
        let mut toml = env_toml(
            production,
            "production",
            true,
            "PROD_DATABASE_URL",
            "\n[environments.production.policy]\nchange_ticket = \"^CHG-[0-9]{6}$\"\n\
             [environments.production.verify]\nchecks = [\"git\", \"credentials\", \"policy\"]\n\
             expected_branch = [\"main\", \"hotfix/*\"]\n\
             [environments.production.approvals.hotfix]\nsenior-developer = [\"sam\", \"sue\"]\n\
             risk-manager = [\"rita\"]\ncto = [\"carol\"]\n",
        );
        let mut credentials = BTreeMap::from([
            ("prod-database-url".into(), production.url("DATABASE_URL")),
            (
                "prod-database-url-readonly".into(),
                production.url("DATABASE_URL"),
            ),
            (
                "prod-admin-token".into(),
                production.url("DEPLOYKIT_ADMIN_TOKEN"),
            ),
            ("anonymize-key".into(), "harness-anonymize-key-71c2".into()),
        ]);
        let mut env = BTreeMap::from([(
            "DEPLOY_INVENTORY_PRODUCTION".to_string(),
            production
                .dir
                .path()
                .join("s/inventory")
                .to_string_lossy()
                .into_owned(),
        )]);
        if let Some(s) = staging {
            // Production takes a config only after staging tested it (the repository's rule).
            toml = toml.replacen(
                "[environments.production]\n",
                "[environments.production]\npromote_from = \"staging\"\n",
                1,
            );
            toml += &env_toml(
                s,
                "staging",
                false,
                "STAGING_DATABASE_URL",
                "\n[environments.staging.verify]\nchecks = [\"git\", \"credentials\"]\n\
                 expected_branch = [\"develop\", \"hotfix/*\"]\n",
            );
            toml += &env_toml(
                s,
                "dev",
                false,
                "DATABASE_URL",
                "\n[environments.dev.verify]\nchecks = [\"git\", \"credentials\"]\n",
            );
            for k in ["staging", "dev"] {
                credentials.insert(format!("{k}-database-url"), s.url("DATABASE_URL"));
                credentials.insert(format!("{k}-admin-token"), s.url("DEPLOYKIT_ADMIN_TOKEN"));
                env.insert(
                    format!("DEPLOY_INVENTORY_{}", k.to_uppercase()),
                    s.dir
                        .path()
                        .join("s/inventory")
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
        std::fs::write(cfg.path().join("deploy.toml"), toml).unwrap();
        let webhook = receiver(200).await;
        credentials.insert("team-webhook".into(), webhook.url.clone());
        // The agent's environment: its PATH (with an Ansible: the project's pinned one), the
        // config the firm keeps on its agents, the inventories outside the checkout.
        let venv = repo_root().join(".venv/bin");
        env.insert(
            "PATH".into(),
            format!("{}:{}", venv.display(), std::env::var("PATH").unwrap()),
        );
        env.insert(
            "DEPLOYKIT_CONFIG".into(),
            cfg.path()
                .join("deploy.toml")
                .to_string_lossy()
                .into_owned(),
        );
        env.insert("HOME".into(), std::env::var("HOME").unwrap_or_default());
        World {
            origin,
            cfg,
            webhook,
            build_no: 0,
            env,
            credentials,
        }
    }

    /// A build of `branch` (a tag build when `tag`), as Jenkins starts it.
    fn build(&mut self, branch: &str, tag: bool, params: &[(&str, &str)]) -> (PathBuf, Build) {
        self.build_no += 1;
        let ws = self.origin.workspace(branch);
        let n = self.build_no.to_string();
        let job = format!("deploy-tools/{}", branch.replace('/', "%2F"));
        let mut env = self.env.clone();
        env.extend([
            ("BRANCH_NAME".to_string(), branch.to_string()),
            ("GIT_COMMIT".into(), self.origin.sha.clone()),
            ("BUILD_NUMBER".into(), n.clone()),
            ("BUILD_ID".into(), n.clone()),
            ("JOB_NAME".into(), job.clone()),
            (
                "BUILD_TAG".into(),
                format!("jenkins-{}-{n}", job.replace('/', "-")),
            ),
            (
                "BUILD_URL".into(),
                format!("https://jenkins.example.com/job/{job}/{n}/"),
            ),
            ("WORKSPACE".into(), ws.to_string_lossy().into_owned()),
        ]);
        if tag {
            env.insert("TAG_NAME".into(), branch.to_string());
        } else {
            env.insert("GIT_BRANCH".into(), format!("origin/{branch}"));
        }
        let b = Build {
            env,
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            credentials: self.credentials.clone(),
            started_by: Some("dave".into()),
            approvals: vec![],
            changed: vec![],
            overrides: BTreeMap::from(
                [
                    ("BIN", bin_dir().to_string_lossy().into_owned()),
                    (
                        "DEPLOYKIT_BIN_DIR",
                        bin_dir().to_string_lossy().into_owned(),
                    ),
                    ("WATCH", "10s".into()),
                    ("HOLD", "1s".into()),
                    ("LATENCY_DURATION", "3s".into()),
                    ("LATENCY_WARMUP", "500ms".into()),
                    // "Compare with yesterday" against the live colour's last seconds before
                    // the switch (a fresh Prometheus has no yesterday), saved by `run`.
                    (
                        "COMPARE_BASELINE",
                        self.cfg
                            .path()
                            .join(format!("pre-switch-{n}.json"))
                            .to_string_lossy()
                            .into_owned(),
                    ),
                    ("COMPARE_CURRENT", "now".into()),
                    ("COMPARE_DURATION", "8s".into()),
                    ("COMPARE_STEP", "2s".into()),
                    ("COMPARE_METRICS", "error_rate,p99_latency".into()),
                    ("DEPLOYKIT_COLOR", "never".into()),
                ]
                .map(|(k, v)| (k.to_string(), v)),
            ),
        };
        (ws, b)
    }

    /// [`tool`] with this world's config; it must succeed.
    fn tool(&self, secrets: (&str, &Stack), bin: &str, args: &[&str]) {
        let config = self.cfg.path().join("deploy.toml");
        let out = tool(config.to_str().unwrap(), Some(secrets), bin, args);
        assert!(
            out.status.success(),
            "{bin} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The notifications posted so far, as their text, and forget them.
    fn notifications(&self) -> Vec<String> {
        std::mem::take(&mut *self.webhook.bodies.lock().unwrap())
            .into_iter()
            .map(|(_, b)| b)
            .collect()
    }
}

/// One tool run beside the pipeline, as an operator types it: the harness config, and a stack's
/// secrets (database URL as `<PREFIX>_DATABASE_URL`, admin token) by environment, never argument.
fn tool(
    config: &str,
    secrets: Option<(&str, &Stack)>,
    bin: &str,
    args: &[&str],
) -> std::process::Output {
    let mut c = Command::new(crate::support::bin(bin));
    c.args(args).env("DEPLOYKIT_CONFIG", config);
    if let Some((prefix, s)) = secrets {
        c.env(format!("{prefix}_DATABASE_URL"), s.url("DATABASE_URL"))
            .env("DEPLOYKIT_ADMIN_TOKEN", s.url("DEPLOYKIT_ADMIN_TOKEN"));
    }
    c.output().unwrap()
}

fn run(ws: &Path, b: Build, mut hook: impl FnMut(&str)) -> Outcome {
    let file = jenkinsfile();
    let baseline = b.overrides["COMPARE_BASELINE"].clone();
    let config = b.env["DEPLOYKIT_CONFIG"].clone();
    let o = tokio::task::block_in_place(|| {
        Runner::new(ws, b)
            .on_stage(|stage| {
                // The window Jenkins would keep as the pre-switch figures: the last seconds of
                // the live colour, saved as the cutover starts.
                if stage.ends_with("/ Cutover") {
                    let out = tool(
                        &config,
                        None,
                        "compare_metrics",
                        &[
                            "-e",
                            "production",
                            "--baseline",
                            "now",
                            "--current",
                            "now",
                            "--duration",
                            "8s",
                            "--step",
                            "2s",
                            "--metrics",
                            "error_rate,p99_latency",
                            "--save",
                            &baseline,
                            "-q",
                        ],
                    );
                    assert!(
                        std::path::Path::new(&baseline).is_file(),
                        "pre-switch baseline not saved: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                hook(stage)
            })
            .run(&file)
    });
    println!(
        "{}",
        o.stages
            .iter()
            .map(|(s, v)| format!("  {s}: {v:?}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    o
}

fn show(o: &Outcome) -> String {
    format!("{:#?}\n{}", o.stages, o.log)
}

fn passed(o: &Outcome) {
    assert!(!o.failed, "the build failed:\n{}", show(o));
    assert!(
        o.stages.iter().all(|(_, v)| *v == Verdict::Pass),
        "{}",
        show(o)
    );
}

fn failed_at(o: &Outcome, stage: &str) {
    assert!(o.failed, "the build passed:\n{}", show(o));
    let first = o
        .stages
        .iter()
        .find(|(_, v)| matches!(v, Verdict::Fail(w) if w != "nested"))
        .unwrap_or_else(|| panic!("no failed stage:\n{}", show(o)));
    assert!(
        first.0.ends_with(stage),
        "failed at {} instead of {stage}:\n{}",
        first.0,
        show(o)
    );
}

fn fault(url: &str, json: &str) {
    let out = Command::new("curl")
        .args([
            "-fsS",
            "-m",
            "5",
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-d",
            json,
            &format!("{url}/sim/faults"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn health(url: &str) -> serde_json::Value {
    let out = Command::new("curl")
        .args(["-sS", "-m", "5", &format!("{url}/health")])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// `color version` HAProxy answers from.
fn live(stack: &Stack) -> String {
    let h = health(&stack.url("HAPROXY_URL"));
    format!(
        "{} {}",
        h["color"].as_str().unwrap_or("?"),
        h["version"].as_str().unwrap_or("?")
    )
}

/// Steady client orders through HAProxy for a build; `stop` returns how many failed.
struct Load(std::process::Child, tempfile::NamedTempFile);

impl Load {
    fn start(stack: &Stack) -> Load {
        let out = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(crate::support::bin("trading_sim"))
            .args([
                "--load",
                &stack.url("HAPROXY_URL"),
                "--load-rate",
                "100",
                "--load-duration-s",
                "900",
            ])
            .stdout(out.reopen().unwrap())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Load(child, out)
    }
    fn stop(mut self) -> serde_json::Value {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        self.0.wait().unwrap();
        serde_json::from_str(&std::fs::read_to_string(self.1.path()).unwrap()).unwrap()
    }
}

/// The production pipeline twice in a row (a branch build, then a tag build), then its failure
/// scenarios, each ending as the guide says: before the switch nothing is rolled back; after the
/// switch traffic goes back; a failed rollback is named loudly; a failed migration lifts the
/// maintenance window; last, the emergency pipeline stops all trading. Every build notifies the
/// team.
/// "Filter `deployment_id: \"v3.2.2\"`" finds the whole deployment (issue 23): every JSON report
/// and JUnit file of build `build`, its notification and its journal rows carry `id`.
fn deployment_id_everywhere(ws: &Path, build: &str, id: &str, notification: &str, p: &Stack) {
    let dir = ws.join("reports").join(build);
    let (mut json, mut junit) = (0, 0);
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            if v.get("tool").is_some() {
                assert_eq!(v["deployment_id"], id, "{name}");
                json += 1;
            }
        } else if name.ends_with(".xml") {
            assert!(
                text.contains(&format!(
                    "<property name=\"deployment_id\" value=\"{id}\"/>"
                )),
                "{name}: {text}"
            );
            junit += 1;
        }
    }
    assert!(
        json > 3 && junit > 3,
        "{json} JSON reports, {junit} JUnit files in {dir:?}"
    );
    assert!(notification.contains(id), "{notification}");
    let rows = psql(
        &p.url("DATABASE_URL"),
        &format!("SELECT count(*) FROM deploy_journal WHERE deployment_id = '{id}'"),
    );
    assert!(rows.parse::<u32>().unwrap() > 0, "no journal row of {id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_twice_in_a_row_then_failures_before_and_after_the_switch_during_rollback_and_migration()
 {
    let p = Stack::up();
    let mut w = World::new(None, &p).await;
    let prod = [("CHANGE_TICKET", "CHG-100001")];
    let approvers = vec!["alice".to_string(), "bob".to_string()];

    // 1. main → 1.1.0: to the idle colour (green), the live one (blue) never restarted.
    let blue_pids = p.pids("blue");
    let (ws, mut b) = w.build("main", false, &[prod[0], ("VERSION", "1.1.0")]);
    b.approvals = approvers.clone();
    let load = Load::start(&p);
    let o = run(&ws, b, |_| {});
    let l = load.stop();
    passed(&o);
    assert_eq!(live(&p), "green 1.1.0");
    assert_eq!(p.pids("blue"), blue_pids, "the live colour was restarted");
    assert_eq!(l["failed"], 0, "orders lost during the deploy: {l}");
    assert!(o.locks.contains(&"env-production".to_string()));
    assert!(o.not_run.iter().any(|c| c.starts_with("cargo build")));
    let n = w.notifications();
    assert!(
        n.len() == 1
            && n[0].contains("production deploy of 1.1.0")
            && n[0].contains(":white_check_mark:"),
        "{n:?}"
    );
    deployment_id_everywhere(&ws, "1", "1.1.0+1", &n[0], &p);
    // verify_env passed in the workspace: detached HEAD, build outputs (reports/, dist/) in it.
    assert_eq!(git(&ws, &["rev-parse", "--abbrev-ref", "HEAD"]), "HEAD");
    assert!(ws.join("dist/1.1.0/SHA256SUMS").is_file());

    // 2. The second deploy in a row, a tag build: to blue, now idle; green never restarted.
    let green_pids = p.pids("green");
    let (ws2, mut b) = w.build("1.2.0", true, &[prod[0]]);
    b.approvals = approvers.clone();
    let load = Load::start(&p);
    let o = run(&ws2, b, |_| {});
    let l = load.stop();
    passed(&o);
    assert_eq!(live(&p), "blue 1.2.0");
    assert_eq!(p.pids("green"), green_pids, "the live colour was restarted");
    assert_eq!(l["failed"], 0, "orders lost during the deploy: {l}");
    assert!(w.notifications()[0].contains("production deploy of 1.2.0"));

    // 3. A failure before the switch (the idle colour reports the wrong build at smoke): nothing
    // was switched, so the failure handler's rollback changes nothing; blue stays live.
    let (ws, mut b) = w.build("main", false, &[prod[0], ("VERSION", "1.3.0")]);
    b.approvals = approvers.clone();
    let green = p.url("GREEN_URL");
    let o = run(&ws, b, |stage| {
        if stage.ends_with("/ Smoke idle colour") {
            fault(&green, r#"{"version":"1.2.9-wrong-build"}"#);
        }
    });
    failed_at(&o, "/ Smoke idle colour");
    assert_eq!(o.ran("rollback.sh"), vec![&("rollback.sh".to_string(), 0)]);
    assert!(
        o.log
            .contains("nothing rolled back, traffic left where it is"),
        "{}",
        o.log
    );
    assert_eq!(live(&p), "blue 1.2.0");
    let n = w.notifications();
    assert!(
        n.len() == 1
            && n[0].contains("production deploy of 1.3.0 (rolled back if this build had switched)")
            && n[0].contains("version"),
        "{n:?}"
    );

    // 4. A failure after the switch (the new colour answers in 150 ms from the strategy rollout
    // on, over the holds' 100 ms mean-latency ceiling): the rollout stops, and the failure
    // handler switches traffic back to blue; no order is lost.
    let (ws, mut b) = w.build("main", false, &[prod[0], ("VERSION", "1.4.0")]);
    b.approvals = approvers.clone();
    let load = Load::start(&p);
    let o = run(&ws, b, |stage| {
        if stage.ends_with("/ Staged strategy activation") {
            fault(&green, r#"{"latency_ms":150}"#);
        }
    });
    let l = load.stop();
    failed_at(&o, "/ Staged strategy activation");
    assert_eq!(o.ran("rollback.sh"), vec![&("rollback.sh".to_string(), 0)]);
    assert_eq!(live(&p), "blue 1.2.0");
    assert_eq!(l["failed"], 0, "orders lost: {l}");
    assert!(
        w.notifications()[0]
            .contains("production deploy of 1.4.0 (rolled back if this build had switched)")
    );

    // 5. A failure during the rollback (the load balancer's runtime API is gone when the
    // handler runs): the notification still goes out and says ROLLBACK FAILED.
    let (ws, mut b) = w.build("main", false, &[prod[0], ("VERSION", "1.5.0")]);
    b.approvals = approvers.clone();
    let sock = p.dir.path().join("s/haproxy.sock");
    let moved = p.dir.path().join("s/haproxy.sock.away");
    let load = Load::start(&p);
    let o = run(&ws, b, |stage| {
        if stage.ends_with("/ Staged strategy activation") {
            fault(&green, r#"{"latency_ms":150}"#);
        }
        if stage == "Production blue-green post failure" {
            std::fs::rename(&sock, &moved).unwrap();
        }
    });
    std::fs::rename(&moved, &sock).unwrap();
    load.stop();
    failed_at(&o, "/ Staged strategy activation");
    assert_ne!(o.ran("rollback.sh")[0].1, 0, "{}", o.log);
    let n = w.notifications();
    assert!(
        n.len() == 1 && n[0].contains("ROLLBACK FAILED") && n[0].contains("docs/runbook.md"),
        "{n:?}"
    );
    assert_eq!(
        live(&p),
        "green 1.5.0",
        "the failed rollback left traffic where it was"
    );
    // The runbook's step: roll back by hand once the load balancer answers again.
    w.tool(("PROD", &p), "cutover", &["-e", "production", "rollback"]);
    assert_eq!(live(&p), "blue 1.2.0");

    // 6. A failed migration: the window it needed is lifted again, nothing deployed, nothing
    // switched, the schema where it was.
    let mig = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(repo_root().join("migrations")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), mig.path().join(e.file_name())).unwrap();
    }
    std::fs::write(
        mig.path().join("V3.2.3__fails_midway.sql"),
        "-- deploykit: maintenance\nCREATE TABLE harness_venue_note (id int);\nSELECT 1 / 0;\n",
    )
    .unwrap();
    let schema = |s: &Stack| {
        psql(
            &s.url("DATABASE_URL"),
            "SELECT version FROM schema_version ORDER BY installed_on DESC LIMIT 1",
        )
    };
    let before = schema(&p);
    let (ws, mut b) = w.build("main", false, &[prod[0], ("VERSION", "1.6.0")]);
    b.approvals = approvers.clone();
    b.env.insert(
        "DEPLOYKIT_MIGRATIONS".into(),
        mig.path().to_string_lossy().into_owned(),
    );
    let o = run(&ws, b, |_| {});
    failed_at(&o, "/ Backup + migrate (maintenance only if needed)");
    assert!(o.log.contains("maintenance lifted"), "{}", o.log);
    assert_eq!(schema(&p), before);
    // Serving again (the maintenance page is not a service's /health).
    assert_eq!(live(&p), "blue 1.2.0");
    assert!(w.notifications()[0].contains("production deploy of 1.6.0"));

    // 7. The guide's §10 kill switch from Jenkins: no lock to wait for, every trading server
    // stopped, the maintenance page up, the team told.
    let (ws, b) = w.build(
        "main",
        false,
        &[("PIPELINE", "emergency"), ("EMERGENCY_ACTION", "stop")],
    );
    let o = run(&ws, b, |_| {});
    passed(&o);
    assert_eq!(o.ran("emergency.sh").len(), 1, "{}", o.log);
    let page = reqwest::get(format!("{}/", p.url("HAPROXY_URL")))
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 503);
    assert!(
        !p.client("blue")
            .admin_state()
            .await
            .unwrap()
            .accepting_orders
    );
    assert!(w.notifications()[0].contains("emergency stop"));
    drop(w.cfg);
}

/// Staging, dev, the hotfix (§6: staging first, verify_hotfix, one approver per role, any day
/// with the override recorded, then production blue-green), the staging rollback and the weekly
/// refresh, each end to end; an approval by the build's starter is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_dev_hotfix_staging_rollback_and_weekly_refresh_pipelines_run_green() {
    let s = Stack::up();
    let p = Stack::up();
    let mut w = World::new(Some(&s), &p).await;

    // Staging's latency gate needs an accepted baseline: the first is taken on purpose.
    w.tool(
        ("STAGING", &s),
        "measure_latency",
        &[
            "-e",
            "staging",
            "--color",
            "blue",
            "--accept-baseline",
            "--release",
            "1.0.0",
            "--duration",
            "3s",
            "--warmup",
            "500ms",
            "--production",
        ],
    );

    // dev: one server (TARGET_SERVER), smoke.
    let (ws, b) = w.build(
        "feature/ticker",
        false,
        &[
            ("PIPELINE", "dev"),
            ("VERSION", "1.0.1-dev"),
            ("TARGET_SERVER", "app-blue-01"),
        ],
    );
    let o = run(&ws, b, |_| {});
    passed(&o);
    assert_eq!(health(&s.url("BLUE_URL"))["version"], "1.0.1-dev");
    assert_eq!(health(&s.url("GREEN_URL"))["version"], "1.0.0");
    assert!(w.notifications().is_empty(), "dev notifies on failure only");

    // staging from develop: migrate without a window, in place, smoke with the database, the
    // latency gate against the accepted baseline (and this run accepted as the next one).
    let (ws, b) = w.build("develop", false, &[("VERSION", "1.1.0")]);
    let o = run(&ws, b, |_| {});
    passed(&o);
    assert_eq!(health(&s.url("BLUE_URL"))["version"], "1.1.0");
    assert_eq!(
        psql(
            &s.url("DATABASE_URL"),
            "SELECT string_agg(release, ',' ORDER BY id) FROM deploy_latency_baseline"
        ),
        "1.0.0,1.1.0"
    );
    assert!(w.notifications()[0].contains("staging deploy of 1.1.0"));

    // A hotfix whose approvals include the build's starter: refused at the approvals stage,
    // after staging, before production changes.
    let (ws, mut b) = w.build("hotfix/order-rounding", false, &[("VERSION", "1.1.1")]);
    b.approvals = vec!["sue".into(), "dave".into(), "carol".into()];
    let o = run(&ws, b, |_| {});
    failed_at(&o, "/ Approvals: senior developer, risk manager, CTO");
    assert_eq!(live(&p), "blue 1.0.0");
    // The notification names the refused approval (from the stage's report) and the override.
    let n = w.notifications();
    assert!(
        n[0].contains("hotfix 1.1.1")
            && n[0].contains("policy overridden: hotfix hotfix/order-rounding")
            && n[0].contains("dave approved as risk-manager but is not in its group"),
        "{n:?}"
    );

    // The hotfix, approved by one person per role: staging, then production (green), any day.
    let (ws, mut b) = w.build("hotfix/order-rounding", false, &[("VERSION", "1.1.1")]);
    b.approvals = vec!["sue".into(), "rita".into(), "carol".into()];
    let load = Load::start(&p);
    let o = run(&ws, b, |_| {});
    let l = load.stop();
    passed(&o);
    assert_eq!(l["failed"], 0, "orders lost during the hotfix: {l}");
    assert!(
        o.not_run
            .iter()
            .any(|c| c == "bash scripts/test --critical"),
        "{:?}",
        o.not_run
    );
    assert!(
        o.locks.contains(&"env-staging".to_string())
            && o.locks.contains(&"env-production".to_string())
    );
    assert_eq!(health(&s.url("BLUE_URL"))["version"], "1.1.1");
    assert_eq!(live(&p), "green 1.1.1");
    let n = w.notifications();
    assert!(
        n[0].contains("hotfix 1.1.1 in production") && n[0].contains("policy overridden"),
        "{n:?}"
    );

    // staging-rollback: every staging host back on the release the hotfix replaced.
    let (ws, b) = w.build(
        "develop",
        false,
        &[
            ("PIPELINE", "staging-rollback"),
            ("ROLLBACK_CODE", "release"),
        ],
    );
    let o = run(&ws, b, |_| {});
    passed(&o);
    assert_eq!(health(&s.url("BLUE_URL"))["version"], "1.1.0");
    assert!(w.notifications()[0].contains("staging rollback to the previous release"));

    // The Saturday timer: the weekly refresh of staging from production, anonymized.
    let (ws, mut b) = w.build("develop", false, &[]);
    b.started_by = None;
    let o = run(&ws, b, |_| {});
    passed(&o);
    assert_eq!(
        o.stages.last().map(|(s, _)| s.as_str()),
        Some("Weekly staging refresh"),
        "{:?}",
        o.stages
    );
    assert!(w.notifications()[0].contains("weekly staging refresh"));

    // The config pipeline (guide §8): production's risk limits raise the stack's by far more
    // than 20 % — refused at staging's deploy without APPROVE_INCREASE, nothing changed
    // anywhere; approved, it goes through staging (smoke) to production (which finds staging's
    // smoke verdict in its journal) and reads back; a second run in a row is green too.
    let prod_limits = repo_root().join("config/production/risk_limits.yaml");
    let limits_of =
        |st: &Stack| std::fs::read_to_string(st.dir.path().join("s/risk_limits.yaml")).unwrap();
    let before = (limits_of(&s), limits_of(&p));
    let config = |w: &mut World, approve: &str| {
        let (ws, mut b) = w.build(
            "main",
            false,
            &[
                ("PIPELINE", "config"),
                ("CONFIG_TYPE", "risk-limits"),
                ("APPROVE_INCREASE", approve),
            ],
        );
        b.approvals = vec!["sam".into(), "rita".into()];
        run(&ws, b, |_| {})
    };
    let o = config(&mut w, "");
    failed_at(&o, "/ Deploy config to staging");
    assert_eq!((limits_of(&s), limits_of(&p)), before, "nothing changed");
    let n = w.notifications();
    assert!(
        n[0].contains("config change risk-limits") && n[0].contains("needs approval"),
        "{n:?}"
    );
    for round in 0..2 {
        let o = if round == 0 {
            config(&mut w, "CHG-123456 risk sign-off by rita")
        } else {
            // Automatically: a main build whose commits change only config/ is a config change,
            // its type read from the changed file.
            let (ws, mut b) = w.build(
                "main",
                false,
                &[("APPROVE_INCREASE", "CHG-123456 risk sign-off by rita")],
            );
            b.changed = vec!["config/production/risk_limits.yaml".into()];
            b.approvals = vec!["sam".into(), "rita".into()];
            let o = run(&ws, b, |_| {});
            assert!(
                o.log.contains(
                    "config change: risk-limits (from config/production/risk_limits.yaml)"
                ),
                "{}",
                o.log
            );
            o
        };
        passed(&o);
        for stage in [
            "Config change / Staging / Smoke staging",
            "Config change / Production / Deploy config to production",
            "Config change / Production / Read back",
        ] {
            assert!(
                o.stages.iter().any(|(s, _)| s == stage),
                "round {round}: {stage} did not run: {:?}",
                o.stages
            );
        }
        let want = std::fs::read_to_string(&prod_limits).unwrap();
        assert_eq!(limits_of(&s), want, "staging runs production's bytes");
        assert_eq!(limits_of(&p), want);
        let n = w.notifications();
        assert!(
            n[0].contains(if round == 0 {
                "config change risk-limits in production"
            } else {
                "config change config/production/risk_limits.yaml in production"
            }),
            "{n:?}"
        );
    }
}
