//! Post-quantum age (`age1pq1...` / `AGE-SECRET-KEY-PQ-1...`, age 1.3's hybrid ML-KEM-768 +
//! X25519 keys) against the real sops 3.11: what sops writes to such a key cairn decrypts,
//! what cairn writes sops decrypts, alone and mixed with X25519 keys, from every place a key
//! may be given.

use crate::support::secrets as secrets_support;

use std::path::{Path, PathBuf};
use std::process::Output;

use secrets_support::{cairn, AgeKey, Lab};

fn ok(out: &Output, what: &str) -> Vec<u8> {
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout.clone()
}

/// A post-quantum key made by `cairn secrets keygen --pq` (Debian's age 1.1 cannot make one).
fn pq_key(lab: &Lab, name: &str) -> AgeKey {
    let identity_file = lab.path(&format!("{name}.pqkey"));
    let out = cairn(
        lab,
        lab.dir.path(),
        &["secrets", "keygen", "--pq", "-o", identity_file.to_str().unwrap()],
        &[],
    );
    let recipient = String::from_utf8(ok(&out, "keygen --pq")).unwrap().trim().to_owned();
    assert!(recipient.starts_with("age1pq1"), "{recipient}");
    let text = fs_err::read_to_string(&identity_file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "created, public key, secret key");
    assert_eq!(lines[1], format!("# public key: {recipient}"));
    assert!(lines[2].starts_with("AGE-SECRET-KEY-PQ-1"));
    AgeKey { identity_file, recipient }
}

fn file_env(key: &AgeKey) -> [(&'static str, &str); 1] {
    [("SOPS_AGE_KEY_FILE", key.identity_file.to_str().unwrap())]
}

/// sops encrypts `plain` (YAML) for `recipients` into `name`.
fn sops_encrypt(lab: &Lab, name: &str, plain: &str, recipients: &str) -> PathBuf {
    let src = lab.path(&format!("{name}.plain.yaml"));
    fs_err::write(&src, plain).unwrap();
    let out =
        lab.sops(&["encrypt", "--age", recipients, "--output", name, src.to_str().unwrap()], &[]);
    ok(&out, "sops encrypt");
    lab.path(name)
}

/// cairn encrypts `plain` (YAML) for `recipients` into `name`.
fn cairn_encrypt(lab: &Lab, name: &str, plain: &str, recipients: &str) -> PathBuf {
    let path = lab.path(name);
    fs_err::write(&path, plain).unwrap();
    let out =
        cairn(lab, lab.dir.path(), &["secrets", "encrypt", "-i", "--age", recipients, name], &[]);
    ok(&out, "cairn encrypt");
    path
}

const PLAIN: &str = "db:\n    password: s3cret\nport: 5432\n";

#[test]
fn sops_writes_to_a_post_quantum_key_and_cairn_decrypts_from_every_key_source() {
    let Some(lab) = Lab::new() else { return };
    let pq = pq_key(&lab, "admin");
    let file = sops_encrypt(&lab, "app.yaml", PLAIN, &pq.recipient);
    let text = fs_err::read_to_string(&file).unwrap();
    assert!(text.contains(&format!("recipient: {}", pq.recipient)), "{text}");
    let expected = lab.sops_decrypt(&file, &pq.identity_file, &[]);
    assert_eq!(expected, PLAIN.as_bytes());

    let secret = fs_err::read_to_string(&pq.identity_file).unwrap();
    let cmd = format!("cat {}", pq.identity_file.display());
    let sources: [(&str, &str); 3] = [
        ("SOPS_AGE_KEY_FILE", pq.identity_file.to_str().unwrap()),
        ("SOPS_AGE_KEY", &secret),
        ("SOPS_AGE_KEY_CMD", &cmd),
    ];
    for (var, value) in sources {
        let out = cairn(&lab, lab.dir.path(), &["secrets", "decrypt", "app.yaml"], &[(var, value)]);
        assert_eq!(ok(&out, var), expected, "{var}");
    }
    // The default keys.txt.
    let keys_txt = lab.path("home/.config/sops/age/keys.txt");
    fs_err::create_dir_all(keys_txt.parent().unwrap()).unwrap();
    fs_err::copy(&pq.identity_file, &keys_txt).unwrap();
    let out = cairn(&lab, lab.dir.path(), &["secrets", "decrypt", "app.yaml"], &[]);
    assert_eq!(ok(&out, "keys.txt"), expected);
}

#[test]
fn cairn_writes_to_a_post_quantum_key_and_sops_decrypts() {
    let Some(lab) = Lab::new() else { return };
    let pq = pq_key(&lab, "admin");
    let file = cairn_encrypt(&lab, "app.yaml", PLAIN, &pq.recipient);
    assert_eq!(lab.sops_decrypt(&file, &pq.identity_file, &[]), PLAIN.as_bytes());
    let out = cairn(&lab, lab.dir.path(), &["secrets", "decrypt", "app.yaml"], &file_env(&pq));
    assert_eq!(ok(&out, "cairn decrypt"), PLAIN.as_bytes());
    // Another post-quantum key does not open it, and the error says so.
    let other = pq_key(&lab, "other");
    let out = cairn(&lab, lab.dir.path(), &["secrets", "decrypt", "app.yaml"], &file_env(&other));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no identity could decrypt the data key"), "{stderr}");
}

#[test]
fn mixed_x25519_and_post_quantum_recipients_open_with_either_key_both_ways() {
    let Some(lab) = Lab::new() else { return };
    let pq = pq_key(&lab, "pq");
    let x = lab.age_key("x");
    let both = format!("{},{}", x.recipient, pq.recipient);
    let by_sops = sops_encrypt(&lab, "by-sops.yaml", PLAIN, &both);
    let by_cairn = cairn_encrypt(&lab, "by-cairn.yaml", PLAIN, &both);
    for key in [&pq, &x] {
        assert_eq!(lab.sops_decrypt(&by_cairn, &key.identity_file, &[]), PLAIN.as_bytes());
        for name in ["by-sops.yaml", "by-cairn.yaml"] {
            let out = cairn(&lab, lab.dir.path(), &["secrets", "decrypt", name], &file_env(key));
            assert_eq!(ok(&out, name), PLAIN.as_bytes(), "{name} with {}", key.recipient);
        }
    }
    // Both list the same recipients in the same order.
    let recipients = |p: &Path| -> Vec<String> {
        fs_err::read_to_string(p)
            .unwrap()
            .lines()
            .filter_map(|l| l.trim().strip_prefix("- recipient: ").map(str::to_owned))
            .collect()
    };
    assert_eq!(recipients(&by_cairn), recipients(&by_sops));
    assert_eq!(recipients(&by_sops), [x.recipient.clone(), pq.recipient.clone()]);
}

#[test]
fn sops_yaml_rules_and_inventory_admins_take_post_quantum_keys() {
    let Some(lab) = Lab::new() else { return };
    let (alice, bob) = (pq_key(&lab, "alice"), lab.age_key("bob"));
    let repo = lab.path("repo");
    fs_err::create_dir_all(repo.join("secrets")).unwrap();

    // A hand-written .sops.yaml rule with both kinds of key.
    fs_err::write(
        repo.join(".sops.yaml"),
        format!(
            "creation_rules:\n  - path_regex: secrets/.*\\.yaml$\n    age: >-\n      {},\n      {}\n",
            alice.recipient, bob.recipient
        ),
    )
    .unwrap();
    fs_err::write(repo.join("secrets/a.yaml"), PLAIN).unwrap();
    ok(
        &cairn(&lab, &repo, &["secrets", "encrypt", "-i", "secrets/a.yaml"], &[]),
        "encrypt by rule",
    );
    for key in [&alice, &bob] {
        let plain = lab.sops_decrypt(&repo.join("secrets/a.yaml"), &key.identity_file, &[]);
        assert_eq!(plain, PLAIN.as_bytes());
    }
    let out = lab.sops_in(&repo, &["updatekeys", "-y", "secrets/a.yaml"], &file_env(&alice));
    ok(&out, "sops updatekeys");
    assert!(String::from_utf8_lossy(&out.stderr).contains("already up to date"));

    // The inventory's admins: cairn writes .sops.yaml from them, and sops agrees with it.
    fs_err::remove_file(repo.join(".sops.yaml")).unwrap();
    fs_err::write(
        repo.join("cairn.hcl"),
        format!(
            "provider \"existing\" \"owned\" {{}}\n\nhost \"web1\" {{\n  address = \"192.0.2.1\"\n}}\n\nsecrets \"secrets/*.yaml\" {{\n  hosts = [\"web1\"]\n}}\n\nadmin \"alice\" {{\n  age = \"{}\"\n}}\n\nadmin \"bob\" {{\n  age = \"{}\"\n}}\n",
            alice.recipient, bob.recipient
        ),
    )
    .unwrap();
    fs_err::write(repo.join("secrets/b.yaml"), PLAIN).unwrap();
    ok(
        &cairn(&lab, &repo, &["secrets", "encrypt", "-i", "secrets/b.yaml"], &[]),
        "encrypt by inventory",
    );
    let sops_yaml = fs_err::read_to_string(repo.join(".sops.yaml")).unwrap();
    assert!(sops_yaml.contains(&alice.recipient), "{sops_yaml}");
    for key in [&alice, &bob] {
        let plain = lab.sops_decrypt(&repo.join("secrets/b.yaml"), &key.identity_file, &[]);
        assert_eq!(plain, PLAIN.as_bytes());
    }
    let out = lab.sops_in(&repo, &["updatekeys", "-y", "secrets/b.yaml"], &file_env(&bob));
    ok(&out, "sops updatekeys");
    assert!(String::from_utf8_lossy(&out.stderr).contains("already up to date"));

    // A new post-quantum admin: rekey, run with alice's post-quantum key, lets her in.
    let carol = pq_key(&lab, "carol");
    let hcl = fs_err::read_to_string(repo.join("cairn.hcl")).unwrap();
    fs_err::write(
        repo.join("cairn.hcl"),
        format!("{hcl}\nadmin \"carol\" {{\n  age = \"{}\"\n}}\n", carol.recipient),
    )
    .unwrap();
    let out = cairn(&lab, &repo, &["secrets", "rekey"], &file_env(&alice));
    let stdout = String::from_utf8(ok(&out, "rekey")).unwrap();
    assert!(stdout.contains("secrets/b.yaml: rekeyed"), "{stdout}");
    for key in [&alice, &bob, &carol] {
        let plain = lab.sops_decrypt(&repo.join("secrets/b.yaml"), &key.identity_file, &[]);
        assert_eq!(plain, PLAIN.as_bytes());
    }
}

#[test]
fn malformed_post_quantum_keys_are_refused_clearly_without_a_panic() {
    let Some(lab) = Lab::new() else { return };
    let pq = pq_key(&lab, "admin");
    let truncated = &pq.recipient[..pq.recipient.len() - 30];
    fs_err::write(lab.path("app.yaml"), PLAIN).unwrap();
    let out = cairn(
        &lab,
        lab.dir.path(),
        &["secrets", "encrypt", "-i", "--age", truncated, "app.yaml"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "an error, not a panic");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is not a valid age recipient: not valid Bech32: its checksum"),
        "{stderr}"
    );
    assert!(!stderr.contains(truncated), "a 1,900-character key is named by its ends: {stderr}");
    assert_eq!(fs_err::read_to_string(lab.path("app.yaml")).unwrap(), PLAIN, "left as it was");

    // A damaged identity: the source fails with its line, never quoting the key.
    let file = cairn_encrypt(&lab, "ok.yaml", PLAIN, &pq.recipient);
    let secret = fs_err::read_to_string(&pq.identity_file).unwrap();
    let line = secret.lines().nth(2).unwrap();
    // One character changed (never to itself), so the checksum fails.
    let swap = if line.ends_with('Q') { 'P' } else { 'Q' };
    let damaged = format!("{}{swap}\n", &line[..line.len() - 1]);
    let out = cairn(
        &lab,
        lab.dir.path(),
        &["secrets", "decrypt", file.file_name().unwrap().to_str().unwrap()],
        &[("SOPS_AGE_KEY", &damaged)],
    );
    assert_eq!(out.status.code(), Some(1), "an error, not a panic");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SOPS_AGE_KEY: failed: line 1: not valid Bech32"), "{stderr}");
    assert!(!stderr.contains(&line[20..60]), "{stderr}");

    // In the inventory: a diagnostic at the admin's `age` value.
    let repo = lab.path("repo");
    fs_err::create_dir_all(&repo).unwrap();
    fs_err::write(
        repo.join("cairn.hcl"),
        format!("admin \"alice\" {{\n  age = \"{truncated}\"\n}}\n"),
    )
    .unwrap();
    let out = cairn(&lab, &repo, &["check"], &[]);
    assert_ne!(out.status.code(), Some(101), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("admin `alice` has an invalid age recipient"), "{stderr}");
    assert!(stderr.contains("not a valid post-quantum age recipient"), "{stderr}");
}
