//! `cairn check` end to end on the example fleet `vm-tests/make-fleet --repo-only` writes: real
//! git, real sops 3.11 and age keys, the real binary. Nothing here boots a VM.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

struct Fleet {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    home: PathBuf,
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("the command runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = run(Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@localhost"])
        .args(args));
    String::from_utf8(out.stdout).unwrap()
}

/// The example fleet, rekeyed (so `.sops.yaml` follows the inventory). `None` (skipped loudly)
/// without sops.
fn fleet() -> Option<Fleet> {
    let sops = crate::support::secrets::sops_path()?;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fleet");
    let home = tmp.path().join("home");
    fs_err::create_dir_all(&home).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("vm-tests/make-fleet");
    run(Command::new(script)
        .arg("--repo-only")
        .arg(&dir)
        .env("CAIRN_TEST_SOPS", &sops)
        .env("HOME", &home)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@localhost")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@localhost"));
    let fleet = Fleet { _tmp: tmp, dir, home };
    let out = cairn(&fleet, &["secrets", "rekey"]);
    assert!(out.status.success(), "rekey: {}", String::from_utf8_lossy(&out.stderr));
    git(&fleet.dir, &["add", "-A"]);
    git(&fleet.dir, &["commit", "-q", "-m", "rekey"]);
    Some(fleet)
}

fn cairn(fleet: &Fleet, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .current_dir(&fleet.dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &fleet.home)
        .env("NO_COLOR", "1")
        // The Nix rules are exercised where nix is; here they must say they were skipped.
        .env("CAIRN_NIX", "")
        .env("SOPS_AGE_KEY_FILE", fleet.dir.join("keys/admin.agekey"))
        .stdin(Stdio::null())
        .args(args)
        .output()
        .expect("cairn runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Temp paths, commit ids and dates out of the output, for snapshots.
fn normalize(fleet: &Fleet, s: &str) -> String {
    let s = s.replace(&fleet.dir.display().to_string(), "[FLEET]");
    let s = regex::Regex::new(r"commit [0-9a-f]{7,40} \(\d{4}-\d\d-\d\d")
        .unwrap()
        .replace_all(&s, "commit [COMMIT] ([DATE]")
        .into_owned();
    regex::Regex::new(r"age1[0-9a-z]{6,}(…[0-9a-z]{6})?")
        .unwrap()
        .replace_all(&s, "[AGE-RECIPIENT]")
        .into_owned()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).expect("--json prints JSON")
}

#[test]
fn the_example_fleet_passes_after_rekey() {
    let Some(fleet) = fleet() else { return };
    let out = cairn(&fleet, &["check"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    insta::assert_snapshot!("clean", normalize(&fleet, &text));
    let report = json(&cairn(&fleet, &["check", "--json"]));
    // The example's flake has no flake.lock (nothing evaluated it): a warning, not an error.
    let rules: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["flake.inputs"]);
    let skipped: Vec<&str> =
        report["skipped"].as_array().unwrap().iter().map(|s| s["rule"].as_str().unwrap()).collect();
    assert!(skipped.contains(&"inventory.flake") && skipped.contains(&"nixos.ssh"), "{skipped:?}");
    assert_eq!(cairn(&fleet, &["check", "--strict"]).status.code(), Some(1));
}

#[test]
fn a_plaintext_secrets_file_fails_naming_the_file_never_the_value() {
    let Some(fleet) = fleet() else { return };
    let value = "correct-horse-battery-staple-41";
    fs_err::write(fleet.dir.join("secrets/db.yaml"), format!("user: app\npassword: {value}\n"))
        .unwrap();
    let hcl = fleet.dir.join("cairn.hcl");
    let mut text = fs_err::read_to_string(&hcl).unwrap();
    text.push_str("\nsecrets \"secrets/db.yaml\" {\n  hosts = [\"web1\"]\n}\n");
    fs_err::write(&hcl, text).unwrap();

    let out = cairn(&fleet, &["check", "--rule", "secrets.plaintext"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(!text.contains(value) && !String::from_utf8_lossy(&out.stderr).contains(value));
    insta::assert_snapshot!("plaintext", normalize(&fleet, &text));

    let out = cairn(&fleet, &["check", "--json"]);
    assert!(!stdout(&out).contains(value));
    let report = json(&out);
    let f = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "secrets.plaintext")
        .expect("a plaintext finding");
    assert_eq!(f["file"], "secrets/db.yaml");
    assert_eq!(f["severity"], "error");

    // A sops file with one value left in clear is named with its key path.
    let admin = fs_err::read_to_string(fleet.dir.join("keys/admin.agekey")).unwrap();
    let admin = admin.lines().find_map(|l| l.strip_prefix("# public key: ")).unwrap().to_owned();
    let out =
        cairn(&fleet, &["secrets", "encrypt", "--age", &admin, "--in-place", "secrets/db.yaml"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let enc = fs_err::read_to_string(fleet.dir.join("secrets/db.yaml")).unwrap();
    let re = regex::Regex::new(r"(?m)^user: ENC\[[^\]]*\]").unwrap();
    fs_err::write(fleet.dir.join("secrets/db.yaml"), re.replace(&enc, "user: app").as_ref())
        .unwrap();
    let out = cairn(&fleet, &["check", "--rule", "secrets.plaintext", "--json"]);
    let report = json(&out);
    let f = &report["findings"][0];
    assert_eq!(f["message"], "secrets/db.yaml is a sops file with 1 value in plaintext: user");
    assert_eq!(f["line"], 1);
}

#[test]
fn an_age_key_committed_then_deleted_fails_naming_path_and_commit() {
    let Some(fleet) = fleet() else { return };
    let key = Command::new("age-keygen").output().expect("age-keygen runs");
    assert!(key.status.success());
    let key_text = String::from_utf8(key.stdout).unwrap();
    let secret_line = key_text.lines().find(|l| l.starts_with("AGE-SECRET-KEY-1")).unwrap();
    fs_err::create_dir_all(fleet.dir.join("backup")).unwrap();
    fs_err::write(fleet.dir.join("backup/admin.txt"), &key_text).unwrap();
    git(&fleet.dir, &["add", "backup/admin.txt"]);
    git(&fleet.dir, &["commit", "-q", "-m", "keep a copy of the key"]);
    let commit = git(&fleet.dir, &["rev-parse", "--short=7", "HEAD"]).trim().to_owned();
    git(&fleet.dir, &["rm", "-q", "backup/admin.txt"]);
    git(&fleet.dir, &["commit", "-q", "-m", "oops, remove the key"]);

    let out = cairn(&fleet, &["check"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(!text.contains(secret_line) && !text.contains(&secret_line[16..]));
    assert!(text.contains("backup/admin.txt"), "{text}");
    assert!(text.contains(&commit), "{text}");
    insta::assert_snapshot!("history", normalize(&fleet, &text));

    let report = json(&cairn(&fleet, &["check", "--json", "--rule", "secrets.private-key"]));
    let findings = report["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{report}");
    assert_eq!(findings[0]["file"], "backup/admin.txt");
    assert_eq!(findings[0]["line"], 3);
    assert!(findings[0]["message"].as_str().unwrap().contains(&commit));
}

const OWNER_POLICY: &str = r#"package fleet.owner

deny contains msg if {
  some host in input.hosts
  not has_owner(host)
  msg := sprintf("host %s has no owner-* tag", [host.name])
}

has_owner(host) if {
  some tag in host.tags
  startswith(tag, "owner-")
}

warn contains "every secrets file is encrypted" if {
  every s in input.secrets { s.encrypted }
}
"#;

#[test]
fn a_rego_deny_fails_with_the_policys_message() {
    let Some(fleet) = fleet() else { return };
    fs_err::create_dir_all(fleet.dir.join("policies")).unwrap();
    fs_err::write(fleet.dir.join("policies/owner.rego"), OWNER_POLICY).unwrap();
    let sarif = fleet.dir.join("check.sarif");

    let out = cairn(&fleet, &["check", "--sarif", sarif.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("error[policy.fleet.owner]: host web1 has no owner-* tag"), "{text}");
    insta::assert_snapshot!("policy", normalize(&fleet, &text));

    let report = json(&cairn(&fleet, &["check", "--json"]));
    let policy: Vec<(&str, &str)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "policy.fleet.owner")
        .map(|f| (f["severity"].as_str().unwrap(), f["message"].as_str().unwrap()))
        .collect();
    assert_eq!(
        policy,
        [("error", "host web1 has no owner-* tag"), ("warning", "every secrets file is encrypted")]
    );

    let sarif: serde_json::Value =
        serde_json::from_str(&fs_err::read_to_string(&sarif).unwrap()).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    let deny = results.iter().find(|r| r["ruleId"] == "policy.fleet.owner").unwrap();
    assert_eq!(deny["level"], "error");
    assert_eq!(
        deny["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "policies/owner.rego"
    );

    // With the owner tag the deny is gone; --skip turns the policies off entirely.
    let hcl = fleet.dir.join("cairn.hcl");
    let text = fs_err::read_to_string(&hcl).unwrap();
    fs_err::write(
        &hcl,
        text.replace(
            "  age_key     = true\n",
            "  age_key     = true\n  tags        = [\"owner-ops\"]\n",
        ),
    )
    .unwrap();
    assert_eq!(cairn(&fleet, &["check"]).status.code(), Some(0));

    // A policy that does not compile: the check could not run (exit 2), naming the file.
    fs_err::write(
        fleet.dir.join("policies/broken.rego"),
        "package broken\n\ndeny contains msg if {\n",
    )
    .unwrap();
    let out = cairn(&fleet, &["check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("policies/broken.rego"));
    assert_eq!(cairn(&fleet, &["check", "--skip", "policies"]).status.code(), Some(0));
}

#[test]
fn check_ids_in_cairn_hcl_are_validated() {
    let Some(fleet) = fleet() else { return };
    let hcl = fleet.dir.join("cairn.hcl");
    let mut text = fs_err::read_to_string(&hcl).unwrap();
    text.push_str("\ncheck {\n  skip = [\"flake.input\"]\n}\n");
    fs_err::write(&hcl, &text).unwrap();
    let out = cairn(&fleet, &["check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`flake.input` is not a check rule"), "{err}");
    assert!(err.contains("did you mean `flake.inputs`"), "{err}");
    fs_err::write(&hcl, text.replace("flake.input\"", "flake.inputs\"")).unwrap();
    let report = json(&cairn(&fleet, &["check", "--json"]));
    assert_eq!(report["findings"].as_array().unwrap().len(), 0, "{report}");
}

/// `nix` for the rules that evaluate flakes (`CAIRN_NIX`, else PATH); `None` (skipped loudly)
/// when there is none and CI is not set.
#[allow(clippy::print_stderr)]
fn nix_program() -> Option<PathBuf> {
    let found =
        std::env::var_os("CAIRN_NIX").filter(|p| !p.is_empty()).map(PathBuf::from).or_else(|| {
            let paths = std::env::var_os("PATH")?;
            std::env::split_paths(&paths).map(|d| d.join("nix")).find(|p| p.is_file())
        });
    if found.is_none() {
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "nix not found and CI=true");
        eprintln!("SKIPPED: nix not found (install nix-bin, or set CAIRN_NIX)");
    }
    found
}

const NIX_FLEET: &str = r#"{
  outputs = { self }: {
    nixosConfigurations.web1.config = {
      networking.hostName = "web1";
      services.openssh = { enable = true; settings.PasswordAuthentication = false; };
      networking.firewall.enable = true;
    };
    nixosConfigurations.web2.config = {
      networking.hostName = "www2";
      services.openssh = { enable = true; settings = { PasswordAuthentication = true; PermitRootLogin = "yes"; }; };
      networking.firewall.enable = false;
      users.users.root.initialPassword = "changeme-in-the-store";
    };
  };
}
"#;

#[test]
fn nix_rules_evaluate_the_hosts_configurations_with_real_nix() {
    let Some(nix) = nix_program() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fleet");
    fs_err::create_dir_all(&dir).unwrap();
    fs_err::write(dir.join("flake.nix"), NIX_FLEET).unwrap();
    let host = |name: &str| {
        format!("host \"{name}\" {{\n  provider = \"dc\"\n  address = \"192.0.2.1\"\n  flake = \".#{name}\"\n}}\n")
    };
    fs_err::write(
        dir.join("cairn.hcl"),
        format!(
            "provider \"existing\" \"dc\" {{}}\n{}{}{}",
            host("web1"),
            host("web2"),
            host("web3")
        ),
    )
    .unwrap();
    git(&dir, &["init", "-q"]);
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-q", "-m", "fleet"]);
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .current_dir(&dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", tmp.path())
        .env("CAIRN_NIX", &nix)
        .args(["check", "--json", "--rule", "inventory.flake", "--rule", "nixos.ssh"])
        .args(["--rule", "nixos.password-in-store"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let report = json(&out);
    assert_eq!(out.status.code(), Some(1), "{report}{}", String::from_utf8_lossy(&out.stderr));
    let got: Vec<(&str, &str, &str)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap(),
                f["host"].as_str().unwrap(),
                f["message"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(got.len(), 4, "{got:#?}");
    assert_eq!(got[0].0, "inventory.flake");
    assert_eq!(got[0].1, "web2");
    assert_eq!(got[0].2, "web2's configuration `.#web2` sets networking.hostName = \"www2\"");
    assert_eq!((got[1].0, got[1].1), ("inventory.flake", "web3"));
    assert!(got[1].2.contains("has no nixosConfigurations.web3"), "{}", got[1].2);
    assert_eq!(
        got[2..].iter().map(|g| (g.0, g.1)).collect::<Vec<_>>(),
        [("nixos.password-in-store", "web2"), ("nixos.ssh", "web2")]
    );
    assert!(!got.iter().any(|g| g.2.contains("changeme-in-the-store")));
}

mod rules {
    //! The secrets rules through the library, on a repository built here (no sops needed).

    use cairn::check::{self, Fleet, Options, RuleId};
    use cairn::inventory::{HostName, LoadOptions};
    use cairn::keys::{AgeRecipient, HostKeys};
    use cairn::secrets::{EncryptionSpec, Format, SopsFile, StoresConfig};
    use cairn::state::{HostState, StateData};

    fn encrypt(path: &std::path::Path, plain: &str, to: &[&AgeRecipient]) {
        let docs = Format::Yaml.load_plain(plain.as_bytes()).unwrap();
        let spec = EncryptionSpec {
            key_groups: vec![to.iter().map(|r| (*r).clone()).collect()],
            shamir_threshold: 0,
            rule: None,
            mac_only_encrypted: false,
        };
        let file = SopsFile::encrypt(path, Format::Yaml, docs, &spec).unwrap();
        fs_err::write(path, file.to_bytes(&StoresConfig::default()).unwrap()).unwrap();
    }

    fn findings(
        root: &std::path::Path,
        state: &StateData,
        only: &[RuleId],
    ) -> Vec<(String, String)> {
        let inv =
            cairn::inventory::load(&LoadOptions::from_process_env(root.join("cairn.hcl"))).unwrap();
        let mut opts = Options::new(&inv);
        opts.only = only.to_vec();
        opts.nix = None;
        let report = check::run(Fleet { inventory: &inv, state }, &opts).unwrap();
        report
            .findings
            .into_iter()
            .map(|f| {
                let short = regex::Regex::new(r"age1[0-9a-z]{6,}(…[0-9a-z]{6})?").unwrap();
                (f.rule, short.replace_all(&f.message, "[R]").into_owned())
            })
            .collect()
    }

    #[test]
    fn recipients_host_keys_and_stale_hosts_against_the_inventory_and_state() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let admin = cairn::keys::generate_age_identity().identity.to_public();
        let web1 = HostKeys::generate(&HostName::new("web1").unwrap(), false);
        let old1 = HostKeys::generate(&HostName::new("old1").unwrap(), false);
        fs_err::write(
            root.join("cairn.hcl"),
            format!(
                "provider \"existing\" \"dc\" {{}}\nadmin \"ops\" {{\n  age = \"{admin}\"\n}}\nhost \"web1\" {{\n  provider = \"dc\"\n  address = \"192.0.2.1\"\n}}\nsecrets \"secrets/*.yaml\" {{\n  hosts = [\"web1\"]\n}}\n"
            ),
        )
        .unwrap();
        fs_err::create_dir_all(root.join("secrets/hosts/web1")).unwrap();
        fs_err::write(
            root.join("secrets/hosts/web1/ssh_host_ed25519_key.pub"),
            format!("{}\n", web1.ssh_public_line()),
        )
        .unwrap();
        let mut state = StateData::default();
        let mut record = |name: &str, keys: &HostKeys| {
            let mut st = HostState::default();
            st.record_host_keys(keys);
            state.hosts.insert(name.to_owned(), st);
        };
        record("web1", &web1);
        record("old1", &old1);
        let w = web1.age_recipient();
        let o = old1.age_recipient();
        // Right; missing web1 and with the removed old1; right again.
        encrypt(&root.join("secrets/a.yaml"), "k: v\n", &[&admin, &w]);
        encrypt(&root.join("secrets/b.yaml"), "k: v\n", &[&admin, &o]);

        let got = findings(root, &state, &[RuleId::SecretsRecipients, RuleId::SecretsStale]);
        assert_eq!(
            got,
            vec![
                ("secrets.recipients".into(), "there is no .sops.yaml, so sops would not know whom to encrypt new secrets to".into()),
                ("secrets.recipients".into(), "secrets/b.yaml: recipients differ from the inventory: missing host web1 ([R]); extra host old1 ([R])".into()),
                ("secrets.stale".into(), "host old1 is no longer in the inventory but can still decrypt secrets/b.yaml".into()),
            ]
        );

        // The state's recipient for web1 is not its host key's.
        let other = HostKeys::generate(&HostName::new("web1").unwrap(), false);
        state.hosts.get_mut("web1").unwrap().age_recipient =
            Some(other.age_recipient().to_string());
        let got = findings(root, &state, &[RuleId::SecretsHostKey]);
        assert_eq!(
            got,
            vec![(
                "secrets.host-key".into(),
                "state records [R] as web1's age recipient, but the ssh-to-age of secrets/hosts/web1/ssh_host_ed25519_key.pub is [R]".into()
            )]
        );
        // And a replaced public key file is not the key state pins.
        fs_err::write(
            root.join("secrets/hosts/web1/ssh_host_ed25519_key.pub"),
            format!("{}\n", other.ssh_public_line()),
        )
        .unwrap();
        let got = findings(root, &state, &[RuleId::SecretsHostKey]);
        let messages: Vec<&str> = got.iter().map(|(_, m)| m.as_str()).collect();
        assert_eq!(
            messages,
            [
                "web1's host key in secrets/hosts/web1/ssh_host_ed25519_key.pub is not the key pinned for the installed system",
                "web1's host key in secrets/hosts/web1/ssh_host_ed25519_key.pub is not the key state records for it",
            ]
        );
        // A raw private host key in the tree is a private key finding and a plaintext one.
        fs_err::write(
            root.join("secrets/hosts/web1/ssh_host_ed25519_key"),
            web1.ssh_private_openssh().as_bytes(),
        )
        .unwrap();
        let got = findings(root, &state, &[RuleId::SecretsPrivateKey, RuleId::SecretsPlaintext]);
        let rules: Vec<&str> = got.iter().map(|(r, _)| r.as_str()).collect();
        assert_eq!(rules, ["secrets.plaintext", "secrets.private-key"], "{got:?}");
        assert!(got.iter().all(|(_, m)| !m.contains("BEGIN")));
    }

    #[test]
    fn a_ring_branch_that_lost_a_promotion_or_diverged_from_the_remote() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs_err::write(
            root.join("cairn.hcl"),
            "provider \"existing\" \"dc\" {}\nhost \"web1\" {\n  provider = \"dc\"\n  address = \"192.0.2.1\"\n}\ngitops {\n  remote = \"https://forge.example/infra.git\"\n}\nring \"dev\" {\n  hosts = [\"web1\"]\n}\n",
        )
        .unwrap();
        let git = |args: &[&str]| super::git(root, args);
        git(&["init", "-q", "-b", "main"]);
        git(&["add", "-A"]);
        git(&["commit", "-q", "-m", "a"]);
        let a = git(&["rev-parse", "HEAD"]).trim().to_owned();
        git(&["commit", "-q", "--allow-empty", "-m", "b"]);
        git(&["branch", "ring/dev"]);
        git(&["tag", "cairn/promote/dev/1", "ring/dev"]);
        let state = StateData::default();
        assert_eq!(findings(root, &state, &[RuleId::GitopsRings]), vec![]);

        // Reset below its promotion: comin would stop there.
        git(&["branch", "-f", "ring/dev", &a]);
        let got = findings(root, &state, &[RuleId::GitopsRings]);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].1.contains("ring dev: ring/dev")
                && got[0].1.contains("is not a fast-forward of its promotion cairn/promote/dev/1"),
            "{got:?}"
        );

        // The local branch diverged from the copy fetched from the push remote.
        git(&["tag", "-d", "cairn/promote/dev/1"]);
        git(&["update-ref", "refs/remotes/origin/ring/dev", "main"]);
        git(&["checkout", "-q", "ring/dev"]);
        git(&["commit", "-q", "--allow-empty", "-m", "c"]);
        let got = findings(root, &state, &[RuleId::GitopsRings]);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].1.contains("have diverged"), "{got:?}");
    }
}
