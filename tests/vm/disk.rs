//! cairn's rendered disk script against a real disk: in QEMU (this machine's kernel has no
//! partition scanning on loop devices), a throwaway installer runs the script twice on a
//! blank virtio disk, installs the VM tests' system with the closure's own nix-store and
//! switch-to-configuration, and the disk then boots on its own to ssh with the seeded host
//! key, a decrypted sops secret and the agent running (vm-tests/install-test-system).
//!
//! Slow (minutes under TCG): runs when `CAIRN_VM_TESTS=1` or `CI=true`, else skipped.
#![allow(clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cairn::disk::{render_script, ScriptOptions};
use cairn::inventory::model::{
    DiskLayout, DiskLayoutName, Filesystem, Partition, PartitionKind, PartitionSize, SourceSpan,
};
use cairn::nix::{load_db_registration, Nix, StorePath};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn enabled() -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let asked = std::env::var("CAIRN_VM_TESTS").is_ok_and(|v| v == "1");
    if !(ci || asked) {
        eprintln!("SKIPPED: the disk script's VM test runs with CAIRN_VM_TESTS=1 or CI=true");
        return false;
    }
    let have = |t: &str| {
        Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {t}"))
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    for tool in ["qemu-system-x86_64", "nix", "sgdisk", "mkfs.vfat", "patchelf", "dropbear"] {
        assert!(have(tool), "{tool} is missing: run .ci/install");
    }
    true
}

fn sops() -> PathBuf {
    std::env::var_os("CAIRN_TEST_SOPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(ROOT).join(".ci/venv/bin/sops"))
}

/// The layout the VM tests' system boots with (see vm-tests/flake/README.md).
fn extlinux_layout() -> DiskLayout {
    let part =
        |name: &str, kind, size, filesystem, label: &str, mountpoint: Option<&str>| Partition {
            name: name.into(),
            kind,
            size,
            filesystem,
            label: Some(label.into()),
            mountpoint: mountpoint.map(Into::into),
            luks_key: None,
        };
    DiskLayout {
        name: DiskLayoutName::new("vm").unwrap(),
        device: "/dev/vda".into(),
        partitions: vec![
            part("boot", PartitionKind::LegacyBoot, PartitionSize::Mib(256), None, "BOOT", None),
            part(
                "root",
                PartitionKind::Filesystem,
                PartitionSize::Rest,
                Some(Filesystem::Ext4),
                "root",
                Some("/"),
            ),
        ],
        span: SourceSpan { file: "cairn.hcl".into(), offset: 0, len: 0, line: 1, column: 1 },
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn disk_script_partitions_twice_and_the_installed_system_boots() {
    if !enabled() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let p = |name: &str| t.join(name);
    run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(p("id")));
    run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(p("host")));
    let keygen = Command::new("age-keygen").arg("-o").arg(p("age.txt")).output().unwrap();
    let recipient = String::from_utf8_lossy(&keygen.stderr)
        .split_whitespace()
        .find(|w| w.starts_with("age1"))
        .expect("age-keygen prints the recipient")
        .to_owned();
    fs_err::create_dir(p("secrets")).unwrap();
    fs_err::write(p("plain.yaml"), "greeting: hello from sops\n").unwrap();
    let enc =
        run(Command::new(sops()).args(["--encrypt", "--age", &recipient]).arg(p("plain.yaml")));
    fs_err::write(p("secrets/demo.yaml"), enc).unwrap();

    let toplevel = run(Command::new(Path::new(ROOT).join("vm-tests/build-test-system"))
        .arg("--authorized-key")
        .arg(p("id.pub"))
        .arg("--secrets")
        .arg(p("secrets"))
        .env("CAIRN_TEST_SOPS", sops()));
    let toplevel = StorePath::new(toplevel.trim()).unwrap();
    let closure = Nix::new().closure(std::slice::from_ref(&toplevel)).await.unwrap();
    fs_err::write(p("registration"), load_db_registration(&closure)).unwrap();
    let script = render_script(&extlinux_layout(), &ScriptOptions::default()).unwrap();
    fs_err::write(p("disk.sh"), script).unwrap();

    let out = run(Command::new(Path::new(ROOT).join("vm-tests/install-test-system"))
        .arg("--toplevel")
        .arg(toplevel.as_str())
        .arg("--disk-script")
        .arg(p("disk.sh"))
        .arg("--registration")
        .arg(p("registration"))
        .arg("--ssh-key")
        .arg(p("id"))
        .arg("--host-key")
        .arg(p("host"))
        .arg("--age-key")
        .arg(p("age.txt"))
        .arg("--work")
        .arg(p("vm")));
    assert_eq!(out, "install-test-system: ok\n");

    let install = fs_err::read_to_string(p("vm/install.log")).unwrap();
    // The second run found the first run's mounts and started over.
    assert!(install.contains("cairn-disk: umount /mnt/boot (left by a previous run)"), "{install}");
    assert!(install.contains(
        "switch-to-configuration: extlinux installed on /dev/vda1, gptmbr.bin on /dev/vda"
    ));
    let boot = fs_err::read_to_string(p("vm/boot.log")).unwrap();
    assert!(boot.contains(&format!("cairn-test-system: booted {toplevel}")), "{boot}");
    assert!(boot.contains("cairn-test-system: secret demo decrypted to /run/secrets/demo"));
    assert!(boot.contains("cairn-test-agent: running"));
    assert_eq!(fs_err::read_to_string(p("vm/secrets.out")).unwrap(), "greeting: hello from sops\n");
}
