//! Seeding beyond the host's keys on a real installer (issue 14, item 11): a host whose disk
//! layout has a LUKS-encrypted data partition keyed by a `disk_encryption_key`, and an
//! `extra_files` tree plus a sops file as `extra_file`. The disk phase uploads the key into
//! the stand-in installer's RAM (mode 0600, on its RAM root file system) before partitioning,
//! formats and opens the partition with it and mounts the filesystem inside; the keys phase
//! writes the extra files under /mnt with their modes and owners. Then the VM's disk is read
//! back as a raw image (`qemu-img convert`): a marker written in plain under /mnt is found
//! there (the search works), while the key's bytes and a marker written inside the encrypted
//! filesystem are not.

use crate::bootstrap_vm::{cairn, console, destroy_leaves_nothing, text, Fleet};

/// The example fleet's layout with root cut to a fixed size and an encrypted data partition
/// taking the rest of the 4 GiB disk.
const ROOT_AND_DATA: &str = r#"  partition "root" {
    type       = "filesystem"
    size       = "2560M"
    filesystem = "ext4"
    label      = "root"
    mountpoint = "/"
  }
  partition "data" {
    type       = "filesystem"
    size       = "rest"
    filesystem = "ext4"
    label      = "data"
    mountpoint = "/srv/data"
    luks_key   = "/tmp/secret.key"
  }"#;

const PLAIN_ROOT: &str = r#"  partition "root" {
    type       = "filesystem"
    size       = "rest"
    filesystem = "ext4"
    label      = "root"
    mountpoint = "/"
  }"#;

fn installer(dir: &std::path::Path, command: &str) -> String {
    let out = cairn(dir, &["ssh", "web1", "--phase", "installer", "-T", "--", command]);
    assert!(out.status.success(), "{command}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn a_luks_partition_is_opened_with_the_key_seeded_into_ram_and_the_key_never_reaches_the_disk() {
    let Some(fleet) = Fleet::start() else { return };
    let dir = fleet.dir.clone();

    // A key no other run shares, kept outside the repository.
    let secret = format!("cairn-luks-key-{:032x}", rand::random::<u128>());
    let key_file = dir.parent().unwrap().join("disk.key");
    fs_err::write(&key_file, &secret).unwrap();
    let marker = format!("cairn-plain-marker-{:032x}", rand::random::<u128>());
    fs_err::create_dir_all(dir.join("hosts/web1/files/etc/cairn")).unwrap();
    fs_err::write(dir.join("hosts/web1/files/etc/cairn/marker"), format!("{marker}\n")).unwrap();

    let hcl = fs_err::read_to_string(dir.join("cairn.hcl")).unwrap();
    assert!(hcl.contains(PLAIN_ROOT), "make-fleet's layout changed:\n{hcl}");
    let hcl = hcl.replace(PLAIN_ROOT, ROOT_AND_DATA).replace(
        "  age_key     = true\n",
        &format!(
            "  age_key     = true\n  extra_files = \"hosts/web1/files\"\n  \
             extra_file \"/etc/cairn/web1.yaml\" {{\n    sops  = \"secrets/web1.yaml\"\n    \
             mode  = \"0440\"\n    group = 999\n  }}\n  \
             disk_encryption_key \"/tmp/secret.key\" {{\n    file = \"{}\"\n  }}\n",
            key_file.display()
        ),
    );
    fs_err::write(dir.join("cairn.hcl"), hcl).unwrap();

    let run = cairn(
        &dir,
        &[
            "-v",
            "bootstrap",
            "host",
            "web1",
            "--yes",
            "--phases",
            "provision,reach,kexec,disk,keys",
        ],
    );
    let err = String::from_utf8_lossy(&run.stderr).to_string();
    assert!(run.status.success(), "{}\n--- console\n{}", text(&run), console(&dir));
    for line in [
        "cairn-disk: cryptsetup luksFormat /dev/vda3 with the key file /tmp/secret.key",
        "cairn-disk: opened /dev/vda3 as /dev/mapper/crypt-data",
        "cairn-disk: mkfs.ext4 /dev/mapper/crypt-data (label data)",
        "cairn-disk: mount /dev/mapper/crypt-data on /mnt/srv/data",
    ] {
        assert!(err.contains(line), "missing {line:?}:\n{err}");
    }
    assert!(!err.contains(&secret), "the key is never logged");

    // The key is in the installer's RAM, private; the partition is open and mounted.
    let facts = installer(
        &dir,
        "stat -c '%a %u %s' /tmp/secret.key; stat -f -c %t /tmp; \
         cryptsetup status crypt-data | head -n 2; \
         awk '$2 == \"/mnt/srv/data\" { print $1, $3 }' /proc/mounts; \
         cryptsetup isLuks --type luks2 /dev/vda3 && echo luks2",
    );
    let facts: Vec<&str> = facts.lines().map(str::trim).collect();
    assert_eq!(facts[0], format!("600 0 {}", secret.len()), "{facts:?}");
    assert!(["1021994", "858458f6"].contains(&facts[1]), "tmpfs or ramfs: {facts:?}");
    assert_eq!(facts[2], "/dev/mapper/crypt-data is active and is in use.", "{facts:?}");
    assert_eq!(facts[3], "type:    LUKS2", "{facts:?}");
    assert_eq!(facts[4], "/dev/mapper/crypt-data ext4", "{facts:?}");
    assert_eq!(facts[5], "luks2", "{facts:?}");

    // The keys phase wrote the extra files with their modes and owners, the sops file
    // decrypted (as `cairn secrets decrypt` shows it).
    let seeded =
        installer(&dir, "stat -c '%n %a %u %g' /mnt/etc/cairn/marker /mnt/etc/cairn/web1.yaml");
    assert!(seeded.contains("/mnt/etc/cairn/marker 644 0 0\n"), "{seeded}");
    assert!(seeded.contains("/mnt/etc/cairn/web1.yaml 440 0 999\n"), "{seeded}");
    let plain = cairn(&dir, &["secrets", "decrypt", "secrets/web1.yaml"]);
    assert!(plain.status.success(), "{}", text(&plain));
    assert_eq!(
        installer(&dir, "cat /mnt/etc/cairn/web1.yaml"),
        String::from_utf8_lossy(&plain.stdout)
    );

    // Flush the installer's writes (a marker written inside the encrypted filesystem too),
    // then read the whole disk back on this side as a raw image: the plain marker is there
    // (the search works), the key and the hidden marker are not.
    let hidden = format!("cairn-hidden-marker-{:032x}", rand::random::<u128>());
    installer(
        &dir,
        &format!("printf '%s\\n' {hidden} > /mnt/srv/data/hidden; sync; echo 3 > /proc/sys/vm/drop_caches"),
    );
    let raw = dir.parent().unwrap().join("disk.raw");
    let convert = std::process::Command::new("qemu-img")
        .args(["convert", "-U", "-O", "raw"])
        .arg(dir.join(".cairn/qemu/web1/disk.qcow2"))
        .arg(&raw)
        .output()
        .unwrap();
    assert!(convert.status.success(), "{}", String::from_utf8_lossy(&convert.stderr));
    let count = |needle: &str| {
        let out = std::process::Command::new("grep")
            .args(["-c", "-a", "-F", "--", needle])
            .arg(&raw)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_ne!(count(&marker), "0", "the search finds what is on the disk");
    assert_eq!(count(&secret), "0", "the key is on the disk");
    assert_eq!(count(&hidden), "0", "the data partition is not encrypted");
    fs_err::remove_file(&raw).unwrap();

    destroy_leaves_nothing(&dir);
    drop(fleet);
}
