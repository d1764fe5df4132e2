//! Keys against the real tools: `ssh-keygen`, `age`, `age-keygen` and sops 3.11.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cairn::keys::{
    encrypt_armored, generate_age_identity, ssh_private_key_to_age, ssh_public_key_to_age,
    AgeIdentity, AgeRecipient, HostKeys, Identities, IdentityEnv, IdentitySource, SourceOutcome,
};

fn run(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    fs_err::write(path, text).unwrap();
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn host(name: &str) -> cairn::inventory::model::HostName {
    cairn::inventory::model::HostName::new(name).unwrap()
}

/// sops 3.11: `CAIRN_TEST_SOPS`, else `.ci/venv/bin/sops` in the crate, else PATH.
/// A sops command with a clean environment: no keys from the user running the tests.
fn sops_cmd(home: &Path) -> Command {
    let mut cmd = Command::new(crate::support::tools::sops());
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("SOPS_DISABLE_VERSION_CHECK", "1");
    cmd
}

#[test]
fn generated_host_key_is_what_ssh_keygen_reads() {
    let dir = tempfile::tempdir().unwrap();
    let keys = HostKeys::generate(&host("web1"), false);
    let path = dir.path().join("ssh_host_ed25519_key");
    write_private(&path, keys.ssh_private_openssh());

    let public = run(Command::new("ssh-keygen").arg("-y").arg("-f").arg(&path));
    assert_eq!(public.trim_end(), keys.ssh_public_line());
    assert!(keys.ssh_public_line().ends_with(" root@web1"));

    // ssh-keygen can also rewrite it (change the comment), which parses every field.
    run(Command::new("ssh-keygen").args(["-c", "-C", "other", "-P", "", "-f"]).arg(&path));
    let rewritten = fs_err::read_to_string(&path).unwrap();
    let reparsed = HostKeys::from_private("web1", rewritten.into(), None).unwrap();
    assert_eq!(reparsed.ssh_age_recipient(), keys.ssh_age_recipient());
    assert!(reparsed.ssh_public_line().ends_with(" other"));
}

#[test]
fn ssh_to_age_agrees_with_age_keygen_and_age() {
    let dir = tempfile::tempdir().unwrap();
    // A key made by ssh-keygen itself, not by cairn.
    let key = dir.path().join("id_ed25519");
    run(Command::new("ssh-keygen")
        .args(["-t", "ed25519", "-N", "", "-q", "-C", "x", "-f"])
        .arg(&key));
    let public_line = fs_err::read_to_string(key.with_extension("pub")).unwrap();

    let recipient = ssh_public_key_to_age(&public_line).unwrap();
    let identity = ssh_private_key_to_age(&fs_err::read(&key).unwrap()).unwrap();
    let id_file = dir.path().join("converted.txt");
    write_private(&id_file, &format!("{}\n", identity.expose_secret()));

    // age-keygen -y: the converted identity's public key is the converted recipient.
    let derived = run(Command::new("age-keygen").arg("-y").arg(&id_file));
    assert_eq!(derived.trim(), recipient.as_str());

    // age -e to the converted recipient, age -d with the converted identity.
    let plain = dir.path().join("plain");
    fs_err::write(&plain, b"hello host").unwrap();
    let enc = dir.path().join("plain.age");
    run(Command::new("age").args(["-e", "-r", recipient.as_str(), "-o"]).arg(&enc).arg(&plain));
    let dec = run(Command::new("age").arg("-d").arg("-i").arg(&id_file).arg(&enc));
    assert_eq!(dec, "hello host");

    // And cairn's own encryption decrypts with the real age.
    let armored = encrypt_armored(std::slice::from_ref(&recipient), b"from cairn").unwrap();
    let enc2 = dir.path().join("cairn.age");
    fs_err::write(&enc2, armored).unwrap();
    let dec = run(Command::new("age").arg("-d").arg("-i").arg(&id_file).arg(&enc2));
    assert_eq!(dec, "from cairn");
}

#[test]
fn cairn_host_key_conversion_matches_age_keygen() {
    let dir = tempfile::tempdir().unwrap();
    let keys = HostKeys::generate(&host("db1"), false);
    let id_file = dir.path().join("id.txt");
    write_private(&id_file, &format!("{}\n", keys.ssh_age_identity().expose_secret()));
    let derived = run(Command::new("age-keygen").arg("-y").arg(&id_file));
    assert_eq!(derived.trim(), keys.ssh_age_recipient().as_str());
    assert_eq!(keys.age_recipient(), *keys.ssh_age_recipient());
}

#[test]
fn admin_key_file_is_read_by_age_keygen() {
    let dir = tempfile::tempdir().unwrap();
    let file = generate_age_identity();
    let path = dir.path().join("keys.txt");
    write_private(&path, &file.to_text());
    let public = run(Command::new("age-keygen").arg("-y").arg(&path));
    assert_eq!(public.trim(), file.identity.to_public().as_str());
}

#[test]
fn discovery_uses_ssh_keys_key_cmd_and_skips_protected_keys() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let ssh = home.join(".ssh");
    fs_err::create_dir_all(&ssh).unwrap();
    run(Command::new("ssh-keygen")
        .args(["-t", "ed25519", "-N", "", "-q", "-f"])
        .arg(ssh.join("id_ed25519")));
    // A passphrase-protected RSA key: skipped with a reason, never prompted for.
    run(Command::new("ssh-keygen")
        .args(["-t", "rsa", "-b", "2048", "-N", "secret-pass", "-q", "-f"])
        .arg(ssh.join("id_rsa")));
    let cmd_key = AgeIdentity::generate();
    let cmd_file = dir.path().join("from-cmd.txt");
    write_private(&cmd_file, &format!("{}\n", cmd_key.expose_secret()));

    let mut env = IdentityEnv::default();
    env.set("HOME", home.display().to_string())
        .set("SOPS_AGE_KEY_CMD", format!("cat '{}'", cmd_file.display()));
    let ids = Identities::discover(&env);

    let outcome = |src: &IdentitySource| {
        ids.report.iter().find(|r| &r.source == src).map(|r| r.outcome.clone()).unwrap()
    };
    assert_eq!(
        outcome(&IdentitySource::DefaultSshKey(ssh.join("id_ed25519"))),
        SourceOutcome::Loaded(1)
    );
    assert!(matches!(
        outcome(&IdentitySource::DefaultSshKey(ssh.join("id_rsa"))),
        SourceOutcome::Skipped(why) if why.contains("passphrase")
    ));
    assert_eq!(
        outcome(&IdentitySource::KeyCmdEnv(Some(format!("cat '{}'", cmd_file.display())))),
        SourceOutcome::Loaded(1)
    );
    let report = ids.describe_sources();
    assert!(
        !report.contains("secret-pass") && !report.contains(cmd_key.expose_secret()),
        "{report}"
    );

    // Each identity really decrypts: the ssh recipient (age -R) and the command's key.
    let pub_line = fs_err::read_to_string(ssh.join("id_ed25519.pub")).unwrap();
    let plain = dir.path().join("plain");
    fs_err::write(&plain, b"k").unwrap();
    let enc = dir.path().join("ssh.age");
    run(Command::new("age")
        .arg("-e")
        .arg("-R")
        .arg(ssh.join("id_ed25519.pub"))
        .arg("-o")
        .arg(&enc)
        .arg(&plain));
    assert_eq!(&ids.decrypt(&fs_err::read(&enc).unwrap()).unwrap()[..], b"k");
    let armored = encrypt_armored(&[cmd_key.to_public()], b"k").unwrap();
    assert_eq!(&ids.decrypt(armored.as_bytes()).unwrap()[..], b"k");
    // Like sops 3.11, the ssh key is not also used as its ssh-to-age identity.
    let converted = ssh_public_key_to_age(&pub_line).unwrap();
    assert!(ids.decrypt(encrypt_armored(&[converted], b"k").unwrap().as_bytes()).is_err());

    // An age file for someone else: the error lists where cairn looked.
    let stranger = AgeIdentity::generate().to_public();
    let err = ids.decrypt(encrypt_armored(&[stranger], b"k").unwrap().as_bytes()).unwrap_err();
    let help = miette::Diagnostic::help(&err).unwrap().to_string();
    let home_shown = home.display().to_string();
    let rendered = cairn::ui::render_plain(&err);
    let rendered =
        rendered.replace(&home_shown, "$HOME").replace(&dir.path().display().to_string(), "$TMP");
    insta::assert_snapshot!("no_matching_identity", rendered);
    assert!(help.contains("SOPS_AGE_KEY_CMD (`cat"), "{help}");
    assert!(help.contains("id_rsa: skipped: the key is protected by a passphrase"), "{help}");
}

/// The sops-nix path: a file sops encrypts to a host's ssh-to-age recipient is decrypted by
/// sops given only the converted identity (what sops-install-secrets puts in age-keys.txt).
#[test]
fn sops_decrypts_with_the_converted_host_identity() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    fs_err::create_dir_all(&home).unwrap();
    let keys = HostKeys::generate(&host("web1"), false);
    let plain = dir.path().join("s.yaml");
    fs_err::write(&plain, "password: hunter2\n").unwrap();
    let enc = run(sops_cmd(&home)
        .args(["encrypt", "--age", keys.ssh_age_recipient().as_str()])
        .arg(&plain));
    let enc_path = dir.path().join("s.enc.yaml");
    fs_err::write(&enc_path, &enc).unwrap();

    let key_file = dir.path().join("age-keys.txt");
    write_private(
        &key_file,
        &format!("# generated\n{}\n", keys.ssh_age_identity().expose_secret()),
    );
    let dec =
        run(sops_cmd(&home).env("SOPS_AGE_KEY_FILE", &key_file).arg("decrypt").arg(&enc_path));
    assert_eq!(dec, "password: hunter2\n");

    // sops 3.11 does not derive that identity from ~/.ssh/id_ed25519 (3.12+ does); cairn's
    // discovery follows 3.11, see discovery_uses_ssh_keys_key_cmd_and_skips_protected_keys.
    let ssh = home.join(".ssh");
    fs_err::create_dir_all(&ssh).unwrap();
    write_private(&ssh.join("id_ed25519"), keys.ssh_private_openssh());
    let out = sops_cmd(&home).arg("decrypt").arg(&enc_path).output().unwrap();
    assert_eq!(out.status.code(), Some(128), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn recipients_parse_what_the_tools_print() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    run(Command::new("ssh-keygen")
        .args(["-t", "rsa", "-b", "3072", "-N", "", "-q", "-C", "a@b", "-f"])
        .arg(&key));
    let rsa_line = fs_err::read_to_string(key.with_extension("pub")).unwrap();
    let rsa = AgeRecipient::parse(&rsa_line).unwrap();
    assert_eq!(rsa.as_str(), rsa_line.trim());
    assert_eq!(rsa.kind(), cairn::keys::RecipientKind::SshRsa);
    let keygen = run(Command::new("age-keygen").arg("-o").arg(dir.path().join("a.txt")));
    assert!(keygen.is_empty());
    let public = run(Command::new("age-keygen").arg("-y").arg(dir.path().join("a.txt")));
    assert_eq!(AgeRecipient::parse(&public).unwrap().as_str(), public.trim());
}

/// Host private keys are stored as sops binary files: the real sops opens them with an
/// admin's key, and what comes out is the key ssh-keygen reads.
#[test]
fn stored_host_keys_open_with_the_real_sops() {
    use cairn::keys::HostKeyStore;
    use cairn::secrets::SopsBinaryCodec;
    let repo = tempfile::tempdir().unwrap();
    let home = repo.path().join("home");
    fs_err::create_dir_all(&home).unwrap();
    let admin = generate_age_identity();
    let admin_file = repo.path().join("admin.txt");
    write_private(&admin_file, &admin.to_text());

    let mut env = IdentityEnv::default();
    env.set("HOME", home.display().to_string())
        .set("SOPS_AGE_KEY_FILE", admin_file.display().to_string());
    let keyring = Identities::discover(&env);
    let codec = SopsBinaryCodec { keyring: &keyring };
    let store = HostKeyStore::new(repo.path());
    let keys = HostKeys::generate(&host("web1"), true);
    store.save(&keys, &[admin.identity.to_public()], &codec).unwrap();

    let private = run(sops_cmd(&home)
        .env("SOPS_AGE_KEY_FILE", &admin_file)
        .arg("decrypt")
        .arg(store.private_key_path("web1")));
    assert_eq!(private, keys.ssh_private_openssh().as_str());
    let out = repo.path().join("key");
    write_private(&out, &private);
    let public = run(Command::new("ssh-keygen").arg("-y").arg("-f").arg(&out));
    assert_eq!(public.trim_end(), keys.ssh_public_line());
    let age_key = run(sops_cmd(&home)
        .env("SOPS_AGE_KEY_FILE", &admin_file)
        .arg("decrypt")
        .arg(store.age_key_path("web1")));
    assert_eq!(age_key.trim(), keys.age_identity().unwrap().expose_secret());
    assert_eq!(
        fs_err::read_to_string(store.public_key_path("web1")).unwrap(),
        format!("{}\n", keys.ssh_public_line())
    );

    // And cairn reads back what sops would rewrite (sops re-encrypting it in place).
    run(sops_cmd(&home)
        .env("SOPS_AGE_KEY_FILE", &admin_file)
        .args(["rotate", "-i"])
        .arg(store.private_key_path("web1")));
    let loaded = store.load("web1", &codec).unwrap();
    assert_eq!(loaded.ssh_private_openssh(), keys.ssh_private_openssh());
    assert_eq!(loaded.age_recipient(), keys.age_recipient());
}

/// Identity discovery, side by side with sops 3.11: for each environment, cairn finds a key
/// that opens the data key of a file sops encrypted exactly when sops itself can decrypt it.
#[test]
fn discovery_decrypts_exactly_when_sops_does() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let admin = generate_age_identity();
    let key_text = admin.to_text();
    let spaced = root.join("dir with space");
    fs_err::create_dir_all(&spaced).unwrap();
    let key_file = spaced.join("keys.txt");
    write_private(&key_file, &key_text);

    // A file sops encrypts to the admin, and one to an SSH key.
    let ssh_dir = root.join("sshkey");
    fs_err::create_dir_all(&ssh_dir).unwrap();
    run(Command::new("ssh-keygen")
        .args(["-t", "ed25519", "-N", "", "-q", "-f"])
        .arg(ssh_dir.join("id_ed25519")));
    let ssh_pub = fs_err::read_to_string(ssh_dir.join("id_ed25519.pub")).unwrap();
    let empty_home = root.join("empty-home");
    fs_err::create_dir_all(&empty_home).unwrap();
    let plain = root.join("s.yaml");
    fs_err::write(&plain, "k: v\n").unwrap();
    let encrypt_to = |recipient: &str, name: &str| -> (PathBuf, String) {
        let out = run(sops_cmd(&empty_home).args(["encrypt", "--age", recipient]).arg(&plain));
        let path = root.join(name);
        fs_err::write(&path, &out).unwrap();
        let docs = cairn::secrets::yaml::parse(&out).unwrap();
        let enc = (|| {
            use cairn::secrets::tree::{get, ListItem, Scalar, Value};
            let Some(Value::Map(meta)) = get(&docs[0], "sops") else { return None };
            let Some(Value::List(age)) = get(meta, "age") else { return None };
            let ListItem::Value(Value::Map(stanza)) = &age[0] else { return None };
            match get(stanza, "enc") {
                Some(Value::Scalar(Scalar::Str(s))) => Some(s.clone()),
                _ => None,
            }
        })()
        .expect("an age stanza");
        (path, enc)
    };
    let to_admin = encrypt_to(admin.identity.to_public().as_str(), "admin.enc.yaml");
    let to_ssh = encrypt_to(ssh_pub.trim(), "ssh.enc.yaml");

    struct Case {
        name: &'static str,
        vars: Vec<(&'static str, String)>,
        /// Files placed under the case's HOME.
        home_files: Vec<(&'static str, String)>,
        ssh_file: bool,
        expect: bool,
    }
    let with_space = format!("cat '{}'", key_file.display());
    let cases = vec![
        Case {
            name: "SOPS_AGE_KEY",
            vars: vec![("SOPS_AGE_KEY", key_text.to_string())],
            home_files: vec![],
            ssh_file: false,
            expect: true,
        },
        Case {
            name: "SOPS_AGE_KEY with CRLF",
            vars: vec![("SOPS_AGE_KEY", key_text.replace('\n', "\r\n"))],
            home_files: vec![],
            ssh_file: false,
            expect: true,
        },
        Case {
            name: "SOPS_AGE_KEY with a trailing space",
            vars: vec![("SOPS_AGE_KEY", key_text.replace('\n', " \n"))],
            home_files: vec![],
            ssh_file: false,
            expect: false,
        },
        Case {
            name: "SOPS_AGE_KEY_FILE",
            vars: vec![("SOPS_AGE_KEY_FILE", key_file.display().to_string())],
            home_files: vec![],
            ssh_file: false,
            expect: true,
        },
        Case {
            name: "SOPS_AGE_KEY_CMD, quoted path",
            vars: vec![("SOPS_AGE_KEY_CMD", with_space)],
            home_files: vec![],
            ssh_file: false,
            expect: true,
        },
        Case {
            name: "SOPS_AGE_KEY_CMD failing",
            vars: vec![("SOPS_AGE_KEY_CMD", "false".into())],
            home_files: vec![],
            ssh_file: false,
            expect: false,
        },
        Case {
            name: "default keys.txt",
            vars: vec![],
            home_files: vec![(".config/sops/age/keys.txt", key_text.to_string())],
            ssh_file: false,
            expect: true,
        },
        Case {
            name: "XDG_CONFIG_HOME",
            vars: vec![("XDG_CONFIG_HOME", "@HOME@/xdg".into())],
            home_files: vec![("xdg/sops/age/keys.txt", key_text.to_string())],
            ssh_file: false,
            expect: true,
        },
        Case {
            name: "XDG_CONFIG_HOME hides ~/.config",
            vars: vec![("XDG_CONFIG_HOME", "@HOME@/xdg".into())],
            home_files: vec![(".config/sops/age/keys.txt", key_text.to_string())],
            ssh_file: false,
            expect: false,
        },
        Case {
            name: "relative XDG_CONFIG_HOME",
            vars: vec![("XDG_CONFIG_HOME", "xdg".into())],
            home_files: vec![(".config/sops/age/keys.txt", key_text.to_string())],
            ssh_file: false,
            expect: false,
        },
        Case {
            name: "bad SOPS_AGE_KEY, good file",
            vars: vec![
                ("SOPS_AGE_KEY", "AGE-SECRET-KEY-1BROKEN".into()),
                ("SOPS_AGE_KEY_FILE", key_file.display().to_string()),
            ],
            home_files: vec![],
            ssh_file: false,
            expect: true,
        },
        Case {
            name: "nothing at all",
            vars: vec![],
            home_files: vec![],
            ssh_file: false,
            expect: false,
        },
        Case {
            name: "~/.ssh/id_ed25519 for an ssh recipient",
            vars: vec![],
            home_files: vec![],
            ssh_file: true,
            expect: true,
        },
        Case {
            name: "SOPS_AGE_SSH_PRIVATE_KEY_FILE",
            vars: vec![(
                "SOPS_AGE_SSH_PRIVATE_KEY_FILE",
                ssh_dir.join("id_ed25519").display().to_string(),
            )],
            home_files: vec![],
            ssh_file: false,
            expect: true,
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        let home = root.join(format!("home{i}"));
        fs_err::create_dir_all(&home).unwrap();
        for (rel, text) in &case.home_files {
            let p = home.join(rel);
            fs_err::create_dir_all(p.parent().unwrap()).unwrap();
            write_private(&p, text);
        }
        let ssh_case =
            case.ssh_file || case.vars.iter().any(|(k, _)| *k == "SOPS_AGE_SSH_PRIVATE_KEY_FILE");
        if case.ssh_file {
            fs_err::create_dir_all(home.join(".ssh")).unwrap();
            fs_err::copy(ssh_dir.join("id_ed25519"), home.join(".ssh/id_ed25519")).unwrap();
        }
        let (file, enc) = if ssh_case { &to_ssh } else { &to_admin };

        let mut cmd = sops_cmd(&home);
        let mut env = IdentityEnv::default();
        env.set("HOME", home.display().to_string());
        for (k, v) in &case.vars {
            let v = v.replace("@HOME@", &home.display().to_string());
            cmd.env(k, &v);
            env.set(*k, v);
        }
        let sops_ok =
            cmd.arg("decrypt").arg(file).stdin(Stdio::null()).output().unwrap().status.success();
        let cairn_ok = Identities::discover(&env).decrypt(enc.as_bytes()).is_ok();
        assert_eq!(sops_ok, case.expect, "sops, case `{}`", case.name);
        assert_eq!(cairn_ok, case.expect, "cairn, case `{}`", case.name);
    }
}
