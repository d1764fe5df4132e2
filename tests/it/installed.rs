//! A host cairn installed is recognised without state: a loopback sshd presenting the host's
//! own key (the one the repository holds in `secrets/hosts/<host>/`) is refused as a stock
//! image at the handshake, before any login, with a message saying how to go on;
//! `--phases verify` re-adopts it; and a repository key unlike the pinned one is refused.

#![allow(clippy::print_stderr)] // tests say why they skip

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::sshd::{self, Sshd};

/// A fleet of one `existing` host `web1` at the sshd, whose repository holds `public` as the
/// host's own key (and a private half, which these tests never decrypt). No state.
fn fleet(dir: &Path, server: &Sshd, public: &str) {
    fs_err::write(
        dir.join("cairn.hcl"),
        format!(
            "provider \"existing\" \"mine\" {{}}\n\nhost \"web1\" {{\n  provider = \"mine\"\n  \
             address  = \"127.0.0.1:{}\"\n  flake    = \".#web1\"\n  health_check \"command\" \
             {{\n    command = \"true\"\n  }}\n}}\n",
            server.port
        ),
    )
    .unwrap();
    let keys = dir.join("secrets/hosts/web1");
    fs_err::create_dir_all(&keys).unwrap();
    fs_err::write(keys.join("ssh_host_ed25519_key"), "sealed to the admins\n").unwrap();
    fs_err::write(keys.join("ssh_host_ed25519_key.pub"), format!("{public}\n")).unwrap();
}

/// `cairn bootstrap host web1 --yes --skip-check ARGS`, failing the test if it outlives a
/// generous guard (a hang, not a slow run: nothing here asserts on time). `cairn check`
/// would stop these fleets first (no flake, an unsealed stand-in private key; for a changed
/// key, its host-key rule): the guards tested here are the ones behind it, which must hold
/// without the check too.
fn bootstrap(dir: &Path, server: &Sshd, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .current_dir(dir)
        .args(["bootstrap", "host", "web1", "--yes", "--skip-check"])
        .args(args)
        .env("NO_COLOR", "1")
        .env("CAIRN_SSH_KEY", server.client_key())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > until {
            let _ = child.kill();
            panic!("cairn bootstrap {args:?} still ran after 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

/// The rendered output on one line: the renderer wraps at 100 columns, after a space or a
/// `/`.
fn flat(text: &[u8]) -> String {
    let mut out = String::new();
    for line in String::from_utf8_lossy(text).lines() {
        if !out.is_empty() && !out.ends_with('/') {
            out.push(' ');
        }
        out.push_str(line.trim_start());
    }
    out
}

fn state(dir: &Path) -> serde_json::Value {
    let text = fs_err::read_to_string(dir.join(".cairn/state.json")).unwrap_or_default();
    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
}

#[test]
fn with_state_lost_a_machine_presenting_the_hosts_own_key_is_refused_then_readopted() {
    if !sshd::is_root() {
        eprintln!("SKIPPED: the installed system is reached as root");
        return;
    }
    let server = Sshd::start();
    let own = server.host_public_key("ed25519");
    let dir = tempfile::tempdir().unwrap();
    fleet(dir.path(), &server, &own);

    let out = bootstrap(dir.path(), &server, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = flat(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("0 of 1 hosts ok"), "{stdout}");
    assert!(stderr.contains("web1 looks installed already"), "{stderr}");
    assert!(stderr.contains("presents web1's own host key (ssh-ed25519 SHA256:"), "{stderr}");
    assert!(stderr.contains("secrets/hosts/web1/ssh_host_ed25519_key.pub"), "{stderr}");
    assert!(stderr.contains("restore the state"), "{stderr}");
    assert!(stderr.contains("`cairn bootstrap host web1 --phases verify`"), "{stderr}");
    assert!(stderr.contains("`cairn bootstrap host web1 --reinstall`"), "{stderr}");
    // Refused at the handshake: cairn never logged in, and recorded no key as the stock one.
    assert!(!server.log().contains("Accepted publickey"), "{}", server.log());
    let recorded = state(dir.path());
    assert!(recorded["hosts"]["web1"]["host_keys"]["stock"].is_null(), "{recorded}");

    // Re-adopt: verify pins the repository's key, proves it, and records it.
    let out = bootstrap(dir.path(), &server, &["--phases", "verify"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = flat(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("\nweb1  no changes  "), "{stdout}");
    let recorded = state(dir.path());
    let host = &recorded["hosts"]["web1"];
    let key = |v: &serde_json::Value| -> Option<String> {
        v.as_str().map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
    };
    let own_key = Some(own.split(' ').take(2).collect::<Vec<_>>().join(" "));
    assert_eq!(key(&host["host_keys"]["installed"][0]), own_key, "{recorded}");
    assert_eq!(key(&host["ssh_public_key"]), own_key, "{recorded}");
}

#[test]
fn a_system_carrying_cairns_install_marker_is_refused_as_a_stock_image() {
    if !sshd::is_root() {
        eprintln!("SKIPPED: needs root for the sshd and its mount namespace");
        return;
    }
    // An sshd in a mount namespace of its own, whose /var/lib holds the marker a real
    // installed system has (this machine's /var/lib is left alone).
    let unshare = Command::new("unshare").args(["--mount", "true"]).status();
    if !unshare.is_ok_and(|s| s.success()) {
        eprintln!("SKIPPED: needs unshare for the sshd's mount namespace");
        return;
    }
    let mut server = Sshd::prepare(sshd::free_port());
    let setup = "mount -t tmpfs tmpfs /var/lib && mkdir /var/lib/cairn \
                 && echo web1 > /var/lib/cairn/host && exec \"$@\"";
    let wrapper: Vec<String> =
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", setup, "sh"]
            .map(str::to_owned)
            .to_vec();
    server.launch_via(&wrapper);
    let dir = tempfile::tempdir().unwrap();
    // The repository's key is none this sshd has: only the marker tells.
    let elsewhere = tempfile::tempdir().unwrap();
    sshd::keygen(&elsewhere.path().join("unrelated"), "ed25519", "");
    let unrelated = fs_err::read_to_string(elsewhere.path().join("unrelated.pub")).unwrap();
    fleet(dir.path(), &server, unrelated.trim());
    let trusted = server.host_fingerprint("ed25519");
    let out = bootstrap(dir.path(), &server, &["--phases", "reach", "--trust-host-key", &trusted]);
    let stderr = flat(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("web1 looks installed already"), "{stderr}");
    assert!(
        stderr.contains("runs a NixOS system cairn installed for this host (/var/lib/cairn/host"),
        "{stderr}"
    );
}

#[test]
fn a_repository_key_unlike_the_pinned_installed_key_is_refused_not_repinned() {
    if !sshd::is_root() {
        eprintln!("SKIPPED: the test sshd runs as root");
        return;
    }
    let server = Sshd::start();
    let pinned = server.host_public_key("ecdsa");
    let dir = tempfile::tempdir().unwrap();
    // Someone committed another key for web1.
    fleet(dir.path(), &server, &server.host_public_key("ed25519"));
    let state = serde_json::json!({
        "schema": 1,
        "serial": 1,
        "hosts": { "web1": {
            "provider": "mine",
            "host_keys": { "installed": [pinned] },
            "ssh_public_key": pinned,
        }},
    });
    fs_err::create_dir_all(dir.path().join(".cairn")).unwrap();
    fs_err::write(dir.path().join(".cairn/state.json"), state.to_string()).unwrap();

    let out = bootstrap(dir.path(), &server, &["--phases", "keys"]);
    let stderr = flat(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the repository's host key of web1 (ssh-ed25519 SHA256:"), "{stderr}");
    assert!(stderr.contains("pinned in state (ecdsa-sha2-nistp256 SHA256:"), "{stderr}");
    assert!(stderr.contains("git log -p -- secrets/hosts/web1/ssh_host_ed25519_key.pub"));
    let after = self::state(dir.path());
    let host = &after["hosts"]["web1"];
    assert_eq!(host["host_keys"]["installed"][0].as_str(), Some(pinned.as_str()), "{after}");
    assert_eq!(host["ssh_public_key"].as_str(), Some(pinned.as_str()), "{after}");
}
