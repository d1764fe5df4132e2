//! `cairn secrets` end to end: the real binary, real age keys, and sops 3.11 to check what
//! cairn writes. Editors are shell scripts given through the child's environment.

use crate::support::secrets as secrets_support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use secrets_support::{cairn, mask_ciphertexts, AgeKey, Lab};

fn key_env(key: &AgeKey) -> [(&'static str, String); 1] {
    [("SOPS_AGE_KEY_FILE", key.identity_file.display().to_string())]
}

fn script(lab: &Lab, name: &str, body: &str) -> PathBuf {
    let p = lab.path(name);
    fs_err::write(&p, format!("#!/bin/sh\nset -e\n{body}\n")).unwrap();
    fs_err::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// Replaces the lab's temp dir and ciphertexts/dates so messages compare across runs.
fn normalize(lab: &Lab, s: &str) -> String {
    let s = s.replace(&lab.dir.path().display().to_string(), "[LAB]");
    // The UI's log filter currently lets library debug events through (reported); they are
    // not part of the message under test.
    let s: String =
        s.lines().filter(|l| !l.starts_with("DEBUG ")).map(|l| format!("{l}\n")).collect();
    let s = mask_ciphertexts(&s);
    let re = regex::Regex::new(r"age1[0-9a-z]{6,}(…[0-9a-z]{6})?").unwrap();
    let s = re.replace_all(&s, "[AGE-RECIPIENT]").into_owned();
    let re = regex::Regex::new(r"[0-9A-F]{128}").unwrap();
    re.replace_all(&s, "[MAC]").into_owned()
}

struct Fixture {
    lab: Lab,
    key: AgeKey,
    file: PathBuf,
}

/// A JSON secrets file encrypted by cairn for one fresh key.
fn fixture(name: &str, plain: &str) -> Option<Fixture> {
    let lab = Lab::new()?;
    let key = lab.age_key("admin");
    let file = lab.path(name);
    fs_err::write(&file, plain).unwrap();
    let out = cairn(
        &lab,
        lab.dir.path(),
        &["secrets", "encrypt", "-i", "--age", &key.recipient, name],
        &[],
    );
    assert!(out.status.success(), "encrypt: {}", String::from_utf8_lossy(&out.stderr));
    Some(Fixture { lab, key, file })
}

fn json_values(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn encrypt_then_decrypt_and_sops_agrees() {
    let Some(f) =
        fixture("app.json", r#"{"db": {"user": "app", "password": "s3cret"}, "port": 5432}"#)
    else {
        return;
    };
    let env = key_env(&f.key);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = cairn(&f.lab, f.lab.dir.path(), &["secrets", "decrypt", "app.json"], &env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sops = f.lab.sops_decrypt(&f.file, &f.key.identity_file, &[]);
    assert_eq!(out.stdout, sops);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "{\n\t\"db\": {\n\t\t\"user\": \"app\",\n\t\t\"password\": \"s3cret\"\n\t},\n\t\"port\": 5432\n}\n"
    );
    // --extract prints a raw value, like sops
    let out = cairn(
        &f.lab,
        f.lab.dir.path(),
        &["secrets", "decrypt", "--extract", r#"["db"]["password"]"#, "app.json"],
        &env,
    );
    assert_eq!(out.stdout, b"s3cret");
    let sops =
        f.lab.sops_decrypt(&f.file, &f.key.identity_file, &["--extract", r#"["db"]["password"]"#]);
    assert_eq!(out.stdout, sops);
}

#[test]
fn edit_changes_one_value_and_keeps_the_other_ciphertexts() {
    let Some(f) = fixture("app.json", r#"{"a": "one", "b": "two", "nested": {"c": 3, "d": true}}"#)
    else {
        return;
    };
    let before = fs_err::read_to_string(&f.file).unwrap();
    let editor = script(&f.lab, "ed.sh", r#"sed -i 's/"two"/"TWO"/' "$1""#);
    let mut env: Vec<(&str, String)> = key_env(&f.key).to_vec();
    env.push(("EDITOR", editor.display().to_string()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = cairn(&f.lab, f.lab.dir.path(), &["secrets", "edit", "app.json"], &env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after = fs_err::read_to_string(&f.file).unwrap();
    let (b, a) = (json_values(&before), json_values(&after));
    assert_eq!(a["a"], b["a"], "unchanged value keeps its ciphertext");
    assert_eq!(a["nested"]["c"], b["nested"]["c"]);
    assert_eq!(a["nested"]["d"], b["nested"]["d"]);
    assert_ne!(a["b"], b["b"]);
    assert_eq!(a["sops"]["age"], b["sops"]["age"], "same data key, same enc blocks");
    assert_ne!(a["sops"]["mac"], b["sops"]["mac"]);
    let plain = f.lab.sops_decrypt(&f.file, &f.key.identity_file, &[]);
    let plain = json_values(&String::from_utf8(plain).unwrap());
    assert_eq!(plain["b"], "TWO");
    assert_eq!(plain["a"], "one");
}

/// The editor gets the plaintext, not cairn's credentials: a cloud token, an inline age key
/// and the state connection in cairn's environment are not in the editor's.
#[test]
fn the_editor_does_not_inherit_cloud_tokens_or_the_inline_age_key() {
    let Some(f) = fixture("app.json", r#"{"a": "one"}"#) else { return };
    let seen = f.lab.path("editor-env");
    let editor = script(&f.lab, "env.sh", &format!("env > '{}'", seen.display()));
    let key = fs_err::read_to_string(&f.key.identity_file).unwrap();
    let key = key.lines().find(|l| l.starts_with("AGE-SECRET-KEY-")).unwrap().to_owned();
    let env = [
        ("SOPS_AGE_KEY", key.as_str()),
        ("HCLOUD_TOKEN", "hcloud-token-value"),
        ("AWS_SECRET_ACCESS_KEY", "aws-secret-value"),
        ("CAIRN_PG_CONN", "host=db password=pg-secret-value"),
        ("EDITOR", editor.to_str().unwrap()),
    ];
    let out = cairn(&f.lab, f.lab.dir.path(), &["secrets", "edit", "app.json"], &env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let seen = fs_err::read_to_string(&seen).unwrap();
    assert!(seen.contains("EDITOR="), "the editor ran with an environment: {seen}");
    for secret in [key.as_str(), "hcloud-token-value", "aws-secret-value", "pg-secret-value"] {
        assert!(!seen.contains(secret), "the editor saw a credential");
    }
}

#[test]
fn edit_without_change_writes_nothing_and_says_so() {
    let Some(f) = fixture("app.json", r#"{"a": "one"}"#) else { return };
    let before = fs_err::read(&f.file).unwrap();
    let mut env: Vec<(&str, String)> = key_env(&f.key).to_vec();
    env.push(("EDITOR", "true".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = cairn(&f.lab, f.lab.dir.path(), &["secrets", "edit", "app.json"], &env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(fs_err::read(&f.file).unwrap(), before);
    assert!(String::from_utf8_lossy(&out.stderr).contains("file has not changed, nothing written"));
}

#[test]
fn edit_with_a_syntax_error_fails_without_a_terminal_then_a_fix_succeeds() {
    let Some(f) = fixture("app.json", r#"{"a": "one"}"#) else { return };
    let before = fs_err::read(&f.file).unwrap();
    let seen = f.lab.path("seen-path");
    let broken = script(
        &f.lab,
        "broken.sh",
        &format!("echo \"$1\" > {}\nprintf '{{\"a\": ' > \"$1\"", seen.display()),
    );
    let mut env: Vec<(&str, String)> = key_env(&f.key).to_vec();
    env.push(("SOPS_EDITOR", broken.display().to_string()));
    let envr: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = cairn(&f.lab, f.lab.dir.path(), &["secrets", "edit", "app.json"], &envr);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot parse as json"), "{stderr}");
    assert_eq!(fs_err::read(&f.file).unwrap(), before, "nothing written");
    let tmp = fs_err::read_to_string(&seen).unwrap();
    assert!(!Path::new(tmp.trim()).exists(), "plaintext removed");

    let fixed = script(&f.lab, "fixed.sh", r#"printf '{"a": "fixed"}' > "$1""#);
    env[1] = ("SOPS_EDITOR", fixed.display().to_string());
    let envr: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = cairn(&f.lab, f.lab.dir.path(), &["secrets", "edit", "app.json"], &envr);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plain = f.lab.sops_decrypt(&f.file, &f.key.identity_file, &[]);
    assert_eq!(String::from_utf8(plain).unwrap(), "{\n\t\"a\": \"fixed\"\n}\n");
}

#[test]
fn interrupted_edit_leaves_no_plaintext() {
    let Some(f) = fixture("interrupt.json", r#"{"a": "one"}"#) else { return };
    let before = fs_err::read(&f.file).unwrap();
    let seen = f.lab.path("seen-path");
    // The editor records the plaintext's path, then waits (exec: the sleep is the editor).
    let editor = script(
        &f.lab,
        "slow.sh",
        &format!("echo \"$1\" > {}.tmp\nmv {0}.tmp {0}\nexec sleep 60", seen.display()),
    );
    let home = f.lab.path("home");
    fs_err::create_dir_all(&home).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .current_dir(f.lab.dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("NO_COLOR", "1")
        .env("SOPS_AGE_KEY_FILE", &f.key.identity_file)
        .env("EDITOR", &editor)
        .args(["secrets", "edit", "interrupt.json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(u32);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = Command::new("kill").arg("-KILL").arg(self.0.to_string()).status();
        }
    }
    let _guard = Kill(child.id());
    while !seen.exists() {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let plaintext = PathBuf::from(fs_err::read_to_string(&seen).unwrap().trim());
    assert!(plaintext.exists());
    assert_eq!(fs_err::metadata(&plaintext).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(
        fs_err::metadata(plaintext.parent().unwrap()).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let st = Command::new("kill").arg("-INT").arg(child.id().to_string()).status().unwrap();
    assert!(st.success());
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("interrupted by SIGINT"), "{stderr}");
    assert!(!plaintext.exists(), "the plaintext file is gone");
    assert!(!plaintext.parent().unwrap().exists(), "the private temp dir is gone");
    assert_eq!(fs_err::read(&f.file).unwrap(), before);
}

#[test]
fn keygen_writes_a_private_key_once() {
    let Some(lab) = Lab::new() else { return };
    let target = lab.path("home/.config/sops/age/keys.txt");
    let out = cairn(&lab, lab.dir.path(), &["secrets", "keygen"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let public = String::from_utf8(out.stdout).unwrap();
    assert_eq!(fs_err::metadata(&target).unwrap().permissions().mode() & 0o777, 0o600);
    let derived = Command::new("age-keygen").arg("-y").arg(&target).output().unwrap();
    assert_eq!(String::from_utf8(derived.stdout).unwrap(), public);
    let before = fs_err::read(&target).unwrap();
    let again = cairn(&lab, lab.dir.path(), &["secrets", "keygen"], &[]);
    assert!(!again.status.success());
    assert_eq!(fs_err::read(&target).unwrap(), before);
    insta::assert_snapshot!(
        "keygen_refuses_overwrite",
        normalize(&lab, &String::from_utf8_lossy(&again.stderr))
    );
}

#[test]
fn cli_error_messages() {
    let Some(f) = fixture("app.json", r#"{"a": "one", "b": "two"}"#) else { return };
    let lab = &f.lab;
    let dir = lab.dir.path();
    let other = lab.age_key("other");
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let out = cairn(lab, dir, args, env);
        assert!(!out.status.success(), "{args:?} should fail");
        normalize(lab, &String::from_utf8_lossy(&out.stderr))
    };
    let other_env = [("SOPS_AGE_KEY_FILE", other.identity_file.to_str().unwrap())];
    let key_env = [("SOPS_AGE_KEY_FILE", f.key.identity_file.to_str().unwrap())];
    insta::assert_snapshot!("no_identity", run(&["secrets", "decrypt", "app.json"], &other_env));

    fs_err::write(lab.path("plain.json"), r#"{"a": 1}"#).unwrap();
    insta::assert_snapshot!("not_encrypted", run(&["secrets", "decrypt", "plain.json"], &key_env));
    insta::assert_snapshot!("no_rule", run(&["secrets", "encrypt", "plain.json"], &key_env));

    let text = fs_err::read_to_string(&f.file).unwrap();
    let v = json_values(&text);
    let (a, b) = (v["a"].as_str().unwrap(), v["b"].as_str().unwrap());
    fs_err::write(lab.path("swapped.json"), text.replace(a, "@").replace(b, a).replace('@', b))
        .unwrap();
    insta::assert_snapshot!("value_moved", run(&["secrets", "decrypt", "swapped.json"], &key_env));

    let lm = v["sops"]["lastmodified"].as_str().unwrap();
    fs_err::write(lab.path("lm.json"), text.replace(lm, "2001-01-01T00:00:00Z")).unwrap();
    insta::assert_snapshot!("mac_undecryptable", run(&["secrets", "decrypt", "lm.json"], &key_env));

    fs_err::write(lab.path("broken.json"), "{\"a\": ").unwrap();
    insta::assert_snapshot!("parse_error", run(&["secrets", "decrypt", "broken.json"], &key_env));

    insta::assert_snapshot!(
        "already_encrypted",
        run(&["secrets", "encrypt", "--age", &f.key.recipient, "app.json"], &key_env)
    );
    insta::assert_snapshot!(
        "bad_recipient",
        run(&["secrets", "encrypt", "--age", "age1nope", "plain.json"], &key_env)
    );
    insta::assert_snapshot!(
        "bad_extract",
        run(&["secrets", "decrypt", "--extract", r#"["zz"]"#, "app.json"], &key_env)
    );
}

fn copy_dir(from: &Path, to: &Path) {
    let st = Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap();
    assert!(st.success());
}

fn sops_file(path: &Path) -> cairn::secrets::SopsFile {
    cairn::secrets::SopsFile::read(path, cairn::secrets::Format::from_path(path)).unwrap()
}

fn identities_of(key: &AgeKey) -> cairn::keys::Identities {
    let mut env = cairn::keys::IdentityEnv::default();
    env.set("SOPS_AGE_KEY_FILE", key.identity_file.display().to_string());
    cairn::keys::Identities::discover(&env)
}

#[test]
fn rekey_matches_sops_updatekeys() {
    let Some(lab) = Lab::new() else { return };
    let (a, b, c) = (lab.age_key("a"), lab.age_key("b"), lab.age_key("c"));
    let repo = lab.path("repo");
    for d in ["secrets/web", "secrets/db", "other"] {
        fs_err::create_dir_all(repo.join(d)).unwrap();
    }
    let config = |web: &str| {
        format!(
            "creation_rules:\n  - path_regex: ^secrets/web/\n    age: {web}\n  - path_regex: ^secrets/db/\n    age: {}\n",
            a.recipient
        )
    };
    fs_err::write(repo.join(".sops.yaml"), config(&format!("{},{}", a.recipient, b.recipient)))
        .unwrap();
    let files = [
        ("secrets/web/app.yaml", "# comment\ntoken: abc\nlist:\n    - 1\n    - two\n"),
        ("secrets/web/app.json", r#"{"password": "p", "n": 1}"#),
        ("secrets/web/app.env", "A=1\n#c\nB=two\n"),
        ("secrets/db/db.ini", "[db]\npassword = x\n"),
        ("secrets/db/blob.bin", "binary\u{1}data"),
    ];
    for (name, plain) in files {
        fs_err::write(repo.join(name), plain).unwrap();
        let out = lab.sops_in(&repo, &["encrypt", "-i", name], &[]);
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    }
    fs_err::write(repo.join("other/readme.txt"), "not a secret\n").unwrap();
    fs_err::write(repo.join("secrets/notes.md"), "plain notes, no rule\n").unwrap();

    // The web rule drops B and adds C.
    fs_err::write(repo.join(".sops.yaml"), config(&format!("{},{}", a.recipient, c.recipient)))
        .unwrap();
    let original = lab.path("original");
    copy_dir(&repo, &original);
    let with_sops = lab.path("with-sops");
    copy_dir(&repo, &with_sops);

    let a_env = [("SOPS_AGE_KEY_FILE", a.identity_file.to_str().unwrap())];
    for (name, _) in files {
        let out = lab.sops_in(&with_sops, &["updatekeys", "-y", name], &a_env);
        assert!(
            out.status.success(),
            "sops updatekeys {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = cairn(&lab, &repo, &["secrets", "rekey"], &a_env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = normalize(&lab, &String::from_utf8_lossy(&out.stdout));
    insta::assert_snapshot!("rekey_summary", stdout);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rotate"), "explains rotation");

    let ids_a = identities_of(&a);
    for (name, _) in files {
        let (mine, theirs, before) = (
            sops_file(&repo.join(name)),
            sops_file(&with_sops.join(name)),
            sops_file(&original.join(name)),
        );
        let recipients = |f: &cairn::secrets::SopsFile| {
            f.metadata.recipients().map(str::to_owned).collect::<Vec<_>>()
        };
        assert_eq!(recipients(&mine), recipients(&theirs), "{name}: same recipients as sops");
        assert_eq!(mine.docs, before.docs, "{name}: values untouched");
        assert_eq!(mine.metadata.mac, before.metadata.mac, "{name}: mac untouched");
        assert_eq!(mine.metadata.lastmodified, before.metadata.lastmodified);
        assert_eq!(
            mine.data_key(&ids_a).unwrap().as_bytes(),
            before.data_key(&ids_a).unwrap().as_bytes(),
            "{name}: same data key"
        );
        // sops reads the result with the new key
        let plain = lab.sops_decrypt(&repo.join(name), &c_or_a(name, &a, &c).identity_file, &[]);
        assert_eq!(plain, lab.sops_decrypt(&original.join(name), &a.identity_file, &[]), "{name}");
        if name.starts_with("secrets/db/") {
            assert_eq!(
                fs_err::read(repo.join(name)).unwrap(),
                fs_err::read(original.join(name)).unwrap(),
                "{name}: up-to-date file untouched"
            );
        }
    }
    // B can no longer decrypt the web files
    let out = lab.sops_in(
        &repo,
        &["decrypt", "secrets/web/app.json"],
        &[("SOPS_AGE_KEY_FILE", b.identity_file.to_str().unwrap())],
    );
    assert!(!out.status.success());

    // A second run changes nothing.
    let snapshot: Vec<Vec<u8>> =
        files.iter().map(|(n, _)| fs_err::read(repo.join(n)).unwrap()).collect();
    let out = cairn(&lab, &repo, &["secrets", "rekey"], &a_env);
    assert!(out.status.success());
    let again: Vec<Vec<u8>> =
        files.iter().map(|(n, _)| fs_err::read(repo.join(n)).unwrap()).collect();
    assert_eq!(snapshot, again);

    // --rotate: a new data key, every value re-encrypted, sops still reads it.
    let out = cairn(&lab, &repo, &["secrets", "rekey", "--rotate", "secrets/web/app.json"], &a_env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rotated = sops_file(&repo.join("secrets/web/app.json"));
    let before = sops_file(&original.join("secrets/web/app.json"));
    assert_ne!(
        rotated.data_key(&ids_a).unwrap().as_bytes(),
        before.data_key(&ids_a).unwrap().as_bytes()
    );
    assert_ne!(rotated.docs, before.docs);
    assert_eq!(
        lab.sops_decrypt(&repo.join("secrets/web/app.json"), &c.identity_file, &[]),
        lab.sops_decrypt(&original.join("secrets/web/app.json"), &a.identity_file, &[])
    );
}

fn c_or_a<'a>(name: &str, a: &'a AgeKey, c: &'a AgeKey) -> &'a AgeKey {
    if name.starts_with("secrets/web/") {
        c
    } else {
        a
    }
}

/// Every error the secrets module can return, rendered as a user sees it.
#[test]
fn every_error_message() {
    use cairn::secrets::SecretsError as E;
    let f = || PathBuf::from("secrets/app.yaml");
    let errors = vec![
        E::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "secrets/app.yaml: No such file or directory",
        )),
        E::Parse {
            file: f(),
            format: "yaml",
            reason: "line 3, column 1: mapping values are not allowed here".into(),
        },
        E::Empty { file: f() },
        E::Unsupported {
            file: f(),
            reason: "`a` has a nested value, which dotenv cannot hold".into(),
            help: "choose another --output-type".into(),
        },
        E::MetadataNotFound { file: f() },
        E::AlreadyEncrypted { file: f() },
        E::Metadata { file: f(), reason: "version is missing".into() },
        E::NoIdentity {
            file: f(),
            tried: "SOPS_AGE_KEY_FILE: not set\n~/.config/sops/age/keys.txt: no such file".into(),
            recipients: "age1ql3z7h…cac8p".into(),
        },
        E::NotEnoughShares {
            file: f(),
            got: 1,
            needed: 2,
            tried: "SOPS_AGE_KEY_FILE (k.txt): 1 identity".into(),
        },
        E::BadDataKey { file: f(), reason: "it has 31 bytes, not 32".into() },
        E::Value {
            file: f(),
            path: "db:password".into(),
            reason: "authentication failed (GCM tag mismatch)".into(),
        },
        E::MacUndecryptable { file: f() },
        E::NoMac { file: f() },
        E::MacMismatch { file: f(), stored: "A".repeat(8), computed: "B".repeat(8) },
        E::Recipient {
            file: f(),
            recipient: "age1xyz".into(),
            reason: "invalid Bech32 encoding".into(),
        },
        E::NoRecipients { file: f() },
        E::Extract {
            file: f(),
            extract: "[\"zz\"]".into(),
            reason: "does not exist: no key `zz`".into(),
        },
        E::Editor {
            editor: "code".into(),
            reason: "it exited with exit status: 1; the file was not changed".into(),
        },
        E::Interrupted { signal: "SIGINT" },
        E::KeyExists { file: PathBuf::from("/home/me/.config/sops/age/keys.txt") },
        E::NoRule { file: f() },
        E::RekeyFailed { failed: 2, total: 9 },
        E::NoKeyPath,
        E::NoConfig { dir: PathBuf::from("/home/me/fleet") },
    ];
    let mut out = String::new();
    for e in &errors {
        out.push_str(&cairn::ui::render_plain(e));
        out.push_str("----\n");
    }
    insta::assert_snapshot!("every_error", out);
}

#[test]
fn edit_creates_a_new_file_for_the_rule_recipients() {
    let Some(lab) = Lab::new() else { return };
    let (a, b) = (lab.age_key("a"), lab.age_key("b"));
    let repo = lab.path("repo");
    fs_err::create_dir_all(repo.join("secrets")).unwrap();
    fs_err::write(
        repo.join(".sops.yaml"),
        format!(
            "creation_rules:\n  - path_regex: ^secrets/\n    age: {},{}\n",
            a.recipient, b.recipient
        ),
    )
    .unwrap();
    let editor = script(
        &lab,
        "write.sh",
        r#"printf 'db:\n    password: fresh\n# note\nport: 5432\n' > "$1""#,
    );
    let env = [
        ("SOPS_AGE_KEY_FILE", a.identity_file.to_str().unwrap()),
        ("EDITOR", editor.to_str().unwrap()),
    ];
    let out = cairn(&lab, &repo, &["secrets", "edit", "secrets/new.yaml"], &env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("created"));
    let file = sops_file(&repo.join("secrets/new.yaml"));
    assert_eq!(
        file.metadata.recipients().collect::<Vec<_>>(),
        vec![a.recipient.as_str(), b.recipient.as_str()]
    );
    let plain = lab.sops_decrypt(&repo.join("secrets/new.yaml"), &b.identity_file, &[]);
    assert_eq!(String::from_utf8(plain).unwrap(), "db:\n    password: fresh\n# note\nport: 5432\n");
}

/// Ciphertexts, age blocks and dates masked: what stays is the layout.
fn layout(text: &[u8]) -> String {
    let s = mask_ciphertexts(&String::from_utf8_lossy(text));
    let re = regex::Regex::new(
        r"-----BEGIN AGE ENCRYPTED FILE-----[\s\S]*?-----END AGE ENCRYPTED FILE-----",
    )
    .unwrap();
    let s = re.replace_all(&s, "[AGE]").into_owned();
    let re = regex::Regex::new(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ").unwrap();
    re.replace_all(&s, "[DATE]").into_owned()
}

#[test]
fn stores_indent_lays_files_out_as_sops_does() {
    let Some(lab) = Lab::new() else { return };
    let a = lab.age_key("a");
    let b = lab.age_key("b");
    let a_env = [("SOPS_AGE_KEY_FILE", a.identity_file.to_str().unwrap())];
    let files = [
        ("app.yaml", "# top\ndb:\n    user: app\n    hosts:\n        - one\n        - name: two\n          port: 1\n    note: |\n        line one\n        line two\nlist:\n- x\n"),
        ("app.json", r#"{"db": {"user": "app", "hosts": ["one", {"name": "two", "port": 1}]}, "empty": {}}"#),
        ("blob.bin", "binary\u{1}data\n"),
    ];
    for indent in [2, 4] {
        let repo = lab.path(&format!("indent{indent}"));
        fs_err::create_dir_all(&repo).unwrap();
        let config = |age: &str| {
            format!(
                "stores:\n  yaml:\n    indent: {indent}\n  json:\n    indent: {indent}\n  json_binary:\n    indent: {indent}\ncreation_rules:\n  - age: {age}\n"
            )
        };
        fs_err::write(repo.join(".sops.yaml"), config(&a.recipient)).unwrap();
        for (name, plain) in files {
            fs_err::write(repo.join(name), plain).unwrap();
            let mine = cairn(&lab, &repo, &["secrets", "encrypt", name], &a_env);
            assert!(mine.status.success(), "{}", String::from_utf8_lossy(&mine.stderr));
            let theirs = lab.sops_in(&repo, &["encrypt", name], &a_env);
            assert!(theirs.status.success(), "{}", String::from_utf8_lossy(&theirs.stderr));
            assert_eq!(layout(&mine.stdout), layout(&theirs.stdout), "indent {indent}: {name}");
            if name.ends_with(".yaml") {
                let expected = format!("db:\n{}user: ENC(str)", " ".repeat(indent));
                assert!(layout(&mine.stdout).contains(&expected), "{}", layout(&mine.stdout));
            }

            // decrypt: byte-identical plaintext, cairn's file and sops' alike
            let enc = format!("enc/{name}");
            fs_err::create_dir_all(repo.join("enc")).unwrap();
            fs_err::write(repo.join(&enc), &theirs.stdout).unwrap();
            let mine = cairn(&lab, &repo, &["secrets", "decrypt", &enc], &a_env);
            assert!(mine.status.success(), "{}", String::from_utf8_lossy(&mine.stderr));
            let theirs = lab.sops_in(&repo, &["decrypt", &enc], &a_env);
            assert!(theirs.status.success(), "{}", String::from_utf8_lossy(&theirs.stderr));
            assert_eq!(mine.stdout, theirs.stdout, "indent {indent}: decrypt {name}");
        }

        // rekey rewrites a file laid out with sops' default indent as updatekeys does
        let default = lab.path(&format!("default{indent}"));
        fs_err::create_dir_all(&default).unwrap();
        fs_err::write(
            default.join(".sops.yaml"),
            format!("creation_rules:\n  - age: {}\n", a.recipient),
        )
        .unwrap();
        for (name, plain) in files {
            fs_err::write(default.join(name), plain).unwrap();
            let out = lab.sops_in(&default, &["encrypt", "-i", name], &a_env);
            assert!(out.status.success());
        }
        let (mine, theirs) =
            (lab.path(&format!("mine{indent}")), lab.path(&format!("theirs{indent}")));
        copy_dir(&default, &mine);
        copy_dir(&default, &theirs);
        for dir in [&mine, &theirs] {
            fs_err::write(
                dir.join(".sops.yaml"),
                config(&format!("{},{}", a.recipient, b.recipient)),
            )
            .unwrap();
        }
        let out = cairn(&lab, &mine, &["secrets", "rekey"], &a_env);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        for (name, _) in files {
            let out = lab.sops_in(&theirs, &["updatekeys", "-y", name], &a_env);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let (m, t) =
                (fs_err::read(mine.join(name)).unwrap(), fs_err::read(theirs.join(name)).unwrap());
            assert_eq!(layout(&m), layout(&t), "indent {indent}: rekey {name}");
            // b, added by the rekey, reads it with sops
            let plain = lab.sops_decrypt(&mine.join(name), &b.identity_file, &[]);
            assert_eq!(plain, lab.sops_decrypt(&theirs.join(name), &b.identity_file, &[]));
        }
    }
}

/// A host's age recipient in state, as the bootstrap keys phase records it.
fn record_host_recipient(repo: &Path, host: &str, recipient: &str) {
    use cairn::state::{FileState, LockHolder, LockWait, State};
    let mut lock = FileState::new(repo).lock(LockHolder::current("test"), LockWait::Fail).unwrap();
    lock.data_mut().hosts.entry(host.to_owned()).or_default().age_recipient =
        Some(recipient.to_owned());
    lock.commit().unwrap();
}

fn inventory(admins: &[(&str, &AgeKey)]) -> String {
    let mut hcl = String::from(
        "provider \"existing\" \"owned\" {}\n\nhost \"web1\" {\n  address = \"192.0.2.1\"\n  tags    = [\"web\"]\n}\n\nhost \"web2\" {\n  address = \"192.0.2.2\"\n  tags    = [\"web\"]\n}\n\nsecrets \"secrets/web/*.yaml\" {\n  tags = [\"web\"]\n}\n",
    );
    for (name, key) in admins {
        hcl.push_str(&format!("\nadmin \"{name}\" {{\n  age = \"{}\"\n}}\n", key.recipient));
    }
    hcl
}

#[test]
fn rekey_regenerates_sops_yaml_from_the_inventory_first() {
    let Some(lab) = Lab::new() else { return };
    let (alice, bob, web1, web2) =
        (lab.age_key("alice"), lab.age_key("bob"), lab.age_key("web1"), lab.age_key("web2"));
    let repo = lab.path("repo");
    fs_err::create_dir_all(repo.join("secrets/web")).unwrap();
    fs_err::write(repo.join("cairn.hcl"), inventory(&[("alice", &alice)])).unwrap();
    record_host_recipient(&repo, "web1", &web1.recipient);
    let alice_env = [("SOPS_AGE_KEY_FILE", alice.identity_file.to_str().unwrap())];

    // No .sops.yaml yet: rekey writes it, then a new file follows it.
    let out = cairn(&lab, &repo, &["secrets", "rekey"], &alice_env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sops_yaml = fs_err::read_to_string(repo.join(".sops.yaml")).unwrap();
    assert!(sops_yaml.contains(&web1.recipient) && !sops_yaml.contains(&web2.recipient));
    fs_err::write(repo.join("secrets/web/app.yaml"), "token: abc\n").unwrap();
    let out = cairn(&lab, &repo, &["secrets", "encrypt", "-i", "secrets/web/app.yaml"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // A new admin, and web2 bootstrapped since.
    fs_err::write(repo.join("cairn.hcl"), inventory(&[("alice", &alice), ("bob", &bob)])).unwrap();
    record_host_recipient(&repo, "web2", &web2.recipient);
    let before = (
        fs_err::read(repo.join(".sops.yaml")).unwrap(),
        fs_err::read(repo.join("secrets/web/app.yaml")).unwrap(),
    );
    let out = cairn(&lab, &repo, &["secrets", "rekey", "--dry-run"], &alice_env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    insta::assert_snapshot!(
        "rekey_from_inventory_dry_run",
        normalize(&lab, &String::from_utf8_lossy(&out.stdout))
    );
    let after = (
        fs_err::read(repo.join(".sops.yaml")).unwrap(),
        fs_err::read(repo.join("secrets/web/app.yaml")).unwrap(),
    );
    assert_eq!(before, after, "--dry-run writes nothing, .sops.yaml included");

    let out = cairn(&lab, &repo, &["secrets", "rekey"], &alice_env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = normalize(&lab, &String::from_utf8_lossy(&out.stdout));
    assert!(stdout.contains(".sops.yaml: rewritten from the inventory"), "{stdout}");
    assert!(stdout.contains("secrets/web/app.yaml: rekeyed"), "{stdout}");
    let file = repo.join("secrets/web/app.yaml");
    for reader in [&alice, &bob, &web1, &web2] {
        assert_eq!(lab.sops_decrypt(&file, &reader.identity_file, &[]), b"token: abc\n");
    }
    // Plain sops agrees with the regenerated .sops.yaml: nothing left to update.
    let out = lab.sops_in(&repo, &["updatekeys", "-y", "secrets/web/app.yaml"], &alice_env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already up to date"));

    // Nothing changed since: nothing is written.
    let snapshot = (fs_err::read(repo.join(".sops.yaml")).unwrap(), fs_err::read(&file).unwrap());
    let out = cairn(&lab, &repo, &["secrets", "rekey"], &alice_env);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(".sops.yaml: up to date with the inventory"), "{stdout}");
    assert_eq!(
        snapshot,
        (fs_err::read(repo.join(".sops.yaml")).unwrap(), fs_err::read(&file).unwrap())
    );
}
