//! `validate_config`: validate trading configs; `--deploy` installs one with backup, reload,
//! read-back and automatic restore (the guide's "Configuration Corruption" procedure).

use crate::cli::{CommonArgs, Context, Tool};
use crate::config::Role;
use crate::error::{Error, Result};
use crate::promotion;
use crate::report::{Check, Report};
use crate::trading_config::{self as tc, Kind, Parsed, RiskLimits};
use std::path::{Path, PathBuf};

/// Validate trading config files (YAML or JSON): syntax with line:column, required fields,
/// ranges, consistency; show the change against the deployed copy and require
/// --approve-increase for a limit raised beyond --max-increase-pct. With --deploy, install the
/// file: validate → back up the live copy → install → reload through the admin API → read back →
/// restore the backup on any failure.
#[derive(Debug, clap::Parser)]
#[command(name = "validate_config", version)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Files to validate, or a config type (risk-limits, strategy, app, database, endpoints)
    /// for the environment's own file: `<config dir>/<environment>/risk_limits.yaml`, … where
    /// the guide keeps them.
    #[arg(required_unless_present = "restore", value_name = "FILE|TYPE")]
    pub files: Vec<PathBuf>,

    /// Schema [default: from the file name: risk*, strateg*, database*/db*, endpoint*, else
    /// app]. With --restore: the type to restore [default: risk-limits].
    #[arg(long, value_enum)]
    pub schema: Option<Kind>,

    /// Compare risk limits with this deployed file.
    #[arg(long, value_name = "FILE", conflicts_with = "live")]
    pub against: Option<PathBuf>,

    /// Check against the live system: risk limits are compared with the risk engine's
    /// `GET /limits`; a database file's connections must open with the new settings; an
    /// endpoints file's every endpoint must answer. (--deploy always does this.)
    #[arg(long)]
    pub live: bool,

    /// Allow limit increases beyond --max-increase-pct; the reason goes into the report.
    #[arg(long, value_name = "REASON")]
    pub approve_increase: Option<String>,

    #[arg(long, default_value_t = 20.0)]
    pub max_increase_pct: f64,

    /// Install the (single) file as the environment's live file of its type
    /// (`config_files.<type>`) and reload and read it back on every server that reads it.
    #[arg(long)]
    pub deploy: bool,

    /// Put back the last good backup of the environment's live file of the --schema type (the newest
    /// `<live>.bak-*` that validates), installed, reloaded and read back on every service like a
    /// deploy (guide §10 "Configuration corruption"); the live copy it replaces is kept too.
    #[arg(long, conflicts_with_all = ["deploy", "against", "live", "approve_increase", "files"])]
    pub restore: bool,

    /// With --restore: this backup instead of the newest good one.
    #[arg(long, value_name = "BACKUP", requires = "restore")]
    pub to: Option<PathBuf>,

    /// Deploy to an environment with `promote_from` (production) although the identical file
    /// was not tested there first — for emergencies only: the reason is recorded in the journal
    /// and the team notified.
    #[arg(long, value_name = "REASON", requires = "deploy")]
    pub skip_staging: Option<String>,

    #[command(flatten)]
    pub journal: crate::journal::JournalArgs,
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::config(path.display().to_string(), format!("cannot read: {e}")))
}

impl Args {
    fn increases(
        &self,
        report: &mut Report,
        old: &RiskLimits,
        new: &RiskLimits,
        file: &str,
    ) -> bool {
        let changes = tc::diff(old, new);
        let text: Vec<String> = changes
            .iter()
            .map(|c| match (c.old, c.new) {
                (Some(o), Some(n)) => format!(
                    "{} {o} → {n} ({:+.0}%)",
                    c.field,
                    c.increase_pct.unwrap_or(0.0)
                ),
                (None, Some(n)) => format!("{} added: {n}", c.field),
                (Some(o), None) => format!("{} removed (was {o})", c.field),
                (None, None) => String::new(),
            })
            .collect();
        report.push(
            Check::ok("diff", format!("{file} changes vs deployed"))
                .message(if text.is_empty() {
                    "no change".into()
                } else {
                    text.join("; ")
                })
                .data(serde_json::to_value(&changes).unwrap_or_default()),
        );
        let risky: Vec<String> = changes
            .iter()
            .filter(|c| c.increase_pct.is_some_and(|p| p > self.max_increase_pct))
            .map(|c| format!("{} +{:.0}%", c.field, c.increase_pct.unwrap_or(0.0)))
            .collect();
        let name = format!("{file} limit increases within {}%", self.max_increase_pct);
        match (&self.approve_increase, risky.is_empty()) {
            (_, true) => {
                report.push(Check::ok("diff", name));
                true
            }
            (Some(reason), false) => {
                report.push(Check::warn(
                    "diff",
                    name,
                    format!("{} (approved: {reason})", risky.join(", ")),
                ));
                true
            }
            (None, false) => {
                report.push(Check::fail("diff", name, format!("{} needs approval", risky.join(", "))).hint("re-run with --approve-increase \"<reason, approver>\" once risk has signed off"));
                false
            }
        }
    }
}

impl Args {
    /// Guide §8 Step 3: where the environment has `promote_from`, the identical file must have
    /// been deployed there and passed its smoke tests since — or `--skip-staging REASON`, which
    /// is a warning, notified. Ok(false): refused (a failed check says why and what to do).
    async fn promoted(
        &self,
        ctx: &Context,
        env: &crate::config::Environment,
        kind: Kind,
        (file, sha): (&Path, &str),
        report: &mut Report,
    ) -> Result<bool> {
        let Some(from) = env.promote_from else {
            return Ok(true);
        };
        let name = format!("Tested in {from} first");
        if !kind.promoted() {
            report.push(Check::skip(
                "promotion",
                name,
                format!(
                    "{} files are per environment (their own hosts): checked live from here instead",
                    kind.name()
                ),
            ));
            return Ok(true);
        }
        let from_env = ctx.config.environment(from)?;
        // Its journal is in its database: without the URL the evidence cannot be read, which
        // must not read as "never tested".
        if from_env.database.is_some() {
            from_env.database_url().map_err(|e| {
                Error::config(
                    ctx.config.path.display().to_string(),
                    format!(
                        "{from}'s journal (where its tests are recorded) is in its database: {e}"
                    ),
                )
            })?;
        }
        let entries = crate::journal::Journal::read(
            from.as_str(),
            from_env,
            ctx.timeout,
            &self.journal.dir_of(ctx, from_env)?,
        )
        .await?;
        let verdict = promotion::tested(&entries, kind, sha);
        match (verdict, &self.skip_staging) {
            (Ok(m), _) => {
                report.push(Check::ok("promotion", name).message(m));
                Ok(true)
            }
            (Err(why), Some(reason)) => {
                report.push(Check::warn(
                    "promotion",
                    name,
                    format!("skipped ({reason}): {why}"),
                ));
                let text = format!(
                    ":warning: *{} config deployed to {} WITHOUT testing in {from}* — {reason} ({why})",
                    kind.name(),
                    ctx.env_name
                );
                report.push(
                    crate::cmd::notify::announce(
                        env,
                        ctx.timeout,
                        "promotion",
                        "Team notified",
                        &text,
                    )
                    .await,
                );
                Ok(true)
            }
            (Err(why), None) => {
                report.push(Check::fail("promotion", name, why).hint(format!(
                    "deploy it to {from} and run its smoke tests first: validate_config -e {from} --deploy {f} && smoke_tests -e {from}; in an emergency, --skip-staging \"<reason>\" (recorded and notified)",
                    f = file.display()
                )));
                Ok(false)
            }
        }
    }
}

fn file_sha(file: &Path) -> Result<String> {
    std::fs::read(file)
        .map(|b| crate::migrate::sha256_hex(&b))
        .map_err(|e| Error::io("read", file, e))
}

impl Tool for Args {
    const NAME: &'static str = "validate_config";

    fn common(&self) -> &CommonArgs {
        &self.common
    }

    fn changes(&self) -> bool {
        self.deploy
    }

    async fn run(self, ctx: Context) -> Result<Report> {
        let mut report = ctx.report();
        if self.restore {
            let kind = self.schema.unwrap_or(Kind::RiskLimits);
            let journal = self.journal.lock(&ctx, Default::default()).await?;
            journal
                .hold(async |j| restore(&ctx, j, kind, self.to.as_deref(), &mut report).await)
                .await?;
            return Ok(report);
        }
        if self.deploy && self.files.len() != 1 {
            return Err(Error::Usage("--deploy installs exactly one file".into()));
        }
        let mut parsed = vec![];
        for f in &self.files {
            // Only a type (`risk-limits`): the environment's file, where the guide keeps it.
            let (f, kind) = match tc::environment_file(f, &ctx.config.path, ctx.env_name.as_str()) {
                Some((path, kind)) => (path, self.schema.unwrap_or(kind)),
                None => (f.clone(), self.schema.unwrap_or_else(|| Kind::guess(f))),
            };
            let f = &f;
            let text = read(f)?;
            let name = format!("{} is a valid {} config", f.display(), kind.name());
            match tc::validate(kind, f, &text) {
                Ok(l) => {
                    report.push(Check::ok("schema", name));
                    parsed.push((f.clone(), kind, l));
                }
                Err(errs) => report.push(
                    Check::fail("schema", name, errs.join("; "))
                        .hint("fix the file; docs/validate_config.md lists every rule"),
                ),
            }
        }
        if report
            .checks
            .iter()
            .any(|c| c.status == crate::report::Status::Fail)
        {
            if self.deploy {
                report.note("nothing deployed: the file is invalid");
            }
            return Ok(report);
        }
        let env = ctx.env().ok().cloned();
        // What only the network can tell, before anything is installed.
        if self.live || self.deploy {
            for (f, _, p) in &parsed {
                let (what, outcomes) = match p {
                    Parsed::Database(d) => ("connection", tc::live::connections(d).await),
                    Parsed::Endpoints(e) => ("endpoint", tc::live::endpoints(e).await),
                    _ => continue,
                };
                for (name, r) in outcomes {
                    let check = format!("{} {what} {name} answers", f.display());
                    report.push(match r {
                        Ok(m) => Check::ok("live", check).message(m),
                        Err(m) => Check::fail("live", check, m).hint(if what == "connection" {
                            "fix the settings (or the password the reference points at) before deploying: the services would fail to connect"
                        } else {
                            "fix the URL, or the network path from here to it, before deploying"
                        }),
                    });
                }
            }
        }
        let has_limits = parsed.iter().any(|(_, _, p)| p.limits().is_some());
        let live_limits = |env: &crate::config::Environment| {
            let http = crate::http::Http::new(env.timeouts.connect.0, ctx.timeout);
            let url = env.colors.iter().find_map(|c| {
                env.urls(*c, Role::RiskEngine)
                    .first()
                    .map(|u| u.to_string())
            });
            async move {
                let url = url
                    .ok_or_else(|| Error::config("config", "no risk-engine service configured"))?;
                let l = crate::contract::Client::new(&url, http)
                    .limits()
                    .await
                    .map_err(|e| Error::unreachable("risk engine", e))?;
                tc::from_live(&l)
                    .ok_or_else(|| Error::Conflict("the live limits have no default".into()))
            }
        };
        let deployed: Option<RiskLimits> = if let Some(a) = &self.against {
            match tc::validate(Kind::RiskLimits, a, &read(a)?) {
                Ok(Parsed::RiskLimits(l)) => Some(l),
                Ok(_) => None,
                Err(e) => return Err(Error::config(a.display().to_string(), e.join("; "))),
            }
        } else if has_limits && (self.live || self.deploy) {
            let env = env.clone().ok_or_else(|| {
                Error::config(
                    ctx.config.path.display().to_string(),
                    "an environment is needed to read the live limits",
                )
            })?;
            Some(live_limits(&env).await?)
        } else {
            None
        };
        let mut approved = true;
        if let Some(old) = &deployed {
            for (f, _, p) in &parsed {
                if let Some(new) = p.limits() {
                    approved &= self.increases(&mut report, old, new, &f.display().to_string());
                }
            }
        }
        if !self.deploy {
            return Ok(report);
        }
        if report
            .checks
            .iter()
            .any(|c| c.status == crate::report::Status::Fail)
        {
            report.note(if approved {
                "nothing deployed: a live check failed"
            } else {
                "nothing deployed: the increase needs approval"
            });
            return Ok(report);
        }
        let (file, kind, parsed) = parsed.into_iter().next().expect("one file");
        let env = env.ok_or_else(|| {
            Error::config(
                ctx.config.path.display().to_string(),
                "--deploy needs an environment (-e)",
            )
        })?;
        let sha = file_sha(&file)?;
        if !self
            .promoted(&ctx, &env, kind, (&file, &sha), &mut report)
            .await?
        {
            report.note("nothing deployed: the file was not tested in staging first");
            return Ok(report);
        }
        let journal = self.journal.lock(&ctx, Default::default()).await?;
        journal
            .hold(async |j| {
                if let Some(reason) = &self.skip_staging
                    && env.promote_from.is_some()
                {
                    j.write(&promotion::skipped(
                        ctx.env_name.as_str(),
                        kind,
                        &sha,
                        reason,
                    ))
                    .await?;
                }
                deploy(&ctx, j, &env, kind, &file, parsed.limits(), &mut report).await
            })
            .await?;
        Ok(report)
    }
}

/// `--restore`: the named backup, or the newest backup of the live file that validates, deployed
/// like any file (backup of what is live now, install, reload, read back, undo on failure).
async fn restore(
    ctx: &Context,
    journal: &crate::journal::Journal,
    kind: Kind,
    to: Option<&Path>,
    report: &mut Report,
) -> Result<()> {
    let env = ctx.env()?.clone();
    let target = tc::live_file(ctx, &env, kind)?;
    let candidates: Vec<PathBuf> = match to {
        Some(b) => vec![b.to_path_buf()],
        None => {
            let dir = target.parent().unwrap_or(Path::new("."));
            let prefix = format!(
                "{}.bak-",
                target.file_stem().unwrap_or_default().to_string_lossy()
            );
            let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(|e| Error::io("list backups in", dir, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
                })
                .collect();
            // The timestamp in the name sorts: newest first.
            found.sort();
            found.reverse();
            found
        }
    };
    let mut skipped = vec![];
    for b in &candidates {
        let text = read(b)?;
        match tc::validate(kind, b, &text) {
            Ok(parsed) => {
                let mut msg = b.display().to_string();
                if !skipped.is_empty() {
                    msg.push_str(&format!(
                        " (newer backups that do not validate, skipped: {})",
                        skipped.join("; ")
                    ));
                }
                report.push(Check::ok("restore", "Backup to restore").message(msg));
                return deploy(ctx, journal, &env, kind, b, parsed.limits(), report).await;
            }
            Err(errs) => skipped.push(format!("{}: {}", b.display(), errs.join(", "))),
        }
    }
    Err(Error::Conflict(format!(
        "no good backup of {} to restore{}: deploy a known-good file with --deploy",
        target.display(),
        if skipped.is_empty() {
            " (none found)".to_string()
        } else {
            format!(" ({})", skipped.join("; "))
        }
    )))
}

/// Install `file` as the live file of its type and reload and read it back on every reader
/// server, all or nothing; a success is journaled (what staging's promotion check reads).
async fn deploy(
    ctx: &Context,
    journal: &crate::journal::Journal,
    env: &crate::config::Environment,
    kind: Kind,
    file: &Path,
    new: Option<&RiskLimits>,
    report: &mut Report,
) -> Result<()> {
    let target = tc::live_file(ctx, env, kind)?;
    let sha = file_sha(file)?;
    let token = env.admin_token()?;
    let http = crate::http::Http::new(env.timeouts.connect.0, ctx.timeout).with_token(token);
    // Every server of the roles that read this type, all at once. One server's deadline holds
    // a reload, or a restart (its own deadline) and the wait for health (another).
    let fleet = crate::fleet::Fleet::new(env, http, ctx.timeout * 3);
    let targets = fleet.select(None, kind.readers());
    let restart = Restart {
        kind,
        file: &target,
        reload_command: env.reload_command.as_deref(),
        command: env.restart_command.as_deref(),
        env_name: ctx.env_name.as_str(),
        deadline: ctx.timeout,
    };
    // 1. Back up the live copy.
    let backup = target.with_extension(format!(
        "bak-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%3f")
    ));
    std::fs::copy(&target, &backup).map_err(|e| Error::io("back up", &target, e))?;
    report.push(Check::ok("deploy", "Live copy backed up").message(backup.display().to_string()));
    // 2. Install atomically (write beside, then rename).
    let tmp = target.with_extension("deploying");
    std::fs::copy(file, &tmp).map_err(|e| Error::io("stage", &tmp, e))?;
    std::fs::rename(&tmp, &target).map_err(|e| Error::io("install", &target, e))?;
    report.push(Check::ok("deploy", "Installed").message(format!(
        "{} → {}",
        file.display(),
        target.display()
    )));
    // 3. Reload (or restart) every server and 4. read each back; any failure restores the
    // backup everywhere, and every server that failed is named.
    let restart = &restart;
    let apply = async || {
        fleet
            .each_server("reload", &targets, |s, c| async move {
                restart.apply(&s, &c).await
            })
            .await
    };
    let named = |failed: Vec<(&crate::fleet::Server, &str)>| {
        failed
            .iter()
            .map(|(s, why)| format!("{} ({why})", s.name))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let applied = apply().await;
    let restarted = applied
        .reached()
        .iter()
        .filter(|(_, a)| **a == Applied::Restarted)
        .count();
    let mut failed = named(applied.failed());
    if failed.is_empty() {
        let (sha, target) = (&sha, &target);
        let read = fleet
            .each("read back", &targets, |c| async move {
                if let Some(new) = new {
                    let live = c.limits().await.map_err(|e| e.to_string())?;
                    return if tc::from_live(&live).as_ref() == Some(new) {
                        Ok(())
                    } else {
                        Err("serves limits that differ from the file after reload".to_string())
                    };
                }
                read_back(&c, kind, target, sha).await
            })
            .await;
        failed = named(read.failed());
    }
    if failed.is_empty() {
        report.push(Check::ok("deploy", "Reloaded and verified").message(format!(
            "{} service(s) use the new {} config ({} reloaded, {restarted} restarted: no reload support)",
            targets.len(),
            kind.name(),
            targets.len() - restarted
        )));
        journal
            .write(&promotion::deployed(
                ctx.env_name.as_str(),
                kind,
                &sha,
                &file.display().to_string(),
            ))
            .await?;
        return Ok(());
    }
    std::fs::copy(&backup, &target).map_err(|e| Error::io("restore", &target, e))?;
    let again = apply().await;
    for (s, why) in again.failed() {
        tracing::error!("restoring the old config on {}: {why}", s.name);
    }
    report.push(
        Check::fail(
            "deploy",
            "Reloaded and verified",
            format!(
                "failed on {failed}; restored {} and re-applied it on {}/{} service(s)",
                backup.display(),
                again.reached().len(),
                targets.len()
            ),
        )
        .hint("the old config is live again on every server that answers; fix the named server(s) and deploy again"),
    );
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
enum Applied {
    Reloaded,
    Restarted,
}

/// How the installed file reaches a service: reload through the admin API, or — only when the
/// service says it cannot reload — the environment's restart command, then wait until healthy.
struct Restart<'a> {
    kind: Kind,
    file: &'a Path,
    reload_command: Option<&'a [String]>,
    command: Option<&'a [String]>,
    env_name: &'a str,
    deadline: std::time::Duration,
}

impl Restart<'_> {
    async fn apply(
        &self,
        s: &crate::fleet::Server,
        client: &crate::contract::Client,
    ) -> std::result::Result<Applied, String> {
        let base = client.base();
        // The role whose service reads the file (a process may serve several).
        let role = self
            .kind
            .readers()
            .iter()
            .find(|r| s.roles.contains(r))
            .map_or("", |r| r.as_str());
        let e = match client.reload_config(self.kind.name()).await {
            Ok(_) => return Ok(Applied::Reloaded),
            Err(e) => e,
        };
        // 404/405/501: no reload endpoint; anything else is a real failure (a bad file, say).
        if !matches!(e.status(), Some(404 | 405 | 501)) {
            return Err(format!("reload on {base}: {e}"));
        }
        let (cmd, applied, doing) = match (
            self.reload_command.filter(|c| !c.is_empty()),
            self.command.filter(|c| !c.is_empty()),
        ) {
            (Some(c), _) => (c, Applied::Reloaded, "reload"),
            (None, Some(c)) => (c, Applied::Restarted, "restart"),
            (None, None) => {
                return Err(format!(
                    "{base} cannot reload its config and environments.{}.restart_command is not set",
                    self.env_name
                ));
            }
        };
        let file = self.file.display().to_string();
        let argv: Vec<String> = cmd
            .iter()
            .map(|a| {
                a.replace("{url}", base)
                    .replace("{color}", s.color.as_str())
                    .replace("{role}", role)
                    .replace("{component}", self.kind.name())
                    .replace("{file}", &file)
            })
            .collect();
        tracing::info!("{base} has no reload API: {doing} with `{}`", argv[0]);
        let args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
        let out = crate::process::run(&argv[0], &args, None, self.deadline)
            .await
            .map_err(|e| format!("{doing} of {base}: {e}"))?;
        if !out.success {
            return Err(format!(
                "{doing} of {base} failed (exit {}): {}",
                out.code.map_or("signal".into(), |c| c.to_string()),
                out.combined().lines().last().unwrap_or("").trim()
            ));
        }
        // Bounded wait for the restarted service, a progress line per second.
        let started = std::time::Instant::now();
        let mut note = crate::telemetry::Every::new(std::time::Duration::from_secs(1));
        loop {
            match client.health().await {
                Ok(h) if h.ready && h.status == "ok" => return Ok(applied),
                other => {
                    if started.elapsed() >= self.deadline {
                        let why = match other {
                            Ok(h) => format!("status {} ready {}", h.status, h.ready),
                            Err(e) => e.to_string(),
                        };
                        return Err(format!(
                            "{base} not healthy {:.0}s after {doing}: {why}",
                            self.deadline.as_secs_f64()
                        ));
                    }
                }
            }
            if note.due() {
                tracing::info!(
                    "waiting for {base} to come back ({:.0}s)",
                    started.elapsed().as_secs_f64()
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// After a reload: the service says (`GET /admin/config`) it is using the deployed file — the
/// same path and the same bytes.
async fn read_back(
    c: &crate::contract::Client,
    kind: Kind,
    target: &Path,
    sha: &str,
) -> std::result::Result<(), String> {
    let cfg = c.config_in_use().await.map_err(|e| e.to_string())?;
    let Some(f) = cfg.files.iter().find(|f| f.component == kind.name()) else {
        return Err(format!(
            "reads no {} config (GET /admin/config)",
            kind.name()
        ));
    };
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    if canon(Path::new(&f.path)) != canon(target) {
        return Err(format!(
            "reads {}, not the deployed {}: a wrong path",
            f.path,
            target.display()
        ));
    }
    if f.sha256 != sha {
        return Err(format!(
            "uses sha256 {} after reload, the file is {}{}",
            &f.sha256[..f.sha256.len().min(12)],
            &sha[..sha.len().min(12)],
            f.last_reload_error
                .as_deref()
                .map(|e| format!(": its reload failed: {e}"))
                .unwrap_or_default()
        ));
    }
    Ok(())
}
