//! The check before `cairn bootstrap` and `cairn promote`: an error concerning the hosts a
//! command is about to act on stops it before any machine or remote is touched; the refusal
//! names each finding (file:line) and `--skip-check`, never the secret; with `--skip-check`
//! the command goes ahead. The fleet's flake evaluates, so with nix installed the Nix rules
//! run too and pass.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The value in the plaintext secrets file: never in any output.
const VALUE: &str = "gate-test-plaintext-value-7781";

const GIT_ENV: [(&str, &str); 4] = [
    ("GIT_AUTHOR_NAME", "t"),
    ("GIT_AUTHOR_EMAIL", "t@localhost"),
    ("GIT_COMMITTER_NAME", "t"),
    ("GIT_COMMITTER_EMAIL", "t@localhost"),
];

/// Stands in for web1's machine: a listener that only records whether anything connected.
struct Machine(TcpListener);

impl Machine {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        Self(listener)
    }
    fn port(&self) -> u16 {
        self.0.local_addr().unwrap().port()
    }
    /// Whether a connection came in (a closed one waits in the queue too).
    fn contacted(&self) -> bool {
        match self.0.accept() {
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
            Err(e) => panic!("accept: {e}"),
        }
    }
}

fn cairn(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .current_dir(dir)
        .args(["--color", "never"])
        .args(args)
        .env("NO_COLOR", "1")
        .env("COLUMNS", "400")
        .env("CAIRN_SSH_KEY", dir.join(".cairn/test_key"))
        .env_remove("RUST_LOG")
        .env_remove("SSH_AUTH_SOCK")
        .envs(GIT_ENV)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git").arg("-C").arg(dir).args(args).envs(GIT_ENV).output().unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The words of a rendered error, without its wrapping and margins.
fn words(out: &Output) -> String {
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    text.split_whitespace().filter(|w| !matches!(*w, "|" | "│")).collect::<Vec<_>>().join(" ")
}

/// A fleet of one `existing` host, web1, reached at `port`, allowed to read
/// `secrets/web1.yaml`; `.sops.yaml` follows the inventory; `extra` is appended to cairn.hcl.
/// Clean until [`leak`] writes the secrets file in clear.
fn fleet(dir: &Path, port: u16, extra: &str) {
    let admin = cairn::keys::AgeIdentity::generate().to_public();
    fs_err::write(
        dir.join("cairn.hcl"),
        format!(
            "provider \"existing\" \"mine\" {{}}\n\nadmin \"ops\" {{\n  age = \"{}\"\n}}\n\n\
             host \"web1\" {{\n  provider = \"mine\"\n  address  = \"127.0.0.1:{port}\"\n  flake    = \".#web1\"\n}}\n\n\
             secrets \"secrets/web1.yaml\" {{\n  hosts = [\"web1\"]\n}}\n{extra}",
            admin.as_str()
        ),
    )
    .unwrap();
    crate::support::flake::write_minimal(dir, &["web1"]);
    fs_err::create_dir_all(dir.join("secrets")).unwrap();
    fs_err::create_dir_all(dir.join(".cairn")).unwrap();
    fs_err::write(dir.join(".gitignore"), ".cairn/\n").unwrap();
    let key = dir.join(".cairn/test_key");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", ""])
        .arg("-f")
        .arg(&key)
        .status()
        .unwrap();
    assert!(made.success());
    let out = cairn(dir, &["secrets", "rekey"]);
    assert!(out.status.success(), "rekey: {}", words(&out));
}

/// A secrets file the inventory declares, committed in clear.
fn leak(dir: &Path) {
    fs_err::write(dir.join("secrets/web1.yaml"), format!("db_password: {VALUE}\n")).unwrap();
}

fn assert_refused(out: &Output) {
    let text = words(out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("cairn check found 1 error concerning web1, so nothing was started"),
        "{text}"
    );
    assert!(
        text.contains("[secrets.plaintext] secrets/web1.yaml is not encrypted (it has no sops metadata), but the inventory's secrets rules cover it (secrets/web1.yaml:1)"),
        "{text}"
    );
    assert!(text.contains("or pass --skip-check to go ahead anyway"), "{text}");
    assert!(!text.contains(VALUE), "the plaintext value was printed: {text}");
}

#[test]
fn bootstrap_refuses_a_plaintext_secrets_file_before_touching_the_machine() {
    let machine = Machine::start();
    let dir = tempfile::tempdir().unwrap();
    fleet(dir.path(), machine.port(), "");
    leak(dir.path());

    let out = cairn(dir.path(), &["bootstrap", "host", "web1", "--yes", "--timeout", "reach=2s"]);
    assert_refused(&out);
    assert!(!words(&out).contains("reach"), "no phase ran: {}", words(&out));
    assert!(!machine.contacted(), "the machine was contacted");

    // --skip-check: the pipeline starts (and fails to reach the stand-in, which never answers).
    let out = cairn(
        dir.path(),
        &["bootstrap", "host", "web1", "--yes", "--skip-check", "--timeout", "reach=2s"],
    );
    let text = words(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("--skip-check: going ahead without `cairn check`"), "{text}");
    assert!(!text.contains("cairn check found"), "{text}");
    assert!(text.contains(" web1 FAILED "), "{text}");
    assert!(machine.contacted(), "bootstrap did not start: {text}");
}

#[test]
fn promote_refuses_a_plaintext_secrets_file_before_pushing() {
    let machine = Machine::start();
    let remote = tempfile::tempdir().unwrap();
    git(remote.path(), &["init", "--quiet", "--bare", "--initial-branch", "main"]);
    let dir = tempfile::tempdir().unwrap();
    let rings = format!(
        "\ngitops {{\n  remote      = \"{}\"\n  push_remote = \"forge\"\n}}\n\nring \"dev\" {{\n  hosts = [\"web1\"]\n}}\n",
        remote.path().display()
    );
    fleet(dir.path(), machine.port(), &rings);
    // web1's comin follows its ring's branch, as the check's gitops.comin rule wants.
    fs_err::write(
        dir.path().join("flake.nix"),
        format!(
            "{{\n  outputs = {{ self }}: {{\n    nixosConfigurations.web1.config = {{\n      networking.hostName = \"web1\";\n      services.comin = {{\n        enable = true;\n        remotes = [ {{ name = \"origin\"; url = \"{}\"; branches.main.name = \"ring/dev\"; }} ];\n      }};\n    }};\n  }};\n}}\n",
            remote.path().display()
        ),
    )
    .unwrap();
    leak(dir.path());
    git(dir.path(), &["init", "--quiet", "--initial-branch", "main"]);
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "--quiet", "-m", "the fleet"]);
    git(dir.path(), &["remote", "add", "forge", &remote.path().display().to_string()]);
    git(dir.path(), &["push", "--quiet", "forge", "main"]);
    let ring_branch = || git(remote.path(), &["branch", "--list", "ring/dev"]);

    let out = cairn(dir.path(), &["promote", "dev", "--yes"]);
    assert_refused(&out);
    assert!(!words(&out).contains("fast-forward"), "no promotion gate ran: {}", words(&out));
    assert_eq!(ring_branch(), "", "nothing was pushed");
    assert!(!machine.contacted(), "a host was contacted");

    // --skip-check: the promotion's own gates run, the table says the check did not, and the
    // branch moves (asking the host to fetch fails: nothing listens any more).
    drop(machine);
    let out = cairn(dir.path(), &["promote", "dev", "--yes", "--skip-check"]);
    let text = words(&out);
    assert!(text.contains("check skipped: --skip-check: `cairn check` did not run"), "{text}");
    assert!(text.contains("fast-forward ok"), "{text}");
    assert!(!text.contains("cairn check found"), "{text}");
    assert_eq!(ring_branch(), "ring/dev", "{text}");
}
