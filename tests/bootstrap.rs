//! Bootstrap failures a user must be able to act on, without a VM: an unreachable host ends
//! at the deadline the user gave, with the rendered error naming the address and what to check.

use std::process::Command;

#[test]
fn an_unreachable_host_fails_at_its_deadline_with_the_rendered_error() {
    let dir = tempfile::tempdir().unwrap();
    // Port 9 on loopback: nothing listens there, so every connect is refused.
    std::fs::write(
        dir.path().join("cairn.hcl"),
        "provider \"existing\" \"mine\" {}\n\nhost \"web1\" {\n  provider = \"mine\"\n  address  = \"127.0.0.1:9\"\n  flake    = \".#web1\"\n}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .current_dir(dir.path())
        .args(["bootstrap", "host", "web1", "--reach-timeout", "3"])
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .env_remove("CAIRN_SSH_KEY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("web1: FAILED after"), "{stdout}");
    assert!(stdout.contains("reach") && stdout.contains("FAILED"), "{stdout}");
    assert!(stdout.contains("0 of 1 hosts ok"), "{stdout}");
    assert!(stderr.contains("web1: reach failed"), "{stderr}");
    assert!(
        stderr.contains("root@127.0.0.1:9 did not become reachable over SSH within 3.0s"),
        "{stderr}"
    );
    assert!(
        stderr.contains("is sshd\n") || stderr.contains("is sshd "),
        "the help says what to check:\n{stderr}"
    );
}
