//! Remote commands that hang: against a real sshd whose every command sleeps (a hung
//! `mkfs`, `sync` or facts script looks the same from cairn's side), a bootstrap ends at the
//! deadline of the wait it is in, naming the command, the limit and the setting to raise,
//! and releases the state lock.

#![allow(clippy::print_stderr)] // tests say why they skip

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::sshd::{self, Sshd};

/// How long the test lets cairn run before calling it hung: generous, so a loaded machine
/// is never taken for a hang. Not a timing assertion: a run that ends passes.
const HANG_GUARD: Duration = Duration::from_secs(120);

/// An sshd on which every command (exec request) runs `sleep` instead.
fn hanging_sshd() -> Sshd {
    let mut server = Sshd::prepare(sshd::free_port());
    let config = server.dir().join("sshd_config");
    let mut text = fs_err::read_to_string(&config).unwrap();
    text.push_str("ForceCommand sleep 600\n");
    fs_err::write(&config, text).unwrap();
    server.launch();
    server
}

/// `cairn bootstrap host web1` in `dir`, killed (and the test failed) if it outlives the
/// guard. Returns (exit code, stdout, stderr).
fn bootstrap(dir: &Path, server: &Sshd) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .current_dir(dir)
        .args(["bootstrap", "host", "web1", "--yes"])
        .args(["--trust-host-key", &server.host_fingerprint("ed25519")])
        .env("NO_COLOR", "1")
        .env("CAIRN_SSH_KEY", server.client_key())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let until = Instant::now() + HANG_GUARD;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > until {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "cairn bootstrap still ran after {HANG_GUARD:?}: it hangs\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = child.wait_with_output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn a_bootstrap_against_an_sshd_whose_commands_hang_ends_at_the_reach_deadline() {
    if !sshd::is_root() {
        eprintln!("SKIPPED: needs root to log in to the test sshd as root");
        return;
    }
    let server = hanging_sshd();
    let dir = tempfile::tempdir().unwrap();
    fs_err::write(
        dir.path().join("cairn.hcl"),
        format!(
            "provider \"existing\" \"mine\" {{}}\n\nhost \"web1\" {{\n  provider = \"mine\"\n  \
             address  = \"127.0.0.1:{}\"\n  flake    = \".#web1\"\n  timeouts {{\n    reach = \
             \"20s\"\n  }}\n}}\n",
            server.port
        ),
    )
    .unwrap();
    crate::support::flake::write_minimal(dir.path(), &["web1"]);
    let (code, stdout, stderr) = bootstrap(dir.path(), &server);
    server.kill_sessions();
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("0 of 1 hosts ok"), "{stdout}");
    // The facts script is what hung: named as a user sees it, with the limit and the setting.
    assert!(stderr.contains("`sh -s <facts>` on root@127.0.0.1:"), "{stderr}");
    assert!(stderr.contains("did not finish within the `reach` timeout, 20s"), "{stderr}");
    assert!(stderr.contains("`timeouts { reach = \"40s\" }`"), "{stderr}");
    assert!(stderr.contains("`--timeout reach=40s`"), "{stderr}");
    assert!(stderr.contains("cairn stopped the command and closed its channel"), "{stderr}");
    // The lock was released in order (its record cleared), not left to the process's exit.
    let lock = fs_err::read_to_string(dir.path().join(".cairn/state.lock")).unwrap_or_default();
    assert_eq!(lock.trim(), "", "the state lock is still recorded as held");
}

/// The `nix-copy` strategy runs a local `nix copy` to the host: it is held to the session's
/// command limit (the copy budget) too, and stopped when it does not finish.
#[tokio::test(flavor = "multi_thread")]
async fn a_nix_copy_to_a_host_whose_commands_hang_is_stopped_at_the_copy_budget() {
    if !crate::nix::require(&["nix", "nix-store", "ssh"]) {
        return;
    }
    if !sshd::is_root() {
        eprintln!("SKIPPED: nix copy to root@127.0.0.1 needs root (sshd logs in as root)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let top = cairn::nix::StorePath::new(crate::nix::build_small_closure(tmp.path())).unwrap();
    let nix = crate::nix::nix_runner();
    let closure = nix.closure(std::slice::from_ref(&top)).await.unwrap();
    let server = hanging_sshd();
    let target = cairn::ssh::Target::new("127.0.0.1", server.port, "root");
    let policy =
        cairn::ssh::HostKeyPolicy::pinned_openssh([server.host_public_key("ed25519")]).unwrap();
    let limit = cairn::ssh::TimeLimit {
        after: Duration::from_secs(5),
        name: "the `copy` budget, 5s".into(),
        raise: "`--timeout copy=10s`".into(),
    };
    let options = cairn::ssh::ConnectOptions { command_limit: limit, ..Default::default() };
    let auth = cairn::ssh::Auth::KeyFile(server.client_key());
    let session = cairn::ssh::Session::connect(&target, &auth, &policy, &options).await.unwrap();
    let job = cairn::bootstrap::copy::CopyJob {
        strategy: cairn::bootstrap::copy::Strategy::NixCopy,
        closure: &closure,
        toplevel: &top,
        root: &tmp.path().join("mnt").display().to_string(),
        nix: &nix,
        identity: &server.client_key(),
    };
    let copy = cairn::bootstrap::copy::copy_closure(&session, &job);
    let err = match tokio::time::timeout(HANG_GUARD, copy).await {
        Ok(result) => result.unwrap_err().to_string(),
        Err(_) => panic!("the nix copy still ran after {HANG_GUARD:?}: it hangs"),
    };
    server.kill_sessions();
    assert!(err.starts_with("`nix copy` to root@127.0.0.1:"), "{err}");
    assert!(err.ends_with("did not finish within the `copy` budget, 5s"), "{err}");
}
