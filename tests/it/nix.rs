//! The nix runner against Debian's real nix-bin: build the VM tests' system flake offline,
//! read its closure, stream it with tar | zstd into an empty root, and register it there with
//! the closure's own `nix-store --load-db`, as the install phase does on a target.
//!
//! Needs nix, the tools of `.ci/install` and (for the kernel) a Debian mirror or a cached
//! kernel package. Skipped with a message when nix is missing, unless `CI=true`.
#![allow(clippy::print_stderr)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cairn::inventory::model::FlakeRef;
use cairn::nix::{load_db_registration, unpack_command, Nix, TarStream, TransferOptions};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub(crate) fn require(tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have(t)).collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("missing {missing:?}: run .ci/install");
    }
    eprintln!("SKIPPED: {missing:?} not installed (run .ci/install); the nix runner is untested");
    false
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The absolute path of a tool (for commands run with a cleared environment).
fn which(tool: &str) -> String {
    run(Command::new("sh").arg("-c").arg(format!("command -v {tool}"))).trim().to_owned()
}

fn is_root() -> bool {
    run(Command::new("id").arg("-u")).trim() == "0"
}

/// nix as root without a `nixbld` group (a plain Debian install) must not use build users.
pub(crate) fn nix_runner() -> Nix {
    let mut nix = Nix::new().offline().option("sandbox", "false");
    let groups = fs_err::read_to_string("/etc/group").unwrap_or_default();
    if !groups.lines().any(|l| l.starts_with("nixbld:")) {
        nix = nix.option("build-users-group", "");
    }
    nix
}

#[tokio::test(flavor = "multi_thread")]
async fn test_system_closure_streams_and_registers_in_a_fresh_store() {
    if !require(&["nix", "nix-store", "tar", "zstd", "patchelf", "dropbear", "age-keygen"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();

    // Inputs the tests hand the flake: a login key and a sops secret for the host's age key.
    run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(t.join("id")));
    let keygen = Command::new("age-keygen").arg("-o").arg(t.join("age.txt")).output().unwrap();
    let recipient = String::from_utf8_lossy(&keygen.stderr)
        .split_whitespace()
        .find(|w| w.starts_with("age1"))
        .expect("age-keygen prints the recipient")
        .to_owned();
    fs_err::create_dir(t.join("secrets")).unwrap();
    fs_err::write(t.join("plain.yaml"), "greeting: hello from sops\n").unwrap();
    let encrypted = run(Command::new(crate::support::tools::sops())
        .args(["--encrypt", "--age", &recipient, "--input-type", "yaml", "--output-type", "yaml"])
        .arg(t.join("plain.yaml")));
    fs_err::write(t.join("secrets/demo.yaml"), encrypted).unwrap();

    // The documented script builds it and prints the toplevel.
    let deps = t.join("deps");
    let script_out = run(Command::new(Path::new(ROOT).join("vm-tests/build-test-system"))
        .arg("--authorized-key")
        .arg(t.join("id.pub"))
        .arg("--secrets")
        .arg(t.join("secrets"))
        .arg("--keep-deps")
        .arg(&deps)
        .env("CAIRN_TEST_SOPS", crate::support::tools::sops()));

    // The runner builds the same system through the NixOS attribute path.
    let nix = nix_runner()
        .override_input("deps", &format!("path:{}", deps.display()))
        .no_write_lock_file();
    let flake =
        FlakeRef { flake: format!("path:{ROOT}/vm-tests/flake"), attr: "cairn-test".into() };
    let toplevel = nix.build_toplevel(&flake).await.expect("nix build");
    assert_eq!(toplevel.as_str(), script_out.trim());
    assert_eq!(toplevel.name(), "cairn-test-system");

    // Its closure: every member, and nothing refers outside it.
    let closure = nix.closure(std::slice::from_ref(&toplevel)).await.expect("path-info");
    let names: BTreeSet<&str> = closure.iter().map(|p| p.path.name()).collect();
    let expected = [
        "busybox-static",
        "cairn-test-system",
        "dropbear",
        "extlinux",
        "initrd",
        "linux-kernel",
        "nix",
        "sops",
    ];
    assert_eq!(names, BTreeSet::from(expected));
    let paths: BTreeSet<_> = closure.iter().map(|p| p.path.clone()).collect();
    for info in &closure {
        assert!(info.nar_size > 0);
        for r in &info.references {
            assert!(paths.contains(r), "{} refers to {r} outside the closure", info.path);
        }
    }

    // Stream it as the default copy strategy does, skipping nothing, into an empty root.
    let target = t.join("target");
    fs_err::create_dir(&target).unwrap();
    let all: Vec<_> = paths.iter().cloned().collect();
    let mut stream = TarStream::spawn(&all, &BTreeSet::new(), &TransferOptions::default()).unwrap();
    let mut unpack = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(unpack_command(&target.display().to_string()))
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = unpack.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, &stream.read_all().await).await.unwrap();
    drop(stdin);
    stream.finish().await.expect("tar | zstd");
    assert!(unpack.wait().await.unwrap().success());

    // Register it with the closure's own nix-store, from inside the target root when we may
    // chroot (as the install phase does), else with the host's nix-store on that root.
    let registration = load_db_registration(&closure);
    let nix_store = format!("{toplevel}/sw/bin/nix-store");
    let in_target = |args: &[&str]| -> Command {
        if is_root() {
            let mut c = Command::new(which("chroot"));
            c.env_clear().env("USER", "root").env("HOME", "/root").arg(&target).arg(&nix_store);
            c.args(args);
            c
        } else {
            let mut c = Command::new("nix-store");
            c.arg("--store").arg(&target).args(["--option", "build-users-group", ""]).args(args);
            c
        }
    };
    let mut load = in_target(&["--load-db"]).stdin(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(load.stdin.as_mut().unwrap(), registration.as_bytes()).unwrap();
    drop(load.stdin.take());
    assert!(load.wait().unwrap().success(), "nix-store --load-db failed");

    run(&mut in_target(&["--verify", "--check-contents"]));
    // The deriver is recorded as Nix records it, though the .drv is not copied.
    let deriver = closure.iter().find(|p| p.path == toplevel).and_then(|p| p.deriver.clone());
    let queried = run(&mut in_target(&["--query", "--deriver", toplevel.as_str()]));
    assert_eq!(queried.trim(), deriver.map_or("unknown-deriver".to_owned(), |d| d.to_string()));
    let registered: BTreeSet<String> =
        run(&mut in_target(&["--query", "--requisites", toplevel.as_str()]))
            .lines()
            .map(str::to_owned)
            .collect();
    assert_eq!(registered, paths.iter().map(|p| p.to_string()).collect());

    // The closure's own sops decrypts the secret with the host's age key, as activation does.
    if is_root() {
        fs_err::create_dir_all(target.join("var/lib/sops-nix")).unwrap();
        fs_err::copy(t.join("age.txt"), target.join("var/lib/sops-nix/key.txt")).unwrap();
        let plain = run(Command::new(which("chroot"))
            .env_clear()
            .env("SOPS_AGE_KEY_FILE", "/var/lib/sops-nix/key.txt")
            .env("HOME", "/root")
            .arg(&target)
            .arg(format!("{toplevel}/sw/bin/sops"))
            .arg("--decrypt")
            .arg(format!("{toplevel}/secrets/demo.yaml")));
        assert_eq!(plain, "greeting: hello from sops\n");
    }
}

use crate::support::sshd;

/// A two-path closure built by the local nix, offline: `top` refers to `dep`.
pub(crate) fn build_small_closure(t: &Path) -> String {
    let expr = r#"
      let
        dep = derivation { name = "cairn-copy-dep"; system = builtins.currentSystem;
          builder = "/bin/sh"; args = [ "-c" "echo dependency > $out" ]; };
      in derivation { name = "cairn-copy-top"; system = builtins.currentSystem;
        builder = "/bin/sh"; args = [ "-c" "echo ${dep} > $out" ]; }
    "#;
    fs_err::write(t.join("small.nix"), expr).unwrap();
    let mut cmd = Command::new("nix");
    cmd.args(["--extra-experimental-features", "nix-command"]).args([
        "--option",
        "substitute",
        "false",
        "--option",
        "sandbox",
        "false",
    ]);
    let groups = fs_err::read_to_string("/etc/group").unwrap_or_default();
    if !groups.lines().any(|l| l.starts_with("nixbld:")) {
        cmd.args(["--option", "build-users-group", ""]);
    }
    let out = run(cmd
        .args(["build", "--no-link", "--print-build-logs", "--json", "-f"])
        .arg(t.join("small.nix")));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0]["outputs"]["out"].as_str().unwrap().to_owned()
}

/// The `nix-copy` strategy against a real OpenSSH server on 127.0.0.1 with this machine's
/// nix-bin as the remote side: the closure lands, registered, in the store under the root
/// directory, and a server presenting another host key than the pinned one is refused.
#[tokio::test(flavor = "multi_thread")]
async fn nix_copy_over_ssh_pins_the_host_key_and_fills_the_root_store() {
    if !require(&["nix", "nix-store", "ssh", "/usr/sbin/sshd"]) {
        return;
    }
    if !is_root() {
        eprintln!("SKIPPED: nix copy to root@127.0.0.1 needs root (sshd logs in as root)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let top = cairn::nix::StorePath::new(build_small_closure(t)).unwrap();
    let server = sshd::Sshd::start();
    let target = cairn::ssh::Target::new("127.0.0.1", server.port, "root");
    let pinned = |line: &str, file: &str| -> PathBuf {
        let key = russh::keys::PublicKey::from_openssh(line).unwrap();
        let path = t.join(file);
        fs_err::write(&path, cairn::ssh::known_hosts(&target, &[key])).unwrap();
        path
    };
    let store = |known_hosts: PathBuf, root: &Path| cairn::nix::SshStore {
        user: "root".into(),
        host: "127.0.0.1".into(),
        port: server.port,
        root: root.display().to_string(),
        known_hosts,
        identity: Some(server.client_key()),
    };
    let nix = nix_runner();

    // Another key than the server's: refused before anything is sent.
    sshd::keygen(&t.join("other"), "ed25519", "");
    let other = fs_err::read_to_string(t.join("other.pub")).unwrap();
    let wrong_root = t.join("wrong");
    let refused = nix
        .copy_to(
            &store(pinned(other.trim(), "wrong_known_hosts"), &wrong_root),
            std::slice::from_ref(&top),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("Host key verification failed"), "{refused}");
    assert!(!wrong_root.join("nix/store").exists(), "nothing may reach a refused host");

    // The server's own key: copied and registered in the store under the root.
    let root = t.join("mnt");
    let known = pinned(&server.host_public_key("ed25519"), "known_hosts");
    nix.copy_to(&store(known, &root), std::slice::from_ref(&top)).await.expect("nix copy");
    let text = fs_err::read_to_string(root.join(top.relative())).unwrap();
    let dep = text.trim();
    assert!(dep.starts_with("/nix/store/") && dep.ends_with("-cairn-copy-dep"), "{text}");
    assert_eq!(fs_err::read_to_string(root.join(&dep[1..])).unwrap(), "dependency\n");
    let registered = run(Command::new("nix-store")
        .arg("--store")
        .arg(format!("local?root={}", root.display()))
        .args(["--query", "--requisites", top.as_str()]));
    let registered: BTreeSet<&str> = registered.lines().collect();
    assert_eq!(registered, BTreeSet::from([top.as_str(), dep]));
}
