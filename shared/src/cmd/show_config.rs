//! `show_config`: which configuration each server is actually using (guide §10 Issue 5,
//! "configuration not applied").

use crate::cli::{CommonArgs, Context, Tool};
use crate::error::{Error, Result};
use crate::fleet::{Ctx, Status};
use crate::journal::JournalArgs;
use crate::migrate::sha256_hex;
use crate::report::{Check, Report};
use crate::trading_config::{Kind, repo_file};
use std::path::{Path, PathBuf};

/// For every config type the environment deploys (`config_files`), on every server of the roles
/// that read it: the file it is using (SHA-256 and load time, from `GET /admin/config`) against
/// the environment's file on disk and the repository's copy, so
/// "the file was updated but the service still uses the old one" (a reload that failed or never
/// ran, a wrong path) is named per server with what to do.
#[derive(Debug, clap::Parser)]
#[command(name = "show_config", version)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Only this config type [default: every type in `config_files`].
    #[arg(long = "type", value_enum, value_name = "TYPE")]
    pub kind: Option<Kind>,

    /// The repository's copy, with --type [default: `<config dir>/<environment>/<type's file>`].
    #[arg(long, value_name = "FILE", requires = "kind")]
    pub repo_file: Option<PathBuf>,

    #[command(flatten)]
    pub journal: JournalArgs,
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

fn same_path(a: &Path, b: &Path) -> bool {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    canon(a) == canon(b)
}

impl Tool for Args {
    const NAME: &'static str = "show_config";

    fn common(&self) -> &CommonArgs {
        &self.common
    }

    async fn run(self, ctx: Context) -> Result<Report> {
        let mut c = Ctx::for_tool(&ctx, false)?;
        c.load_isolation(&self.journal.dir(&ctx)?).await;
        let mut report = ctx.report();
        let kinds: Vec<Kind> = match self.kind {
            Some(k) => vec![k],
            None => Kind::ALL
                .into_iter()
                .filter(|k| c.env.config_files.contains_key(k.name()))
                .collect(),
        };
        if kinds.is_empty() {
            return Err(Error::config(
                ctx.config.path.display().to_string(),
                format!(
                    "environments.{}.config_files names no config file: nothing to show",
                    ctx.env_name
                ),
            ));
        }
        for kind in kinds {
            let repo = self
                .repo_file
                .clone()
                .unwrap_or_else(|| repo_file(&ctx.config.path, ctx.env_name.as_str(), kind));
            show(&ctx, &c, kind, &repo, &mut report).await?;
        }
        Ok(report)
    }
}

/// One config type: the file on disk against the repository's, then every reader server.
async fn show(
    ctx: &Context,
    c: &Ctx,
    kind: Kind,
    repo_path: &Path,
    report: &mut Report,
) -> Result<()> {
    let t = kind.name();
    let disk_path = crate::trading_config::live_file(ctx, &c.env, kind)?;
    let disk = std::fs::read(&disk_path)
        .map(|b| sha256_hex(&b))
        .map_err(|e| Error::io("read", &disk_path, e))?;
    let name = format!("The {t} file on disk is the repository's");
    report.push(match std::fs::read(repo_path) {
        Ok(b) if sha256_hex(&b) == disk => Check::ok("config", name).message(format!(
            "{} = {} (sha256 {})",
            disk_path.display(),
            repo_path.display(),
            short(&disk)
        )),
        Ok(b) => Check::warn(
            "config",
            name,
            format!(
                "{} (sha256 {}) differs from {} (sha256 {})",
                disk_path.display(),
                short(&disk),
                repo_path.display(),
                short(&sha256_hex(&b))
            ),
        )
        .hint(format!(
            "deploy the repository's file: validate_config -e {} --deploy {}",
            ctx.env_name,
            repo_path.display()
        )),
        Err(_) => Check::skip(
            "config",
            name,
            format!(
                "no repository copy at {}: pass --type {t} --repo-file",
                repo_path.display()
            ),
        ),
    });

    let servers = c.fleet.select(None, kind.readers());
    let out = c
        .fleet
        .each("config in use", &servers, |cl| async move {
            cl.config_in_use().await.map_err(|e| e.to_string())
        })
        .await;
    for r in &out.results {
        let name = format!("{} uses the {t} file on disk", r.server.name);
        report.push(match &r.status {
            Status::Skipped(why) => Check::skip("config", name, why.clone()),
            Status::Failed(why) => Check::fail("config", name, format!("not answering: {why}"))
                .hint("check the server (isolate_server if it is down)"),
            Status::Reached(cfg) => match cfg.files.iter().find(|f| f.component == t) {
                None => Check::fail("config", name, format!("reads no {t} file: built-in defaults"))
                    .hint("start the service with the environment's file (its service definition names the path)"),
                Some(f) if !same_path(Path::new(&f.path), &disk_path) => Check::fail(
                    "config",
                    name,
                    format!("reads {}, but the environment's file is {}: a wrong path", f.path, disk_path.display()),
                )
                .hint("point the service at the environment's file (or config_files at the service's) and reload"),
                Some(f) if f.sha256 == disk => Check::ok("config", name).message(format!(
                    "sha256 {} loaded at {}",
                    short(&f.sha256),
                    chrono::DateTime::from_timestamp_millis(f.loaded_at_unix_ms as i64)
                        .map_or("?".into(), |t| t.to_rfc3339())
                )),
                Some(f) => {
                    let mut m = format!(
                        "file updated but the service still uses the old one: in use sha256 {} (loaded at {}), on disk {}",
                        short(&f.sha256),
                        chrono::DateTime::from_timestamp_millis(f.loaded_at_unix_ms as i64)
                            .map_or("?".into(), |t| t.to_rfc3339()),
                        short(&disk)
                    );
                    if let Some(e) = &f.last_reload_error {
                        m.push_str(&format!("; its last reload failed: {e}"));
                    }
                    Check::fail("config", name, m).hint(format!(
                        "reload and verify it: validate_config -e {} --deploy {} (a failed reload above says why: a bad file, permissions); --schema {t} --restore puts back the last good file",
                        ctx.env_name,
                        disk_path.display()
                    ))
                }
            },
        });
    }
    Ok(())
}
