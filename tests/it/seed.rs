//! What a host is seeded with besides its keys (issue 14, item 11), written by cairn's seed
//! module over a real sshd on 127.0.0.1 into a scratch root standing in for the installer's
//! /mnt: an `extra_files` tree with its modes, and sops values decrypted by cairn in memory
//! (the file encrypted by the real sops) with the mode and owner the inventory gives; disk
//! keys land only on a RAM file system, mode 0600, and a directory on disk is refused.
#![allow(clippy::print_stderr)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use cairn::bootstrap::seed::{write_disk_keys, write_files};
use cairn::inventory::{DiskKey, Seed, SeedFile, SeedSource};
use cairn::keys::{Identities, IdentityEnv};
use cairn::ssh::{Auth, ConnectOptions, HostKeyPolicy, Session, Target};

use crate::support::secrets::Lab;
use crate::support::sshd::{self, Sshd};

async fn connect(server: &Sshd) -> Session {
    Session::connect(
        &Target::new("127.0.0.1", server.port, "root"),
        &Auth::KeyFile(server.client_key()),
        &HostKeyPolicy::pinned_openssh([server.host_public_key("ed25519")]).unwrap(),
        &ConnectOptions::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("{}\n{}", cairn::ui::render_plain(&e), server.log()))
}

fn mode(path: &Path) -> u32 {
    fs_err::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn set_mode(path: &Path, mode: u32) {
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Every file under `dir`, relative to it.
fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs_err::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// A repository with `hosts/web1/files` and `secrets/wg.yaml` (sops, to `key`'s recipient).
fn repository(lab: &Lab, recipient: &str) -> PathBuf {
    let repo = lab.path("repo");
    let files = repo.join("hosts/web1/files");
    fs_err::create_dir_all(files.join("etc/app")).unwrap();
    fs_err::create_dir_all(files.join("usr/local/bin")).unwrap();
    fs_err::write(files.join("etc/motd"), "welcome to web1\n").unwrap();
    fs_err::write(files.join("etc/app/config"), "listen = 8080\n").unwrap();
    fs_err::write(files.join("usr/local/bin/hello"), "#!/bin/sh\necho hello\n").unwrap();
    set_mode(&files.join("etc/motd"), 0o644);
    set_mode(&files.join("etc/app"), 0o750);
    set_mode(&files.join("etc/app/config"), 0o640);
    set_mode(&files.join("usr/local/bin/hello"), 0o755);
    fs_err::create_dir_all(repo.join("secrets")).unwrap();
    fs_err::write(lab.path("wg.yaml"), "wg0: wg-private-key-of-web1\nlisten: 51820\n").unwrap();
    let out = lab.sops(&["encrypt", "--age", recipient, "wg.yaml"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    fs_err::write(repo.join("secrets/wg.yaml"), out.stdout).unwrap();
    fs_err::remove_file(lab.path("wg.yaml")).unwrap();
    repo
}

fn identities(key_file: &Path) -> Identities {
    let env: IdentityEnv =
        [("SOPS_AGE_KEY_FILE".to_owned(), key_file.display().to_string())].into_iter().collect();
    Identities::discover(&env)
}

#[tokio::test]
async fn extra_files_and_sops_values_land_under_the_root_with_their_modes_and_owners() {
    if !sshd::is_root() {
        eprintln!("SKIPPED: the installer is reached as root (chown needs it)");
        return;
    }
    let Some(lab) = Lab::new() else { return };
    let admin = lab.age_key("admin");
    let repo = repository(&lab, &admin.recipient);
    let server = Sshd::start();
    let session = connect(&server).await;
    let target = tempfile::tempdir().unwrap();
    let root = target.path().to_str().unwrap();
    let seed = Seed {
        extra_files: Some("hosts/web1/files".into()),
        files: vec![
            SeedFile {
                path: "/etc/wireguard/wg0.key".into(),
                source: SeedSource::Sops {
                    path: "secrets/wg.yaml".into(),
                    key: vec!["wg0".into()],
                },
                mode: 0o440,
                uid: 0,
                gid: 998,
            },
            SeedFile {
                path: "/etc/wireguard/all.yaml".into(),
                source: SeedSource::Sops { path: "secrets/wg.yaml".into(), key: vec![] },
                mode: 0o400,
                uid: 997,
                gid: 997,
            },
        ],
        disk_keys: Vec::new(),
    };
    let seeded = write_files(&session, root, &repo, &seed, &identities(&admin.identity_file))
        .await
        .unwrap_or_else(|e| panic!("{}", cairn::ui::render_plain(&e)));
    assert_eq!(seeded.files, 5);
    let t = target.path();
    assert_eq!(
        listing(t),
        [
            "etc/app/config",
            "etc/motd",
            "etc/wireguard/all.yaml",
            "etc/wireguard/wg0.key",
            "usr/local/bin/hello"
        ],
        "no temp file is left behind"
    );
    // The tree keeps its modes; everything belongs to root.
    assert_eq!(fs_err::read_to_string(t.join("etc/motd")).unwrap(), "welcome to web1\n");
    assert_eq!(mode(&t.join("etc/motd")), 0o644);
    assert_eq!(mode(&t.join("etc/app")), 0o750);
    assert_eq!(mode(&t.join("etc/app/config")), 0o640);
    assert_eq!(mode(&t.join("usr/local/bin/hello")), 0o755);
    assert_eq!(fs_err::metadata(t.join("etc/app/config")).unwrap().uid(), 0);
    // The sops value, decrypted by cairn, with the inventory's mode and owner.
    let wg = t.join("etc/wireguard/wg0.key");
    assert_eq!(fs_err::read_to_string(&wg).unwrap(), "wg-private-key-of-web1");
    assert_eq!(mode(&wg), 0o440);
    let meta = fs_err::metadata(&wg).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (0, 998));
    // The whole file: its plaintext, as `sops decrypt` prints it.
    let all = t.join("etc/wireguard/all.yaml");
    assert_eq!(
        fs_err::read_to_string(&all).unwrap(),
        "wg0: wg-private-key-of-web1\nlisten: 51820\n"
    );
    let meta = fs_err::metadata(&all).unwrap();
    assert_eq!((mode(&all), meta.uid(), meta.gid()), (0o400, 997, 997));
    // The plaintext was never written on this side.
    for f in listing(lab.dir.path()) {
        let bytes = fs_err::read(lab.dir.path().join(&f)).unwrap();
        assert!(
            !bytes.windows(22).any(|w| w == b"wg-private-key-of-web1"),
            "plaintext in the operator's {f}"
        );
    }

    // Run again: the same files, replaced (the keys phase re-runs after a failure).
    let again =
        write_files(&session, root, &repo, &seed, &identities(&admin.identity_file)).await.unwrap();
    assert_eq!(again, seeded);
    assert_eq!(listing(t).len(), 5);

    // Without the admin's key the value cannot be decrypted, and nothing is written for it.
    let other = lab.age_key("other");
    let fresh = tempfile::tempdir().unwrap();
    let only_sops = Seed { extra_files: None, ..seed.clone() };
    let err = write_files(
        &session,
        fresh.path().to_str().unwrap(),
        &repo,
        &only_sops,
        &identities(&other.identity_file),
    )
    .await
    .unwrap_err();
    let text = cairn::ui::render_plain(&err);
    assert!(text.contains("secrets/wg.yaml"), "{text}");
    assert!(!fresh.path().join("etc/wireguard/wg0.key").exists());
}

#[tokio::test]
async fn disk_keys_go_to_ram_with_mode_0600_and_a_disk_directory_is_refused() {
    if !sshd::is_root() {
        eprintln!("SKIPPED: the installer is reached as root");
        return;
    }
    let Some(lab) = Lab::new() else { return };
    let admin = lab.age_key("admin");
    let repo = lab.path("repo");
    fs_err::create_dir_all(&repo).unwrap();
    let key = lab.path("disk.key");
    fs_err::write(&key, "luks-passphrase-of-web1").unwrap();
    let server = Sshd::start();
    let session = connect(&server).await;
    // /dev/shm is a tmpfs on Linux: the stand-in for the installer's RAM.
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let path = format!("{}/keys/secret.key", shm.path().display());
    let keys = [DiskKey { path: path.clone(), source: SeedSource::File { path: key.clone() } }];
    write_disk_keys(&session, &repo, &keys, &identities(&admin.identity_file))
        .await
        .unwrap_or_else(|e| panic!("{}", cairn::ui::render_plain(&e)));
    assert_eq!(fs_err::read_to_string(&path).unwrap(), "luks-passphrase-of-web1");
    assert_eq!(mode(Path::new(&path)), 0o600);
    assert_eq!(mode(&shm.path().join("keys")), 0o700, "a directory cairn made is private");

    // A directory on a disk file system (this crate's target directory) is refused before
    // any byte is sent.
    let on_disk = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = format!("{}/secret.key", on_disk.path().display());
    let keys = [DiskKey { path: path.clone(), source: SeedSource::File { path: key } }];
    let err = write_disk_keys(&session, &repo, &keys, &identities(&admin.identity_file))
        .await
        .unwrap_err();
    let text = cairn::ui::render_plain(&err);
    assert!(text.contains(&format!("the disk encryption key {path} would be on ")), "{text}");
    assert!(text.contains("not in RAM"), "{text}");
    assert!(text.contains("choose a path on the installer's tmpfs"), "{text}");
    assert!(listing(on_disk.path()).is_empty(), "nothing was written");
}
