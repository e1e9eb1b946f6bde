//! PostgreSQL connections with a bounded connect and the URL never printed unredacted, and one
//! way to say what went wrong: the server's own message, its SQLSTATE and what to do, never a
//! bare "db error".

use crate::error::{Error, Result};
use crate::redact::{Secret, redact};
use std::time::Duration;
use tokio_postgres::error::SqlState;

/// Connect with a timeout; the connection task is spawned on the current runtime.
pub async fn connect(url: &Secret, timeout: Duration) -> Result<tokio_postgres::Client> {
    let fut = tokio_postgres::connect(url.expose(), tokio_postgres::NoTls);
    let (client, conn) = match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => return Err(error("PostgreSQL", e)),
        Err(_) => {
            return Err(Error::unreachable(
                "PostgreSQL",
                format!("no connection within {timeout:?}"),
            ));
        }
    };
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("postgres connection ended: {}", describe(&e));
        }
    });
    Ok(client)
}

/// A PostgreSQL failure as one line: the server's message with its SQLSTATE, detail and hint
/// plus ours, or the client's error with every cause (`error connecting to server: Connection
/// refused`). Redacted.
pub fn describe(e: &tokio_postgres::Error) -> String {
    let text = match e.as_db_error() {
        Some(d) => {
            let mut s = format!("{} (SQLSTATE {})", d.message(), d.code().code());
            if let Some(detail) = d.detail() {
                s.push_str(&format!("; {detail}"));
            }
            if let Some(h) = d.hint() {
                s.push_str(&format!("; hint: {h}"));
            }
            if let Some(h) = hint(d.code()) {
                s.push_str(&format!("; {h}"));
            }
            s
        }
        None => std::iter::once(e.to_string())
            .chain(crate::error::sources(e).map(|c| c.to_string()))
            .collect::<Vec<_>>()
            .join(": "),
    };
    redact(&text)
}

/// What an operator does about the SQLSTATEs deploy-tools meets.
fn hint(code: &SqlState) -> Option<&'static str> {
    Some(match *code {
        SqlState::INVALID_CATALOG_NAME => {
            "create the database (createdb) or fix the database name in the URL"
        }
        SqlState::INSUFFICIENT_PRIVILEGE => {
            "grant the role the privilege named above (rehearse needs CREATEDB)"
        }
        SqlState::INVALID_PASSWORD | SqlState::INVALID_AUTHORIZATION_SPECIFICATION => {
            "check the user and password the URL's variable holds"
        }
        SqlState::ADMIN_SHUTDOWN | SqlState::CRASH_SHUTDOWN | SqlState::CANNOT_CONNECT_NOW => {
            "the server ended this session (restart or pg_terminate_backend); retry once it is up"
        }
        SqlState::TOO_MANY_CONNECTIONS => "the server is at max_connections; retry later",
        _ => return None,
    })
}

/// A PostgreSQL failure while doing `what`, as the error every tool exits with (4).
pub fn error(what: &str, e: tokio_postgres::Error) -> Error {
    let detail = describe(&e);
    // The server's own error is the cause to show, not tokio-postgres's "db error" wrapper.
    match e.as_db_error() {
        Some(d) => Error::unreachable_from(what, detail, d.clone()),
        None => Error::unreachable_from(what, detail, e),
    }
}
