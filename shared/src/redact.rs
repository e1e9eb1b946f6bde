//! Secrets never reach output: every report renderer and the log writer pass text through
//! [`redact`], which masks URL passwords and every secret value registered at load time.

use std::sync::{LazyLock, RwLock};

const MASK: &str = "***";

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

// `scheme://user:password@host` — the password is everything between the first ':' after
// the userinfo start and the last '@' before the host.
static URL_PASSWORD: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"(?P<pre>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s/]+)@").unwrap()
});
// key=value password forms in libpq connection strings and query strings.
static KV_PASSWORD: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"(?i)(?P<pre>\b(?:password|passwd|pwd|token|secret)=)(?P<pw>[^&\s]+)")
        .unwrap()
});

/// Remember a secret value so it is masked wherever it would be printed.
/// Very short values are ignored: masking "a" everywhere would garble output.
pub fn register(secret: &str) {
    let secret = secret.trim();
    if secret.len() < 4 {
        return;
    }
    let mut all = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    if !all.iter().any(|s| s == secret) {
        all.push(secret.to_owned());
        // Longest first, so a secret containing another is masked whole.
        all.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// Remember the secret-bearing parts of a URL whose path or query is the credential (a chat
/// webhook `https://hooks.example/services/T0/B0/XXXX`): the path, every path segment and query
/// value of 8 characters or more, so a receiver echoing only the path ("Cannot POST /…/XXXX")
/// cannot print the token.
pub fn register_url_parts(url: &str) {
    register(url);
    let Ok(u) = url::Url::parse(url) else { return };
    if u.path().len() >= 8 {
        register(u.path());
    }
    for seg in u.path_segments().into_iter().flatten() {
        if seg.len() >= 8 {
            register(seg);
        }
    }
    for (_, v) in u.query_pairs() {
        if v.len() >= 8 {
            register(&v);
        }
    }
}

/// Mask URL passwords, `password=` pairs and registered secrets.
pub fn redact(text: &str) -> String {
    let mut out = URL_PASSWORD
        .replace_all(text, |c: &regex::Captures| format!("{}{MASK}@", &c["pre"]))
        .into_owned();
    out = KV_PASSWORD
        .replace_all(&out, |c: &regex::Captures| format!("{}{MASK}", &c["pre"]))
        .into_owned();
    let all = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    for s in all.iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), MASK);
        }
    }
    out
}

/// A secret that cannot be printed by accident: Debug and Display show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap and register, so even a value leaked through another path is masked.
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        register(&value);
        Secret(value)
    }

    /// The value, for the one place that must send it (an HTTP header, a DB connect).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(MASK)
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(MASK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_url_passwords() {
        assert_eq!(
            redact("connect postgres://app:s3cr3t@db:5432/x failed"),
            "connect postgres://app:***@db:5432/x failed"
        );
        assert_eq!(
            redact("redis://:pw-only@127.0.0.1:6379"),
            "redis://:***@127.0.0.1:6379"
        );
        // No password: untouched.
        assert_eq!(
            redact("postgres://postgres@127.0.0.1/db"),
            "postgres://postgres@127.0.0.1/db"
        );
    }

    #[test]
    fn masks_key_value_passwords() {
        assert_eq!(
            redact("host=db password=hunter22 user=x"),
            "host=db password=*** user=x"
        );
        assert_eq!(redact("?token=abcd1234&x=1"), "?token=***&x=1");
    }

    #[test]
    fn masks_registered_secrets() {
        register("tok-9f8e7d6c5b4a");
        assert_eq!(
            redact("Authorization: Bearer tok-9f8e7d6c5b4a"),
            "Authorization: Bearer ***"
        );
        let s = Secret::new("another-secret-value");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(redact("x another-secret-value y"), "x *** y");
    }
}
