//! Bootstrap failures a user must be able to act on, without a VM: an unreachable host ends
//! at the deadline the user gave (on the command line or in cairn.hcl), with the rendered
//! error naming the phase, the limit and the setting behind it, what was seen last, and what
//! to check.

#![allow(clippy::print_stderr)] // tests say why they skip

use std::path::Path;
use std::process::{Command, Output};

/// A fleet of one `existing` host at 127.0.0.1:9: nothing listens there, so every connect is
/// refused. `extra` goes into the host block. Its flake evaluates, so the check before
/// bootstrap passes.
fn unreachable_fleet(dir: &Path, extra: &str) {
    fs_err::write(
        dir.join("cairn.hcl"),
        format!("provider \"existing\" \"mine\" {{}}\n\nhost \"web1\" {{\n  provider = \"mine\"\n  address  = \"127.0.0.1:9\"\n  flake    = \".#web1\"\n{extra}}}\n"),
    )
    .unwrap();
    crate::support::flake::write_minimal(dir, &["web1"]);
}

fn cairn(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .current_dir(dir)
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .env_remove("CAIRN_SSH_KEY")
        .output()
        .unwrap()
}

/// The rendered error (stderr after the progress lines), with run-specific counts filtered.
fn rendered_error(stderr: &str) -> String {
    let start = stderr.find("  × ").unwrap_or_else(|| panic!("no rendered error:\n{stderr}"));
    let text = &stderr[start..];
    regex::Regex::new(r"\(\d+ attempts\)").unwrap().replace_all(text, "([n] attempts)").into_owned()
}

#[test]
fn an_unreachable_host_fails_at_its_deadline_with_the_rendered_error() {
    let dir = tempfile::tempdir().unwrap();
    unreachable_fleet(dir.path(), "");
    let out = cairn(dir.path(), &["bootstrap", "host", "web1", "--yes", "--timeout", "reach=3s"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("\nweb1  FAILED  "), "{stdout}");
    assert!(stdout.contains("reach") && stdout.contains("FAILED"), "{stdout}");
    assert!(stdout.contains("0 of 1 hosts ok"), "{stdout}");
    assert!(!stderr.contains("cairn::"), "internal error codes are not for users:\n{stderr}");
    insta::assert_snapshot!("unreachable_host", rendered_error(&stderr));
}

/// The deadline set in cairn.hcl applies without a flag, and `--timeout` wins over it.
#[test]
fn the_inventory_sets_the_deadline_and_the_command_line_overrides_it() {
    let dir = tempfile::tempdir().unwrap();
    unreachable_fleet(dir.path(), "  timeouts {\n    reach = \"2s\"\n  }\n");
    let out = cairn(dir.path(), &["bootstrap", "host", "web1", "--yes"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("did not answer over SSH within 2s (the `reach` timeout)"), "{stderr}");
    assert!(stderr.contains("reach = \"4s\""), "the help doubles it:\n{stderr}");
    assert!(stderr.contains("--timeout reach=4s"), "{stderr}");

    unreachable_fleet(dir.path(), "  timeouts {\n    reach = \"1h\"\n  }\n");
    let out = cairn(dir.path(), &["bootstrap", "host", "web1", "--yes", "--timeout", "reach=1s"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("within 1s (the `reach` timeout)"), "{stderr}");
}

#[test]
fn a_malformed_timeout_flag_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    unreachable_fleet(dir.path(), "");
    for (flag, says) in [
        (
            "rech=3s",
            "`rech` is not a timeout; the waits are reach, kexec, reboot, verify, the command \
             budgets disk, copy, install, command",
        ),
        ("reach=3", "`3` has no unit; write \"3s\", \"3m\" or \"3h\""),
        ("reach", "write NAME=DURATION, e.g. `kexec=10m`"),
    ] {
        let out = cairn(dir.path(), &["bootstrap", "host", "web1", "--yes", "--timeout", flag]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(says), "{flag}: {stderr}");
        assert!(!dir.path().join(".cairn/state.json").exists(), "nothing ran");
    }
}

use crate::support::sshd;

/// A fleet whose host `web1` is this machine's real sshd, recorded in state as the installed
/// system (its host key pinned as the one cairn generated), so `--phases verify` runs the
/// health checks on it for real. `checks` goes into the host block.
fn installed_fleet(dir: &Path, server: &sshd::Sshd, checks: &str) {
    unreachable_fleet(dir, checks);
    let hcl = fs_err::read_to_string(dir.join("cairn.hcl")).unwrap();
    fs_err::write(
        dir.join("cairn.hcl"),
        hcl.replace("127.0.0.1:9", &format!("127.0.0.1:{}", server.port)),
    )
    .unwrap();
    let state = serde_json::json!({
        "schema": 1,
        "serial": 1,
        "hosts": { "web1": {
            "provider": "mine",
            "addresses": [format!("127.0.0.1:{}", server.port)],
            "host_keys": { "installed": [server.host_public_key("ed25519")] },
        }},
    });
    fs_err::create_dir_all(dir.join(".cairn")).unwrap();
    fs_err::write(dir.join(".cairn/state.json"), state.to_string()).unwrap();
}

fn verify(dir: &Path, server: &sshd::Sshd, timeout: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .current_dir(dir)
        .args(["bootstrap", "host", "web1", "--yes", "--phases", "verify", "--timeout", timeout])
        .env("NO_COLOR", "1")
        .env("CAIRN_SSH_KEY", server.client_key())
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// A check that keeps failing fails verify at the `verify` deadline, naming the check and
/// showing the last lines it printed (stdout and stderr), on a real sshd.
#[test]
fn a_failing_health_check_is_named_with_the_tail_of_its_output() {
    if !sshd::is_root() {
        eprintln!("skipped: the installed system is reached as root");
        return;
    }
    let server = sshd::Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let checks = "  health_check \"file_exists\" {\n    path = \"/\"\n  }\n  health_check \"command\" {\n    command = \"seq 1 30; echo 'agent: not running' >&2; exit 3\"\n  }\n";
    installed_fleet(dir.path(), &server, checks);
    let out = verify(dir.path(), &server, "verify=3s");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}\n{}", server.log());
    assert!(stdout.contains("verify") && stdout.contains("FAILED"), "{stdout}");
    insta::assert_snapshot!("failing_health_check", rendered_error(&stderr));
}

/// With no checks configured, a NixOS host's defaults run: this Debian machine has no comin
/// and no booted systemd, so the first default fails and says which it is.
#[test]
fn without_configured_checks_the_nixos_defaults_run() {
    if !sshd::is_root() {
        eprintln!("skipped: the installed system is reached as root");
        return;
    }
    let server = sshd::Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    installed_fleet(dir.path(), &server, "");
    let out = verify(dir.path(), &server, "verify=2s");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "the health check “the system finished booting without failed units” still failed after 2s"
        ),
        "{stderr}"
    );
}

/// Passing checks end in a verified host, each check listed in the summary.
#[test]
fn passing_health_checks_are_listed_in_the_summary() {
    if !sshd::is_root() {
        eprintln!("skipped: the installed system is reached as root");
        return;
    }
    let server = sshd::Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let checks = "  health_check \"file_exists\" {\n    path = \"/etc/hostname\"\n  }\n  health_check \"command\" {\n    command = \"true\"\n  }\n";
    installed_fleet(dir.path(), &server, checks);
    let out = verify(dir.path(), &server, "verify=30s");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("\nweb1  no changes  "), "{stdout}");
    assert!(stdout.contains("check      /etc/hostname exists"), "{stdout}");
    assert!(stdout.contains("check      `true` succeeds"), "{stdout}");
}

/// A flake whose `diskoScript` for web1 records how it was run into `marker` (and builds
/// with the host's /bin/sh: the tests turn Nix's sandbox off). It has no system: building
/// anything but `diskoScript` fails.
fn disko_flake(dir: &Path, marker: &Path) {
    let flake = format!(
        r#"{{
  outputs = {{ self }}: {{
    nixosConfigurations.web1.config.system.build.diskoScript = derivation {{
      name = "disko-web1";
      system = "x86_64-linux";
      builder = "/bin/sh";
      args = [ "-c" ''
        printf '#!/bin/sh\necho "ran $0 with $# arguments in $(pwd)" > {marker}\n' > $out
        /bin/chmod 555 $out
      '' ];
    }};
  }};
}}
"#,
        marker = marker.display()
    );
    fs_err::write(dir.join("flake.nix"), flake).unwrap();
}

fn nix_available() -> bool {
    Command::new("nix").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// `disko = true`: the disk phase builds the flake's `diskoScript` on this machine, streams
/// its closure to the installer (a real sshd here) and runs it there, without arguments,
/// from its store path.
#[test]
fn disko_hosts_run_the_flakes_disko_script_on_the_installer() {
    if !sshd::is_root() || !nix_available() {
        eprintln!("skipped: needs root (the installer is reached as root) and nix");
        return;
    }
    let server = sshd::Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("disko-ran");
    installed_fleet(dir.path(), &server, "  disko = true\n");
    disko_flake(dir.path(), &marker);
    // The installer's key is the one this sshd presents.
    let state = fs_err::read_to_string(dir.path().join(".cairn/state.json")).unwrap();
    fs_err::write(
        dir.path().join(".cairn/state.json"),
        state.replace("\"installed\"", "\"installer\""),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .current_dir(dir.path())
        .args(["bootstrap", "host", "web1", "--yes", "--phases", "disk"])
        .env("NO_COLOR", "1")
        .env("CAIRN_SSH_KEY", server.client_key())
        .env("NIX_CONFIG", "sandbox = false\nsubstitute = false\nflake-registry =\n")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("#nixosConfigurations.web1.config.system.build.diskoScript"),
        "{stderr}"
    );
    let ran = fs_err::read_to_string(&marker).expect("the disko script ran");
    let ran =
        regex::Regex::new(r"/nix/store/[a-z0-9]{32}-").unwrap().replace(&ran, "/nix/store/[hash]-");
    assert_eq!(ran.trim(), "ran /nix/store/[hash]-disko-web1 with 0 arguments in /root");
    let _ = fs_err::remove_dir_all("/root/cairn-disko");
}

/// With a `disk_layout` naming the device, a disko host's device is checked first: a
/// missing disk stops the phase before the script is built or run.
#[test]
fn disko_hosts_check_the_layouts_device_first() {
    if !sshd::is_root() {
        eprintln!("skipped: the installer is reached as root");
        return;
    }
    let server = sshd::Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("disko-ran");
    installed_fleet(dir.path(), &server, "  disko       = true\n  disk_layout = \"main\"\n");
    let hcl = fs_err::read_to_string(dir.path().join("cairn.hcl")).unwrap();
    fs_err::write(
        dir.path().join("cairn.hcl"),
        format!("{hcl}\ndisk_layout \"main\" {{\n  device = \"/dev/cairn-no-such-disk\"\n  partition \"root\" {{\n    type       = \"filesystem\"\n    size       = \"rest\"\n    filesystem = \"ext4\"\n    mountpoint = \"/\"\n  }}\n}}\n"),
    )
    .unwrap();
    disko_flake(dir.path(), &marker);
    let state = fs_err::read_to_string(dir.path().join(".cairn/state.json")).unwrap();
    fs_err::write(
        dir.path().join(".cairn/state.json"),
        state.replace("\"installed\"", "\"installer\""),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .current_dir(dir.path())
        .args(["bootstrap", "host", "web1", "--yes", "--phases", "disk"])
        .env("NO_COLOR", "1")
        .env("CAIRN_SSH_KEY", server.client_key())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("/dev/cairn-no-such-disk does not exist; check disk_layout \"main\""),
        "{stderr}"
    );
    assert!(!stderr.contains("diskoScript"), "nothing was built:\n{stderr}");
    assert!(!marker.exists(), "the script did not run");
}

/// The JSON lines of a `--json` run, each checked to be one JSON object with an `event`,
/// with timings and attempt counts (which vary from run to run) masked.
fn json_events(stdout: &[u8]) -> String {
    let text = String::from_utf8(stdout.to_vec()).unwrap();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line}"));
        assert!(v["event"].is_string(), "no event field: {line}");
    }
    let masked = regex::Regex::new(r#""elapsed_s":[0-9.]+"#)
        .unwrap()
        .replace_all(&text, r#""elapsed_s":"[s]""#);
    regex::Regex::new(r"\(\d+ attempts\)")
        .unwrap()
        .replace_all(&masked, "([n] attempts)")
        .into_owned()
}

/// `--json`: one JSON object per line on stdout (each phase's start and end, then a summary),
/// while the human output, progress lines and the rendered error included, stays on stderr.
#[test]
fn bootstrap_and_destroy_json_events() {
    let dir = tempfile::tempdir().unwrap();
    unreachable_fleet(dir.path(), "");
    let out = cairn(
        dir.path(),
        &["bootstrap", "host", "web1", "--yes", "--json", "--timeout", "reach=1s"],
    );
    assert_eq!(out.status.code(), Some(1));
    insta::assert_snapshot!("bootstrap_json_events", json_events(&out.stdout));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("\nweb1  FAILED  "), "{stderr}");
    assert!(stderr.contains("  × web1: reach failed"), "{stderr}");
    assert!(!stderr.contains("{\"event\""), "{stderr}");

    let out = cairn(dir.path(), &["destroy", "host", "web1", "--yes", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    insta::assert_snapshot!("destroy_json_events", json_events(&out.stdout));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("- host \"web1\" will be destroyed"), "{stderr}");

    // A run that stops before its summary says so on stdout too.
    fs_err::write(dir.path().join("cairn.hcl"), "host {\n").unwrap();
    let out = cairn(dir.path(), &["apply", "--yes", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let line = json_events(&out.stdout);
    assert!(line.starts_with("{\"event\":\"error\",\"message\":"), "{line}");
    assert_eq!(line.lines().count(), 1, "{line}");
}

/// State says web1 was installed on machine 7, but the provider now has machine 8 for it
/// (re-created behind cairn's back, found by its cairn labels). The run forgets the old
/// machine's progress before deciding what to skip: it reaches the new machine again
/// instead of skipping to verify. (The fake's server answers on 127.0.0.1:9, where nothing
/// listens, so reach fails at its deadline.)
#[test]
fn a_re_created_machine_resets_the_hosts_phases_before_anything_is_skipped() {
    use crate::support::hcloud_fake::{Cloud, Fake};
    use serde_json::json;

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fake = runtime.block_on(Fake::start(Cloud::default()));
    fake.cloud(|c| {
        c.servers.push(json!({
            "id": 8,
            "name": "web1",
            "status": "running",
            "public_net": { "ipv4": { "ip": "127.0.0.1" }, "ipv6": null },
            "server_type": { "name": "cx22" },
            "image": { "name": "debian-13" },
            "datacenter": { "name": "fsn1-dc14", "location": { "name": "fsn1" } },
            "labels": { "cairn-host": "web1", "managed-by": "cairn" },
            "rescue_enabled": false,
        }))
    });
    let dir = tempfile::tempdir().unwrap();
    fs_err::write(
        dir.path().join("cairn.hcl"),
        format!(
            "provider \"hcloud\" \"cloud\" {{\n  token = env(\"HCLOUD_TOKEN\")\n  endpoint = \"{}\"\n  location = \"fsn1\"\n}}\n\nhost \"web1\" {{\n  size = \"cx22\"\n  image = \"debian-13\"\n  flake = \".#web1\"\n  ssh {{\n    port = 9\n  }}\n}}\n",
            fake.endpoint()
        ),
    )
    .unwrap();
    crate::support::flake::write_minimal(dir.path(), &["web1"]);
    let state = serde_json::json!({
        "schema": 2,
        "serial": 1,
        "hosts": { "web1": {
            "provider": "cloud",
            "provider_id": "7",
            "addresses": ["192.0.2.7:22"],
            "last_phase": { "phase": "install", "at": "2026-12-01T00:00:00Z" },
        }},
    });
    fs_err::create_dir_all(dir.path().join(".cairn")).unwrap();
    fs_err::write(dir.path().join(".cairn/state.json"), state.to_string()).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .current_dir(dir.path())
        .args(["bootstrap", "host", "web1", "--yes", "--timeout", "reach=2s"])
        .env("NO_COLOR", "1")
        .env("HCLOUD_TOKEN", "test-token")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("web1  provision  skipped (8 exists"), "{stderr}");
    assert!(stderr.contains("web1  reach    started"), "{stderr}");
    assert!(!stderr.contains("skipped (done earlier"), "{stderr}");
    assert!(stderr.contains("web1  reach    FAILED"), "{stderr}");
    let after: serde_json::Value = serde_json::from_str(
        &fs_err::read_to_string(dir.path().join(".cairn/state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(after["hosts"]["web1"]["provider_id"], "8", "{after:#}");
    assert_ne!(after["hosts"]["web1"]["last_phase"]["phase"], "install", "{after:#}");
}

/// After a host ends well, files its agent needs that are not committed are named (here
/// `.sops.yaml` and the addresses apply wrote into `cairn/network.json`), and `--commit` commits exactly those, with a message naming the host.
#[test]
fn uncommitted_files_the_host_needs_are_named_and_commit_commits_them() {
    if !sshd::is_root() {
        eprintln!("skipped: the installed system is reached as root");
        return;
    }
    let server = sshd::Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let checks = "  health_check \"command\" {\n    command = \"true\"\n  }\n";
    installed_fleet(dir.path(), &server, checks);
    let git = |args: &[&str]| {
        let out = Command::new("git").current_dir(dir.path()).args(args).output().unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    git(&["init", "--quiet"]);
    git(&["config", "user.name", "Test"]);
    git(&["config", "user.email", "test@example.org"]);
    fs_err::write(dir.path().join(".gitignore"), ".cairn/\n").unwrap();
    // The fleet as it is (its flake too: nix evaluates a git flake from tracked files).
    git(&["add", "-A"]);
    git(&["commit", "--quiet", "-m", "fleet"]);
    fs_err::write(dir.path().join(".sops.yaml"), "creation_rules: []\n").unwrap();
    fs_err::create_dir_all(dir.path().join("cairn")).unwrap();
    fs_err::write(dir.path().join("cairn/network.json"), "{\"hosts\": {}}\n").unwrap();
    fs_err::write(dir.path().join("notes.txt"), "not cairn's\n").unwrap();

    let out = verify(dir.path(), &server, "verify=30s");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains(
            "not committed, so no host's agent can pull them:\n  .sops.yaml\n  cairn/network.json\n"
        ),
        "{stdout}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .current_dir(dir.path())
        .args(["bootstrap", "host", "web1", "--yes", "--phases", "verify", "--commit"])
        .args(["--timeout", "verify=30s"])
        .env("NO_COLOR", "1")
        .env("CAIRN_SSH_KEY", server.client_key())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("committed "), "{stdout}");
    assert_eq!(git(&["log", "-1", "--format=%s"]), "cairn: keys and secrets for web1");
    assert_eq!(
        git(&["show", "--name-only", "--format=", "HEAD"]),
        ".sops.yaml\ncairn/network.json"
    );
    assert_eq!(git(&["status", "--porcelain"]), "?? notes.txt");

    // In a ring, the branch its agent follows must contain that commit too.
    let forge = tempfile::tempdir().unwrap();
    let bare = forge.path().display().to_string();
    git(&["init", "--quiet", "--bare", &bare]);
    git(&["remote", "add", "forge", &bare]);
    git(&["push", "--quiet", "forge", "HEAD~1:refs/heads/ring/dev"]);
    let hcl = fs_err::read_to_string(dir.path().join("cairn.hcl")).unwrap();
    let gitops = format!("gitops {{\n  remote = \"{bare}\"\n  push_remote = \"forge\"\n}}\n\nring \"dev\" {{\n  hosts = [\"web1\"]\n}}\n");
    fs_err::write(dir.path().join("cairn.hcl"), format!("{hcl}\n{gitops}")).unwrap();
    let behind = "web1: forge/ring/dev does not contain its keys and secrets yet";
    // (The test host's configuration has no comin: the check's gitops.comin rule is skipped.)
    let verify = |_: &Path, server: &sshd::Sshd, timeout: &str| {
        Command::new(env!("CARGO_BIN_EXE_cairn"))
            .current_dir(dir.path())
            .args(["bootstrap", "host", "web1", "--yes", "--skip-check", "--phases", "verify"])
            .args(["--timeout", timeout])
            .env("NO_COLOR", "1")
            .env("CAIRN_SSH_KEY", server.client_key())
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    };
    let out = verify(dir.path(), &server, "verify=30s");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(behind), "{stdout}");
    git(&["push", "--quiet", "forge", "HEAD:refs/heads/ring/dev"]);
    let out = verify(dir.path(), &server, "verify=30s");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains(behind), "{stdout}");
}
