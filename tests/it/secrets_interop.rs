//! Interoperability with the real sops 3.11 (and the real age tools): cairn decrypts what
//! sops encrypted, sops decrypts what cairn encrypted, both give sops' plaintext, and both
//! encrypt the same leaves with the same types.

use crate::support::secrets as secrets_support;

use std::path::Path;

use cairn::keys::{AgeRecipient, Identities, IdentityEnv};
use cairn::secrets::walk::CryptRule;
use cairn::secrets::{EncryptionSpec, Format, SopsFile};
use secrets_support::{mask_ciphertexts, without_metadata, AgeKey, Lab};

/// The identities sops would load with SOPS_AGE_KEY_FILE holding these keys (and no HOME).
fn keyring(keys: &[&AgeKey]) -> Identities {
    let text: String =
        keys.iter().map(|k| fs_err::read_to_string(&k.identity_file).unwrap()).collect();
    let mut env = IdentityEnv::default();
    env.set("SOPS_AGE_KEY", text);
    Identities::discover(&env)
}

fn spec(
    groups: &[&[&str]],
    threshold: usize,
    rule: Option<(&str, &str)>,
    mac_only: bool,
) -> EncryptionSpec {
    EncryptionSpec {
        key_groups: groups
            .iter()
            .map(|g| g.iter().map(|r| AgeRecipient::parse(r).unwrap()).collect())
            .collect(),
        shamir_threshold: threshold,
        rule: rule.map(|(f, v)| CryptRule::from_field(f, v).unwrap().unwrap()),
        mac_only_encrypted: mac_only,
    }
}

fn cairn_decrypt(path: &Path, format: Format, kr: &Identities) -> Vec<u8> {
    let file = SopsFile::read(path, format)
        .unwrap_or_else(|e| panic!("cairn reads {}: {e:?}", path.display()));
    let plain = file
        .decrypt(kr, false)
        .unwrap_or_else(|e| panic!("cairn decrypts {}: {e:?}", path.display()));
    format.emit_plain(&plain.docs, &Default::default()).unwrap()
}

fn cairn_encrypt(plain: &[u8], path: &Path, format: Format, spec: &EncryptionSpec) -> Vec<u8> {
    let docs = format.load_plain(plain).unwrap();
    let file = SopsFile::encrypt(path, format, docs, spec).unwrap();
    file.to_bytes(&Default::default()).unwrap()
}

/// The whole round trip for one plaintext and one crypt-rule option.
fn roundtrip(
    lab: &Lab,
    name: &str,
    ext: &str,
    plain: &[u8],
    rule: Option<(&str, &str)>,
    mac_only: bool,
) {
    let key = lab.age_key(name);
    let format = Format::from_path(Path::new(&format!("x.{ext}")));
    let plain_path = lab.path(&format!("{name}.plain.{ext}"));
    fs_err::write(&plain_path, plain).unwrap();

    // sops encrypts, with the rule given in a .sops.yaml (3.11 has no flags for the
    // comment regexes)
    let case_dir = lab.path(name);
    fs_err::create_dir_all(&case_dir).unwrap();
    let mut rule_yaml = String::new();
    if let Some((field, value)) = rule {
        rule_yaml.push_str(&format!("    {field}: '{value}'\n"));
    }
    if mac_only {
        rule_yaml.push_str("    mac_only_encrypted: true\n");
    }
    fs_err::write(
        case_dir.join(".sops.yaml"),
        format!("creation_rules:\n  - age: {}\n{rule_yaml}", key.recipient),
    )
    .unwrap();
    let out = lab.sops_in(&case_dir, &["encrypt", plain_path.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{name}: sops encrypt: {}", String::from_utf8_lossy(&out.stderr));
    let sops_enc = out.stdout;
    let sops_path = lab.path(&format!("{name}.sops.{ext}"));
    fs_err::write(&sops_path, &sops_enc).unwrap();
    let expected = lab.sops_decrypt(&sops_path, &key.identity_file, &[]);

    let kr = keyring(&[&key]);
    // cairn decrypts what sops wrote
    assert_eq!(
        String::from_utf8_lossy(&cairn_decrypt(&sops_path, format, &kr)),
        String::from_utf8_lossy(&expected),
        "{name}: cairn's decryption of the sops file differs from sops'"
    );

    // sops decrypts what cairn wrote
    let spec = spec(&[&[&key.recipient]], 0, rule, mac_only);
    let cairn_enc = cairn_encrypt(plain, &plain_path, format, &spec);
    let cairn_path = lab.path(&format!("{name}.cairn.{ext}"));
    fs_err::write(&cairn_path, &cairn_enc).unwrap();
    let from_sops = lab.sops_decrypt(&cairn_path, &key.identity_file, &[]);
    assert_eq!(
        String::from_utf8_lossy(&from_sops),
        String::from_utf8_lossy(&expected),
        "{name}: sops' decryption of the cairn file differs"
    );
    assert_eq!(cairn_decrypt(&cairn_path, format, &kr), expected, "{name}: cairn round trip");

    // the same leaves are encrypted, with the same types
    if format != Format::Binary {
        let fmt = format.name();
        assert_eq!(
            mask_ciphertexts(&without_metadata(&String::from_utf8_lossy(&cairn_enc), fmt)),
            // sops 3.11 writes a comment inside a list as a `- ENC[...type:comment]` element;
            // cairn writes it as a `#ENC[...]` comment line (3.13.2 would hash the element
            // form into the MAC). Both decrypt the same, checked above.
            mask_ciphertexts(&without_metadata(&String::from_utf8_lossy(&sops_enc), fmt))
                .replace("- ENC(comment)", "#ENC(comment)"),
            "{name}: cairn and sops encrypt different leaves"
        );
    }
}

const JSON: &str = r#"{
  "user": "alice",
  "password_secret": "hunter2",
  "nested": {
    "api_unencrypted": "open",
    "token": "t0k3n",
    "list": [1, 2.5, "s", true, null, {"k_secret": "v", "plain": "p"}],
    "deeper_unencrypted": {"a": 1, "b": [true]}
  },
  "empty": "",
  "nothing": null,
  "big": 12345678901234567890,
  "tiny": 1.5e-7,
  "huge": 1e21,
  "neg": -0.5,
  "html": "<a href=\"x\">&amp;</a>",
  "unicode": "é ✓ \u2028 \u0001 \t\b\f",
  "bool": false,
  "o": {},
  "l": [],
  "": "empty key"
}
"#;

const DOTENV: &str = "# plain header\nUSER=alice\nPASSWORD_secret=hunter2\nAPI_unencrypted=open\n#sops:enc\nTOKEN=abc\n#sops:nocrypt\nOPEN=visible\nMULTI=a\\nb\nexport X=1\n  SPACED = v \nEMPTY=\n";

const RULES: [Option<(&str, &str)>; 7] = [
    None,
    Some(("unencrypted_suffix", "_unencrypted")),
    Some(("encrypted_suffix", "_secret")),
    Some(("unencrypted_regex", "^(api|USER|user)")),
    Some(("encrypted_regex", "^(token|TOKEN|password|PASSWORD)")),
    Some(("unencrypted_comment_regex", "sops:nocrypt")),
    Some(("encrypted_comment_regex", "sops:enc")),
];

#[test]
fn json_every_rule_both_ways() {
    let Some(lab) = Lab::new() else { return };
    for (i, rule) in RULES.iter().enumerate() {
        roundtrip(&lab, &format!("json{i}"), "json", JSON.as_bytes(), *rule, false);
    }
    roundtrip(
        &lab,
        "json_maconly",
        "json",
        JSON.as_bytes(),
        Some(("encrypted_suffix", "_secret")),
        true,
    );
}

#[test]
fn dotenv_every_rule_both_ways() {
    let Some(lab) = Lab::new() else { return };
    for (i, rule) in RULES.iter().enumerate() {
        roundtrip(&lab, &format!("env{i}"), "env", DOTENV.as_bytes(), *rule, false);
    }
    roundtrip(
        &lab,
        "env_maconly",
        "env",
        DOTENV.as_bytes(),
        Some(("unencrypted_regex", "^API")),
        true,
    );
}

#[test]
fn binary_both_ways() {
    let Some(lab) = Lab::new() else { return };
    roundtrip(&lab, "bin", "bin", b"hello\x00\xff\xfe binary\nno trailing newline", None, false);
    roundtrip(&lab, "txt", "txt", b"a text file\n", None, false);
}

/// Encrypts `plain` with sops under a `.sops.yaml` with the given key groups.
fn sops_encrypt_groups(
    lab: &Lab,
    name: &str,
    ext: &str,
    plain: &[u8],
    groups: &[&[&AgeKey]],
    threshold: usize,
) -> std::path::PathBuf {
    let dir = lab.path(name);
    fs_err::create_dir_all(&dir).unwrap();
    let mut cfg = String::from("creation_rules:\n  - key_groups:\n");
    for g in groups {
        cfg.push_str("      - age:\n");
        for k in *g {
            cfg.push_str(&format!("          - {}\n", k.recipient));
        }
    }
    if threshold > 0 {
        cfg.push_str(&format!("    shamir_threshold: {threshold}\n"));
    }
    fs_err::write(dir.join(".sops.yaml"), cfg).unwrap();
    let plain_path = dir.join(format!("plain.{ext}"));
    fs_err::write(&plain_path, plain).unwrap();
    let out = lab.sops_in(&dir, &["encrypt", plain_path.to_str().unwrap()], &[]);
    assert!(out.status.success(), "sops encrypt: {}", String::from_utf8_lossy(&out.stderr));
    let enc = dir.join(format!("sops.{ext}"));
    fs_err::write(&enc, out.stdout).unwrap();
    enc
}

/// Writes the identities of `keys` into one file, as a user with several keys would have.
fn key_file(lab: &Lab, name: &str, keys: &[&AgeKey]) -> std::path::PathBuf {
    let text: String =
        keys.iter().map(|k| fs_err::read_to_string(&k.identity_file).unwrap()).collect();
    let p = lab.path(name);
    fs_err::write(&p, text).unwrap();
    p
}

#[test]
fn shamir_key_groups_both_ways() {
    let Some(lab) = Lab::new() else { return };
    let (a, b, c) = (lab.age_key("a"), lab.age_key("b"), lab.age_key("c"));
    let plain = br#"{"db": {"password": "s3cret", "port": 5432}}"#;
    for (name, groups, threshold) in [
        ("two_of_two", vec![vec![&a], vec![&b]], 2usize),
        ("two_of_three", vec![vec![&a], vec![&b], vec![&c]], 2),
    ] {
        let groups_ref: Vec<&[&AgeKey]> = groups.iter().map(|g| g.as_slice()).collect();
        let sops_file = sops_encrypt_groups(&lab, name, "json", plain, &groups_ref, threshold);
        let all = key_file(&lab, &format!("{name}.all"), &[&a, &b, &c]);
        let expected = lab.sops_decrypt(&sops_file, &all, &[]);
        // cairn decrypts with exactly the threshold's worth of groups: the first and the last
        let last = groups.last().unwrap()[0];
        let kr = keyring(&[&a, last]);
        assert_eq!(
            cairn_decrypt(&sops_file, Format::Json, &kr),
            expected,
            "{name}: cairn reads sops"
        );
        // one group's key is not enough
        let one = SopsFile::read(&sops_file, Format::Json).unwrap().decrypt(&keyring(&[&a]), false);
        assert!(
            matches!(one, Err(cairn::secrets::SecretsError::NotEnoughShares { got: 1, .. })),
            "{name}: {one:?}"
        );

        // cairn encrypts, sops decrypts with two groups' keys only
        let recipients: Vec<Vec<&str>> =
            groups.iter().map(|g| g.iter().map(|k| k.recipient.as_str()).collect()).collect();
        let rec_refs: Vec<&[&str]> = recipients.iter().map(|g| g.as_slice()).collect();
        let cairn_bytes = cairn_encrypt(
            plain,
            &sops_file,
            Format::Json,
            &spec(&rec_refs, threshold, None, false),
        );
        let cairn_file = lab.path(&format!("{name}.cairn.json"));
        fs_err::write(&cairn_file, &cairn_bytes).unwrap();
        let two = key_file(&lab, &format!("{name}.two"), &[&a, last]);
        assert_eq!(lab.sops_decrypt(&cairn_file, &two, &[]), expected, "{name}: sops reads cairn");
        // metadata shape matches sops' (key_groups, hc_vault null, threshold)
        assert_eq!(
            mask_enc_blocks(&String::from_utf8_lossy(&cairn_bytes)),
            mask_enc_blocks(&fs_err::read_to_string(&sops_file).unwrap()),
            "{name}: metadata layout"
        );
    }
}

/// Masks everything that differs between two encryptions of the same plaintext.
fn mask_enc_blocks(text: &str) -> String {
    let t = mask_ciphertexts(text);
    let re = regex::Regex::new(r#""enc": "[^"]*""#).unwrap();
    let t = re.replace_all(&t, "\"enc\": \"…\"");
    let re = regex::Regex::new(r#""lastmodified": "[^"]*""#).unwrap();
    re.replace_all(&t, "\"lastmodified\": \"…\"").into_owned()
}

/// One tamper case: what sops and cairn say about the modified file.
fn both_verdicts(
    lab: &Lab,
    key: &AgeKey,
    name: &str,
    text: &str,
    format: Format,
) -> (bool, Result<Vec<u8>, cairn::secrets::SecretsError>) {
    let p = lab.path(name);
    fs_err::write(&p, text).unwrap();
    let out = lab.sops(
        &["decrypt", p.to_str().unwrap()],
        &[("SOPS_AGE_KEY_FILE", key.identity_file.to_str().unwrap())],
    );
    let cairn = SopsFile::read(&p, format)
        .and_then(|f| f.decrypt(&keyring(&[key]), false))
        .map(|d| format.emit_plain(&d.docs, &Default::default()).unwrap());
    if out.status.success() {
        if let Ok(c) = &cairn {
            assert_eq!(
                String::from_utf8_lossy(c),
                String::from_utf8_lossy(&out.stdout),
                "{name}: same plaintext"
            );
        }
    }
    (out.status.success(), cairn)
}

#[test]
fn tampering_is_refused_where_sops_refuses_it() {
    use cairn::secrets::SecretsError as E;
    let Some(lab) = Lab::new() else { return };
    let key = lab.age_key("tamper");
    let dir = lab.path("tamper");
    fs_err::create_dir_all(&dir).unwrap();
    fs_err::write(dir.join(".sops.yaml"), format!("creation_rules:\n  - age: {}\n", key.recipient))
        .unwrap();
    fs_err::write(dir.join("p.json"), r#"{"a": "first", "b": "second", "n": 42}"#).unwrap();
    let out = lab.sops_in(&dir, &["encrypt", "p.json"], &[]);
    assert!(out.status.success());
    let orig = String::from_utf8(out.stdout).unwrap();
    let enc_of = |k: &str| -> String {
        let v: serde_json::Value = serde_json::from_str(&orig).unwrap();
        v[k].as_str().unwrap().to_owned()
    };
    let (a, b) = (enc_of("a"), enc_of("b"));

    // a changed value: GCM fails at that key
    let data = a.split("data:").nth(1).unwrap().split(',').next().unwrap().to_owned();
    let flipped: String = {
        let mut c: Vec<char> = data.chars().collect();
        c[0] = if c[0] == 'A' { 'B' } else { 'A' };
        c.into_iter().collect()
    };
    let changed = orig.replace(&data, &flipped);
    let (sops_ok, cairn) = both_verdicts(&lab, &key, "changed.json", &changed, Format::Json);
    assert!(!sops_ok);
    assert!(matches!(cairn, Err(E::Value { ref path, .. }) if path == "a"), "{cairn:?}");

    // values swapped between keys: the key path is authenticated
    let swapped = orig.replace(&a, "@@A@@").replace(&b, &a).replace("@@A@@", &b);
    let (sops_ok, cairn) = both_verdicts(&lab, &key, "swapped.json", &swapped, Format::Json);
    assert!(!sops_ok);
    assert!(matches!(cairn, Err(E::Value { .. })), "{cairn:?}");

    // a changed MAC
    let v: serde_json::Value = serde_json::from_str(&orig).unwrap();
    let mac = v["sops"]["mac"].as_str().unwrap().to_owned();
    let mac_data = mac.split("data:").nth(1).unwrap().split(',').next().unwrap().to_owned();
    let bad_mac = orig.replace(&mac_data, &mac_data.chars().rev().collect::<String>());
    let (sops_ok, cairn) = both_verdicts(&lab, &key, "mac.json", &bad_mac, Format::Json);
    assert!(!sops_ok);
    assert!(matches!(cairn, Err(E::MacUndecryptable { .. })), "{cairn:?}");

    // a changed lastmodified (the MAC's AAD)
    let lm = v["sops"]["lastmodified"].as_str().unwrap().to_owned();
    let bad_lm = orig.replace(&lm, "2001-01-01T00:00:00Z");
    let (sops_ok, cairn) = both_verdicts(&lab, &key, "lastmodified.json", &bad_lm, Format::Json);
    assert!(!sops_ok);
    assert!(matches!(cairn, Err(E::MacUndecryptable { .. })), "{cairn:?}");
    // ...but the same instant written differently still verifies
    let same_lm = orig.replace(&lm, &lm.replace('Z', "+00:00"));
    let (sops_ok, cairn) =
        both_verdicts(&lab, &key, "lastmodified_offset.json", &same_lm, Format::Json);
    assert!(sops_ok && cairn.is_ok(), "{cairn:?}");

    // a changed type tag is not authenticated: both accept it
    let n = enc_of("n");
    let retyped = orig.replace(&n, &n.replace("type:float", "type:str"));
    let (sops_ok, cairn) = both_verdicts(&lab, &key, "retyped.json", &retyped, Format::Json);
    assert!(sops_ok && cairn.is_ok(), "{cairn:?}");

    // --ignore-mac accepts a bad MAC
    let f = SopsFile::from_bytes(Path::new("mac.json"), bad_mac.as_bytes(), Format::Json).unwrap();
    assert!(f.decrypt(&keyring(&[&key]), true).is_ok());
}

#[test]
fn tampered_comment_is_accepted_with_a_warning_like_sops() {
    let Some(lab) = Lab::new() else { return };
    let key = lab.age_key("comment");
    let dir = lab.path("comment");
    fs_err::create_dir_all(&dir).unwrap();
    fs_err::write(dir.join(".sops.yaml"), format!("creation_rules:\n  - age: {}\n", key.recipient))
        .unwrap();
    fs_err::write(dir.join("p.env"), "#a comment\nA=1\n").unwrap();
    let out = lab.sops_in(&dir, &["encrypt", "p.env"], &[]);
    assert!(out.status.success());
    let orig = String::from_utf8(out.stdout).unwrap();
    let comment = orig.lines().find(|l| l.starts_with("#ENC[")).unwrap().to_owned();
    let data = comment.split("data:").nth(1).unwrap().split(',').next().unwrap().to_owned();
    let tampered =
        orig.replace(&comment, &comment.replace(&data, &data.chars().rev().collect::<String>()));
    let (sops_ok, cairn) = both_verdicts(&lab, &key, "tampered.env", &tampered, Format::Dotenv);
    assert!(sops_ok);
    assert!(cairn.is_ok(), "{cairn:?}");
}

const INI: &str = "top=1\ntop_unencrypted=open\n; c1\n[sec]\n# c2\nkey = \"quoted; x\"\nlong_key_name=v ; inline\npassword_secret = hunter2\n\n[other]\nz=\n; sops:nocrypt\napi = visible\n; sops:enc\ntoken = t0k3n\nspaced= \" padded \"\nsemi=`has;semi`\n";

#[test]
fn ini_every_rule_both_ways() {
    let Some(lab) = Lab::new() else { return };
    for (i, rule) in RULES.iter().enumerate() {
        roundtrip(&lab, &format!("ini{i}"), "ini", INI.as_bytes(), *rule, false);
    }
    roundtrip(
        &lab,
        "ini_maconly",
        "ini",
        INI.as_bytes(),
        Some(("encrypted_regex", "^token")),
        true,
    );
}

const YAML: &str = "# top comment\nuser: alice\npassword_secret: hunter2\nnested:\n    api_unencrypted: open\n    # sops:enc\n    token: t0k3n\n    list:\n        - 1\n        # a comment in a list\n        - 2.5\n        - s\n        - true\n        - null\n        - k_secret: v\n          plain: p\n    deeper_unencrypted:\n        a: 1\n        b: [true, 'x']\n# sops:nocrypt\nopen: visible\nempty: \"\"\nnothing:\noctal: 0123\nhex: 0x1F\nfloat: 1.0\nexp: 6.02e23\ninf: .inf\nyes_string: yes\nwhen: 2024-02-29\nstamp: 2001-12-14t21:59:43.10-05:00\nmulti: |\n    line one\n    line two\nbase: &base\n    shared: value\nderived:\n    <<: *base\n    own: x\no: {}\nl: []\n";

#[test]
fn yaml_every_rule_both_ways() {
    let Some(lab) = Lab::new() else { return };
    for (i, rule) in RULES.iter().enumerate() {
        roundtrip(&lab, &format!("yaml{i}"), "yaml", YAML.as_bytes(), *rule, false);
    }
    roundtrip(
        &lab,
        "yaml_maconly",
        "yaml",
        YAML.as_bytes(),
        Some(("encrypted_suffix", "_secret")),
        true,
    );
}

#[test]
fn yaml_multi_document_both_ways() {
    let Some(lab) = Lab::new() else { return };
    roundtrip(
        &lab,
        "multidoc",
        "yaml",
        b"a: 1\n# c\nb: two\n---\nc: [x, y]\n---\nd: {e: f}\n",
        None,
        false,
    );
}

#[test]
fn ssh_recipients_both_ways() {
    let Some(lab) = Lab::new() else { return };
    for kind in ["ed25519", "rsa"] {
        let key = lab.path(&format!("id_{kind}"));
        let mut args =
            vec!["-q", "-t", kind, "-N", "", "-C", "admin@test", "-f", key.to_str().unwrap()];
        if kind == "rsa" {
            args.extend(["-b", "2048"]);
        }
        let st =
            std::process::Command::new("ssh-keygen").args(&args).status().expect("ssh-keygen runs");
        assert!(st.success());
        let public = fs_err::read_to_string(key.with_extension("pub")).unwrap().trim().to_owned();
        let plain = br#"{"secret": "via ssh", "n": 7}"#;
        let dir = lab.path(&format!("ssh-{kind}"));
        fs_err::create_dir_all(&dir).unwrap();
        fs_err::write(dir.join(".sops.yaml"), format!("creation_rules:\n  - age: '{public}'\n"))
            .unwrap();
        fs_err::write(dir.join("p.json"), plain).unwrap();
        let ssh_env = [("SOPS_AGE_SSH_PRIVATE_KEY_FILE", key.to_str().unwrap())];
        let out = lab.sops_in(&dir, &["encrypt", "p.json"], &[]);
        assert!(out.status.success(), "{kind}: {}", String::from_utf8_lossy(&out.stderr));
        let sops_path = dir.join("sops.json");
        fs_err::write(&sops_path, &out.stdout).unwrap();
        let out = lab.sops_in(&dir, &["decrypt", "sops.json"], &ssh_env);
        assert!(out.status.success(), "{kind}: {}", String::from_utf8_lossy(&out.stderr));
        let expected = out.stdout;

        let mut env = IdentityEnv::default();
        env.set("SOPS_AGE_SSH_PRIVATE_KEY_FILE", key.to_str().unwrap());
        let ids = Identities::discover(&env);
        assert_eq!(
            cairn_decrypt(&sops_path, Format::Json, &ids),
            expected,
            "{kind}: cairn reads sops"
        );

        let cairn_bytes =
            cairn_encrypt(plain, &sops_path, Format::Json, &spec(&[&[&public]], 0, None, false));
        let text = String::from_utf8(cairn_bytes.clone()).unwrap();
        assert!(
            text.contains(&format!("\"recipient\": \"{public}\"")),
            "full authorized_keys line kept"
        );
        let cairn_path = dir.join("cairn.json");
        fs_err::write(&cairn_path, &cairn_bytes).unwrap();
        let out = lab.sops_in(&dir, &["decrypt", "cairn.json"], &ssh_env);
        assert!(
            out.status.success(),
            "{kind}: sops reads cairn: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, expected);
    }
}
