//! The previous colour's lifecycle (guide §5): after a cutover it stays up, trading nothing,
//! for `keep_previous_for`, so a rollback is one switch away; then `cutover decommission`
//! stops it. A rollback after that refuses and says what to do instead.

use crate::config::{Color, HumanDuration, Role};
use crate::cutover::{self as co};
use crate::error::{Error, Result};
use crate::fleet::Ctx;
use crate::journal::{Entry, Journal};
use crate::report::{Check, Report};
use chrono::{DateTime, Utc};
use std::time::{Duration, Instant};

/// The journal action of a decommission.
pub const ACTION: &str = "decommission";

/// What the journal says about the last cutover: who is live since when.
#[derive(Debug, Clone)]
pub struct LastSwitch {
    pub run_id: String,
    pub live: Color,
    pub previous: Color,
    pub at: DateTime<Utc>,
}

/// The last cutover or rollback, when it finished (an unfinished one leaves nothing to retire).
pub async fn last_switch(journal: &Journal, env_name: &str) -> Result<Option<LastSwitch>> {
    let last = journal.last_run(env_name, &["cutover", "rollback"]).await?;
    let Some(end) = last.iter().find(|e| e.state == "finished") else {
        return Ok(None);
    };
    let color = |s: &str| match s {
        "blue" => Ok(Color::Blue),
        "green" => Ok(Color::Green),
        other => Err(Error::Conflict(format!(
            "the journal names an unknown colour `{other}`"
        ))),
    };
    let at = DateTime::parse_from_rfc3339(&end.at)
        .map_err(|e| {
            Error::Conflict(format!(
                "the journal's time `{}` is unreadable: {e}",
                end.at
            ))
        })?
        .with_timezone(&Utc);
    Ok(Some(LastSwitch {
        run_id: end.run_id.clone(),
        live: color(&end.to_color)?,
        previous: color(&end.from_color)?,
        at,
    }))
}

/// The decommission of `colour` the journal holds after the last switch, if any: a rollback to
/// that colour has nothing to switch back to.
pub async fn decommissioned_since_switch(
    journal: &Journal,
    env_name: &str,
    color: Color,
) -> Result<Option<Entry>> {
    let d = journal.last_run(env_name, &[ACTION]).await?;
    let Some(done) = d.into_iter().find(|e| e.state == "finished") else {
        return Ok(None);
    };
    let switched = journal.last_run(env_name, &["cutover", "rollback"]).await?;
    let after = switched.last().is_none_or(|s| done.at >= s.at);
    Ok((after && done.from_color == color.as_str()).then_some(done))
}

/// Stop the previous colour once its rollback window has passed (or `force` says why not wait):
/// the load balancers agree it is idle, it trades nothing, the environment's stop command runs,
/// and every one of its services is read back as gone. Journaled; refused (exit 5) otherwise.
pub async fn decommission(
    c: &Ctx,
    journal: &Journal,
    keep_for: HumanDuration,
    stop_command: Option<&[String]>,
    force: Option<&str>,
    report: &mut Report,
) -> Result<()> {
    let live = crate::lb::agreed(&crate::fleet::live_colors(c).await?).map_err(|e| {
        Error::Conflict(format!(
            "{e}: finish or roll back the cutover before retiring a colour"
        ))
    })?;
    let old = live.other();
    let Some(last) = last_switch(journal, &c.env_name).await? else {
        return Err(Error::Conflict(format!(
            "the journal holds no finished cutover: {old} may be the only copy of the previous release; nothing was stopped"
        )));
    };
    if last.live != live {
        return Err(Error::Conflict(format!(
            "the load balancers send traffic to {live} but the journal's last cutover ({}) went to {}: check `cutover status`; nothing was stopped",
            last.run_id, last.live
        )));
    }
    let age = (Utc::now() - last.at).to_std().unwrap_or_default();
    let window = keep_for.0;
    match force.map(str::trim) {
        Some("") => {
            return Err(Error::Usage(
                "--force needs a reason (it is journaled): --force \"<why>\"".into(),
            ));
        }
        Some(why) if age < window => {
            tracing::warn!("decommissioning {old} inside its rollback window: {why}");
        }
        None if age < window => {
            let until = last.at + chrono::Duration::from_std(window).unwrap_or_default();
            return Err(Error::Conflict(format!(
                "{old} is the rollback target until {} (keep_previous_for {}, cut over {} ago): decommission after that, or --force REASON",
                until.format("%H:%M:%S UTC"),
                humantime::format_duration(window),
                humantime::format_duration(Duration::from_secs(age.as_secs()))
            )));
        }
        _ => {}
    }
    report.push(
        Check::ok("decommission", "rollback window").message(match force {
            Some(why) if age < window => format!("forced inside the window: {why}"),
            _ => format!(
                "{} since the cutover to {live} (keep_previous_for {})",
                humantime::format_duration(Duration::from_secs(age.as_secs())),
                humantime::format_duration(window)
            ),
        }),
    );
    // The colour to stop must be a standby: trading nothing (a service that is down already is
    // fine, it trades nothing either).
    for cl in c.clients(old, &[Role::TradingEngine, Role::Oms]) {
        if let Ok(st) = cl.admin_state().await
            && (st.trading_active || st.strategies.values().any(|s| s.active))
        {
            return Err(Error::Conflict(format!(
                "{} ({old}) still trades: it is not a standby; run `cutover status` and stop its trading first; nothing was stopped",
                cl.base()
            )));
        }
    }
    let Some(cmd) = stop_command.filter(|c| !c.is_empty()) else {
        return Err(Error::config(
            format!("environments.{}.stop_command", c.env_name),
            "is not set: cutover decommission needs the command that stops one colour's services",
        ));
    };
    let run_id = format!("decommission-{}", co::now_ms());
    let entry = |state: &str, detail: String| Entry {
        run_id: run_id.clone(),
        environment: c.env_name.clone(),
        action: ACTION.into(),
        from_color: old.to_string(),
        to_color: live.to_string(),
        step: "stop".into(),
        state: state.into(),
        detail,
        at: String::new(),
        deployment_id: String::new(),
    };
    journal
        .write(&entry("started", force.unwrap_or_default().to_string()))
        .await?;
    let argv: Vec<String> = cmd
        .iter()
        .map(|a| a.replace("{color}", old.as_str()))
        .collect();
    tracing::info!("stopping {old}: `{}`", argv.join(" "));
    let started = Instant::now();
    let args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
    let out = crate::process::run(&argv[0], &args, None, c.timeout)
        .await
        .map_err(|e| {
            Error::config(
                format!("environments.{}.stop_command", c.env_name),
                format!("`{}`: {e}", argv[0]),
            )
        })?;
    if !out.success {
        let why = format!(
            "the stop command failed (exit {}): {}",
            out.code.map_or("signal".into(), |c| c.to_string()),
            out.combined().lines().last().unwrap_or("").trim()
        );
        journal.write(&entry("failed", why.clone())).await?;
        report.push(
            Check::fail("decommission", format!("stop {old}"), why)
                .hint("fix the stop command's cause and run `cutover decommission` again"),
        );
        return Ok(());
    }
    // Read back: every service of the old colour stops answering (bounded, a line a second).
    let clients = c.all(old);
    let mut note = crate::telemetry::Every::new(Duration::from_secs(1));
    let still: Vec<String> = loop {
        let mut up = vec![];
        for cl in &clients {
            if cl.health().await.is_ok() {
                up.push(cl.base().to_string());
            }
        }
        if up.is_empty() || started.elapsed() >= c.timeout {
            break up;
        }
        if note.due() {
            tracing::info!("waiting for {} {old} service(s) to stop", up.len());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if !still.is_empty() {
        let why = format!(
            "still answering after the stop command: {}",
            still.join(", ")
        );
        journal.write(&entry("failed", why.clone())).await?;
        report.push(
            Check::fail("decommission", format!("stop {old}"), why).hint(
                "stop them by hand (the service manager), then run `cutover decommission` again",
            ),
        );
        return Ok(());
    }
    journal
        .write(&entry(
            "finished",
            format!("{} service(s) stopped", clients.len()),
        ))
        .await?;
    report.push(
        Check::ok("decommission", format!("stop {old}"))
            .message(format!(
                "{} {old} service(s) stopped and read back as gone; {live} stays live; the next release deploys to {old}",
                clients.len()
            ))
            .took(started.elapsed()),
    );
    Ok(())
}
