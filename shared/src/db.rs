//! PostgreSQL connections with a bounded connect and the URL never printed unredacted.

use crate::error::{Error, Result};
use crate::redact::{Secret, redact};
use std::time::Duration;

/// Connect with a timeout; the connection task is spawned on the current runtime.
pub async fn connect(url: &Secret, timeout: Duration) -> Result<tokio_postgres::Client> {
    let fut = tokio_postgres::connect(url.expose(), tokio_postgres::NoTls);
    let (client, conn) = match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => return Err(Error::unreachable("PostgreSQL", redact(&e.to_string()))),
        Err(_) => {
            return Err(Error::unreachable(
                "PostgreSQL",
                format!("no connection within {timeout:?}"),
            ));
        }
    };
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("postgres connection ended: {}", redact(&e.to_string()));
        }
    });
    Ok(client)
}
