//! Day 2 as a user meets it: the `gitops` and `ring` blocks of the inventory and their
//! mistakes, the generated `cairn/fleet.json`, and comin's status as cairn reads it.

#![allow(clippy::print_stderr)] // tests say why they skip

use std::path::{Path, PathBuf};

use cairn::inventory::{self, LoadOptions};

const FIXTURES: &str = "tests/fixtures/gitops";

fn opts(path: impl Into<PathBuf>) -> LoadOptions {
    LoadOptions { path: path.into(), ..Default::default() }
}

fn rendered_failure(name: &str) -> String {
    let path = Path::new(FIXTURES).join(format!("{name}.hcl"));
    let err = inventory::load(&opts(path)).expect_err("this fixture must not load");
    for p in err.problems() {
        assert!(p.line().is_some(), "problem without position: {}", p.message());
        assert!(p.help().is_some(), "problem without help: {}", p.message());
    }
    cairn::ui::render_plain(&err)
}

macro_rules! mistake {
    ($name:ident) => {
        #[test]
        fn $name() {
            insta::assert_snapshot!(stringify!($name), rendered_failure(stringify!($name)));
        }
    };
}

// A host in two rings, an unknown ring, a selector matching nothing, a missing token file.
mistake!(rings_mistakes);
// `after` going round, and a ring on the gitops branch itself.
mistake!(rings_cycle);
// The token exists but web2 (ring prod) may not read it.
mistake!(token_unreadable);
mistake!(rings_without_gitops);

/// A copy of the gitops fixtures in a temp dir (commands write cairn/fleet.json there).
fn fixture_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs_err::copy(Path::new(FIXTURES).join("fleet.hcl"), dir.path().join("cairn.hcl")).unwrap();
    fs_err::create_dir_all(dir.path().join("secrets")).unwrap();
    fs_err::copy(
        Path::new(FIXTURES).join("secrets/comin-token.yaml"),
        dir.path().join("secrets/comin-token.yaml"),
    )
    .unwrap();
    dir
}

fn cairn_in(dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("-C")
        .arg(dir)
        .args(["--color", "never"])
        .args(args)
        // The example inventory reads its provider's credential from the environment.
        .env("HCLOUD_TOKEN", "example-token")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn gitops_sync_writes_fleet_json_and_check_finds_it_stale() {
    let dir = fixture_repo();
    let out = cairn_in(dir.path(), &["gitops", "sync", "--check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cairn/fleet.json is out of date"));
    let out = cairn_in(dir.path(), &["gitops", "sync"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    insta::assert_snapshot!("sync_output", String::from_utf8_lossy(&out.stdout));
    let written = fs_err::read_to_string(dir.path().join("cairn/fleet.json")).unwrap();
    insta::assert_snapshot!("fleet_json", written);
    let out = cairn_in(dir.path(), &["gitops", "sync", "--check"]);
    assert!(out.status.success());
    // Moving a host to another ring makes the committed file stale.
    let hcl = fs_err::read_to_string(dir.path().join("cairn.hcl")).unwrap();
    fs_err::write(
        dir.path().join("cairn.hcl"),
        hcl.replace("soak  = \"20s\"", "branch = \"ring/canary\""),
    )
    .unwrap();
    let out = cairn_in(dir.path(), &["gitops", "sync", "--check"]);
    assert_eq!(out.status.code(), Some(1));
    insta::assert_snapshot!(
        "sync_check_stale",
        String::from_utf8_lossy(&out.stderr).replace(&dir.path().display().to_string(), "[REPO]")
    );
}

/// The example flake reads fleet.json with the field names cairn writes, and sets comin's
/// options (names from comin's nix/module-options.nix). Evaluated with the real Nix
/// evaluator; `lib.mkIf` is the only part of nixpkgs the module uses, given here in the
/// shape nixpkgs' lib gives it.
#[test]
fn example_flake_sets_comin_from_fleet_json() {
    if Command::new("nix-instantiate").arg("--version").output().is_err() {
        eprintln!("skipped: no nix-instantiate");
        return;
    }
    let expr = r#"
      let
        lib = { mkIf = condition: content: { _type = "if"; inherit condition content; }; };
        m = import ./modules/common.nix {
          config = { networking.hostName = "web1"; sops.secrets."comin-token".path = "/run/secrets/comin-token"; };
          inherit lib; pkgs = { }; self = { };
        };
        token = m.sops.secrets."comin-token";
      in {
        comin = m.services.comin;
        token = { inherit (token) condition; key = token.content.key; sopsFile = builtins.typeOf token.content.sopsFile; };
      }"#;
    let out = Command::new("nix-instantiate")
        .current_dir("examples/flake")
        .args(["--eval", "--strict", "--json", "-E", expr])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let comin = &v["comin"]["content"];
    assert_eq!(v["comin"]["condition"], true);
    assert_eq!(comin["remotes"][0]["branches"]["main"]["name"], "ring/prod");
    assert_eq!(comin["remotes"][0]["url"], "https://git.example.com/ops/fleet.git");
    assert_eq!(
        comin["remotes"][0]["auth"]["access_token_path"]["content"],
        "/run/secrets/comin-token"
    );
    assert_eq!(comin["machineId"], serde_json::Value::Null);
    assert_eq!(
        v["token"],
        serde_json::json!({"condition": true, "key": "comin/token", "sopsFile": "path"})
    );
    // And the committed fleet.json is what the example's inventory implies.
    let out = cairn_in(Path::new("examples/flake"), &["gitops", "sync", "--check"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn rings_resolve_with_their_hosts_branches_and_order() {
    let inv = inventory::load(&opts(Path::new(FIXTURES).join("fleet.hcl"))).unwrap();
    let g = inv.gitops.as_ref().unwrap();
    assert_eq!(g.remote, "https://forge.example/infra.git");
    assert_eq!(g.branch, "main");
    assert_eq!(g.push_remote, "forge");
    assert_eq!(g.token.as_deref(), Some(Path::new("secrets/comin-token.yaml")));
    type RingRow = (String, Vec<String>, Option<String>, u64, String);
    let rings: Vec<RingRow> = inv
        .rings
        .iter()
        .map(|r| {
            (
                r.name.to_string(),
                r.hosts.iter().map(|h| h.to_string()).collect(),
                r.after.as_ref().map(|a| a.to_string()),
                r.soak.as_secs(),
                r.branch.clone(),
            )
        })
        .collect();
    assert_eq!(
        rings,
        [
            ("dev".into(), vec!["web1".into()], None, 20, "ring/dev".into()),
            (
                "prod".into(),
                vec!["web2".into(), "db1".into()],
                Some("dev".into()),
                1800,
                "env/prod".into()
            ),
        ]
    );
    assert_eq!(inv.ring_of("db1").unwrap().name.as_str(), "prod");
    assert!(inv.ring_of("builder").is_none());
}

// ---------------------------------------------------------------------------------------------
// Against real hosts: each host is a real sshd on 127.0.0.1 in a mount namespace of its own,
// where /run is private (so /run/current-system can be set) and the comin stand-in
// (tests/it/support/comin-standin.sh, which says why it stands in) is /usr/local/bin/comin.
// Rings' branches live in a bare repository on disk, the push remote and what hosts pull.

use crate::support::sshd;
use std::process::{Command, Output};

use sshd::Sshd;

/// Fixed dates so commit ids, and so the snapshots, are the same on every run.
const GIT_ENV: [(&str, &str); 6] = [
    ("GIT_AUTHOR_NAME", "Test Operator"),
    ("GIT_AUTHOR_EMAIL", "ops@example.test"),
    ("GIT_COMMITTER_NAME", "Test Operator"),
    ("GIT_COMMITTER_EMAIL", "ops@example.test"),
    ("GIT_AUTHOR_DATE", "2026-12-01T10:00:00Z"),
    ("GIT_COMMITTER_DATE", "2026-12-01T10:00:00Z"),
];

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git").arg("-C").arg(dir).args(args).envs(GIT_ENV).output().unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

struct TestHost {
    name: String,
    /// None: a host whose machine is gone (its port refuses connections).
    sshd: Option<Sshd>,
    port: u16,
    host_key: String,
    standin: tempfile::TempDir,
}

impl TestHost {
    fn knob(&self, name: &str, on: bool) {
        let p = self.standin.path().join(name);
        if on {
            fs_err::write(p, "").unwrap();
        } else {
            let _ = fs_err::remove_file(p);
        }
    }
    fn deployed(&self) -> String {
        fs_err::read_to_string(self.standin.path().join("commit"))
            .unwrap_or_default()
            .trim()
            .to_owned()
    }
}

struct TestFleet {
    repo: tempfile::TempDir,
    remote: tempfile::TempDir,
    hosts: Vec<TestHost>,
    /// The key cairn logs in with (authorized on every host).
    key: PathBuf,
}

/// A host `name` following `branch` of `remote`, up with its own sshd unless `gone`.
fn test_host(
    name: &str,
    remote: &Path,
    branch: &str,
    gone: bool,
    key_from: Option<&Sshd>,
) -> TestHost {
    let standin = tempfile::Builder::new().prefix("cairn-comin-").tempdir().unwrap();
    let bin = standin.path().join("bin");
    fs_err::create_dir_all(&bin).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/comin-standin.sh");
    let wrapper = format!(
        "#!/bin/sh\n# The comin stand-in of test host {name}: see {script}\nCOMIN_STANDIN_DIR={dir} exec {script} \"$@\"\n",
        script = script.display(),
        dir = standin.path().display()
    );
    fs_err::write(bin.join("comin"), wrapper).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        fs_err::set_permissions(bin.join("comin"), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    fs_err::write(standin.path().join("remote"), remote.display().to_string()).unwrap();
    fs_err::write(standin.path().join("branch"), branch).unwrap();
    let initial = standin.path().join("store/initial-system");
    fs_err::create_dir_all(&initial).unwrap();
    let mut server = Sshd::prepare(sshd::free_port());
    let port = server.port;
    let host_key = server.host_public_key("ed25519");
    if let Some(first) = key_from {
        server
            .authorize(&fs_err::read_to_string(first.client_key().with_extension("pub")).unwrap());
    }
    if gone {
        return TestHost { name: name.into(), sshd: None, port, host_key, standin };
    }
    let setup = format!(
        "mount -t tmpfs tmpfs /run && mkdir /run/sshd && mount --bind {bin} /usr/local/bin \
         && ln -s {initial} /run/current-system && exec \"$@\"",
        bin = bin.display(),
        initial = initial.display()
    );
    let wrapper: Vec<String> =
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", &setup, "sh"]
            .map(str::to_owned)
            .to_vec();
    server.launch_via(&wrapper);
    TestHost { name: name.into(), sshd: Some(server), port, host_key, standin }
}

/// `hosts`: (name, ring, gone). Rings: dev (first), prod (after dev, soak 30m).
fn test_fleet(hosts: &[(&str, &str, bool)]) -> TestFleet {
    let remote = tempfile::Builder::new().prefix("cairn-remote-").tempdir().unwrap();
    git(remote.path(), &["init", "--quiet", "--bare", "--initial-branch", "main"]);
    let repo = tempfile::Builder::new().prefix("cairn-fleet-").tempdir().unwrap();
    let mut built: Vec<TestHost> = Vec::new();
    for (name, ring, gone) in hosts {
        let first = built.iter().find_map(|h| h.sshd.as_ref());
        built.push(test_host(name, remote.path(), &format!("ring/{ring}"), *gone, first));
    }
    let key = built.iter().find_map(|h| h.sshd.as_ref()).unwrap().client_key();
    let mut hcl = String::from("provider \"existing\" \"owned\" {}\n\n");
    for h in &built {
        hcl.push_str(&format!(
            "host \"{}\" {{\n  address = \"127.0.0.1\"\n  ssh {{\n    port = {}\n  }}\n  health_check \"command\" {{\n    command = \"test -d /run/current-system/\"\n  }}\n}}\n\n",
            h.name, h.port
        ));
    }
    let ring_hosts = |ring: &str| {
        hosts
            .iter()
            .filter(|(_, r, _)| *r == ring)
            .map(|(n, _, _)| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    hcl.push_str(&format!(
        "gitops {{\n  remote      = \"{}\"\n  push_remote = \"forge\"\n}}\n\nring \"dev\" {{\n  hosts = [{}]\n}}\n\nring \"prod\" {{\n  hosts = [{}]\n  after = \"dev\"\n  soak  = \"30m\"\n}}\n",
        remote.path().display(),
        ring_hosts("dev"),
        ring_hosts("prod"),
    ));
    fs_err::write(repo.path().join("cairn.hcl"), hcl).unwrap();
    // Each host's configuration (`.#<name>`, the default) wires comin to its ring's branch,
    // as the check before a promotion wants.
    let configs: String = hosts
        .iter()
        .map(|(name, ring, _)| {
            format!(
                "    nixosConfigurations.{name}.config = {{\n      networking.hostName = \"{name}\";\n      services.comin = {{\n        enable = true;\n        remotes = [ {{ name = \"origin\"; url = \"{}\"; branches.main.name = \"ring/{ring}\"; }} ];\n      }};\n    }};\n",
                remote.path().display()
            )
        })
        .collect();
    fs_err::write(
        repo.path().join("flake.nix"),
        format!("{{\n  outputs = {{ self }}: {{\n{configs}  }};\n}}\n"),
    )
    .unwrap();
    fs_err::write(repo.path().join(".gitignore"), ".cairn/\n").unwrap();
    let mut state = cairn::state::StateData::default();
    for h in &built {
        let s = state.hosts.entry(h.name.clone()).or_default();
        s.addresses = vec![format!("127.0.0.1:{}", h.port)];
        s.host_keys.insert(cairn::state::KeyPhase::Installed, vec![h.host_key.clone()]);
        s.last_phase = Some(cairn::state::PhaseRecord {
            phase: cairn::phase::Phase::Verify,
            at: time::OffsetDateTime::UNIX_EPOCH,
        });
    }
    fs_err::create_dir_all(repo.path().join(".cairn")).unwrap();
    fs_err::write(
        repo.path().join(".cairn/state.json"),
        serde_json::to_vec_pretty(&state).unwrap(),
    )
    .unwrap();
    git(repo.path(), &["init", "--quiet", "--initial-branch", "main"]);
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "--quiet", "-m", "the fleet"]);
    git(repo.path(), &["remote", "add", "forge", &remote.path().display().to_string()]);
    git(repo.path(), &["push", "--quiet", "forge", "main"]);
    TestFleet { repo, remote, hosts: built, key }
}

impl TestFleet {
    fn cairn(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_cairn"))
            .arg("-C")
            .arg(self.repo.path())
            .args(["--color", "never"])
            .args(args)
            .env("CAIRN_SSH_KEY", &self.key)
            .env_remove("SSH_AUTH_SOCK")
            .envs(GIT_ENV)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    }
    fn host(&self, name: &str) -> &TestHost {
        self.hosts.iter().find(|h| h.name == name).unwrap()
    }
    /// A new commit on main, pushed: what a merged change looks like.
    fn commit_to_main(&self, file: &str, text: &str) -> String {
        fs_err::write(self.repo.path().join(file), text).unwrap();
        git(self.repo.path(), &["add", file]);
        git(self.repo.path(), &["commit", "--quiet", "-m", &format!("change {file}")]);
        git(self.repo.path(), &["push", "--quiet", "forge", "main"]);
        git(self.repo.path(), &["rev-parse", "HEAD"])
    }
    /// Says that cairn saw every host of the ring converged on `commit` an hour ago (what a
    /// `cairn status` an hour ago would have recorded), so the soak has passed.
    fn backdate_evidence(&self, commit: &str, hosts: &[&str]) {
        let an_hour_ago = (time::OffsetDateTime::now_utc() - time::Duration::hours(1))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let seen: serde_json::Map<String, serde_json::Value> = hosts
            .iter()
            .map(|h| {
                (
                    (*h).to_owned(),
                    serde_json::json!({"first_seen": an_hour_ago, "last_seen": an_hour_ago}),
                )
            })
            .collect();
        let note = serde_json::json!({ "hosts": seen }).to_string();
        git(
            self.repo.path(),
            &["notes", "--ref", "refs/notes/cairn/soak", "add", "--force", "-m", &note, commit],
        );
    }
    /// Makes `host`'s comin fetch now, over cairn ssh (the stand-in deploys at once).
    fn fetch(&self, host: &str) {
        let out = self.cairn(&["ssh", host, "-T", "--", "comin", "fetch"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    /// Text with the temp paths and relative times that change from run to run replaced.
    fn stable(&self, text: &str) -> String {
        let mut t = text.replace(&self.remote.path().display().to_string(), "[REMOTE]");
        t = t.replace(&self.repo.path().display().to_string(), "[REPO]");
        for h in &self.hosts {
            t = t.replace(&h.standin.path().display().to_string(), &format!("[{}]", h.name));
            t = t.replace(&format!(":{}", h.port), ":[PORT]");
        }
        // Commits are named by the order they were made (their ids depend on the temp paths
        // in cairn.hcl).
        let commits = git(
            self.repo.path(),
            &["rev-list", "--reverse", "--topo-order", "--branches", "--remotes"],
        );
        for (i, c) in commits.lines().enumerate() {
            t = t.replace(c, &format!("[C{i}]")).replace(&c[..7], &format!("[C{i}]"));
        }
        let re = regex::Regex::new(r"fetched \d+[smhd] ago").unwrap();
        t = re.replace_all(&t, "fetched [N] ago").into_owned();
        let re = regex::Regex::new(r"for [0-9hms]+, the soak is 30m \([0-9hms]+ to go\)").unwrap();
        t = re.replace_all(&t, "for [T], the soak is 30m ([T] to go)").into_owned();
        let re = regex::Regex::new(r"for at least [0-9hms]+ \(soak").unwrap();
        re.replace_all(&t, "for at least [T] (soak").into_owned()
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn can_run_hosts() -> bool {
    // Each test host needs its own mount namespace (root, unshare).
    sshd::is_root()
        && Command::new("unshare").args(["--mount", "true"]).status().is_ok_and(|s| s.success())
}

#[test]
fn status_shows_converged_failed_held_and_unreachable_hosts() {
    if !can_run_hosts() {
        eprintln!("skipped: needs root and unshare for the test hosts' mount namespaces");
        return;
    }
    let fleet = test_fleet(&[
        ("web1", "dev", false),
        ("web2", "dev", false),
        ("web3", "dev", false),
        ("web4", "dev", true),
    ]);
    let main = git(fleet.repo.path(), &["rev-parse", "HEAD"]);
    git(fleet.repo.path(), &["push", "--quiet", "forge", "main:refs/heads/ring/dev"]);
    fleet.host("web2").knob("fail", true);
    for h in ["web1", "web2", "web3"] {
        fleet.fetch(h);
    }
    let out = fleet.cairn(&["ssh", "web3", "-T", "--", "comin", "suspend"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fleet.host("web1").deployed(), main);

    let out = fleet.cairn(&["status"]);
    assert_eq!(out.status.code(), Some(1), "not all converged: {}", stderr(&out));
    insta::assert_snapshot!("status_text", fleet.stable(&stdout(&out)));

    let out = fleet.cairn(&["status", "--json", "@dev"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for key in [
        "host",
        "ring",
        "branch",
        "commit",
        "status",
        "converged",
        "healthy",
        "fetched_at",
        "error",
    ] {
        assert!(rows.iter().all(|r| r.get(key).is_some()), "every row has {key}");
    }
    let by = |h: &str| rows.iter().find(|r| r["host"] == h).unwrap().clone();
    assert_eq!(by("web1")["converged"], true);
    assert_eq!(by("web1")["commit"], main.as_str());
    assert_eq!(by("web1")["healthy"], true);
    assert!(by("web1")["fetched_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(by("web2")["status"], "failed");
    assert_eq!(by("web3")["suspended"], true);
    assert_eq!(by("web4")["status"], "unreachable");
    assert!(by("web4")["error"]
        .as_str()
        .unwrap()
        .starts_with("unreachable: cannot connect to root@127.0.0.1:"));

    // Status read each host's machine id, for fleet.json.
    let out = fleet.cairn(&["gitops", "sync"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let written: serde_json::Value =
        serde_json::from_slice(&fs_err::read(fleet.repo.path().join("cairn/fleet.json")).unwrap())
            .unwrap();
    let machine_id = fs_err::read_to_string("/etc/machine-id").unwrap_or_default();
    if !machine_id.trim().is_empty() {
        assert_eq!(written["hosts"]["web1"]["machine_id"], machine_id.trim());
    }
    assert_eq!(written["hosts"]["web4"]["machine_id"], serde_json::Value::Null);

    // The daemon down: status says so and what it tried, other hosts unaffected.
    fleet.host("web1").knob("down", true);
    let out = fleet.cairn(&["status", "web1", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let error = rows[0]["error"].as_str().unwrap();
    assert!(
        error.contains("`comin status` failed (level=fatal msg=\"rpc error: code = Unavailable"),
        "{error}"
    );
    assert!(error.contains("/var/lib/comin/store.json cannot be read"), "{error}");
}

#[test]
fn promote_rollback_hold_and_release_on_real_hosts_and_git() {
    if !can_run_hosts() {
        eprintln!("skipped: needs root and unshare for the test hosts' mount namespaces");
        return;
    }
    let fleet = test_fleet(&[("web1", "dev", false), ("web2", "prod", false)]);
    let repo = fleet.repo.path();
    let c0 = git(repo, &["rev-parse", "HEAD"]);
    let run = |args: &[&str]| {
        let out = fleet.cairn(args);
        (out.status.code(), fleet.stable(&stdout(&out)), fleet.stable(&stderr(&out)))
    };

    // prod comes after dev, which has no branch yet.
    let (code, _, err) = run(&["promote", "prod", "--yes"]);
    assert_eq!(code, Some(1));
    insta::assert_snapshot!("promote_before_dev", err);

    // dev, a first ring, takes main's head; its host fetches and deploys it.
    let (code, out, err) = run(&["promote", "dev", "--yes", "--watch", "--timeout", "2m"]);
    assert_eq!(code, Some(0), "{out}{err}");
    insta::assert_snapshot!("promote_dev", out);
    assert_eq!(fleet.host("web1").deployed(), c0);
    assert_eq!(git(repo, &["rev-parse", "cairn/promote/dev/1^{commit}"]), c0);
    assert!(git(fleet.remote.path(), &["tag", "--list"]).contains("cairn/promote/dev/1"));

    // prod right away: dev has not soaked.
    let (code, out, err) = run(&["promote", "prod", "--yes"]);
    assert_eq!(code, Some(1));
    insta::assert_snapshot!("promote_prod_refused_soak", format!("{out}{err}"));
    assert_eq!(git(fleet.remote.path(), &["branch", "--list", "ring/prod"]), "", "nothing pushed");

    // An hour later (as recorded), prod takes it.
    fleet.backdate_evidence(&c0, &["web1"]);
    let (code, out, err) = run(&["promote", "prod", "--yes", "--watch", "--timeout", "2m"]);
    assert_eq!(code, Some(0), "{out}{err}");
    insta::assert_snapshot!("promote_prod", out);
    assert_eq!(fleet.host("web2").deployed(), c0);

    // A change goes through both rings.
    let c1 = fleet.commit_to_main("motd", "hello\n");
    let (code, out, err) = run(&["promote", "dev", "--yes"]);
    assert_eq!(code, Some(0), "{out}{err}");
    fleet.backdate_evidence(&c1, &["web1"]);
    let (code, out, err) = run(&["status", "dev"]);
    assert_eq!(code, Some(1), "dev is listed as a host selector, not a ring: {out}{err}");
    let (code, out, err) = run(&["status", "@dev"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, err) = run(&["promote", "prod", "--yes"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(fleet.host("web2").deployed(), c1);

    // Rollback: a new commit on ring/prod with the tree of the previous promotion (c0).
    let (code, out, err) = run(&["rollback", "prod", "--yes", "--watch", "--timeout", "2m"]);
    assert_eq!(code, Some(0), "{out}{err}");
    insta::assert_snapshot!("rollback_prod", out);
    let reverted = fleet.host("web2").deployed();
    assert_ne!(reverted, c0);
    assert_eq!(
        git(repo, &["rev-parse", &format!("{reverted}^{{tree}}")]),
        git(repo, &["rev-parse", &format!("{c0}^{{tree}}")])
    );
    assert_eq!(git(repo, &["rev-parse", &format!("{reverted}^")]), c1, "on top of what prod ran");
    // Nothing before the first promotion to return to.
    let (code, _, err) = run(&["rollback", "prod", "--yes"]);
    assert_eq!(code, Some(1));
    insta::assert_snapshot!("rollback_nothing_before", err);

    // Hold dev: status shows it, and prod refuses past it (and the reverted branch is not a
    // fast-forward to dev's head).
    let (code, out, _) = run(&["hold", "dev"]);
    assert_eq!(code, Some(0));
    assert_eq!(out, "web1: held (comin suspend)\n");
    let (_, out, _) = run(&["hold", "dev"]);
    assert_eq!(out, "web1: already held\n");
    let (code, out, err) = run(&["promote", "prod", "--yes"]);
    assert_eq!(code, Some(1));
    insta::assert_snapshot!(
        "promote_prod_refused_held_and_not_fast_forward",
        format!("{out}{err}")
    );
    let (code, out, _) = run(&["release", "dev"]);
    assert_eq!(code, Some(0));
    assert_eq!(out, "web1: released (comin resume)\n");
    assert_eq!(fleet.host("web2").deployed(), reverted, "a refused promotion pushed nothing");
}

/// Verify ends with the hand-off to the host's agent: what comin deployed (or that it has
/// not yet) and the branch of the host's ring, in the summary and in `--json`.
#[test]
fn verify_reports_the_hand_off_to_the_agent() {
    if !can_run_hosts() {
        eprintln!("skipped: needs root and unshare for the test hosts' mount namespaces");
        return;
    }
    let fleet = test_fleet(&[("web1", "dev", false)]);
    let verify = ["bootstrap", "host", "web1", "--yes", "--phases", "verify", "--skip-check"];
    let out = fleet.cairn(&verify);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out)
            .contains("  agent      comin has deployed nothing yet; it pulls ring/dev next\n"),
        "{}",
        stdout(&out)
    );

    let main = git(fleet.repo.path(), &["rev-parse", "HEAD"]);
    git(fleet.repo.path(), &["push", "--quiet", "forge", "main:refs/heads/ring/dev"]);
    fleet.fetch("web1");
    let out = fleet.cairn(&verify);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let line = format!("  agent      comin deployed {} from ring/dev (done)\n", &main[..12]);
    assert!(stdout(&out).contains(&line), "{}", stdout(&out));

    let mut json = verify.to_vec();
    json.push("--json");
    let out = fleet.cairn(&json);
    let summary: serde_json::Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] == "summary")
        .expect("a summary event");
    let agent = &summary["hosts"][0]["agent"];
    assert_eq!(agent["branch"], "ring/dev", "{summary}");
    assert_eq!(agent["comin"]["deployment"]["commit"], main.as_str(), "{summary}");
}
