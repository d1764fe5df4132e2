//! Creation rules against the real sops 3.11: which rule it picks for a path, how it reads
//! recipient strings, lists, key groups and anchors, and the `.sops.yaml` cairn generates.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use cairn::inventory::model::{
    Admin, AdminName, Host, HostName, Inventory, ProviderName, SecretsRule, SourceSpan,
    SshSettings, StateBackend, Tag,
};
use cairn::keys::{AgeIdentity, HostKeys};
use cairn::secrets::rules::{render_sops_yaml, CreationRule, SecretsPolicy, SopsConfig};
use cairn::secrets::tree::{self, ListItem, Value};

/// sops 3.11: `CAIRN_TEST_SOPS`, else `.ci/venv/bin/sops` in the crate, else PATH.
/// Runs `sops encrypt FILE` in `cwd` with no keys of the user running the tests, and returns
/// the recipients per key group and the threshold it wrote, or its error output.
fn sops_encrypt(cwd: &Path, file: &str) -> Result<(Vec<Vec<String>>, Option<i64>), String> {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(crate::support::tools::sops())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("SOPS_DISABLE_VERSION_CHECK", "1")
        .current_dir(cwd)
        .args(["encrypt", "--output-type", "yaml", file])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8(out.stdout).unwrap();
    let docs = cairn::secrets::yaml::parse(&text).unwrap();
    let Some(Value::Map(meta)) = tree::get(&docs[0], "sops") else { panic!("no sops block") };
    let recipients = |v: Option<&Value>| -> Vec<String> {
        let Some(Value::List(items)) = v else { return Vec::new() };
        items
            .iter()
            .filter_map(|i| match i {
                ListItem::Value(Value::Map(m)) => match tree::get(m, "recipient") {
                    Some(Value::Scalar(cairn::secrets::tree::Scalar::Str(s))) => Some(s.clone()),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    };
    let groups = match tree::get(meta, "key_groups") {
        Some(Value::List(groups)) => groups
            .iter()
            .filter_map(|g| match g {
                ListItem::Value(Value::Map(m)) => Some(recipients(tree::get(m, "age"))),
                _ => None,
            })
            .collect(),
        _ => vec![recipients(tree::get(meta, "age"))],
    };
    let threshold = match tree::get(meta, "shamir_threshold") {
        Some(Value::Scalar(cairn::secrets::tree::Scalar::Int(t))) => Some(*t),
        _ => None,
    };
    Ok((groups, threshold))
}

fn touch(root: &Path, rel: &str) {
    let p = root.join(rel);
    fs_err::create_dir_all(p.parent().unwrap()).unwrap();
    if !p.exists() {
        let content = if rel.ends_with(".env") { "a=1\n" } else { "a: 1\n" };
        fs_err::write(&p, content).unwrap();
    }
}

fn recipient() -> String {
    AgeIdentity::generate().to_public().to_string()
}

fn cairn_rule(repo: &Path, cwd: &Path, file: &str) -> Result<Option<CreationRule>, String> {
    let config = cairn::secrets::rules::find_config(cwd, None).expect("config found");
    let config = SopsConfig::load(&config).map_err(|e| e.to_string())?;
    assert!(config.path.starts_with(repo));
    config.rule_for(Path::new(file), cwd).map_err(|e| e.to_string())
}

#[test]
fn picks_the_same_rule_and_recipients_as_sops() {
    let repo = tempfile::tempdir().unwrap();
    let root = repo.path();
    let (a1, a2, a3, a4) = (recipient(), recipient(), recipient(), recipient());
    let host = HostKeys::generate(&HostName::new("web1").unwrap(), false);
    let ssh = host.ssh_public_line().to_owned();
    let config = format!(
        r#"# sops-nix style: anchors in an ignored top-level list
keys:
  - &alice {a1}
  - &bob {a2}
  - &web1 {ssh}
creation_rules:
  - path_regex: ^secrets/hosts/
    age: *alice
  - path_regex: \.env$
    age: " {a1} , {a3} ,"
  - path_regex: secrets/web/.*\.yaml
    key_groups:
      - age: [*alice, *bob, *alice]
        merge:
          - age: [*bob, "{a3}"]
      - age: ["{a3}, {a4}", *web1]
    shamir_threshold: 2
  - path_regex: ^secrets/
    age:
      - *alice
      - "{a2}, {a3}"
      - *alice
    unencrypted_regex: ^public_
  - age: {a4}
"#
    );
    fs_err::write(root.join(".sops.yaml"), &config).unwrap();
    let files = [
        "secrets/hosts/web1/ssh_host_ed25519_key",
        "secrets/app.env",
        "secrets/web/db.yaml",
        "secrets/x.yaml",
        "other/y.yaml",
    ];
    for f in files {
        touch(root, f);
    }
    let mut checked = 0;
    for (cwd, file) in files.iter().map(|f| (root.to_path_buf(), f.to_string())).chain([
        (root.join("secrets"), "web/db.yaml".to_owned()),
        (root.join("secrets/web"), "../x.yaml".to_owned()),
    ]) {
        let ours = cairn_rule(root, &cwd, &file).unwrap().expect("a rule");
        let (groups, threshold) = sops_encrypt(&cwd, &file).unwrap();
        assert_eq!(ours.key_groups, groups, "{file} from {}", cwd.display());
        if groups.len() > 1 {
            assert_eq!(ours.shamir_threshold.map(i64::from), threshold, "{file}");
        }
        checked += 1;
    }
    assert_eq!(checked, 7);

    // The shapes sops produced, spelled out once.
    let web = cairn_rule(root, root, "secrets/web/db.yaml").unwrap().unwrap();
    assert_eq!(
        web.key_groups,
        vec![vec![a2.clone(), a3.clone(), a1.clone()], vec![a3.clone(), a4.clone(), ssh]]
    );
    assert_eq!(web.shamir_threshold, Some(2));
    let flat = cairn_rule(root, root, "secrets/x.yaml").unwrap().unwrap();
    assert_eq!(flat.key_groups, vec![vec![a1.clone(), a2, a3, a1]], "flat rules keep duplicates");
    let crypt = flat.crypt.unwrap();
    assert_eq!((crypt.field(), crypt.value()), ("unencrypted_regex", "^public_"));
}

#[test]
fn no_match_and_no_rules_agree_with_sops() {
    let repo = tempfile::tempdir().unwrap();
    let root = repo.path();
    touch(root, "other/y.yaml");
    let a = recipient();

    fs_err::write(
        root.join(".sops.yaml"),
        format!("creation_rules:\n  - path_regex: ^secrets/\n    age: {a}\n"),
    )
    .unwrap();
    let ours = cairn_rule(root, root, "other/y.yaml").unwrap_err();
    let theirs = sops_encrypt(root, "other/y.yaml").unwrap_err();
    assert!(theirs.contains("no matching creation rules found"), "{theirs}");
    assert!(ours.starts_with("no creation rule in"), "{ours}");

    // `creation_rules: []` is a config without a match; no `creation_rules` is no config.
    fs_err::write(root.join(".sops.yaml"), "creation_rules: []\n").unwrap();
    assert!(cairn_rule(root, root, "other/y.yaml").is_err());
    assert!(sops_encrypt(root, "other/y.yaml").unwrap_err().contains("no matching creation rules"));
    for text in ["creation_rules:\n", "keys: []\n", "# nothing\n"] {
        fs_err::write(root.join(".sops.yaml"), text).unwrap();
        assert_eq!(cairn_rule(root, root, "other/y.yaml").unwrap(), None, "{text:?}");
        assert!(
            sops_encrypt(root, "other/y.yaml").unwrap_err().contains("has no creation rules"),
            "{text:?}"
        );
    }
}

/// Renders a `RulesError` the way the CLI shows it (no colors), for snapshots.
fn render(err: &cairn::secrets::rules::RulesError) -> String {
    cairn::ui::render_plain(err)
}

const ALICE: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

#[test]
fn invalid_configs_are_refused_like_sops_with_their_line() {
    let cases: &[(&str, String)] = &[
        (
            "regex_does_not_compile",
            format!("creation_rules:\n  - path_regex: web(\n    age: {ALICE}\n"),
        ),
        (
            "two_crypt_options",
            format!(
                "creation_rules:\n  - path_regex: web\n    age: {ALICE}\n    encrypted_regex: ^a\n    unencrypted_suffix: _x\n"
            ),
        ),
        (
            "key_group_age_is_a_string",
            format!("creation_rules:\n  - path_regex: web\n    key_groups:\n      - age: {ALICE}\n"),
        ),
        ("empty_list_item", format!("creation_rules:\n  - path_regex: web\n    age: [\"{ALICE}\", \"\"]\n")),
        ("rule_is_not_a_mapping", format!("creation_rules:\n  - path_regex: web\n    age: {ALICE}\n  - [1]\n")),
        ("threshold_is_a_string", format!("creation_rules:\n  - path_regex: web\n    age: {ALICE}\n    shamir_threshold: \"2\"\n")),
        ("bad_recipient", "creation_rules:\n  - path_regex: web\n    age: age1notakey\n".to_owned()),
        ("path_regex_is_a_list", format!("creation_rules:\n  - path_regex: [web]\n    age: {ALICE}\n")),
    ];
    for (name, text) in cases {
        // sops refuses it too.
        let repo = tempfile::tempdir().unwrap();
        touch(repo.path(), "secrets/web/x.yaml");
        fs_err::write(repo.path().join(".sops.yaml"), text).unwrap();
        let theirs = sops_encrypt(repo.path(), "secrets/web/x.yaml");
        assert!(theirs.is_err(), "{name}: sops accepted it: {theirs:?}");

        let err = SopsConfig::parse(Path::new("/repo/.sops.yaml"), text.clone())
            .and_then(|c| c.rule_for(Path::new("secrets/web/x.yaml"), Path::new("/repo")))
            .expect_err(name);
        insta::assert_snapshot!(*name, render(&err));
    }
}

#[test]
fn plugin_and_foreign_keys_are_refused_clearly() {
    for (name, text) in [
        ("plugin_recipient", "creation_rules:\n  - age: age1yubikey1qwerty\n".to_owned()),
        ("pgp_keys", format!("creation_rules:\n  - age: {ALICE}\n    pgp: 85D77543B3D624B63CEA9E6DBC17301B491B3F21\n")),
    ] {
        let err = SopsConfig::parse(Path::new("/repo/.sops.yaml"), text)
            .and_then(|c| c.rule_for(Path::new("a.yaml"), Path::new("/repo")))
            .expect_err(name);
        insta::assert_snapshot!(name, render(&err));
    }
}

// ------------------------------------------------------------------------------------------
// Inventory-derived rules

fn span() -> SourceSpan {
    SourceSpan { file: "cairn.hcl".into(), offset: 0, len: 1, line: 1, column: 1 }
}

fn host(name: &str, tags: &[&str], secrets: &[&str]) -> Host {
    Host {
        name: HostName::new(name).unwrap(),
        provider: ProviderName::new("local").unwrap(),
        flake: None,
        size: None,
        image: None,
        image_checksum: None,
        location: None,
        tags: tags.iter().map(|t| Tag::new(*t).unwrap()).collect(),
        disk_layout: None,
        secrets: secrets.iter().map(|s| s.to_string()).collect(),
        ssh: SshSettings::default(),
        address: None,
        health_checks: Vec::new(),
        timeouts: Default::default(),
        install: Default::default(),
        vm: Default::default(),
        seed: Default::default(),
        span: span(),
    }
}

fn secrets_rule(glob: &str, hosts: &[&str], tags: &[&str]) -> SecretsRule {
    SecretsRule {
        glob: glob.into(),
        hosts: hosts.iter().map(|h| HostName::new(*h).unwrap()).collect(),
        tags: tags.iter().map(|t| Tag::new(*t).unwrap()).collect(),
        span: span(),
    }
}

#[test]
fn generated_sops_yaml_gives_sops_and_cairn_the_same_recipients() {
    let repo = tempfile::tempdir().unwrap();
    let root = repo.path();
    let alice = recipient();
    let bob_key = HostKeys::generate(&HostName::new("bob-laptop").unwrap(), false);
    let inventory = Inventory {
        path: root.join("cairn.hcl"),
        root: root.to_owned(),
        providers: BTreeMap::new(),
        hosts: vec![
            host("web1", &["web"], &[]),
            host("web2", &["web"], &[]),
            host("db1", &["db"], &["secrets/shared/db-*.yaml", "secrets/*/common.yaml"]),
            host("new1", &["web"], &[]),
        ],
        disk_layouts: BTreeMap::new(),
        admins: vec![
            Admin {
                name: AdminName::new("alice").unwrap(),
                age: alice.parse().unwrap(),
                span: span(),
            },
            Admin {
                name: AdminName::new("bob").unwrap(),
                age: bob_key.ssh_public_line().parse().unwrap(),
                span: span(),
            },
        ],
        secrets: vec![
            secrets_rule("secrets/web/**", &[], &["web"]),
            secrets_rule("secrets/db/*.yaml", &["db1"], &[]),
            secrets_rule("secrets/shared/*.yaml", &["web1"], &[]),
            secrets_rule("secrets/admin/*", &[], &[]),
        ],
        state: StateBackend::File,
        gitops: None,
        rings: Vec::new(),
        sensitive_values: Default::default(),
        check: Default::default(),
    };
    let host_keys: BTreeMap<&str, HostKeys> = ["web1", "web2", "db1"]
        .into_iter()
        .map(|h| (h, HostKeys::generate(&HostName::new(h).unwrap(), h == "db1")))
        .collect();
    let lookup = |h: &HostName| host_keys.get(h.as_str()).map(|k| k.age_recipient().to_string());
    let policy = SecretsPolicy::new(&inventory, &lookup).unwrap();

    let files = [
        "secrets/web/a.yaml",
        "secrets/web/sub/b.yaml",
        "secrets/web/common.yaml",
        "secrets/db/c.yaml",
        "secrets/db/common.yaml",
        "secrets/shared/db-main.yaml",
        "secrets/shared/other.yaml",
        "secrets/admin/x.yaml",
        "secrets/hosts/web1/ssh_host_ed25519_key",
        "secrets/hosts/db1/age.key",
    ];
    for f in files {
        touch(root, f);
    }
    let existing: Vec<String> = files.iter().map(|f| f.to_string()).collect();
    let rules = policy.rules(&existing);
    assert_eq!(rules.hosts_without_recipient, [HostName::new("new1").unwrap()]);
    let text = render_sops_yaml(&rules);
    assert!(text.starts_with("# cairn writes the creation rules between its `cairn:begin`"));
    fs_err::write(root.join(".sops.yaml"), &text).unwrap();

    let r = |h: &str| host_keys[h].age_recipient().to_string();
    let bob = bob_key.ssh_public_line().to_owned();
    let admins = [alice.clone(), bob.clone()];
    let with = |hosts: &[&str]| -> Vec<String> {
        admins.iter().cloned().chain(hosts.iter().map(|h| r(h))).collect()
    };
    let expected: BTreeMap<&str, Vec<String>> = [
        ("secrets/web/a.yaml", with(&["web1", "web2"])),
        ("secrets/web/sub/b.yaml", with(&["web1", "web2"])),
        ("secrets/web/common.yaml", with(&["web1", "web2", "db1"])),
        ("secrets/db/c.yaml", with(&["db1"])),
        ("secrets/db/common.yaml", with(&["db1"])),
        ("secrets/shared/db-main.yaml", with(&["web1", "db1"])),
        ("secrets/shared/other.yaml", with(&["web1"])),
        ("secrets/admin/x.yaml", with(&[])),
        ("secrets/hosts/web1/ssh_host_ed25519_key", with(&[])),
        ("secrets/hosts/db1/age.key", with(&[])),
    ]
    .into_iter()
    .collect();

    let config = SopsConfig::load(&root.join(".sops.yaml")).unwrap();
    for f in files {
        let exact = policy.rule_for(f).unwrap();
        let parsed = config.rule_for(Path::new(f), root).unwrap().unwrap();
        let (theirs, _) = sops_encrypt(root, f).unwrap();
        assert_eq!(exact.key_groups, vec![expected[f].clone()], "policy for {f}");
        assert_eq!(parsed.key_groups, exact.key_groups, "cairn reading .sops.yaml for {f}\n{text}");
        assert_eq!(theirs, exact.key_groups, "sops for {f}\n{text}");
    }

    // A file outside every glob: no rule from either side.
    touch(root, "notes/readme.yaml");
    assert!(policy.rule_for("notes/readme.yaml").is_none());
    assert!(sops_encrypt(root, "notes/readme.yaml")
        .unwrap_err()
        .contains("no matching creation rules"));
    assert!(config.rule_for(Path::new("notes/readme.yaml"), root).is_err());
}

#[test]
fn generated_sops_yaml_snapshot() {
    let inventory = Inventory {
        path: "/repo/cairn.hcl".into(),
        root: "/repo".into(),
        providers: BTreeMap::new(),
        hosts: vec![
            host("web1", &["web"], &[]),
            host("db1", &["db"], &["secrets/shared/db-*.yaml"]),
        ],
        disk_layouts: BTreeMap::new(),
        admins: vec![Admin {
            name: AdminName::new("alice").unwrap(),
            age: ALICE.parse().unwrap(),
            span: span(),
        }],
        secrets: vec![
            secrets_rule("secrets/web/**", &[], &["web"]),
            secrets_rule("secrets/shared/*.yaml", &["web1"], &[]),
        ],
        state: StateBackend::File,
        gitops: None,
        rings: Vec::new(),
        sensitive_values: Default::default(),
        check: Default::default(),
    };
    let lookup = |h: &HostName| match h.as_str() {
        "web1" => Some("age17pmgg695ymfmgfhemhyxu4fh6mj3elqukxcfx3mrqmf5chstlgrqksap34".to_owned()),
        "db1" => Some("age1przwrnrwddjdcczyvkdxj39prlqdzs8jufx0al7jsjldxdc99gkszz5cye".to_owned()),
        _ => None,
    };
    let policy = SecretsPolicy::new(&inventory, &lookup).unwrap();
    insta::assert_snapshot!(render_sops_yaml(&policy.rules(&[])));

    let dir = tempfile::tempdir().unwrap();
    assert!(policy.write_sops_yaml(dir.path(), &[]).unwrap(), "first write");
    let no_admins = Inventory { admins: Vec::new(), ..inventory.clone() };
    let err = SecretsPolicy::new(&no_admins, &lookup).err().expect("refused");
    insta::assert_snapshot!("no_admins", render(&err));
    assert!(!policy.write_sops_yaml(dir.path(), &[]).unwrap(), "unchanged: not rewritten");
}

/// `.sops.yaml` regenerated over a file with the user's own rule (another path, another
/// recipient) and `stores:` keeps both line for line, and real sops then picks cairn's rule
/// for cairn's files and the user's for theirs.
#[test]
fn a_users_own_rules_and_stores_survive_regeneration_and_sops_reads_both() {
    let repo = tempfile::tempdir().unwrap();
    let root = repo.path();
    let alice = recipient();
    let carol = recipient();
    let web1 = recipient();
    let inventory = Inventory {
        path: root.join("cairn.hcl"),
        root: root.to_owned(),
        providers: BTreeMap::new(),
        hosts: vec![host("web1", &["web"], &[])],
        disk_layouts: BTreeMap::new(),
        admins: vec![Admin {
            name: AdminName::new("alice").unwrap(),
            age: alice.parse().unwrap(),
            span: span(),
        }],
        secrets: vec![secrets_rule("secrets/web/**", &[], &["web"])],
        state: StateBackend::File,
        gitops: None,
        rings: Vec::new(),
        sensitive_values: Default::default(),
        check: Default::default(),
    };
    let lookup = |h: &HostName| (h.as_str() == "web1").then(|| web1.clone());
    let policy = SecretsPolicy::new(&inventory, &lookup).unwrap();
    let theirs = format!(
        "# ours: team rules\nstores:\n  yaml:\n    indent: 4\ncreation_rules:\n  - path_regex: ^other/.*\n    age: {carol}\n"
    );
    fs_err::write(root.join(".sops.yaml"), &theirs).unwrap();
    touch(root, "other/x.yaml");
    touch(root, "secrets/web/a.yaml");

    assert!(policy.write_sops_yaml(root, &[]).unwrap(), "cairn's rules added");
    let text = fs_err::read_to_string(root.join(".sops.yaml")).unwrap();
    assert!(
        text.starts_with("# ours: team rules\nstores:\n  yaml:\n    indent: 4\ncreation_rules:\n"),
        "{text}"
    );
    assert!(
        text.ends_with(&format!("  # cairn:end\n  - path_regex: ^other/.*\n    age: {carol}\n")),
        "{text}"
    );
    assert_eq!(sops_encrypt(root, "other/x.yaml").unwrap().0, [vec![carol.clone()]]);
    assert_eq!(sops_encrypt(root, "secrets/web/a.yaml").unwrap().0, [vec![alice, web1]]);
    assert_eq!(cairn_rule(root, root, "other/x.yaml").unwrap().unwrap().key_groups, [vec![carol]]);
    assert!(!policy.write_sops_yaml(root, &[]).unwrap(), "unchanged: not rewritten");
}

/// The rule's crypt options reach the sops core: a file cairn encrypts with the rule sops
/// would pick keeps `public_` values plain, records the rule, and opens in the real sops.
#[test]
fn encryption_spec_from_a_rule_gives_a_file_sops_opens() {
    use cairn::secrets::{Format, SopsFile};
    let repo = tempfile::tempdir().unwrap();
    let root = repo.path();
    let admin = AgeIdentity::generate();
    let key_file = root.join("admin.txt");
    fs_err::write(&key_file, format!("{}\n", admin.expose_secret())).unwrap();
    fs_err::write(
        root.join(".sops.yaml"),
        format!(
            "creation_rules:\n  - path_regex: ^secrets/\n    age: {}\n    unencrypted_regex: ^public_\n    mac_only_encrypted: true\n",
            admin.to_public()
        ),
    )
    .unwrap();
    let rule = cairn_rule(root, root, "secrets/app.yaml").unwrap().unwrap();
    assert!(rule.mac_only_encrypted);
    let plain = cairn::secrets::yaml::parse("public_name: web\npassword: hunter2\n").unwrap();
    let path = root.join("secrets/app.yaml");
    fs_err::create_dir_all(path.parent().unwrap()).unwrap();
    let file = SopsFile::encrypt(&path, Format::Yaml, plain, &rule.encryption_spec()).unwrap();
    let bytes = file.to_bytes(&Default::default()).unwrap();
    fs_err::write(&path, &bytes).unwrap();
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.contains("public_name: web\n"), "{text}");
    assert!(text.contains("unencrypted_regex: ^public_\n"), "{text}");
    assert!(!text.contains("hunter2"));

    let home = tempfile::tempdir().unwrap();
    let out = Command::new(crate::support::tools::sops())
        .env_clear()
        .env("HOME", home.path())
        .env("SOPS_AGE_KEY_FILE", &key_file)
        .args(["decrypt"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "public_name: web\npassword: hunter2\n");
}
