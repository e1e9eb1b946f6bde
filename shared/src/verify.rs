//! verify_env's checks: git state, tools with minimum versions, SSH keys, VPN, Docker daemon,
//! credentials and the deployment policy. Each check is independent and bounded by its own
//! timeout; the runner executes them concurrently.

use crate::config::{
    Credentials, EnvName, Environment, MinVersion, Policy, ToolReq, VerifyCheck, Vpn, Weekday,
};
use crate::process::{self, ProcError};
use crate::report::Check;
use chrono::{Datelike, NaiveDate};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

// ---------- versions ----------

static KUBE_STRUCT: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r#"Major:"(\d+)",\s*Minor:"(\d+)\+?""#).unwrap());
// First dotted number not glued to a word or another number: survives `jq-1.6`,
// `OpenSSH_9.2p1`, `v1.32.4-dispatcher`, `ansible [core 2.15.3]`, `1.28+`.
static DOTTED: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"(?:^|[^0-9A-Za-z.])[vV]?(\d+)\.(\d+)\+?(?:\.(\d+))?").unwrap()
});

/// The version a tool printed, as `[major, minor, patch]`.
pub fn parse_version(output: &str) -> Option<[u64; 3]> {
    if let Some(c) = KUBE_STRUCT.captures(output) {
        return Some([c[1].parse().ok()?, c[2].parse().ok()?, 0]);
    }
    let c = DOTTED.captures(output)?;
    let n = |i: usize| c.get(i).map_or(Some(0), |m| m.as_str().parse().ok());
    Some([n(1)?, n(2)?, n(3)?])
}

pub fn version_string(v: [u64; 3]) -> String {
    format!("{}.{}.{}", v[0], v[1], v[2])
}

// ---------- profiles ----------

pub fn default_checks(env: EnvName) -> Vec<VerifyCheck> {
    use VerifyCheck::*;
    match env {
        EnvName::Local => vec![Tools, Credentials],
        EnvName::Dev => vec![Git, Tools, Ssh, Docker, Credentials],
        EnvName::Staging => vec![Git, Tools, Ssh, Vpn, Docker, Credentials],
        EnvName::Production => vec![Git, Tools, Ssh, Vpn, Docker, Credentials, Policy],
    }
}

fn tool(name: &str, min: Option<[u64; 3]>, args: &[&str], hint: &str) -> ToolReq {
    ToolReq {
        name: name.into(),
        min: min.map(MinVersion),
        args: Some(args.iter().map(|s| s.to_string()).collect()),
        install_hint: Some(hint.into()),
    }
}

/// The guide's REQUIRED ACCESS tool list.
pub fn default_tools(env: EnvName) -> Vec<ToolReq> {
    let v = &["--version"][..];
    if env == EnvName::Local {
        return vec![
            tool("git", Some([2, 30, 0]), v, "apt-get install git"),
            tool("curl|wget", None, v, "apt-get install curl"),
            tool(
                "psql",
                Some([13, 0, 0]),
                v,
                "apt-get install postgresql-client",
            ),
            tool(
                "haproxy",
                Some([2, 6, 0]),
                &["-v"],
                "apt-get install haproxy",
            ),
        ];
    }
    vec![
        tool("git", Some([2, 40, 0]), v, "apt-get install git"),
        tool(
            "docker",
            Some([24, 0, 0]),
            v,
            "install Docker Engine 24+ (docs.docker.com/engine/install)",
        ),
        tool(
            "kubectl",
            Some([1, 28, 0]),
            &["version", "--client"],
            "install kubectl 1.28+ (kubernetes.io/docs/tasks/tools)",
        ),
        tool(
            "ansible",
            Some([2, 15, 0]),
            v,
            "pip install 'ansible-core>=2.15'",
        ),
        tool("ssh-keygen", None, &[], "apt-get install openssh-client"),
        tool("curl|wget", None, v, "apt-get install curl"),
        tool("jq", None, v, "apt-get install jq"),
        tool("psql", None, v, "apt-get install postgresql-client"),
    ]
}

pub fn default_credentials(env: &Environment) -> Credentials {
    let mut vars = vec![];
    if let Some(db) = &env.database {
        vars.push(db.url_env.clone());
    }
    vars.push(env.admin_token_env.clone());
    Credentials {
        env: vars,
        files: vec![],
    }
}

// ---------- checks ----------

const G_GIT: &str = "git";

/// What one `git status --porcelain=v2 --branch` says: branch, upstream, distance, changes.
#[derive(Debug, Default, PartialEq)]
pub struct GitStatus {
    pub branch: Option<String>,
    pub upstream: Option<String>,
    pub behind: u64,
    pub changed: Vec<String>,
    pub untracked: Vec<String>,
}

/// Parse porcelain v2: one git process answers every git question verify_env asks.
pub fn parse_git_status(text: &str) -> GitStatus {
    let mut st = GitStatus::default();
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("# branch.head ") {
            st.branch = (h != "(detached)").then(|| h.to_string());
        } else if let Some(u) = line.strip_prefix("# branch.upstream ") {
            st.upstream = Some(u.to_string());
        } else if let Some(ab) = line.strip_prefix("# branch.ab ") {
            st.behind = ab
                .split_whitespace()
                .find_map(|x| x.strip_prefix('-'))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        } else if let Some(p) = line.strip_prefix("? ") {
            st.untracked.push(p.to_string());
        } else if let Some(rest) = line.strip_prefix("1 ") {
            st.changed
                .extend(rest.splitn(8, ' ').nth(7).map(str::to_string));
        } else if let Some(rest) = line.strip_prefix("2 ") {
            st.changed.extend(
                rest.splitn(9, ' ')
                    .nth(8)
                    .map(|p| p.split('\t').next().unwrap_or(p).to_string()),
            );
        } else if let Some(rest) = line.strip_prefix("u ") {
            st.changed
                .extend(rest.splitn(10, ' ').nth(9).map(str::to_string));
        }
    }
    st
}

/// What the git checks are told besides the repository: whether to fetch, the branch policy
/// asks for, what the CI says it built (a CI checkout is a detached HEAD), and which paths hold
/// build output (changes under them do not make the tree dirty).
#[derive(Debug, Default, Clone)]
pub struct GitPlan {
    pub fetch: bool,
    /// Names or `prefix/*` patterns; empty: any branch.
    pub expected_branch: Vec<String>,
    /// The branch the CI built (Jenkins' BRANCH_NAME, else GIT_BRANCH without `origin/`).
    pub ci_branch: Option<String>,
    /// The tag the CI built (Jenkins' TAG_NAME): it must be on the expected branch.
    pub ci_tag: Option<String>,
    pub build_outputs: Vec<String>,
}

impl GitPlan {
    /// A path inside one of the build-output paths (`reports`, `reports/`, `./dist`).
    fn is_build_output(&self, path: &str) -> bool {
        self.build_outputs.iter().any(|b| {
            let b = b.trim_start_matches("./").trim_end_matches('/');
            !b.is_empty() && (path == b || path.starts_with(&format!("{b}/")))
        })
    }
}

/// Jenkins' GIT_BRANCH names the remote too (`origin/main`); BRANCH_NAME does not.
pub fn branch_from_ci(branch_name: Option<String>, git_branch: Option<String>) -> Option<String> {
    branch_name.filter(|b| !b.is_empty()).or_else(|| {
        git_branch.filter(|b| !b.is_empty()).map(|b| {
            let b = b.strip_prefix("refs/heads/").unwrap_or(&b);
            b.split_once('/')
                .filter(|(remote, _)| *remote == "origin")
                .map_or(b.to_string(), |(_, rest)| rest.to_string())
        })
    })
}

async fn git(repo: &Path, args: &[&str], timeout: Duration) -> Result<String, String> {
    run_ok(process::run("git", args, Some(repo), timeout).await)
}

/// Git: clean tree (build output aside), not behind the remote branch (fetching first with
/// `fetch`), on the expected branch — on a detached HEAD, the branch the CI says it built.
pub async fn git_checks(repo: &Path, plan: &GitPlan, timeout: Duration) -> Vec<Check> {
    let mut out = vec![];
    let mut fetch_error = None;
    if plan.fetch
        && let Err(m) = git(repo, &["fetch", "--quiet"], timeout).await
    {
        fetch_error = Some(m);
    }
    let args = [
        "status",
        "--porcelain=v2",
        "--branch",
        "--untracked-files=all",
    ];
    let mut st = match process::run("git", &args, Some(repo), timeout).await {
        Ok(o) if o.success => parse_git_status(&o.stdout),
        Ok(o) => {
            return vec![
                Check::fail(
                    G_GIT,
                    "Git repository clean",
                    format!(
                        "{} is not a git repository: {}",
                        repo.display(),
                        o.stderr.trim()
                    ),
                )
                .hint("run from the checkout being deployed, or pass --repo DIR"),
            ];
        }
        Err(e) => {
            return vec![proc_fail(
                G_GIT,
                "Git repository clean",
                &e,
                "apt-get install git",
            )];
        }
    };
    let before = st.changed.len() + st.untracked.len();
    st.changed.retain(|p| !plan.is_build_output(p));
    st.untracked.retain(|p| !plan.is_build_output(p));
    let ignored = before - st.changed.len() - st.untracked.len();
    if st.changed.is_empty() && st.untracked.is_empty() {
        let mut c = Check::ok(G_GIT, "Git repository clean");
        if ignored > 0 {
            c = c.message(format!(
                "{ignored} file(s) of build output ignored (under {})",
                plan.build_outputs.join(", ")
            ));
        }
        out.push(c);
    } else {
        let all: Vec<&String> = st.changed.iter().chain(&st.untracked).collect();
        let shown: Vec<_> = all.iter().take(5).map(|s| s.as_str()).collect();
        out.push(
            Check::fail(
                G_GIT,
                "Git repository clean",
                format!(
                    "{} uncommitted and {} untracked: {}{}",
                    st.changed.len(),
                    st.untracked.len(),
                    shown.join(", "),
                    if all.len() > 5 { ", …" } else { "" }
                ),
            )
            .hint("commit or stash the changes (git stash -u) before deploying; build output belongs in .gitignore or --build-output PATH"),
        );
    }
    // A detached HEAD (every Jenkins checkout) has no upstream: the branch the CI built is
    // compared with its remote-tracking ref instead.
    let detached = st.branch.is_none();
    let branch = st.branch.clone().or_else(|| plan.ci_branch.clone());
    let via = if detached {
        " (detached HEAD; branch from the CI's BRANCH_NAME/GIT_BRANCH)"
    } else {
        ""
    };
    let as_fetched = if plan.fetch {
        ""
    } else {
        " as last fetched (use --fetch to fetch first)"
    };
    // A tag build (Jenkins sets BRANCH_NAME to the tag's name too) is compared with the tag.
    let tag_build = plan.ci_tag.as_ref().filter(|_| detached);
    let upstream = st.upstream.clone().or_else(|| match tag_build {
        Some(t) => Some(format!("refs/tags/{t}")),
        None => branch
            .as_ref()
            .filter(|_| detached)
            .map(|b| format!("origin/{b}")),
    });
    let behind = match (&st.upstream, &upstream) {
        (Some(_), _) => Ok(st.behind),
        (None, Some(remote)) => git(
            repo,
            &["rev-list", "--count", &format!("HEAD..{remote}")],
            timeout,
        )
        .await
        .map(|n| n.trim().parse().unwrap_or(0)),
        (None, None) => Ok(0),
    };
    out.push(match (fetch_error, &upstream, behind) {
        (Some(m), _, _) => Check::fail(
            G_GIT,
            "Latest code pulled",
            format!("git fetch failed: {m}"),
        )
        .hint("check network access to the remote"),
        (None, None, _) => Check::warn(
            G_GIT,
            "Latest code pulled",
            if detached {
                "detached HEAD and no BRANCH_NAME or GIT_BRANCH: nothing to compare with"
                    .to_string()
            } else {
                "the current branch has no upstream, so it cannot be compared".to_string()
            },
        )
        .hint(if detached {
            "run from Jenkins (it sets BRANCH_NAME), or check out the branch"
        } else {
            "set one: git branch --set-upstream-to=origin/<branch>"
        }),
        (None, Some(up), Err(e)) => Check::fail(
            G_GIT,
            "Latest code pulled",
            format!("cannot compare with {up}: {e}"),
        )
        .hint(format!(
            "fetch it: git fetch origin {}",
            up.trim_start_matches("origin/")
        )),
        (None, Some(up), Ok(0)) => Check::ok(G_GIT, "Latest code pulled")
            .message(format!("up to date with {up}{as_fetched}{via}")),
        (None, Some(up), Ok(n)) => Check::fail(
            G_GIT,
            "Latest code pulled",
            format!("{n} commit(s) behind {up}{via}"),
        )
        .hint(if detached {
            "the build checked out an older commit: rebuild from the branch head".to_string()
        } else {
            "run git pull --ff-only".to_string()
        }),
    });
    if !plan.expected_branch.is_empty() {
        let patterns = &plan.expected_branch;
        let expected = patterns.join(" or ");
        // A tag's commit must be on the release branch: the first plain name.
        let release = patterns
            .iter()
            .find(|p| !p.ends_with('*'))
            .unwrap_or(&patterns[0])
            .clone();
        let matches = |b: &str| {
            patterns.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => b.starts_with(prefix) && b.len() > prefix.len(),
                None => b == p,
            })
        };
        let name = format!("On branch {expected}");
        let tag = plan.ci_tag.as_ref().filter(|_| detached);
        out.push(match (&branch, tag) {
            // A release tag is built from a tag job: its commit must be on the branch.
            (_, Some(tag)) => {
                let on = git(
                    repo,
                    &["merge-base", "--is-ancestor", "HEAD", &format!("origin/{release}")],
                    timeout,
                )
                .await;
                match on {
                    Ok(_) => Check::ok(G_GIT, name)
                        .message(format!("tag {tag} (detached HEAD) is on origin/{release}")),
                    Err(e) => Check::fail(
                        G_GIT,
                        name,
                        format!("tag {tag} is not on origin/{release}{}", if e.is_empty() { String::new() } else { format!(": {e}") }),
                    )
                    .hint(format!("tag a commit of {release}, or fetch origin/{release}")),
                }
            }
            (Some(b), None) if matches(b) && detached => {
                Check::ok(G_GIT, name).message(format!("detached HEAD; the CI built {b}"))
            }
            (Some(b), None) if matches(b) => Check::ok(G_GIT, name).message(format!("on {b}")),
            (other, None) => Check::fail(
                G_GIT,
                name,
                format!(
                    "checked out: {}",
                    match (other, detached) {
                        (Some(b), true) => format!("detached HEAD; the CI built {b}"),
                        (Some(b), false) => b.clone(),
                        (None, _) => "detached HEAD, and no BRANCH_NAME or GIT_BRANCH says which branch".into(),
                    }
                ),
            )
            .hint(format!("deploy from {expected}: git switch {release} (in Jenkins: build the {release} branch)")),
        });
    }
    out
}

fn run_ok(r: Result<process::Output, ProcError>) -> Result<String, String> {
    match r {
        Ok(o) if o.success => Ok(o.stdout),
        Ok(o) => Err(o.stderr.trim().to_string()),
        Err(e) => Err(e.to_string()),
    }
}

fn proc_fail(group: &str, name: &str, e: &ProcError, install: &str) -> Check {
    let c = Check::fail(group, name, e.to_string());
    match e {
        ProcError::NotFound(_) => c.hint(format!("install it: {install}")),
        ProcError::Timeout { .. } => c.hint("the command hung; check it by hand"),
        ProcError::Spawn { .. } => c.hint("check the file's permissions"),
    }
}

/// One tool: present (any of its `a|b` alternatives), and at least its minimum version.
pub async fn tool_check(req: &ToolReq, timeout: Duration) -> Check {
    let name = match req.min {
        Some(m) => format!("Required tool {} (>= {m})", req.name),
        None => format!("Required tool {}", req.name),
    };
    let install = req
        .install_hint
        .clone()
        .unwrap_or_else(|| format!("install {}", req.name));
    let Some(found) = req.name.split('|').find(|n| process::which(n).is_some()) else {
        return Check::fail("tools", name, format!("{} not found on PATH", req.name))
            .hint(format!("install it: {install}"));
    };
    let args: Vec<String> = req.args.clone().unwrap_or_else(|| vec!["--version".into()]);
    if args.is_empty() {
        return Check::ok("tools", name).message(format!("{found} present"));
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let program = process::which(found)
        .and_then(|p| process::resolve_pg_wrapper(&p, std::path::Path::new("/usr/lib/postgresql")))
        .map_or_else(|| found.to_string(), |p| p.to_string_lossy().into_owned());
    let out = match process::run(&program, &argv, None, timeout).await {
        Ok(o) => o,
        Err(e) => return proc_fail("tools", &name, &e, &install),
    };
    let text = out.combined();
    let first_line = text.lines().next().unwrap_or("").trim().to_string();
    let parsed = parse_version(&text);
    let data = serde_json::json!({
        "tool": found,
        "found": parsed.map(version_string),
        "required": req.min.map(|m| m.to_string()),
    });
    match (req.min, parsed) {
        (None, Some(v)) => Check::ok("tools", name)
            .message(format!("{found} {}", version_string(v)))
            .data(data),
        (None, None) => Check::ok("tools", name)
            .message(format!("{found} present"))
            .data(data),
        (Some(_), None) => Check::fail(
            "tools",
            name,
            format!("cannot read {found}'s version from `{first_line}`"),
        )
        .hint(format!("check `{found} {}` by hand", args.join(" ")))
        .data(data),
        (Some(min), Some(v)) if v >= min.0 => Check::ok("tools", name)
            .message(format!("{found} {} (>= {min})", version_string(v)))
            .data(data),
        (Some(min), Some(v)) => Check::fail(
            "tools",
            name,
            format!("{found} {} is older than required {min}", version_string(v)),
        )
        .hint(format!("upgrade it: {install}"))
        .data(data),
    }
}

/// A private key with safe permissions, or an identity in the SSH agent.
pub async fn ssh_check(keys: &[PathBuf], timeout: Duration) -> Check {
    use std::os::unix::fs::PermissionsExt;
    const NAME: &str = "SSH keys configured";
    let mut unsafe_keys = vec![];
    for k in keys {
        if let Ok(m) = std::fs::metadata(k) {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 == 0 {
                return Check::ok("ssh", NAME)
                    .message(format!("{} (mode {mode:04o})", k.display()));
            }
            unsafe_keys.push((k.clone(), mode));
        }
    }
    if let Some((k, mode)) = unsafe_keys.first() {
        return Check::fail(
            "ssh",
            NAME,
            format!(
                "{} has unsafe mode {mode:04o}: ssh refuses keys others can read",
                k.display()
            ),
        )
        .hint(format!("chmod 600 {}", k.display()));
    }
    if std::env::var_os(crate::env_vars::EnvVars::SSH_AUTH_SOCK).is_some()
        && let Ok(o) = process::run("ssh-add", &["-l"], None, timeout).await
        && o.success
    {
        let n = o.stdout.lines().filter(|l| !l.trim().is_empty()).count();
        return Check::ok("ssh", NAME).message(format!("{n} identity(ies) in the SSH agent"));
    }
    let listed: Vec<_> = keys.iter().map(|k| k.display().to_string()).collect();
    Check::fail(
        "ssh",
        NAME,
        format!(
            "no private key ({}) and no agent identity",
            listed.join(", ")
        ),
    )
    .hint("create one with ssh-keygen -t ed25519, or load it with ssh-add")
}

pub fn default_ssh_keys() -> Vec<PathBuf> {
    let home = std::env::var_os(crate::env_vars::EnvVars::HOME)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    ["id_ed25519", "id_ecdsa", "id_rsa"]
        .iter()
        .map(|k| home.join(".ssh").join(k))
        .collect()
}

/// VPN: the configured interface exists and/or the bastion answers on TCP.
pub async fn vpn_check(vpn: Option<&Vpn>, timeout: Duration) -> Check {
    const NAME: &str = "VPN connected";
    let Some(vpn) = vpn.filter(|v| v.interface.is_some() || v.bastion.is_some()) else {
        return Check::fail(
            "vpn",
            NAME,
            "no VPN interface or bastion configured for this environment",
        )
        .hint("set [environments.<env>.verify.vpn] interface and/or bastion in the config");
    };
    let mut seen = vec![];
    if let Some(ifname) = &vpn.interface {
        if !Path::new("/sys/class/net").join(ifname).exists() {
            return Check::fail("vpn", NAME, format!("interface {ifname} is not up"))
                .hint("connect the VPN (e.g. systemctl start openvpn-client@corp)");
        }
        seen.push(format!("interface {ifname} up"));
    }
    if let Some(addr) = &vpn.bastion {
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr.as_str())).await {
            Ok(Ok(_)) => seen.push(format!("bastion {addr} reachable")),
            Ok(Err(e)) => {
                return Check::fail("vpn", NAME, format!("bastion {addr} unreachable: {e}"))
                    .hint("connect the VPN; the bastion is only reachable through it");
            }
            Err(_) => {
                return Check::fail(
                    "vpn",
                    NAME,
                    format!("bastion {addr} timed out after {}s", timeout.as_secs_f64()),
                )
                .hint("connect the VPN; the bastion is only reachable through it");
            }
        }
    }
    Check::ok("vpn", NAME).message(seen.join(", "))
}

pub fn default_docker_socket() -> PathBuf {
    std::env::var(crate::env_vars::EnvVars::DOCKER_HOST)
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"))
}

/// A real ping of the daemon (`GET /_ping` over its socket), not `docker --version`.
pub async fn docker_check(socket: &Path, timeout: Duration) -> Check {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const NAME: &str = "Docker daemon running";
    let hint = "start it with: systemctl start docker";
    let ping = async {
        let mut s = tokio::net::UnixStream::connect(socket).await?;
        s.write_all(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
            .await?;
        let mut buf = Vec::new();
        s.take(64 * 1024).read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf).into_owned())
    };
    match tokio::time::timeout(timeout, ping).await {
        Err(_) => Check::fail(
            "docker",
            NAME,
            format!(
                "no answer on {} within {}s",
                socket.display(),
                timeout.as_secs_f64()
            ),
        )
        .hint(hint),
        Ok(Err(e)) => Check::fail(
            "docker",
            NAME,
            format!("cannot reach {}: {e}", socket.display()),
        )
        .hint(hint),
        Ok(Ok(resp)) => {
            let status = resp.lines().next().unwrap_or("").trim().to_string();
            let body = resp.split("\r\n\r\n").nth(1).unwrap_or("").trim();
            if status.split_whitespace().nth(1) == Some("200") && body.ends_with("OK") {
                Check::ok("docker", NAME).message(format!("{} answered _ping", socket.display()))
            } else {
                Check::fail(
                    "docker",
                    NAME,
                    format!("{} answered `{status}` to _ping", socket.display()),
                )
                .hint(hint)
            }
        }
    }
}

/// Variables and files the profile names are present and non-empty. Values are never shown.
pub fn credentials_check(c: &Credentials) -> Check {
    const NAME: &str = "Required credentials available";
    let mut missing = vec![];
    for v in &c.env {
        if std::env::var(v)
            .map(|s| s.trim().is_empty())
            .unwrap_or(true)
        {
            missing.push(format!("${v}"));
        }
    }
    for f in &c.files {
        if std::fs::metadata(f).map(|m| m.len() == 0).unwrap_or(true) {
            missing.push(f.display().to_string());
        }
    }
    let total = c.env.len() + c.files.len();
    if missing.is_empty() {
        Check::ok("credentials", NAME).message(format!("{total} present"))
    } else {
        Check::fail(
            "credentials",
            NAME,
            format!("missing or empty: {}", missing.join(", ")),
        )
        .hint("export the variables / create the files (from the vault), then re-run")
    }
}

/// The guide's "never deploy to production …" rules at local time `at`.
pub fn policy_checks(
    p: &Policy,
    at: chrono::DateTime<chrono::FixedOffset>,
    ticket: Option<&str>,
) -> Vec<Check> {
    let day = at.date_naive();
    let wd = Weekday::from_chrono(day.weekday());
    let mut out = vec![];
    let name = "Deploy day allowed";
    if p.freeze_fridays && wd == Weekday::Fri {
        out.push(
            Check::fail(
                "policy",
                name,
                format!("{day} is a Friday: no production deploys on Fridays"),
            )
            .hint("deploy on an allowed day, or pass --override-policy REASON"),
        );
    } else if !p.deploy_days.is_empty() && !p.deploy_days.contains(&wd) {
        out.push(
            Check::fail(
                "policy",
                name,
                format!("{day} is a {wd:?}; allowed: {:?}", p.deploy_days),
            )
            .hint("deploy on an allowed day, or pass --override-policy REASON"),
        );
    } else {
        out.push(Check::ok("policy", name).message(format!("{day} ({wd:?})")));
    }
    let name = "Not a holiday or its eve";
    let next_business = next_business_day(day);
    if let Some(h) = p.holidays.iter().find(|h| **h == day) {
        out.push(
            Check::fail("policy", name, format!("{h} is a holiday"))
                .hint("deploy after the holiday, or pass --override-policy REASON"),
        );
    } else if let Some(h) = p
        .holidays
        .iter()
        .find(|h| **h == next_business || **h == day.succ_opt().unwrap_or(day))
    {
        let long = next_business != day.succ_opt().unwrap_or(day);
        out.push(
            Check::fail(
                "policy",
                name,
                if long {
                    format!("{day} is the eve of a long weekend (holiday {h})")
                } else {
                    format!("{day} is the day before holiday {h}")
                },
            )
            .hint("deploy after the holiday, or pass --override-policy REASON"),
        );
    } else {
        out.push(Check::ok("policy", name));
    }
    if let Some(re) = &p.change_ticket {
        let name = "Change ticket present";
        match ticket.map(str::trim).filter(|t| !t.is_empty()) {
            None => out.push(
                Check::fail(
                    "policy",
                    name,
                    format!("${} is not set", p.change_ticket_env),
                )
                .hint(format!(
                    "export {}=<ticket matching {}>",
                    p.change_ticket_env,
                    re.0.as_str()
                )),
            ),
            Some(t) if re.0.is_match(t) => {
                out.push(Check::ok("policy", name).message(t.to_string()))
            }
            Some(t) => out.push(
                Check::fail(
                    "policy",
                    name,
                    format!("`{t}` does not match {}", re.0.as_str()),
                )
                .hint("use the ticket id from the change system"),
            ),
        }
    }
    out
}

/// The change system's answer for one ticket.
#[derive(Debug, serde::Deserialize)]
struct Approval {
    approved: bool,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    window_start: Option<chrono::DateTime<chrono::FixedOffset>>,
    #[serde(default)]
    window_end: Option<chrono::DateTime<chrono::FixedOffset>>,
}

/// Asks the change system whether `ticket` is approved for `environment` at `at`. Anything but
/// a clear yes inside the window fails: unreachable, unknown ticket, refused, outside the window.
pub async fn change_approval_check(
    cs: &crate::config::ChangeSystem,
    environment: &str,
    ticket: &str,
    at: chrono::DateTime<chrono::FixedOffset>,
    timeout: Duration,
) -> Check {
    let name = "Change ticket approved";
    let override_hint = "an emergency without approval: --override-policy REASON (recorded)";
    let mut url = cs.url.0.clone();
    if let Ok(mut p) = url.path_segments_mut() {
        p.pop_if_empty().push("changes").push(ticket);
    }
    url.query_pairs_mut()
        .append_pair("environment", environment);
    let mut http = crate::http::Http::new(timeout, timeout);
    let token = match cs.token() {
        Ok(t) => t,
        Err(e) => return Check::fail("policy", name, e.to_string()).hint(e.hint()),
    };
    let answer = match token {
        Some(t) => {
            http = http.with_token(t);
            http.admin_get_json::<Approval>(url.as_str()).await
        }
        None => http.get_json::<Approval>(url.as_str()).await,
    };
    let a = match answer {
        Ok(a) => a,
        Err(e) if e.status() == Some(404) => {
            return Check::fail(
                "policy",
                name,
                format!("{ticket} is unknown to the change system"),
            )
            .hint("use the ticket id the change system gave the change");
        }
        Err(e) => {
            return Check::fail(
                "policy",
                name,
                format!("the change system did not answer for {ticket}: {e}"),
            )
            .hint(format!(
                "check policy.change_system.url and its reachability; {override_hint}"
            ));
        }
    };
    if !a.approved {
        return Check::fail(
            "policy",
            name,
            format!(
                "{ticket} is not approved for {environment}{}",
                a.reason.map(|r| format!(": {r}")).unwrap_or_default()
            ),
        )
        .hint(format!("get the change approved first; {override_hint}"));
    }
    let window = match (a.window_start, a.window_end) {
        (None, None) => "any time".to_string(),
        (s, e) => format!(
            "{} – {}",
            s.map_or("…".into(), |s| s.to_rfc3339()),
            e.map_or("…".into(), |e| e.to_rfc3339())
        ),
    };
    let inside = a.window_start.is_none_or(|s| at >= s) && a.window_end.is_none_or(|e| at < e);
    if !inside {
        return Check::fail(
            "policy",
            name,
            format!(
                "{ticket} is approved for {window}, not for {}",
                at.to_rfc3339()
            ),
        )
        .hint(format!(
            "deploy inside the approved window; {override_hint}"
        ));
    }
    Check::ok("policy", name).message(format!("{ticket} approved for {environment}, {window}"))
}

fn next_business_day(d: NaiveDate) -> NaiveDate {
    let mut n = d.succ_opt().unwrap_or(d);
    while matches!(n.weekday(), chrono::Weekday::Sat | chrono::Weekday::Sun) {
        n = n.succ_opt().unwrap_or(n);
    }
    n
}

/// Role-based approvals: every role of `rule` approved by a member of its group, each role by a
/// different person, none of them the build's starter. One check per role, and one per approval
/// the rule does not ask for, so Jenkins shows exactly which approval is missing or refused.
pub fn approval_checks(
    env_name: &str,
    rule_name: &str,
    rule: Option<&BTreeMap<String, Vec<String>>>,
    approved_by: &[String],
    started_by: Option<&str>,
) -> Vec<Check> {
    let Some(rule) = rule.filter(|r| !r.is_empty()) else {
        return vec![
            Check::fail(
                "approvals",
                format!("Approval rule {rule_name}"),
                format!("environments.{env_name}.approvals.{rule_name} is not configured: nobody can approve"),
            )
            .hint(format!(
                "add [environments.{env_name}.approvals.{rule_name}] with role = [\"user\", …] lines"
            )),
        ];
    };
    let mut out = vec![];
    let mut given: Vec<(String, String)> = vec![];
    for a in approved_by {
        match a.split_once('=') {
            Some((r, u)) if !r.trim().is_empty() && !u.trim().is_empty() => {
                given.push((r.trim().to_string(), u.trim().to_string()))
            }
            _ => out.push(
                Check::fail("approvals", format!("Approval {a}"), "not ROLE=USER")
                    .hint("pass --approved-by risk-manager=rita"),
            ),
        }
    }
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for (role, group) in rule {
        let name = format!("Approval: {role}");
        let Some((_, user)) = given.iter().find(|(r, _)| r == role) else {
            out.push(
                Check::fail(
                    "approvals",
                    name,
                    format!(
                        "nobody approved as {role} (its group: {})",
                        group.join(", ")
                    ),
                )
                .hint(format!("one of {} must approve", group.join(", "))),
            );
            continue;
        };
        let check = if !group.contains(user) {
            Check::fail(
                "approvals",
                name,
                format!(
                    "{user} approved as {role} but is not in its group ({})",
                    group.join(", ")
                ),
            )
            .hint(format!("one of {} must approve", group.join(", ")))
        } else if Some(user.as_str()) == started_by {
            Check::fail(
                "approvals",
                name,
                format!("{user} started this build and cannot approve it"),
            )
            .hint("another member of the group must approve")
        } else if let Some(other) = seen.get(user) {
            Check::fail(
                "approvals",
                name,
                format!("{user} already approved as {other}: each role needs a different person"),
            )
            .hint("another member of the group must approve")
        } else {
            seen.insert(user.clone(), role.clone());
            Check::ok("approvals", name).message(format!("approved by {user}"))
        };
        out.push(check);
    }
    for (role, user) in given.iter().filter(|(r, _)| !rule.contains_key(r)) {
        out.push(
            Check::fail(
                "approvals",
                format!("Approval: {role}"),
                format!(
                    "{user} approved as {role}, a role the {rule_name} rule does not have ({})",
                    rule.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
            .hint("approve as one of the rule's roles"),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn porcelain_v2_status() {
        let text = "# branch.oid abc\n# branch.head main\n# branch.upstream origin/main\n# branch.ab +2 -3\n\
1 .M N... 100644 100644 100644 aaa bbb src/a file.rs\n\
2 R. N... 100644 100644 100644 aaa bbb R100 new.rs\told.rs\n\
u UU N... 100644 100644 100644 100644 a b c conflict.rs\n\
? notes.txt\n";
        let st = parse_git_status(text);
        assert_eq!(st.branch.as_deref(), Some("main"));
        assert_eq!(st.upstream.as_deref(), Some("origin/main"));
        assert_eq!(st.behind, 3);
        assert_eq!(st.changed, vec!["src/a file.rs", "new.rs", "conflict.rs"]);
        assert_eq!(st.untracked, vec!["notes.txt"]);
        let detached = parse_git_status("# branch.head (detached)\n");
        assert_eq!(detached.branch, None);
    }

    #[test]
    fn next_business_day_skips_weekends() {
        let fri = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        assert_eq!(
            next_business_day(fri),
            NaiveDate::from_ymd_opt(2026, 11, 30).unwrap()
        );
    }
}
