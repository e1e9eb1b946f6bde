//! What only the network can tell about a new config, checked before it is installed (guide §8:
//! "validate database connections with the new settings", "reach each endpoint"): every
//! connection of a `database.yaml` opens and answers `SELECT 1`, every endpoint of an
//! `endpoints.yaml` answers. All at once, each within the file's own timeout.

use super::{Connection, DatabaseFile, Endpoint, EndpointsFile, SecretRef, secret_ref};
use crate::redact::Secret;
use std::time::Duration;

/// One line per connection or endpoint: its name and Ok(what answered) or Err(why not).
pub type Outcome = (String, Result<String, String>);

pub async fn connections(doc: &DatabaseFile) -> Vec<Outcome> {
    let checks = doc
        .connections
        .iter()
        .map(|(name, c)| async move { (name.clone(), connect(c).await) });
    futures_util::future::join_all(checks).await
}

/// The password, read where the reference points; registered so no output can show it.
fn password(r: &str) -> Result<Secret, String> {
    match secret_ref(r) {
        Some(SecretRef::Env(var)) => std::env::var(var)
            .map(Secret::new)
            .map_err(|_| format!("password_ref env:{var} is not set on this machine")),
        Some(SecretRef::File(f)) => std::fs::read_to_string(f)
            .map(|s| Secret::new(s.trim_end_matches(['\n', '\r'])))
            .map_err(|e| format!("password_ref file:{}: {e}", f.display())),
        None => Err("password_ref must be env:VAR or file:/path".into()),
    }
}

async fn connect(c: &Connection) -> Result<String, String> {
    let mut cfg = tokio_postgres::Config::new();
    let timeout = Duration::from_millis(c.connect_timeout_ms);
    cfg.host(&c.host)
        .port(c.port)
        .dbname(&c.dbname)
        .user(&c.user)
        .connect_timeout(timeout);
    if let Some(r) = &c.password_ref {
        cfg.password(password(r)?.expose());
    }
    let at = format!("{}@{}:{}/{}", c.user, c.host, c.port, c.dbname);
    let (client, conn) =
        match tokio::time::timeout(timeout, cfg.connect(tokio_postgres::NoTls)).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => return Err(format!("{at}: {}", crate::db::describe(&e))),
            Err(_) => return Err(format!("{at}: no connection within {timeout:?}")),
        };
    let task = tokio::spawn(conn);
    let answer = tokio::time::timeout(timeout, client.simple_query("SELECT 1")).await;
    task.abort();
    match answer {
        Ok(Ok(_)) => Ok(format!("{at} accepts the settings")),
        Ok(Err(e)) => Err(format!("{at}: {}", crate::db::describe(&e))),
        Err(_) => Err(format!(
            "{at}: connected but SELECT 1 took over {timeout:?}"
        )),
    }
}

pub async fn endpoints(doc: &EndpointsFile) -> Vec<Outcome> {
    let checks = doc
        .endpoints
        .iter()
        .map(|(name, e)| async move { (name.clone(), reach(e).await) });
    futures_util::future::join_all(checks).await
}

/// Any HTTP answer below 500 means the endpoint is there (a 401 or 404 from a gateway's root is
/// still that gateway); a 5xx, a refused connection or no answer in time is not.
async fn reach(e: &Endpoint) -> Result<String, String> {
    let t = Duration::from_millis(e.timeout_ms);
    let http = crate::http::Http::new(t, t);
    match http.get_text(&e.url.value).await {
        Ok((status, _)) if status < 500 => Ok(format!("{} answered {status}", e.url.value)),
        Ok((status, _)) => Err(format!("{} answered {status}", e.url.value)),
        Err(err) => Err(err.to_string()),
    }
}
