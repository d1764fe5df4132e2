//! The cairn binary as a user runs it: `init`, `hosts` and `plan` on a fixture repository
//! with state, output snapshotted with insta (NO_COLOR, no terminal).

use std::path::Path;
use std::process::{Command, Output};

const INVENTORY: &str = r#"
provider "hcloud" "cloud" {
  token    = env("HCLOUD_TOKEN", "")
  location = "fsn1"
}

provider "qemu" "local" {}

provider "existing" "owned" {}

defaults {
  provider = "cloud"
  image    = "debian-12"
}

host "web1" {
  flake = ".#web1"
  size  = "cx22"
  tags  = ["web", "prod"]
}

host "web2" {
  flake    = ".#web2"
  size     = "cx32"
  location = "nbg1"
  tags     = ["web", "prod"]
}

host "db1" {
  flake = ".#db1"
  size  = "cx42"
  tags  = ["db", "prod"]
}

host "build1" {
  provider = "owned"
  flake    = ".#build1"
  address  = "203.0.113.10"
}

host "vm1" {
  provider = "local"
  flake    = ".#vm1"
  image    = "nixos-kexec"
  tags     = ["test"]
}
"#;

const STATE: &str = r#"{
  "schema": 1,
  "serial": 12,
  "hosts": {
    "old1": {
      "provider": "hcloud.cloud",
      "provider_id": "4711",
      "size": "cx22",
      "image": "debian-12",
      "location": "fsn1",
      "addresses": ["203.0.113.99"]
    },
    "vm1": {
      "provider": "qemu.local",
      "provider_id": "vm1",
      "image": "nixos-kexec",
      "addresses": ["127.0.0.1:2201"],
      "last_phase": { "phase": "install", "at": "2026-11-21T17:40:00Z" }
    },
    "web1": {
      "provider": "hcloud.cloud",
      "provider_id": "1001",
      "size": "cx22",
      "image": "debian-12",
      "location": "fsn1",
      "addresses": ["203.0.113.7", "2001:db8::7"],
      "host_keys": {
        "installed": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIE/orE9QoQ9OmBws2f3DqR08YyzNiTPVGh5WKMSYkUT"]
      },
      "last_phase": { "phase": "verify", "at": "2026-11-22T06:01:03Z" }
    },
    "web2": {
      "provider": "cloud",
      "provider_id": "1002",
      "size": "cx22",
      "image": "debian-12",
      "location": "fsn1",
      "addresses": ["203.0.113.8"]
    }
  }
}
"#;

/// A fleet repository with an inventory and state, in a temp dir.
fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs_err::write(dir.path().join("cairn.hcl"), INVENTORY).unwrap();
    fs_err::create_dir(dir.path().join(".cairn")).unwrap();
    fs_err::write(dir.path().join(".cairn/state.json"), STATE).unwrap();
    dir
}

fn cairn(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("CAIRN_INVENTORY")
        .env_remove("HCLOUD_TOKEN")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

/// Runs cairn, expects exit code `code`, returns stdout.
fn run_ok(dir: &Path, args: &[&str], code: i32) -> String {
    let out = cairn(dir, args);
    assert_eq!(out.status.code(), Some(code), "cairn {args:?}\nstderr: {}", stderr(&out));
    stdout(&out)
}

#[test]
fn help() {
    let dir = tempfile::tempdir().unwrap();
    insta::assert_snapshot!("help", run_ok(dir.path(), &["--help"], 0));
    insta::assert_snapshot!("plan_help", run_ok(dir.path(), &["plan", "--help"], 0));
}

#[test]
fn hosts_table_and_json() {
    let repo = fixture();
    insta::assert_snapshot!("hosts", run_ok(repo.path(), &["hosts"], 0));
    insta::assert_snapshot!("hosts_json", run_ok(repo.path(), &["hosts", "--json"], 0));
    insta::assert_snapshot!("hosts_web", run_ok(repo.path(), &["hosts", "@web"], 0));
}

#[test]
fn hosts_from_a_subdirectory_finds_the_inventory_above() {
    let repo = fixture();
    fs_err::create_dir(repo.path().join("secrets")).unwrap();
    let from_sub = run_ok(&repo.path().join("secrets"), &["hosts"], 0);
    assert_eq!(from_sub, run_ok(repo.path(), &["hosts"], 0));
}

#[test]
fn plan_table_and_json() {
    let repo = fixture();
    insta::assert_snapshot!("plan", run_ok(repo.path(), &["plan", "--refresh=false"], 0));
    insta::assert_snapshot!(
        "plan_json",
        run_ok(repo.path(), &["plan", "--refresh=false", "--json"], 0)
    );
    // A selection plans those hosts only, and never destroys.
    insta::assert_snapshot!(
        "plan_web",
        run_ok(repo.path(), &["plan", "--refresh=false", "web*"], 0)
    );
}

#[test]
fn plan_detailed_exitcode() {
    let repo = fixture();
    // Changes: 2.
    run_ok(repo.path(), &["plan", "--refresh=false", "--detailed-exitcode"], 2);
    // Nothing to do: 0.
    let none =
        run_ok(repo.path(), &["plan", "--refresh=false", "--detailed-exitcode", "web1", "vm1"], 0);
    assert_eq!(none, "No changes. The machines match the inventory.\n");
    // Without the flag, changes still exit 0.
    run_ok(repo.path(), &["plan", "--refresh=false"], 0);
    // An error: 1.
    let out = cairn(repo.path(), &["plan", "--refresh=false", "--detailed-exitcode", "nosuchhost"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nosuchhost"), "{}", stderr(&out));
}

#[test]
fn commands_without_an_inventory_say_how_to_get_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = cairn(dir.path(), &["plan"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("no cairn.hcl in {} or any parent directory", dir.path().display())),
        "{err}"
    );
    assert!(err.contains("run `cairn init`"), "{err}");
}

#[test]
fn unparseable_state_is_reported_by_plan() {
    let repo = fixture();
    fs_err::write(repo.path().join(".cairn/state.json"), "{\"schema\": 1,").unwrap();
    let out = cairn(repo.path(), &["plan"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("cannot parse the state file"), "{err}");
    assert!(err.contains("state.json.bak"), "{err}");
}

#[test]
fn init_scaffolds_a_repository_that_loads_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let first = run_ok(dir.path(), &["init", "fleet"], 0);
    insta::assert_snapshot!("init", first);

    let repo = dir.path().join("fleet");
    // The inventory it wrote loads, and names the one host.
    let inv = cairn::inventory::load(&cairn::inventory::LoadOptions::from_process_env(
        repo.join("cairn.hcl"),
    ))
    .unwrap_or_else(|e| panic!("{:?}", miette::Report::new(e)));
    assert_eq!(inv.hosts.len(), 1);
    assert_eq!(inv.hosts[0].name.as_str(), "web1");
    assert_eq!(inv.hosts[0].flake.as_ref().unwrap().to_string(), ".#web1");
    let layout = &inv.disk_layouts[inv.hosts[0].disk_layout.as_ref().unwrap()];
    let labels: Vec<_> = layout.partitions.iter().filter_map(|p| p.label.as_deref()).collect();
    assert_eq!(labels, ["ESP", "nixos"]);
    // ... and the flake labels match it.
    let flake = fs_err::read_to_string(repo.join("flake.nix")).unwrap();
    assert!(flake.contains("/dev/disk/by-label/nixos") && flake.contains("/dev/disk/by-label/ESP"));
    // The flake is valid Nix, checked by the real parser where Nix is installed.
    if let Ok(out) =
        Command::new("nix-instantiate").arg("--parse").arg(repo.join("flake.nix")).output()
    {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(
        fs_err::read_to_string(repo.join(".gitignore")).unwrap().lines().nth(1),
        Some(".cairn/")
    );
    assert!(repo.join("secrets/.gitkeep").is_file());
    // The new repository works with the other commands.
    insta::assert_snapshot!("init_plan", run_ok(&repo, &["plan", "--refresh=false"], 0));

    // A second init keeps everything, including what the user changed.
    fs_err::write(repo.join("cairn.hcl"), "# mine\n").unwrap();
    let second = run_ok(dir.path(), &["init", "fleet"], 0);
    insta::assert_snapshot!("init_again", second);
    assert_eq!(fs_err::read_to_string(repo.join("cairn.hcl")).unwrap(), "# mine\n");
}

#[test]
fn init_refuses_a_file_as_target() {
    let dir = tempfile::tempdir().unwrap();
    fs_err::write(dir.path().join("fleet"), "").unwrap();
    let out = cairn(dir.path(), &["init", "fleet"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{} exists and is not a directory",
            dir.path().join("fleet").display()
        )),
        "{err}"
    );
}

/// `.ci/install --check` decides by the tools themselves: with every tool on PATH but
/// qemu-img (as after apt removed a backported qemu-utils), it fails naming the tool and its
/// package, and says what to do. Needs no root and installs nothing.
#[test]
fn ci_install_check_names_a_missing_tool_and_its_package() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let all = Command::new("bash").arg(repo.join(".ci/install")).arg("--check").output().unwrap();
    if !all.status.success() {
        // Not every tool is installed here: the check itself must still name them.
        assert!(stderr(&all).contains("Debian package"), "{}", stderr(&all));
        return;
    }
    // The same PATH, less qemu-img: one directory of links to every other command.
    let bin = tempfile::tempdir().unwrap();
    let path = std::env::var_os("PATH").unwrap();
    for dir in std::env::split_paths(&path).chain(["/usr/sbin".into(), "/sbin".into()]) {
        let Ok(entries) = fs_err::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let link = bin.path().join(&name);
            if name != "qemu-img" && !link.exists() {
                std::os::unix::fs::symlink(entry.path(), link).unwrap();
            }
        }
    }
    let out = Command::new("bash")
        .arg(repo.join(".ci/install"))
        .arg("--check")
        .env("PATH", bin.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("qemu-img  (Debian package qemu-utils)"), "{err}");
    assert!(!err.contains("qemu-system-x86_64"), "only the missing tool is named: {err}");
    assert!(err.contains("apt-get install"), "{err}");
}

/// The qemu provider uses and deletes only VM directories it made: a directory of the same
/// name without its marker is reported by `plan` and left whole by `destroy` and `apply`.
#[test]
fn a_vm_directory_cairn_did_not_make_is_neither_adopted_nor_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let vms = dir.path().join("vms");
    fs_err::write(
        dir.path().join("cairn.hcl"),
        r#"
provider "qemu" "local" {
  cache_dir = "vms"
  accel     = "tcg"
}
host "web1" {
  provider = "local"
  flake    = ".#web1"
}
"#,
    )
    .unwrap();
    let foreign = vms.join("web1");
    fs_err::create_dir_all(&foreign).unwrap();
    fs_err::write(foreign.join("disk.qcow2"), "someone else's disk").unwrap();
    fs_err::write(foreign.join("notes.txt"), "keep me").unwrap();

    let plan = cairn(dir.path(), &["plan"]);
    assert!(!plan.status.success());
    assert!(stderr(&plan).contains("cairn did not make it"), "{}", stderr(&plan));
    for args in [&["destroy", "host", "web1", "--yes"][..], &["apply", "--yes"][..]] {
        let out = cairn(dir.path(), args);
        assert!(!out.status.success(), "cairn {args:?} must refuse: {}", stderr(&out));
    }
    assert_eq!(fs_err::read_to_string(foreign.join("notes.txt")).unwrap(), "keep me");
    assert_eq!(fs_err::read_to_string(foreign.join("disk.qcow2")).unwrap(), "someone else's disk");
}

/// A VM a killed run left half made (its marker and disk, no seed, never started: no SSH
/// port recorded) is not taken for the host's machine: it is removed and planned again.
#[test]
fn a_vm_an_interrupted_run_left_half_made_is_made_again() {
    let dir = tempfile::tempdir().unwrap();
    let vms = dir.path().join("vms");
    fs_err::write(
        dir.path().join("cairn.hcl"),
        "provider \"qemu\" \"local\" {\n  cache_dir = \"vms\"\n  accel     = \"tcg\"\n}\nhost \"web1\" {\n  provider = \"local\"\n  flake    = \".#web1\"\n}\n",
    )
    .unwrap();
    let half = vms.join("web1");
    fs_err::create_dir_all(&half).unwrap();
    fs_err::write(half.join(".cairn-vm"), "web1").unwrap();
    fs_err::write(half.join("disk.qcow2"), "half made").unwrap();

    let plan = cairn(dir.path(), &["plan"]);
    let out = String::from_utf8_lossy(&plan.stdout);
    assert!(plan.status.success(), "{out}\n{}", stderr(&plan));
    assert!(out.contains("+ host \"web1\""), "planned to be made again:\n{out}");
    assert!(!half.exists(), "the half-made VM is removed");
}

/// Issue 10 ("cairn init, then what?"): the steps init's closing text lists, run in order as
/// a new user would, up to the first that needs the network: keygen, adding the admin with
/// the recipient it printed, creating web1's secrets with a scripted $EDITOR, plan.
#[test]
fn the_next_steps_init_lists_work_in_order() {
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    fs_err::create_dir_all(&home).unwrap();
    let step = |dir: &Path, args: &[&str], editor: Option<&Path>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
        cmd.args(args)
            .current_dir(dir)
            .env("NO_COLOR", "1")
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env_remove("SOPS_AGE_KEY_FILE")
            .env_remove("SOPS_AGE_KEY")
            .env_remove("SOPS_AGE_SSH_PRIVATE_KEY_FILE")
            .env_remove("SOPS_EDITOR")
            .env_remove("VISUAL")
            .env_remove("CAIRN_INVENTORY")
            .env_remove("RUST_LOG");
        if let Some(editor) = editor {
            cmd.env("EDITOR", editor);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(0), "cairn {args:?}\nstderr: {}", stderr(&out));
        stdout(&out)
    };

    let said = step(work.path(), &["init", "fleet"], None);
    let listed: Vec<&str> = said
        .lines()
        .filter_map(|l| l.trim().split_once(". ").filter(|(n, _)| n.parse::<u8>().is_ok()))
        .map(|(_, s)| s)
        .collect();
    assert_eq!(
        listed,
        [
            "cd fleet",
            "cairn secrets keygen",
            "add yourself to cairn.hcl, with the recipient it printed:",
            "cairn secrets edit secrets/web1.yaml",
            "cairn plan",
            "cairn bootstrap host web1",
        ],
        "{said}"
    );
    let repo = work.path().join("fleet");

    // 1. keygen: the key goes outside the repository; the recipient is printed.
    let recipient = step(&repo, &["secrets", "keygen"], None).trim().to_string();
    assert!(recipient.starts_with("age1") && !recipient.contains('\n'), "{recipient}");
    assert!(home.join(".config/sops/age/keys.txt").is_file());

    // 2. the admin block as the text shows it, with the printed recipient.
    let hcl = fs_err::read_to_string(repo.join("cairn.hcl")).unwrap();
    fs_err::write(
        repo.join("cairn.hcl"),
        format!("{hcl}\nadmin \"you\" {{\n  age = \"{recipient}\"\n}}\n"),
    )
    .unwrap();

    // 3. the secrets file, written by the "editor", saved encrypted to the admin.
    let editor = work.path().join("editor.sh");
    fs_err::write(&editor, "#!/bin/sh\nprintf 'greeting: hello from web1\\n' > \"$1\"\n").unwrap();
    fs_err::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    step(&repo, &["secrets", "edit", "secrets/web1.yaml"], Some(&editor));
    let stored = fs_err::read_to_string(repo.join("secrets/web1.yaml")).unwrap();
    assert!(stored.contains("greeting: ENC[AES256_GCM,"), "{stored}");
    assert!(stored.contains(&format!("recipient: {recipient}")), "{stored}");
    assert!(!stored.contains("hello from web1"));
    let shown = step(&repo, &["secrets", "decrypt", "secrets/web1.yaml"], None);
    assert_eq!(shown, "greeting: hello from web1\n");
    // The rules it followed are in .sops.yaml, for plain sops too.
    let rules = fs_err::read_to_string(repo.join(".sops.yaml")).unwrap();
    assert!(rules.contains("secrets/web1\\.yaml"), "{rules}");

    // 4. plan: the VM to create.
    let plan = step(&repo, &["plan"], None);
    assert!(plan.contains("+ host \"web1\" will be created"), "{plan}");
    assert!(plan.contains("Plan: 1 to create, 0 to change, 0 to destroy."), "{plan}");
}
