//! `show_config`: which configuration each server is actually using (guide §10 Issue 5,
//! "configuration not applied").

use crate::cli::{CommonArgs, Context, Tool};
use crate::config::Role;
use crate::error::{Error, Result};
use crate::fleet::{Ctx, Status};
use crate::journal::JournalArgs;
use crate::migrate::sha256_hex;
use crate::report::{Check, Report};
use std::path::{Path, PathBuf};

/// For every risk engine: the risk-limits file it is using (SHA-256 and load time, from
/// `GET /admin/config`) against the environment's file on disk and the repository's copy, so
/// "the file was updated but the service still uses the old one" (a reload that failed or never
/// ran, a wrong path) is named per server with what to do.
#[derive(Debug, clap::Parser)]
#[command(name = "show_config", version)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,

    /// The repository's copy [default: `<config dir>/<environment>/risk_limits.yaml`].
    #[arg(long, value_name = "FILE")]
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
        let disk_path = crate::trading_config::live_file(&ctx, &c.env)?;
        let disk = std::fs::read(&disk_path)
            .map(|b| sha256_hex(&b))
            .map_err(|e| Error::io("read", &disk_path, e))?;
        let mut report = ctx.report();
        let repo_path = self.repo_file.clone().or_else(|| {
            crate::trading_config::environment_file(
                Path::new("risk-limits"),
                &ctx.config.path,
                ctx.env_name.as_str(),
            )
            .map(|(p, _)| p)
        });
        let name = "File on disk is the repository's";
        report.push(match repo_path.as_deref().map(|p| (p, std::fs::read(p))) {
            Some((p, Ok(b))) if sha256_hex(&b) == disk => {
                Check::ok("config", name).message(format!(
                    "{} = {} (sha256 {})",
                    disk_path.display(),
                    p.display(),
                    short(&disk)
                ))
            }
            Some((p, Ok(b))) => Check::warn(
                "config",
                name,
                format!(
                    "{} (sha256 {}) differs from {} (sha256 {})",
                    disk_path.display(),
                    short(&disk),
                    p.display(),
                    short(&sha256_hex(&b))
                ),
            )
            .hint(format!(
                "deploy the repository's file: validate_config -e {} --deploy {}",
                ctx.env_name,
                p.display()
            )),
            Some((p, Err(_))) => Check::skip(
                "config",
                name,
                format!("no repository copy at {}", p.display()),
            ),
            None => Check::skip("config", name, "no repository copy known: pass --repo-file"),
        });

        let servers = c.fleet.select(None, &[Role::RiskEngine]);
        let out = c
            .fleet
            .each("config in use", &servers, |cl| async move {
                cl.config_in_use().await.map_err(|e| e.to_string())
            })
            .await;
        for r in &out.results {
            let name = format!("{} uses the file on disk", r.server.name);
            report.push(match &r.status {
                Status::Skipped(why) => Check::skip("config", name, why.clone()),
                Status::Failed(why) => Check::fail("config", name, format!("not answering: {why}"))
                    .hint("check the server (isolate_server if it is down)"),
                Status::Reached(cfg) => {
                    match cfg.files.iter().find(|f| f.component == "risk-limits") {
                        None => Check::fail("config", name, "reads no risk-limits file: built-in limits")
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
                                "reload and verify it: validate_config -e {} --deploy {} (a failed reload above says why: a bad file, permissions); --restore puts back the last good file",
                                ctx.env_name,
                                disk_path.display()
                            ))
                        }
                    }
                }
            });
        }
        Ok(report)
    }
}
