//! HTTP with connect and total timeouts always set, the admin bearer token attached only where
//! asked, and retries only for idempotent GETs.

use crate::redact::{Secret, redact};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

const GET_RETRIES: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{url}: connection failed: {detail}")]
    Connect { url: String, detail: String },
    #[error("{url}: no answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url}: unexpected answer: {detail}")]
    Decode { url: String, detail: String },
}

impl HttpError {
    /// The service did not answer at all (as opposed to answering badly).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, HttpError::Connect { .. } | HttpError::Timeout { .. })
    }
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl From<HttpError> for crate::error::Error {
    fn from(e: HttpError) -> Self {
        crate::error::Error::unreachable("service", e)
    }
}

#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    timeout: Duration,
    token: Option<Secret>,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("timeout", &self.timeout)
            .field("token", &self.token)
            .finish()
    }
}

impl Http {
    pub fn new(connect: Duration, timeout: Duration) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(connect)
            .timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("deploy-tools/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("static reqwest configuration is valid");
        Http {
            client,
            timeout,
            token: None,
        }
    }

    /// Attach the admin bearer token for `admin_*` calls.
    pub fn with_token(mut self, token: Secret) -> Self {
        self.token = Some(token);
        self
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn map_err(&self, url: &str, e: reqwest::Error) -> HttpError {
        let url = redact(url);
        if e.is_timeout() {
            HttpError::Timeout {
                url,
                timeout: self.timeout,
            }
        } else if e.is_connect() || e.is_request() {
            // The innermost cause says what happened ("Connection refused"); the outer ones
            // only wrap it.
            let detail = crate::error::sources(&e)
                .last()
                .map_or_else(|| e.to_string(), |c| c.to_string());
            HttpError::Connect { url, detail }
        } else {
            HttpError::Decode {
                url,
                detail: e.to_string(),
            }
        }
    }

    async fn send(
        &self,
        url: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<(u16, String), HttpError> {
        let resp = req.send().await.map_err(|e| self.map_err(url, e))?;
        let status = resp.status().as_u16();
        let body = resp.text().await.map_err(|e| self.map_err(url, e))?;
        Ok((status, body))
    }

    /// GET returning status and body; retried (idempotent) on connection errors only.
    pub async fn get_text(&self, url: &str) -> Result<(u16, String), HttpError> {
        let mut attempt = 0;
        loop {
            match self.send(url, self.client.get(url)).await {
                Err(e @ HttpError::Connect { .. }) if attempt < GET_RETRIES => {
                    tracing::debug!("retrying GET after: {e}");
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50 * (1 << attempt))).await;
                }
                other => return other,
            }
        }
    }

    pub async fn get_json<T: DeserializeOwned>(&self, url: &str) -> Result<T, HttpError> {
        let (status, body) = self.get_text(url).await?;
        decode(url, status, &body)
    }

    /// GET with the admin token.
    pub async fn admin_get_json<T: DeserializeOwned>(&self, url: &str) -> Result<T, HttpError> {
        let (status, body) = self.send(url, self.auth(self.client.get(url))).await?;
        decode(url, status, &body)
    }

    /// POST, never retried: the service may have acted on it.
    pub async fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        url: &str,
        body: &B,
        admin: bool,
    ) -> Result<T, HttpError> {
        let mut req = self.client.post(url).json(body);
        if admin {
            req = self.auth(req);
        }
        let (status, text) = self.send(url, req).await?;
        decode(url, status, &text)
    }

    /// POST a JSON body to a third party (a webhook): status and body, whatever they are.
    /// Retried only when the connection failed, i.e. the request never reached it.
    pub async fn post_json_text<B: Serialize>(
        &self,
        url: &str,
        body: &B,
    ) -> Result<(u16, String), HttpError> {
        let mut attempt = 0;
        loop {
            match self.send(url, self.client.post(url).json(body)).await {
                Err(e @ HttpError::Connect { .. }) if attempt < GET_RETRIES => {
                    tracing::debug!("retrying POST after: {e}");
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50 * (1 << attempt))).await;
                }
                other => return other,
            }
        }
    }

    pub async fn delete_json<T: DeserializeOwned>(
        &self,
        url: &str,
        admin: bool,
    ) -> Result<T, HttpError> {
        let mut req = self.client.delete(url);
        if admin {
            req = self.auth(req);
        }
        let (status, text) = self.send(url, req).await?;
        decode(url, status, &text)
    }

    fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => req.bearer_auth(t.expose()),
            None => req,
        }
    }
}

fn decode<T: DeserializeOwned>(url: &str, status: u16, body: &str) -> Result<T, HttpError> {
    if !(200..300).contains(&status) {
        let mut b: String = body.chars().take(300).collect();
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(body)
            && let Some(m) = v.get("error").and_then(|m| m.as_str())
        {
            b = m.to_owned();
        }
        return Err(HttpError::Status {
            url: redact(url),
            status,
            body: redact(&b),
        });
    }
    serde_json::from_str(body).map_err(|e| HttpError::Decode {
        url: redact(url),
        detail: e.to_string(),
    })
}
