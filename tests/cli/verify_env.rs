//! verify_env: every check has a test where it passes and one where it fails.

use crate::support::{Run, config, git, run, run_in};
use deploykit::verify::parse_version;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

// ---------- version parsing: real outputs ----------

#[test]
fn versions_parse_from_real_tool_outputs() {
    let table: &[(&str, [u64; 3])] = &[
        ("Docker version 28.2.2, build e6534b4", [28, 2, 2]),
        (
            "Docker version 24.0.5, build 24.0.5-0ubuntu1~22.04.1",
            [24, 0, 5],
        ),
        ("Docker version 20.10.24+dfsg1, build 297e128", [20, 10, 24]),
        (
            "ansible [core 2.15.3]\n  config file = None\n  python version = 3.11.2",
            [2, 15, 3],
        ),
        (
            "ansible 2.9.27\n  config file = /etc/ansible/ansible.cfg",
            [2, 9, 27],
        ),
        ("ansible [core 2.17.0.dev0]", [2, 17, 0]),
        (
            "Client Version: v1.28.2\nKustomize Version: v5.0.4-0.20230601165947-6ce0bf390ce3",
            [1, 28, 2],
        ),
        (
            "Client Version: v1.32.4-dispatcher\nKustomize Version: v5.5.0",
            [1, 32, 4],
        ),
        (
            r#"Client Version: version.Info{Major:"1", Minor:"32+", GitVersion:"v1.32.4-dispatcher"}"#,
            [1, 32, 0],
        ),
        (
            r#"Client Version: version.Info{Major:"1", Minor:"27", GitVersion:"v1.27.3"}"#,
            [1, 27, 0],
        ),
        (
            "psql (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)",
            [15, 18, 0],
        ),
        (
            "psql (PostgreSQL) 16.4 (Ubuntu 16.4-0ubuntu0.24.04.2)",
            [16, 4, 0],
        ),
        ("psql (PostgreSQL) 9.6.24", [9, 6, 24]),
        ("jq-1.6", [1, 6, 0]),
        ("jq-1.7.1", [1, 7, 1]),
        ("git version 2.47.3", [2, 47, 3]),
        ("git version 2.39.3 (Apple Git-145)", [2, 39, 3]),
        ("git version 2.40.1.windows.1", [2, 40, 1]),
        (
            "curl 7.88.1 (x86_64-pc-linux-gnu) libcurl/7.88.1 OpenSSL/3.0.15 zlib/1.2.13",
            [7, 88, 1],
        ),
        ("curl 8.5.0 (x86_64-pc-linux-gnu) libcurl/8.5.0", [8, 5, 0]),
        ("GNU Wget 1.21.3 built on linux-gnu.", [1, 21, 3]),
        (
            "OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.15 3 Sep 2024",
            [9, 2, 0],
        ),
        (
            "HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/",
            [2, 6, 12],
        ),
        ("Terraform v1.5.7\non linux_amd64", [1, 5, 7]),
        (
            r#"version.BuildInfo{Version:"v3.12.3", GitCommit:"3a31588ad33fe3b89af5a2a54ee1d25bfe6eaa5e"}"#,
            [3, 12, 3],
        ),
        ("Python 3.11.7", [3, 11, 7]),
        ("v20.20.2", [20, 20, 2]),
        ("1.28", [1, 28, 0]),
        ("kubectl 1.28+", [1, 28, 0]),
        ("tool 1.2.3+build.5", [1, 2, 3]),
        ("tool 4.5.6-rc1", [4, 5, 6]),
        ("V2.0.1", [2, 0, 1]),
        ("redis-cli 7.0.15", [7, 0, 15]),
        ("rsync  version 3.2.7  protocol version 31", [3, 2, 7]),
        ("cargo 1.95.0 (f2d3ce0bd 2026-03-21)", [1, 95, 0]),
        ("nginx version: nginx/1.22.1", [1, 22, 1]),
        (
            "prometheus, version 2.42.0+ds (branch: debian/sid)",
            [2, 42, 0],
        ),
    ];
    assert!(table.len() >= 30);
    for (text, want) in table {
        assert_eq!(parse_version(text), Some(*want), "parsing `{text}`");
    }
    for text in ["", "command not found", "x86_64", "build e6534b4"] {
        assert_eq!(parse_version(text), None, "`{text}` has no version");
    }
}

// ---------- helpers ----------

fn write_exe(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// A repo with one commit on `main`.
fn repo(root: &Path, name: &str) -> PathBuf {
    let d = root.join(name);
    std::fs::create_dir_all(&d).unwrap();
    git(&d, &["init", "-q", "-b", "main"]);
    std::fs::write(d.join("a.txt"), "a\n").unwrap();
    git(&d, &["add", "."]);
    git(&d, &["commit", "-qm", "first"]);
    d
}

fn verify(cfg_extra: &str, args: &[&str], envs: &[(&str, &str)]) -> Run {
    let (_d, p) = config(&format!("[environments.production.verify]\n{cfg_extra}"));
    let mut a = vec![
        "-e",
        "production",
        "--config",
        p.to_str().unwrap(),
        "--format",
        "json",
    ];
    a.extend_from_slice(args);
    run("verify_env", &a, envs)
}

fn statuses(r: &Run) -> Vec<(String, String, String)> {
    let v: serde_json::Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", r.stdout, r.stderr));
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
                c["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn status_of(r: &Run, name: &str) -> (String, String) {
    statuses(r)
        .into_iter()
        .find(|(n, _, _)| n == name)
        .map(|(_, s, m)| (s, m))
        .unwrap_or_else(|| panic!("no check `{name}` in {}", r.stdout))
}

// ---------- git ----------

#[test]
fn git_clean_dirty_untracked() {
    let tmp = tempfile::tempdir().unwrap();
    let r = repo(tmp.path(), "r");
    let rp = r.to_str().unwrap();
    let run_git = || verify("checks = [\"git\"]\n", &["--repo", rp], &[]);
    assert_eq!(status_of(&run_git(), "Git repository clean").0, "ok");
    std::fs::write(r.join("new.txt"), "x").unwrap();
    let out = run_git();
    let (s, m) = status_of(&out, "Git repository clean");
    assert_eq!(s, "fail");
    assert!(m.contains("1 untracked") && m.contains("new.txt"), "{m}");
    assert_eq!(out.code, 1);
    std::fs::remove_file(r.join("new.txt")).unwrap();
    std::fs::write(r.join("a.txt"), "changed\n").unwrap();
    let (s, m) = status_of(&run_git(), "Git repository clean");
    assert_eq!(s, "fail");
    assert!(m.contains("1 uncommitted"), "{m}");
    // Not a repository at all.
    let (s, m) = status_of(
        &verify(
            "checks = [\"git\"]\n",
            &["--repo", tmp.path().to_str().unwrap()],
            &[],
        ),
        "Git repository clean",
    );
    assert_eq!(s, "fail");
    assert!(m.contains("not a git repository"), "{m}");
}

#[test]
fn git_behind_upstream_and_no_upstream() {
    let tmp = tempfile::tempdir().unwrap();
    let origin = repo(tmp.path(), "origin");
    let clone = tmp.path().join("clone");
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            origin.to_str().unwrap(),
            clone.to_str().unwrap(),
        ],
    );
    let cp = clone.to_str().unwrap();
    let (s, _) = status_of(
        &verify("checks = [\"git\"]\n", &["--repo", cp], &[]),
        "Latest code pulled",
    );
    assert_eq!(s, "ok");
    // The remote moves on; without --fetch we judge the last fetch, with it we see the gap.
    std::fs::write(origin.join("b.txt"), "b\n").unwrap();
    git(&origin, &["add", "."]);
    git(&origin, &["commit", "-qm", "second"]);
    let (s, m) = status_of(
        &verify("checks = [\"git\"]\n", &["--repo", cp, "--fetch"], &[]),
        "Latest code pulled",
    );
    assert_eq!(s, "fail");
    assert!(m.contains("1 commit(s) behind origin/main"), "{m}");
    // A branch without upstream: said so, not guessed.
    git(&clone, &["switch", "-q", "-c", "feature"]);
    let out = verify(
        "checks = [\"git\"]\nexpected_branch = \"main\"\n",
        &["--repo", cp],
        &[],
    );
    let (s, m) = status_of(&out, "Latest code pulled");
    assert_eq!(s, "warn");
    assert!(m.contains("no upstream"), "{m}");
    let (s, m) = status_of(&out, "On branch main");
    assert_eq!(s, "fail");
    assert!(m.contains("checked out: feature"), "{m}");
}

/// A Jenkins workspace: a detached HEAD at the built commit, the pipeline's reports and dist in
/// the tree, the branch and tag known only from Jenkins' variables. verify_env passes it (twice in
/// a row: its own report does not dirty the tree) and still fails each injected fault: a real
/// change, an old commit of the branch, another branch, no variable to tell, a tag off the branch.
#[test]
fn a_jenkins_workspace_detached_head_with_build_output_passes_and_faults_still_fail() {
    let tmp = tempfile::tempdir().unwrap();
    let origin = repo(tmp.path(), "origin");
    let ws = tmp.path().join("workspace");
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            origin.to_str().unwrap(),
            ws.to_str().unwrap(),
        ],
    );
    let head = git(&ws, &["rev-parse", "HEAD"]);
    git(&ws, &["checkout", "-q", "--detach", &head]);
    let wp = ws.to_str().unwrap();
    let cfg = "checks = [\"git\"]\nexpected_branch = \"main\"\n";
    let jenkins = [("BRANCH_NAME", "main"), ("GIT_BRANCH", "origin/main")];
    let report = ws.join("reports/verify_env.json");
    let stage = |envs: &[(&str, &str)]| {
        let r = verify(
            cfg,
            &["--repo", wp, "--fetch", "--build-output", "reports,dist"],
            envs,
        );
        std::fs::create_dir_all(report.parent().unwrap()).unwrap();
        std::fs::write(&report, &r.stdout).unwrap();
        r
    };
    std::fs::create_dir_all(ws.join("dist/1.2.0")).unwrap();
    std::fs::write(ws.join("dist/1.2.0/SHA256SUMS"), "x\n").unwrap();
    for _ in 0..2 {
        let r = stage(&jenkins);
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
        let (_, m) = status_of(&r, "Git repository clean");
        assert!(m.contains("build output ignored"), "{m}");
        let (_, m) = status_of(&r, "On branch main");
        assert!(m.contains("detached HEAD; the CI built main"), "{m}");
        let (_, m) = status_of(&r, "Latest code pulled");
        assert!(m.contains("up to date with origin/main"), "{m}");
    }
    // GIT_BRANCH alone (a plain pipeline job) is enough.
    assert_eq!(stage(&[("GIT_BRANCH", "origin/main")]).code, 0);

    // Injected: a real change beside the build output.
    std::fs::write(ws.join("a.txt"), "changed\n").unwrap();
    let r = stage(&jenkins);
    let (s, m) = status_of(&r, "Git repository clean");
    assert_eq!((s.as_str(), r.code), ("fail", 1), "{m}");
    assert!(
        m.contains("a.txt") && !m.contains("reports") && !m.contains("dist"),
        "{m}"
    );
    git(&ws, &["checkout", "-q", "--", "a.txt"]);

    // Injected: the branch moved on after the build checked out its commit.
    std::fs::write(origin.join("b.txt"), "b\n").unwrap();
    git(&origin, &["add", "."]);
    git(&origin, &["commit", "-qm", "second"]);
    let r = stage(&jenkins);
    let (s, m) = status_of(&r, "Latest code pulled");
    assert_eq!(s, "fail", "{m}");
    assert!(
        m.contains("1 commit(s) behind origin/main") && m.contains("detached HEAD"),
        "{m}"
    );
    git(&ws, &["checkout", "-q", "--detach", "origin/main"]);

    // Injected: Jenkins built another branch; and nothing says which branch at all.
    let r = stage(&[("BRANCH_NAME", "feature")]);
    let (s, m) = status_of(&r, "On branch main");
    assert_eq!(s, "fail", "{m}");
    assert!(m.contains("the CI built feature"), "{m}");
    let r = stage(&[]);
    let (s, m) = status_of(&r, "On branch main");
    assert_eq!(s, "fail", "{m}");
    assert!(m.contains("no BRANCH_NAME or GIT_BRANCH"), "{m}");
    assert_eq!(status_of(&r, "Latest code pulled").0, "warn");

    // A release tag on main passes; one on a side branch fails.
    git(&origin, &["tag", "v1.2.0"]);
    git(&ws, &["fetch", "-q", "--tags"]);
    git(&ws, &["checkout", "-q", "--detach", "v1.2.0"]);
    let tag = [("BRANCH_NAME", "v1.2.0"), ("TAG_NAME", "v1.2.0")];
    let r = stage(&tag);
    let (s, m) = status_of(&r, "On branch main");
    assert_eq!(s, "ok", "{m}");
    assert!(
        m.contains("tag v1.2.0 (detached HEAD) is on origin/main"),
        "{m}"
    );
    // Jenkins names a tag job's branch after the tag: the checkout is compared with the tag.
    let (s, m) = status_of(&r, "Latest code pulled");
    assert!(
        s == "ok" && m.contains("up to date with refs/tags/v1.2.0"),
        "{s}: {m}"
    );
    git(&origin, &["switch", "-q", "-c", "side"]);
    std::fs::write(origin.join("c.txt"), "c\n").unwrap();
    git(&origin, &["add", "."]);
    git(&origin, &["commit", "-qm", "side"]);
    git(&origin, &["tag", "v9.9.9"]);
    git(&ws, &["fetch", "-q", "--tags"]);
    git(&ws, &["checkout", "-q", "--detach", "v9.9.9"]);
    let r = stage(&[("BRANCH_NAME", "v9.9.9"), ("TAG_NAME", "v9.9.9")]);
    let (s, m) = status_of(&r, "On branch main");
    assert_eq!(s, "fail", "{m}");
    assert!(m.contains("tag v9.9.9 is not on origin/main"), "{m}");
}

// ---------- tools ----------

#[test]
fn tools_found_old_missing_and_hung() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path();
    write_exe(bin, "docker", "echo 'Docker version 28.2.2, build e6534b4'");
    write_exe(bin, "kubectl", "echo 'Client Version: v1.27.3'");
    write_exe(bin, "ansible", "echo 'ansible [core 2.15.3]'");
    write_exe(bin, "hangs", "sleep 30");
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let cfg = r#"checks = ["tools"]
check_timeout = "1s"
tools = [
  { name = "docker", min = "24" },
  { name = "kubectl", min = "1.28", args = ["version", "--client"], install_hint = "see kubernetes.io" },
  { name = "ansible", min = "2.15" },
  { name = "nosuchtool", min = "1.0", install_hint = "apt-get install nosuchtool" },
  { name = "hangs", min = "1.0" },
  { name = "nosuch|docker" },
]
"#;
    let r = verify(cfg, &[], &[("PATH", &path)]);
    assert_eq!(r.code, 1);
    assert_eq!(status_of(&r, "Required tool docker (>= 24.0)").0, "ok");
    let (s, m) = status_of(&r, "Required tool kubectl (>= 1.28)");
    assert_eq!(s, "fail");
    assert!(m.contains("1.27.3 is older than required 1.28"), "{m}");
    assert_eq!(status_of(&r, "Required tool ansible (>= 2.15)").0, "ok");
    let (s, m) = status_of(&r, "Required tool nosuchtool (>= 1.0)");
    assert_eq!(s, "fail");
    assert!(m.contains("not found on PATH"), "{m}");
    assert!(r.stdout.contains("install it: apt-get install nosuchtool"));
    let (s, m) = status_of(&r, "Required tool hangs (>= 1.0)");
    assert_eq!(s, "fail");
    assert!(m.contains("timed out after 1s"), "{m}");
    assert_eq!(status_of(&r, "Required tool nosuch|docker").0, "ok");
    // A hung tool cannot hang the run: total time is bounded by the check timeout, not the
    // tool's 30 s sleep.
    assert!(r.elapsed.as_secs() < 10, "took {:?}", r.elapsed);
}

// ---------- ssh ----------

#[test]
fn ssh_key_safe_unsafe_and_absent() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("id_ed25519");
    std::fs::write(&key, "-----BEGIN OPENSSH PRIVATE KEY-----\n").unwrap();
    let cfg = format!("checks = [\"ssh\"]\nssh_keys = [\"{}\"]\n", key.display());
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let no_agent = [("SSH_AUTH_SOCK", "")];
    assert_eq!(
        status_of(&verify(&cfg, &[], &no_agent), "SSH keys configured").0,
        "ok"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = verify(&cfg, &[], &no_agent);
    let (s, m) = status_of(&r, "SSH keys configured");
    assert_eq!(s, "fail");
    assert!(m.contains("unsafe mode 0644"), "{m}");
    assert!(r.stdout.contains("chmod 600"));
    std::fs::remove_file(&key).unwrap();
    let r = verify(&cfg, &[], &[("SSH_AUTH_SOCK", "/nonexistent.sock")]);
    let (s, m) = status_of(&r, "SSH keys configured");
    assert_eq!(s, "fail");
    assert!(m.contains("no private key"), "{m}");
}

// ---------- vpn ----------

#[test]
fn vpn_interface_and_bastion() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = listener.local_addr().unwrap();
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let ok = verify(
        &format!("checks = [\"vpn\"]\nvpn = {{ interface = \"lo\", bastion = \"{up}\" }}\n"),
        &[],
        &[],
    );
    assert_eq!(status_of(&ok, "VPN connected").0, "ok");
    let r = verify(
        &format!("checks = [\"vpn\"]\nvpn = {{ bastion = \"{down}\" }}\n"),
        &[],
        &[],
    );
    let (s, m) = status_of(&r, "VPN connected");
    assert_eq!(s, "fail");
    assert!(m.contains("unreachable"), "{m}");
    let r = verify(
        "checks = [\"vpn\"]\nvpn = { interface = \"tun-nope0\" }\n",
        &[],
        &[],
    );
    let (s, m) = status_of(&r, "VPN connected");
    assert_eq!(s, "fail");
    assert!(m.contains("interface tun-nope0 is not up"), "{m}");
    let r = verify("checks = [\"vpn\"]\n", &[], &[]);
    assert_eq!(status_of(&r, "VPN connected").0, "fail");
    drop(listener);
}

// ---------- docker ----------

/// A unix-socket HTTP server standing in for the Docker daemon.
fn fake_docker(path: &Path, response: &'static str) -> std::thread::JoinHandle<()> {
    let l = std::os::unix::net::UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut s, _)) = l.accept() {
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).unwrap_or(0);
            assert!(String::from_utf8_lossy(&buf[..n]).starts_with("GET /_ping HTTP/1.1"));
            let _ = s.write_all(response.as_bytes());
        }
    })
}

#[test]
fn docker_ping_over_the_socket() {
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("docker.sock");
    let h = fake_docker(
        &sock,
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nApi-Version: 1.45\r\n\r\nOK",
    );
    let cfg = format!(
        "checks = [\"docker\"]\ndocker_socket = \"{}\"\n",
        sock.display()
    );
    assert_eq!(
        status_of(&verify(&cfg, &[], &[]), "Docker daemon running").0,
        "ok"
    );
    h.join().unwrap();
    std::fs::remove_file(&sock).unwrap();
    let h = fake_docker(
        &sock,
        "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n",
    );
    let (s, m) = status_of(&verify(&cfg, &[], &[]), "Docker daemon running");
    assert_eq!(s, "fail");
    assert!(m.contains("500"), "{m}");
    h.join().unwrap();
    std::fs::remove_file(&sock).unwrap();
    let r = verify(&cfg, &[], &[]);
    let (s, m) = status_of(&r, "Docker daemon running");
    assert_eq!(s, "fail");
    assert!(m.contains("cannot reach"), "{m}");
    assert!(r.stdout.contains("systemctl start docker"));
}

#[test]
fn docker_check_uses_the_real_default_socket_path() {
    // The real code path without a config override: DOCKER_HOST picks the socket.
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("d.sock");
    let h = fake_docker(&sock, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK");
    let host = format!("unix://{}", sock.display());
    let r = verify("checks = [\"docker\"]\n", &[], &[("DOCKER_HOST", &host)]);
    assert_eq!(
        status_of(&r, "Docker daemon running").0,
        "ok",
        "{}",
        r.stdout
    );
    h.join().unwrap();
}

// ---------- credentials ----------

#[test]
fn credentials_present_or_named_missing_without_values() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("kubeconfig");
    std::fs::write(&f, "apiVersion: v1\n").unwrap();
    let cfg = format!(
        "checks = [\"credentials\"]\ncredentials = {{ env = [\"DK_SECRET_A\"], files = [\"{}\"] }}\n",
        f.display()
    );
    let r = verify(&cfg, &[], &[("DK_SECRET_A", "value-must-not-print")]);
    assert_eq!(status_of(&r, "Required credentials available").0, "ok");
    assert!(!r.all().contains("value-must-not-print"));
    std::fs::write(&f, "").unwrap();
    let r = verify(&cfg, &[], &[]);
    let (s, m) = status_of(&r, "Required credentials available");
    assert_eq!(s, "fail");
    assert!(
        m.contains("$DK_SECRET_A") && m.contains("kubeconfig"),
        "{m}"
    );
}

// ---------- policy ----------

const POLICY: &str = "[environments.production.policy]\ndeploy_days = [\"Tue\", \"Thu\"]\nfreeze_fridays = true\nholidays = [\"2026-12-25\", \"2027-01-18\"]\nchange_ticket = \"^CHG-[0-9]{6}$\"\n";

fn policy_run(at: &str, ticket: Option<&str>, extra: &[&str]) -> Run {
    policy_run_with("", &[], at, ticket, extra)
}

/// The policy check alone, with more policy fields (`policy_extra`) and variables (`envs`).
fn policy_run_with(
    policy_extra: &str,
    envs: &[(&str, &str)],
    at: &str,
    ticket: Option<&str>,
    extra: &[&str],
) -> Run {
    let (_d, p) = config(&format!(
        "{POLICY}{policy_extra}[environments.production.verify]\nchecks = [\"policy\"]\n"
    ));
    let mut args = vec![
        "-e",
        "production",
        "--config",
        p.to_str().unwrap(),
        "--format",
        "json",
        "--at",
        at,
    ];
    args.extend_from_slice(extra);
    let mut envs = envs.to_vec();
    envs.extend(ticket.map(|t| ("CHANGE_TICKET", t)));
    run("verify_env", &args, &envs)
}

#[test]
fn policy_tuesday_with_ticket_passes() {
    let r = policy_run("2026-12-01T06:00:00+00:00", Some("CHG-123456"), &[]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(statuses(&r).iter().all(|(_, s, _)| s == "ok"));
}

#[test]
fn policy_friday_is_refused() {
    let r = policy_run("2026-11-27T06:00:00+00:00", Some("CHG-123456"), &[]);
    assert_eq!(r.code, 1);
    let (s, m) = status_of(&r, "Deploy day allowed");
    assert_eq!(s, "fail");
    assert!(m.contains("Friday"), "{m}");
}

#[test]
fn policy_wednesday_not_an_allowed_day() {
    let r = policy_run("2026-12-02T06:00:00+00:00", Some("CHG-123456"), &[]);
    let (s, m) = status_of(&r, "Deploy day allowed");
    assert_eq!(s, "fail");
    assert!(m.contains("allowed: [Tue, Thu]"), "{m}");
}

#[test]
fn policy_holiday_eve_and_long_weekend() {
    // Thu 2026-12-24: the day before Christmas.
    let r = policy_run("2026-12-24T06:00:00+00:00", Some("CHG-123456"), &[]);
    let (s, m) = status_of(&r, "Not a holiday or its eve");
    assert_eq!(s, "fail");
    assert!(m.contains("day before holiday 2026-12-25"), "{m}");
    // Thu 2027-01-14 is fine; the Friday before Monday 2027-01-18 is a long-weekend eve.
    let r = policy_run("2027-01-15T06:00:00+00:00", Some("CHG-123456"), &[]);
    let (_, m) = status_of(&r, "Not a holiday or its eve");
    assert!(m.contains("eve of a long weekend"), "{m}");
    let r = policy_run("2026-12-25T06:00:00+00:00", Some("CHG-123456"), &[]);
    assert!(
        status_of(&r, "Not a holiday or its eve")
            .1
            .contains("is a holiday")
    );
}

#[test]
fn policy_change_ticket_missing_or_malformed() {
    let r = policy_run("2026-12-01T06:00:00+00:00", None, &[]);
    let (s, m) = status_of(&r, "Change ticket present");
    assert_eq!(s, "fail");
    assert!(m.contains("$CHANGE_TICKET is not set"), "{m}");
    let r = policy_run("2026-12-01T06:00:00+00:00", Some("JIRA-1"), &[]);
    let (s, m) = status_of(&r, "Change ticket present");
    assert_eq!(s, "fail");
    assert!(m.contains("does not match"), "{m}");
}

/// A stand-in change system on a local port: `GET /changes/<ticket>` answers from a table and
/// requires the bearer token; every other ticket is unknown (404).
fn change_system() -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = vec![0u8; 4096];
            let n = stream.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let path = req.split_whitespace().nth(1).unwrap_or("").to_string();
            let authorized = req.contains("authorization: Bearer chg-s3cret-token")
                || req.contains("Authorization: Bearer chg-s3cret-token");
            let (status, body) = if !authorized {
                ("401 Unauthorized", r#"{"error":"no token"}"#)
            } else if path.starts_with("/changes/CHG-100001?environment=production") {
                (
                    "200 OK",
                    r#"{"approved":true,"window_start":"2026-11-24T05:00:00Z","window_end":"2026-11-24T07:00:00Z"}"#,
                )
            } else if path.starts_with("/changes/CHG-100002?") {
                (
                    "200 OK",
                    r#"{"approved":false,"reason":"CAB rejected: no rollback plan"}"#,
                )
            } else {
                ("404 Not Found", r#"{"error":"unknown ticket"}"#)
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

/// The change system decides, when one is configured: approved inside its window passes;
/// refused, outside the window, unknown, no ticket, or the system unreachable each fails (and an
/// override turns them into warnings, recorded). Its token never appears in the output.
#[test]
fn a_configured_change_system_approves_or_refuses_the_ticket() {
    let url = change_system();
    let run_with = |url: &str, at: &str, ticket: Option<&str>, extra: &[&str]| {
        let system = format!("change_system = {{ url = \"{url}\", token_env = \"CHG_TOKEN\" }}\n");
        let r = policy_run_with(
            &system,
            &[("CHG_TOKEN", "chg-s3cret-token")],
            at,
            ticket,
            extra,
        );
        assert!(!r.stdout.contains("chg-s3cret-token") && !r.stderr.contains("chg-s3cret-token"));
        r
    };
    let tuesday = "2026-11-24T06:00:00+00:00";
    let r = run_with(&url, tuesday, Some("CHG-100001"), &[]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let (s, m) = status_of(&r, "Change ticket approved");
    assert_eq!(s, "ok", "{m}");
    assert!(m.contains("CHG-100001 approved for production"), "{m}");
    let cases = [
        (
            "2026-11-26T06:00:00+00:00",
            Some("CHG-100001"),
            "is approved for 2026-11-24T05:00:00+00:00",
        ),
        (
            tuesday,
            Some("CHG-100002"),
            "not approved for production: CAB rejected: no rollback plan",
        ),
        (
            tuesday,
            Some("CHG-999999"),
            "CHG-999999 is unknown to the change system",
        ),
    ];
    for (at, ticket, want) in cases {
        let r = run_with(&url, at, ticket, &[]);
        let (s, m) = status_of(&r, "Change ticket approved");
        assert_eq!((s.as_str(), r.code), ("fail", 1), "{ticket:?}: {m}");
        assert!(m.contains(want), "{ticket:?}: {m}");
    }
    // A malformed ticket is refused by the pattern and not asked about.
    let r = run_with(&url, tuesday, Some("CHG-1"), &[]);
    assert_eq!(status_of(&r, "Change ticket present").0, "fail");
    assert!(!r.stdout.contains("Change ticket approved"), "{}", r.stdout);
    // Injected: the change system is down — missing data never reads as approved.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let r = run_with(&down, tuesday, Some("CHG-100001"), &[]);
    let (s, m) = status_of(&r, "Change ticket approved");
    assert_eq!(s, "fail", "{m}");
    assert!(m.contains("did not answer"), "{m}");
    // An emergency: the override turns the refusal into a warning, with the reason.
    let r = run_with(
        &url,
        tuesday,
        Some("CHG-100002"),
        &["--override-policy", "INC-7 market outage"],
    );
    assert_eq!(r.code, 0, "{}", r.stdout);
    let (s, m) = status_of(&r, "Change ticket approved");
    assert_eq!(s, "warn");
    assert!(m.contains("overridden: INC-7 market outage"), "{m}");
}

#[test]
fn policy_override_turns_fail_into_warn_with_reason() {
    let r = policy_run(
        "2026-11-27T06:00:00+00:00",
        Some("CHG-123456"),
        &["--override-policy", "hotfix INC-42 approved by CTO"],
    );
    assert_eq!(r.code, 0, "{}", r.stdout);
    let (s, m) = status_of(&r, "Deploy day allowed");
    assert_eq!(s, "warn");
    assert!(
        m.contains("overridden: hotfix INC-42 approved by CTO"),
        "{m}"
    );
    assert!(
        r.stdout
            .contains("deployment policy overridden: hotfix INC-42")
    );
}

// ---------- whole runs ----------

#[test]
fn human_output_is_the_guides_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let r = repo(tmp.path(), "r");
    let (_d, p) = config(
        "[environments.local.verify]\nchecks = [\"git\", \"credentials\"]\ncredentials = { env = [\"DK_C\"] }\n",
    );
    let out = run_in(
        "verify_env",
        &["--config", p.to_str().unwrap()],
        &[("DK_C", "1")],
        Some(&r),
    );
    assert_eq!(out.code, 0, "{}", out.all());
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "[OK] Git repository clean");
    assert!(lines[1].starts_with("[WARN] Latest code pulled — the current branch has no upstream"));
    assert_eq!(lines[2], "[OK] Required credentials available — 1 present");
    assert!(lines[3].starts_with("verify_env local: 2 ok, 0 failed, 1 warnings, 0 skipped in "));
}

#[test]
fn default_local_profile_runs_against_this_machine() {
    // The shipped config's local profile: tools and credentials.
    let root = crate::support::repo_root();
    let r = run_in(
        "verify_env",
        &["--config", "config/deploy.toml", "--format", "json"],
        &[
            ("DATABASE_URL", "postgres://postgres@127.0.0.1/postgres"),
            ("DEPLOYKIT_ADMIN_TOKEN", "local-token"),
        ],
        Some(&root),
    );
    let names: Vec<_> = statuses(&r).into_iter().map(|(n, _, _)| n).collect();
    assert!(
        names.iter().any(|n| n.starts_with("Required tool git")),
        "{names:?}"
    );
    assert!(names.contains(&"Required credentials available".to_string()));
}

// ---------- approvals ----------

/// Guide §6: a hotfix needs a senior developer, a risk manager and the CTO — each a member of
/// its role's group, three different people, none of them the build's starter. Each refusal
/// names the role and why; a rule the config lacks is a failure, never a pass.
#[test]
fn role_based_approvals_each_role_by_its_group_all_distinct_never_the_starter() {
    let cfg = "[environments.production.approvals.hotfix]\nsenior-developer = [\"sam\", \"sue\"]\n\
               risk-manager = [\"rita\", \"sue\"]\ncto = [\"carol\"]\n";
    let (_d, p) = config(cfg);
    let approve = |by: &str, starter: &str| {
        run(
            "verify_env",
            &[
                "-e",
                "production",
                "--config",
                p.to_str().unwrap(),
                "--format",
                "json",
                "--only",
                "approvals",
                "--approval-rule",
                "hotfix",
                "--approved-by",
                by,
                "--started-by",
                starter,
            ],
            &[],
        )
    };
    let r = approve("senior-developer=sam,risk-manager=rita,cto=carol", "dave");
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(
        status_of(&r, "Approval: risk-manager"),
        ("ok".into(), "approved by rita".into())
    );
    for (by, starter, role, why) in [
        (
            "senior-developer=sam,risk-manager=dave,cto=carol",
            "x",
            "risk-manager",
            "dave approved as risk-manager but is not in its group (rita, sue)",
        ),
        (
            "senior-developer=sam,risk-manager=rita,cto=carol",
            "carol",
            "cto",
            "carol started this build and cannot approve it",
        ),
        (
            "senior-developer=sue,risk-manager=sue,cto=carol",
            "x",
            "senior-developer",
            "sue already approved as risk-manager",
        ),
        (
            "senior-developer=sam,cto=carol",
            "x",
            "risk-manager",
            "nobody approved as risk-manager",
        ),
        (
            "senior-developer=sam,risk-manager=rita,cto=carol,auditor=al",
            "x",
            "auditor",
            "a role the hotfix rule does not have",
        ),
    ] {
        let r = approve(by, starter);
        assert_eq!(r.code, 1, "{by}: {}", r.stdout);
        let (status, message) = status_of(&r, &format!("Approval: {role}"));
        assert!(status == "fail" && message.contains(why), "{by}: {message}");
    }
    // No such rule in the config: nobody can approve.
    let r = run(
        "verify_env",
        &[
            "-e",
            "production",
            "--config",
            p.to_str().unwrap(),
            "--format",
            "json",
            "--only",
            "approvals",
            "--approval-rule",
            "release",
            "--approved-by",
            "cto=carol",
        ],
        &[],
    );
    assert_eq!(r.code, 1);
    assert!(
        status_of(&r, "Approval rule release")
            .1
            .contains("is not configured")
    );
}

/// `expected_branch` as a list: main and every hotfix/* branch deploy; others do not.
#[test]
fn expected_branch_patterns_admit_hotfix_branches_on_a_detached_head() {
    let d = tempfile::tempdir().unwrap();
    let r = repo(d.path(), "ws");
    git(&r, &["checkout", "-q", "--detach"]);
    let (_c, p) = config(
        "[environments.production.verify]\nchecks = [\"git\"]\nexpected_branch = [\"main\", \"hotfix/*\"]\n",
    );
    for (branch, want) in [
        ("hotfix/order-rounding", "ok"),
        ("main", "ok"),
        ("feature/x", "fail"),
        ("hotfix/", "fail"),
    ] {
        let r = run_in(
            "verify_env",
            &[
                "-e",
                "production",
                "--config",
                p.to_str().unwrap(),
                "--format",
                "json",
                "--only",
                "git",
            ],
            &[("BRANCH_NAME", branch)],
            Some(&r),
        );
        assert_eq!(
            status_of(&r, "On branch main or hotfix/*").0,
            want,
            "{branch}: {}",
            r.stdout
        );
    }
}
