//! validate_config: every schema rule has a failing fixture; a deploy whose reload fails or
//! whose read-back differs is restored (the live limits equal the old file afterwards).

use crate::support::{
    ADMIN_TOKEN, Run, check_message, checks_with, client, config, run_async, sibling_bin, sim_with,
};
use std::path::Path;

const GOOD: &str = "default: {max_position_size: 1000, max_loss_per_day: 10000}\nlimits:\n  MM_EQ_001: {max_position_size: 10000, max_loss_per_day: 50000}\n  TEST-SMOKE-01: {max_position_size: 500, max_loss_per_day: 5000}\n";

async fn vc(cfg: &Path, args: &[&str]) -> Run {
    let mut a = vec!["--config", cfg.to_str().unwrap(), "--format", "json"];
    a.extend_from_slice(args);
    run_async(
        "validate_config",
        &a,
        &[("DEPLOYKIT_ADMIN_TOKEN", ADMIN_TOKEN)],
    )
    .await
}

/// GOOD with the default daily loss limit raised 10 % (within the approval threshold).
fn raised_default_loss(dir: &Path) -> String {
    write(
        dir,
        "risk_limits.yaml",
        &GOOD.replace("max_loss_per_day: 10000", "max_loss_per_day: 11000"),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_schema_rule_has_a_failing_fixture() {
    let (d, cfg) = config("[environments.local]\n");
    let dir = d.path();
    let ok = write(dir, "risk_limits.yaml", GOOD);
    assert_eq!(vc(&cfg, &[&ok]).await.code, 0);
    let json = write(
        dir,
        "risk_limits.json",
        r#"{"default": {"max_position_size": 10, "max_loss_per_day": 5}}"#,
    );
    assert_eq!(vc(&cfg, &[&json]).await.code, 0, "JSON is accepted too");
    let cases: &[(&str, &str, &str)] = &[
        (
            "risk_limits_syntax.yaml",
            "default: {max_position_size: 10\n",
            ":1:",
        ),
        (
            "risk_limits_missing.yaml",
            "limits: {}\n",
            "no limits: write `risk_limits:`",
        ),
        (
            "risk_limits_unknown.yaml",
            "default: {max_position_size: 1, max_loss_per_day: 1, max_orders: 3}\n",
            "unknown field `max_orders`",
        ),
        (
            "risk_limits_range.yaml",
            "default: {max_position_size: 0, max_loss_per_day: 1}\n",
            "max_position_size 0 is outside",
        ),
        (
            "risk_limits_loss.yaml",
            "default: {max_position_size: 1, max_loss_per_day: -5}\n",
            "max_loss_per_day -5 is outside",
        ),
        (
            "risk_limits_name.yaml",
            "default: {max_position_size: 1, max_loss_per_day: 1}\nlimits: {mm_eq: {max_position_size: 1, max_loss_per_day: 1}}\n",
            "limit name `mm_eq`",
        ),
        (
            "risk_limits_test.yaml",
            "default: {max_position_size: 10, max_loss_per_day: 10}\nlimits: {TEST-X: {max_position_size: 11, max_loss_per_day: 1}}\n",
            "test account TEST-X has limits above the default",
        ),
        (
            "strategy_size.yaml",
            "{name: MM_EQ_001, enabled: true, size_pct: 120, max_order_qty: 10, symbols: [AAPL], spread_bps: 5}",
            "size_pct 120",
        ),
        (
            "strategy_symbols.yaml",
            "{name: MM_EQ_001, enabled: true, size_pct: 10, max_order_qty: 10, symbols: [], spread_bps: 5}",
            "at least one symbol",
        ),
        (
            "strategy_enabled.yaml",
            "{name: MM_EQ_001, enabled: true, size_pct: 0, max_order_qty: 10, symbols: [A], spread_bps: 5}",
            "enabled with size_pct 0",
        ),
        (
            "strategy_spread.yaml",
            "{name: MM_EQ_001, enabled: false, size_pct: 0, max_order_qty: 10, symbols: [A], spread_bps: 0}",
            "spread_bps 0",
        ),
        (
            "app_level.yaml",
            "{service: oms, listen: '0.0.0.0:80', log_level: loud, timeouts: {connect_ms: 1, request_ms: 2}}",
            "log_level `loud`",
        ),
        (
            "app_listen.yaml",
            "{service: oms, listen: 'port 80', log_level: info, timeouts: {connect_ms: 1, request_ms: 2}}",
            "is not host:port",
        ),
        (
            "app_timeouts.yaml",
            "{service: oms, listen: '0.0.0.0:80', log_level: info, timeouts: {connect_ms: 5, request_ms: 2}}",
            "connect_ms ≤ request_ms",
        ),
    ];
    for (name, text, expect) in cases {
        let f = write(dir, name, text);
        let r = vc(&cfg, &[&f]).await;
        assert_eq!(r.code, 1, "{name}: {}", r.stdout);
        assert!(
            r.stdout.contains(expect),
            "{name}: expected `{expect}` in {}",
            r.stdout
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raising_a_limit_needs_approval() {
    let (d, cfg) = config("[environments.local]\n");
    let old = write(d.path(), "deployed_risk_limits.yaml", GOOD);
    let new = write(
        d.path(),
        "risk_limits.yaml",
        &GOOD.replace("max_position_size: 10000", "max_position_size: 15000"),
    );
    let r = vc(&cfg, &[&new, "--against", &old]).await;
    assert_eq!(r.code, 1, "{}", r.stdout);
    let changes = check_message(&r.stdout, &format!("{new} changes vs deployed"));
    assert!(
        changes.contains("MM_EQ_001.max_position_size 10000 → 15000 (+50%)"),
        "{changes}"
    );
    let r = vc(
        &cfg,
        &[
            &new,
            "--against",
            &old,
            "--approve-increase",
            "CHG-123456 approved by risk (J. Doe)",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(r.stdout.contains("approved: CHG-123456"));
}

async fn deploy_fixture(
    sim_reads: Option<&Path>,
    target: &Path,
) -> (
    trading_sim::SimHandle,
    tempfile::TempDir,
    std::path::PathBuf,
) {
    let s = sim_with(trading_sim::SimConfig {
        risk_limits: sim_reads.map(Path::to_path_buf),
        admin_token: Some(ADMIN_TOKEN.into()),
        ..Default::default()
    })
    .await;
    let (d, cfg) = config(&format!(
        "[environments.local]\ncolors = [\"blue\"]\n[environments.local.services.blue]\nrisk-engine = [\"{u}\"]\ntrading-engine = [\"{u}\"]\n[environments.local.config_files]\nrisk-limits = \"{}\"\n",
        target.display(),
        u = s.url()
    ));
    (s, d, cfg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_installs_reloads_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let live = write(dir.path(), "live_risk_limits.yaml", GOOD);
    let (s, _d, cfg) = deploy_fixture(Some(Path::new(&live)), Path::new(&live)).await;
    let new = raised_default_loss(dir.path());
    let r = vc(&cfg, &[&new, "--deploy"]).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        checks_with(&r.stdout, "ok").last().unwrap(),
        "Reloaded and verified"
    );
    assert_eq!(
        client(&s.url())
            .limits()
            .await
            .unwrap()
            .default
            .unwrap()
            .max_loss_per_day,
        11000.0
    );
    // An unapproved large increase deploys nothing.
    let big = write(
        dir.path(),
        "risk_limits2.yaml",
        &GOOD.replace("max_loss_per_day: 50000", "max_loss_per_day: 90000"),
    );
    let r = vc(&cfg, &[&big, "--deploy"]).await;
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("nothing deployed"));
    assert_eq!(
        client(&s.url()).limits().await.unwrap().limits["MM_EQ_001"].max_loss_per_day,
        50000.0
    );
}

/// The guide's §10 "Configuration corruption": the live file broken by hand (the service still
/// serves what it loaded) → `--restore` puts back the newest backup that validates, reloads and
/// reads it back; a corrupt newer backup is skipped and named; `--to` picks one; no good backup
/// is a conflict that changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_puts_back_the_last_good_backup_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let live = write(dir.path(), "live_risk_limits.yaml", GOOD);
    let (s, _d, cfg) = deploy_fixture(Some(Path::new(&live)), Path::new(&live)).await;
    // Nothing to restore yet.
    let r = vc(&cfg, &["--restore"]).await;
    assert_eq!(r.code, 5, "{}", r.all());
    assert!(r.stderr.contains("no good backup"), "{}", r.stderr);
    // A deploy keeps the old copy as a backup; then the live file is corrupted.
    let new = raised_default_loss(dir.path());
    assert_eq!(vc(&cfg, &[&new, "--deploy"]).await.code, 0);
    std::fs::write(&live, "default: {max_position_size: [\n").unwrap();
    let loss = async || {
        client(&s.url())
            .limits()
            .await
            .unwrap()
            .default
            .unwrap()
            .max_loss_per_day
    };
    assert_eq!(loss().await, 11000.0);
    let r = vc(&cfg, &["--restore"]).await;
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(std::fs::read_to_string(&live).unwrap(), GOOD);
    assert_eq!(
        loss().await,
        10000.0,
        "the service serves the restored limits"
    );
    assert!(
        check_message(&r.stdout, "Reloaded and verified")
            .contains("use the new risk-limits config")
    );
    // The corrupt copy it replaced is now the newest backup: skipped, named, the good one used.
    let r = vc(&cfg, &["--restore"]).await;
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        check_message(&r.stdout, "Backup to restore").contains("do not validate, skipped"),
        "{}",
        r.stdout
    );
    // --to: a named backup.
    let r = vc(&cfg, &["--restore", "--to", &new]).await;
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(loss().await, 11000.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_whose_read_back_differs_is_restored() {
    let dir = tempfile::tempdir().unwrap();
    // The service reads another file than the one deployed: the read-back cannot match.
    let served = write(dir.path(), "served_risk_limits.yaml", GOOD);
    let target = write(dir.path(), "target_risk_limits.yaml", GOOD);
    let (s, _d, cfg) = deploy_fixture(Some(Path::new(&served)), Path::new(&target)).await;
    let new = raised_default_loss(dir.path());
    let r = vc(&cfg, &[&new, "--deploy"]).await;
    assert_eq!(r.code, 1, "{}", r.stdout);
    let m = check_message(&r.stdout, "Reloaded and verified");
    assert!(
        m.contains("differ from the file") && m.contains("restored"),
        "{m}"
    );
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        GOOD,
        "the old file is back"
    );
    assert_eq!(
        client(&s.url())
            .limits()
            .await
            .unwrap()
            .default
            .unwrap()
            .max_loss_per_day,
        10000.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_whose_reload_fails_is_restored() {
    let dir = tempfile::tempdir().unwrap();
    let target = write(dir.path(), "target_risk_limits.yaml", GOOD);
    // A service without a limits file answers 422 to reload.
    let (_s, _d, cfg) = deploy_fixture(None, Path::new(&target)).await;
    let new = raised_default_loss(dir.path());
    let r = vc(&cfg, &[&new, "--deploy"]).await;
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        check_message(&r.stdout, "Reloaded and verified").contains("reload on"),
        "{}",
        r.stdout
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), GOOD);
}

/// A trading_sim process that reads its limits at start only (`--no-reload`), and the script
/// that restarts it (stop, start again on the same port) — what `restart_command` points at.
struct RestartableSim {
    dir: std::path::PathBuf,
    url: String,
    script: String,
}

impl RestartableSim {
    async fn start(dir: &Path, limits: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let script = write(
            dir,
            "restart.sh",
            &format!(
                "#!/bin/sh\nset -e\nd=$(dirname \"$0\")\nif [ -f \"$d/pid\" ]; then\n  p=$(cat \"$d/pid\"); kill \"$p\" 2>/dev/null || true\n  while kill -0 \"$p\" 2>/dev/null; do sleep 0.05; done\nfi\nDEPLOYKIT_ADMIN_TOKEN={ADMIN_TOKEN} nohup {} --listen 127.0.0.1:{port} --no-reload --risk-limits {limits} >>\"$d/sim.log\" 2>&1 &\necho $! > \"$d/pid\"\necho restarted \"$@\" >> \"$d/restarts\"\n",
                sibling_bin("trading_sim").display()
            ),
        );
        std::process::Command::new("chmod")
            .args(["+x", &script])
            .status()
            .unwrap();
        let sim = RestartableSim {
            dir: dir.to_path_buf(),
            url: format!("http://127.0.0.1:{port}"),
            script,
        };
        assert!(
            std::process::Command::new(&sim.script)
                .status()
                .unwrap()
                .success()
        );
        let c = client(&sim.url);
        if crate::support::until(std::time::Duration::from_secs(10), async || {
            c.health().await.ok()
        })
        .await
        .is_some()
        {
            return sim;
        }
        panic!(
            "trading_sim did not start: {}",
            std::fs::read_to_string(dir.join("sim.log")).unwrap_or_default()
        );
    }

    fn restarts(&self) -> usize {
        std::fs::read_to_string(self.dir.join("restarts"))
            .unwrap_or_default()
            .lines()
            .count()
    }
}

impl Drop for RestartableSim {
    fn drop(&mut self) {
        if let Ok(p) = std::fs::read_to_string(self.dir.join("pid")) {
            let _ = std::process::Command::new("kill").arg(p.trim()).status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_cannot_reload_is_restarted_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let target = write(dir.path(), "risk_limits_live.yaml", GOOD);
    let sim = RestartableSim::start(dir.path(), &target).await;
    let (_d, cfg) = config(&format!(
        "[environments.local]\ncolors = [\"blue\"]\nrestart_command = [\"{}\", \"{{color}}\", \"{{role}}\"]\n[environments.local.services.blue]\nrisk-engine = [\"{u}\"]\ntrading-engine = [\"{u}\"]\n[environments.local.config_files]\nrisk-limits = \"{target}\"\n",
        sim.script,
        u = sim.url
    ));
    let new = raised_default_loss(dir.path());
    let r = vc(&cfg, &[&new, "--deploy"]).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        check_message(&r.stdout, "Reloaded and verified").contains("1 restarted"),
        "{}",
        r.stdout
    );
    assert_eq!(sim.restarts(), 2, "started once, restarted once");
    let live = client(&sim.url).limits().await.unwrap();
    assert_eq!(live.default.unwrap().max_loss_per_day, 11000.0);
}

/// The guide's `config_manager update <component> --file` as `reload_command`: tried before a
/// restart, given the component and the live file; the read-back still decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_without_a_reload_api_gets_the_reload_command() {
    let dir = tempfile::tempdir().unwrap();
    let target = write(dir.path(), "risk_limits_live.yaml", GOOD);
    let sim = RestartableSim::start(dir.path(), &target).await;
    let (_d, cfg) = config(&format!(
        "[environments.local]\ncolors = [\"blue\"]\nreload_command = [\"{}\", \"update\", \"{{component}}\", \"--file\", \"{{file}}\"]\nrestart_command = [\"false\"]\n[environments.local.services.blue]\nrisk-engine = [\"{u}\"]\n[environments.local.config_files]\nrisk-limits = \"{target}\"\n",
        sim.script,
        u = sim.url
    ));
    let new = raised_default_loss(dir.path());
    let r = vc(&cfg, &[&new, "--deploy"]).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        check_message(&r.stdout, "Reloaded and verified").contains("1 reloaded, 0 restarted"),
        "{}",
        r.stdout
    );
    let calls = std::fs::read_to_string(dir.path().join("restarts")).unwrap();
    assert_eq!(
        calls.lines().last().unwrap(),
        format!("restarted update risk-limits --file {target}")
    );
    let live = client(&sim.url).limits().await.unwrap();
    assert_eq!(live.default.unwrap().max_loss_per_day, 11000.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_cannot_reload_without_a_restart_command_keeps_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let target = write(dir.path(), "target_risk_limits.yaml", GOOD);
    let s = sim_with(trading_sim::SimConfig {
        risk_limits: Some(target.clone().into()),
        admin_token: Some(ADMIN_TOKEN.into()),
        reload_supported: false,
        ..Default::default()
    })
    .await;
    let (_d, cfg) = config(&format!(
        "[environments.local]\ncolors = [\"blue\"]\n[environments.local.services.blue]\nrisk-engine = [\"{u}\"]\n[environments.local.config_files]\nrisk-limits = \"{target}\"\n",
        u = s.url()
    ));
    let new = raised_default_loss(dir.path());
    let r = vc(&cfg, &[&new, "--deploy"]).await;
    assert_eq!(r.code, 1, "{}", r.stdout);
    let m = check_message(&r.stdout, "Reloaded and verified");
    assert!(
        m.contains("cannot reload its config and environments.local.restart_command is not set"),
        "{m}"
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), GOOD);
}

/// The guide's §8 Step 1 file, verbatim, in the firm's place for it
/// (`config/production/risk_limits.yaml`), found from its type alone; the guide's change
/// (10000 → 15000, +50 %) needs --approve-increase.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guides_section_8_file_validates_verbatim_and_its_50_percent_increase_needs_approval() {
    let (d, cfg) = config("[environments.production]\n");
    std::fs::create_dir_all(d.path().join("production")).unwrap();
    let guide =
        "risk_limits:\n  MM_EQ_001:\n    max_position_size: 15000\n    max_loss_per_day: 550000\n";
    write(&d.path().join("production"), "risk_limits.yaml", guide);
    let deployed = write(
        d.path(),
        "deployed.yaml",
        "risk_limits:\n  MM_EQ_001:\n    max_position_size: 10000\n    max_loss_per_day: 500000\n",
    );
    let r = vc(&cfg, &["-e", "production", "risk-limits"]).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("production/risk_limits.yaml is a valid risk-limits config"),
        "{}",
        r.stdout
    );
    let r = vc(
        &cfg,
        &["-e", "production", "risk-limits", "--against", &deployed],
    )
    .await;
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stdout
            .contains("MM_EQ_001.max_position_size +50% needs approval"),
        "{}",
        r.stdout
    );
    let r = vc(
        &cfg,
        &[
            "-e",
            "production",
            "risk-limits",
            "--against",
            &deployed,
            "--approve-increase",
            "risk: rita, CHG-100001",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stdout);
    // No file for the environment: said plainly, exit 3 (bad input), nothing else read.
    let r = vc(&cfg, &["-e", "staging", "risk-limits"]).await;
    assert_ne!(r.code, 0);
    assert!(r.all().contains("staging/risk_limits.yaml"), "{}", r.all());
}

/// Each bad variant of the guide's file names the field and file:line:column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_variants_of_the_guides_file_name_the_field_at_file_line_column() {
    let (d, cfg) = config("[environments.production]\n");
    for (name, text, expect) in [
        (
            "negative",
            "risk_limits:\n  MM_EQ_001:\n    max_position_size: -15000\n    max_loss_per_day: 550000\n",
            "risk_limits.yaml:3:24: MM_EQ_001.max_position_size -15000 is outside",
        ),
        (
            "negative loss",
            "risk_limits:\n  MM_EQ_001:\n    max_position_size: 15000\n    max_loss_per_day: -1\n",
            "risk_limits.yaml:4:23: MM_EQ_001.max_loss_per_day -1 is outside",
        ),
        (
            "missing field",
            "risk_limits:\n  MM_EQ_001:\n    max_position_size: 15000\n",
            "missing field `max_loss_per_day`",
        ),
        (
            "string for a number",
            "risk_limits:\n  MM_EQ_001:\n    max_position_size: lots\n    max_loss_per_day: 550000\n",
            "risk_limits.yaml:3:24:",
        ),
        (
            "yaml syntax",
            "risk_limits:\n  MM_EQ_001:\n    max_position_size: 15000\n    max_loss_per_day: 550000: extra\n",
            "risk_limits.yaml:4:",
        ),
    ] {
        let dir = d.path().join(name.replace(' ', "_"));
        std::fs::create_dir_all(&dir).unwrap();
        let f = write(&dir, "risk_limits.yaml", text);
        let r = vc(&cfg, &["-e", "production", &f]).await;
        assert_eq!(r.code, 1, "{name}: {}", r.stdout);
        let m = check_message(&r.stdout, &format!("{f} is a valid risk-limits config"));
        assert!(m.contains(expect), "{name}: expected `{expect}` in {m}");
        if name == "missing field" || name == "string for a number" {
            assert!(
                m.contains("risk_limits.yaml:"),
                "{name}: no file:line:column in {m}"
            );
        }
    }
}

/// The repository's own per-environment files are in the firm's shape and valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repositorys_per_environment_configs_of_every_type_validate() {
    let cfg = crate::support::repo_root().join("config/deploy.toml");
    for env in ["production", "staging"] {
        for (ty, file) in [
            ("risk-limits", "risk_limits.yaml"),
            ("strategy", "strategy.yaml"),
            ("app", "app.yaml"),
            ("database", "database.yaml"),
            ("endpoints", "endpoints.yaml"),
        ] {
            let r = vc(&cfg, &["-e", env, ty]).await;
            assert_eq!(r.code, 0, "{env} {ty}: {}\n{}", r.stdout, r.stderr);
            assert!(
                r.stdout
                    .contains(&format!("config/{env}/{file} is a valid {ty} config")),
                "{}",
                r.stdout
            );
        }
    }
}

/// The firm's shape deploys as it is: the service loads it (no default needed) and the
/// read-back matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_in_the_firms_shape_deploys_reloads_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let old = "risk_limits:\n  MM_EQ_001:\n    max_position_size: 10000\n    max_loss_per_day: 500000\n  TEST-SMOKE-01:\n    max_position_size: 500\n    max_loss_per_day: 5000\n";
    let live = write(dir.path(), "live_risk_limits.yaml", old);
    let (s, _d, cfg) = deploy_fixture(Some(Path::new(&live)), Path::new(&live)).await;
    let new = write(
        dir.path(),
        "risk_limits.yaml",
        &old.replace("max_loss_per_day: 500000", "max_loss_per_day: 550000"),
    );
    let r = vc(&cfg, &[&new, "--deploy"]).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let l = client(&s.url()).limits().await.unwrap();
    assert_eq!(l.limits["MM_EQ_001"].max_loss_per_day, 550000.0);
    assert!(l.default.is_none());
}

/// A config deploy reaches every server of the role that reads it (a fleet: 2 risk engines a
/// colour) and is all-or-nothing: one server that does not load it (hung) → every server is
/// back on the old file and the report names that one; once it answers again the same deploy
/// lands everywhere. show_config then agrees with the disk on every server, and names the one
/// server left on the old file when the file changes and it alone is not reloaded, and a
/// server whose reload failed with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_config_deploy_is_all_or_nothing_and_show_config_names_a_server_on_the_old_file() {
    let st = crate::support::stack::Stack::up_with(&["--fleet", "1,2,1,1,1"]);
    let live = st.dir.path().join("s/risk_limits.yaml");
    let before = std::fs::read_to_string(&live).unwrap();
    let raised = before.replacen("max_loss_per_day: ", "max_loss_per_day: 1", 1);
    assert_ne!(raised, before);
    let dir = tempfile::tempdir().unwrap();
    let new = write(dir.path(), "risk_limits.yaml", &raised);
    let deploy = [
        "--timeout",
        "1s",
        &new,
        "--deploy",
        "--approve-increase",
        "test",
    ];
    let served = async |host: &str| {
        let l = st
            .host_client(host)
            .limits()
            .await
            .unwrap_or_else(|e| panic!("{host}: {e}"));
        serde_json::to_string(&l).unwrap()
    };
    let old = served("risk-blue-01").await;

    let hung = st.host_pid("risk-green-01");
    crate::support::signal("-STOP", &hung);
    let r = st.run("validate_config", &deploy).await;
    crate::support::signal("-CONT", &hung);
    assert_eq!(r.code, 1, "{}", r.all());
    let m = check_message(&r.stdout, "Reloaded and verified");
    assert!(m.contains("failed on risk-green-01 ("), "{m}");
    assert_eq!(
        std::fs::read_to_string(&live).unwrap(),
        before,
        "the old file is back"
    );
    for host in [
        "risk-blue-01",
        "risk-blue-02",
        "risk-green-01",
        "risk-green-02",
    ] {
        assert_eq!(served(host).await, old, "{host} serves the old limits");
    }

    // Twice: the same deploy, every server answering, lands on all four.
    let r = st.run("validate_config", &deploy).await;
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        check_message(&r.stdout, "Reloaded and verified")
            .starts_with("4 service(s) use the new risk-limits config"),
        "{}",
        r.stdout
    );
    assert_ne!(served("risk-green-01").await, old);

    // show_config: every server uses the risk-limits file on disk.
    let r = st.run("show_config", &[]).await;
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(checks_with(&r.stdout, "ok").len(), 4, "{}", r.stdout);
    // The file changes on disk; three servers reload, risk-green-02 does not.
    std::fs::write(&live, &before).unwrap();
    for host in ["risk-blue-01", "risk-blue-02", "risk-green-01"] {
        st.host_client(host)
            .reload_config("risk-limits")
            .await
            .unwrap();
    }
    let r = st.run("show_config", &[]).await;
    assert_eq!(r.code, 1, "{}", r.all());
    assert_eq!(
        checks_with(&r.stdout, "fail"),
        vec!["risk-green-02 uses the risk-limits file on disk"]
    );
    assert!(
        check_message(&r.stdout, "risk-green-02 uses the risk-limits file on disk")
            .contains("still uses the old one"),
        "{}",
        r.stdout
    );
    // A reload that fails is named with its reason.
    std::fs::write(&live, "risk_limits: [\n").unwrap();
    assert!(
        st.host_client("risk-blue-01")
            .reload_config("risk-limits")
            .await
            .is_err()
    );
    let r = st.run("show_config", &[]).await;
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        check_message(&r.stdout, "risk-blue-01 uses the risk-limits file on disk")
            .contains("its last reload failed"),
        "{}",
        r.stdout
    );
}
