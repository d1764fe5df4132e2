//! `cairn plan`, `apply`, `destroy` and `import` as a user runs them, against cloudalone (a
//! third-party Hetzner Cloud emulator started per test on 127.0.0.1): drift made behind
//! cairn's back through the emulator's API shows in the plan; saved plans go stale; nothing
//! changes without confirmation. Output is snapshotted (no colours, no terminal).

use crate::support::cloudalone;

use std::path::Path;
use std::process::{Command, Output};

use cloudalone::{Cloudalone, TOKEN};
use serde_json::{json, Value};

const ADMIN_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEuQlFqSmGUbUsPOcL0cy1ofDlmzwOJL9LvFB+ADvTcV me@x";

/// A fleet repository whose hcloud provider is the test's cloudalone.
struct Repo {
    dir: tempfile::TempDir,
    ca: Cloudalone,
    rt: tokio::runtime::Runtime,
}

impl Repo {
    fn start(hosts: &str) -> Option<Self> {
        let ca = Cloudalone::start()?;
        let repo = Self {
            dir: tempfile::tempdir().unwrap(),
            ca,
            rt: tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap(),
        };
        repo.write_inventory(hosts);
        Some(repo)
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write_inventory(&self, hosts: &str) {
        let text = format!(
            r#"
provider "hcloud" "cloud" {{
  token    = env("HCLOUD_TOKEN")
  endpoint = "{}"
}}

admin "alice" {{
  age = "{ADMIN_KEY}"
}}

defaults {{
  provider = "cloud"
  size     = "small"
  image    = "debian-13"
}}
{hosts}"#,
            self.ca.endpoint()
        );
        fs_err::write(self.path().join("cairn.hcl"), text).unwrap();
    }

    fn cairn(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(args)
            .current_dir(self.path())
            .env("NO_COLOR", "1")
            .env("HCLOUD_TOKEN", TOKEN)
            .env_remove("CAIRN_INVENTORY")
            .env_remove("CAIRN_SSH_KEY")
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    }

    /// Runs cairn, expects `code`, returns what the user saw: stdout, then stderr.
    fn run(&self, args: &[&str], code: i32) -> String {
        let out = self.cairn(args);
        let shown = shown(self.path(), &out);
        assert_eq!(out.status.code(), Some(code), "cairn {args:?}:\n{shown}");
        shown
    }

    fn state(&self) -> Value {
        let text = fs_err::read_to_string(self.path().join(".cairn/state.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn machine_of(&self, host: &str) -> String {
        self.state()["hosts"][host]["provider_id"].as_str().unwrap().to_owned()
    }

    /// Waits for a deleted server to leave the emulator (it is `deleting` for a moment).
    fn wait_gone(&self, id: &str) {
        for _ in 0..200 {
            let server = self.rt.block_on(self.ca.get(&format!("/servers/{id}")));
            if server["error"]["code"] == "not_found" {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("server {id} is still there after it was deleted");
    }

    /// The servers' names at the emulator, sorted.
    fn servers(&self) -> Vec<String> {
        let list = self.rt.block_on(self.ca.get("/servers"));
        let mut names: Vec<String> = list["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    }
}

fn shown(dir: &Path, out: &Output) -> String {
    let text = format!(
        "{}--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    text.replace(&dir.display().to_string(), "[repo]")
}

/// Times vary from run to run.
macro_rules! snapshot {
    ($name:expr, $value:expr) => {
        insta::with_settings!({filters => vec![
            (r"\(\d+\.\d s\)", "([time])"),
            // the summary table's time column (fixed width)
            (r"(?m) +\d+\.\d s(  |$)", "  [time]$1"),
            // cloudalone's servers start a moment after they are made
            (r"status (initializing|starting|running)", "status [status]"),
            // the operator key is generated per repository
            (r"key=cairn-[0-9a-f]{12}", "key=cairn-[fingerprint]"),
            (r"key cairn-[0-9a-f]{12}", "key cairn-[fingerprint]"),
        ]}, {
            insta::assert_snapshot!($name, $value);
        })
    };
}

#[test]
fn a_server_deleted_behind_cairns_back_shows_as_to_be_created() {
    let Some(repo) = Repo::start("host \"web1\" {}\nhost \"web2\" {}\n") else { return };
    snapshot!("apply_creates", repo.run(&["apply", "--yes", "--parallel", "1"], 0));
    assert_eq!(repo.servers(), ["web1", "web2"]);
    let state = repo.state();
    assert_eq!(state["hosts"]["web1"]["size"], "small");
    assert_eq!(state["hosts"]["web1"]["location"], "abilian", "recorded as the provider reports");
    assert_eq!(
        repo.run(&["plan", "--detailed-exitcode"], 0),
        "No changes. The machines match the inventory.\n--- stderr\n"
    );

    let id = repo.machine_of("web1");
    repo.rt.block_on(repo.ca.delete(&format!("/servers/{id}")));
    repo.wait_gone(&id);
    snapshot!("plan_after_delete", repo.run(&["plan", "--detailed-exitcode"], 2));
    // State alone cannot tell.
    repo.run(&["plan", "--refresh=false", "--detailed-exitcode"], 0);
    let json: Value =
        serde_json::from_str(repo.run(&["plan", "--json"], 0).split("--- stderr").next().unwrap())
            .unwrap();
    assert_eq!(json["hosts"][0]["action"], "create");
    assert_eq!(json["summary"]["create"], 1);

    let again = repo.run(&["apply", "--yes"], 0);
    assert!(again.contains("\nweb1  created  "), "{again}");
    assert_eq!(repo.servers(), ["web1", "web2"]);
    repo.run(&["plan", "--detailed-exitcode"], 0);
}

#[test]
fn changed_attributes_found_servers_and_hosts_gone_from_the_inventory() {
    let Some(repo) = Repo::start("host \"web1\" {}\nhost \"web2\" {}\n") else { return };
    // A server named like web1 made outside cairn: left alone until imported (more in
    // adopt.rs), then it is web1's.
    let made =
        repo.rt.block_on(repo.ca.post(
            "/servers",
            &json!({"name": "web1", "server_type": "small", "image": "debian-13"}),
        ));
    snapshot!("plan_leaves_a_server_cairn_did_not_create_alone", repo.run(&["plan"], 1));
    repo.run(&["import", "web1", &made["server"]["id"].to_string()], 0);
    snapshot!("plan_after_import", repo.run(&["plan"], 0));
    repo.run(&["apply", "--yes", "--parallel", "1"], 0);
    assert_eq!(repo.servers(), ["web1", "web2"], "web1 imported, not doubled");

    // The inventory now asks for another size for web1 (in place), another location for web2
    // (a new machine), and no longer names a third host cairn made.
    repo.write_inventory(
        "host \"web1\" {\n  size = \"medium\"\n}\nhost \"web2\" {\n  location = \"fsn1\"\n}\n",
    );
    snapshot!("plan_changes", repo.run(&["plan"], 0));
    let skipped = repo.run(&["apply", "--yes"], 0);
    snapshot!("apply_leaves_replacements_alone", skipped);
    let old = repo.machine_of("web2");
    let replaced = repo.run(&["apply", "--yes", "--replace", "web2"], 0);
    // (cloudalone reuses the ids of deleted servers)
    assert!(replaced.contains("\nweb2  replaced  "), "{replaced}");
    assert!(replaced.contains(&format!("machine {old} replaced by ")), "{replaced}");
    assert_eq!(repo.servers(), ["web1", "web2"]);

    repo.write_inventory("host \"web2\" {\n  location = \"abilian\"\n}\n");
    snapshot!("plan_destroys_hosts_gone", repo.run(&["plan"], 0));
    repo.run(&["apply", "--yes"], 0);
    assert_eq!(repo.servers(), ["web2"]);
    assert!(repo.state()["hosts"].get("web1").is_none());
}

#[test]
fn import_records_a_server_by_its_id() {
    let Some(repo) = Repo::start("host \"web1\" {}\nhost \"db1\" {}\n") else { return };
    let made = repo.rt.block_on(repo.ca.post(
        "/servers",
        &json!({"name": "old-database", "server_type": "medium", "image": "debian-13"}),
    ));
    let id = made["server"]["id"].to_string();
    snapshot!("import", repo.run(&["import", "db1", &id], 0));
    assert_eq!(repo.machine_of("db1"), id);
    assert!(repo.run(&["import", "db1", &id], 0).contains("db1: already records machine"));
    // The plan now compares it: the inventory wants small, the server is medium.
    assert!(repo.run(&["plan", "db1"], 0).contains("size:     medium → small"));

    snapshot!("import_unknown_host", repo.run(&["import", "cache1", &id], 1));
    snapshot!("import_over_another_machine", repo.run(&["import", "db1", "4242"], 1));
    snapshot!("import_missing", repo.run(&["import", "web1", "4242"], 1));
    assert!(repo.state()["hosts"].get("web1").is_none());
}

#[test]
fn a_saved_plan_is_applied_as_planned_and_refused_once_stale() {
    let Some(repo) = Repo::start("host \"web1\" {}\n") else { return };
    // OpenTofu's spelling works too.
    repo.run(&["plan", "-out", "first.plan"], 0);
    repo.run(&["plan", "--out", "second.plan"], 0);
    let applied = repo.run(&["apply", "first.plan", "--yes"], 0);
    assert!(applied.contains("\nweb1  created  "), "{applied}");
    // The state moved on: the second plan would create web1 again.
    snapshot!("apply_stale_state", repo.run(&["apply", "second.plan", "--yes"], 1));
    assert_eq!(repo.servers(), ["web1"]);

    repo.write_inventory("host \"web1\" {}\nhost \"web2\" {}\n");
    repo.run(&["plan", "--out", "third.plan"], 0);
    repo.write_inventory("host \"web1\" {}\nhost \"web3\" {}\n");
    let stale = repo.run(&["apply", "third.plan", "--yes"], 1);
    assert!(
        stale.contains(
            "the plan [repo]/third.plan is stale: cairn.hcl changed since the plan was made"
        ),
        "{stale}"
    );
    assert_eq!(repo.servers(), ["web1"]);
}

#[test]
fn apply_and_destroy_refuse_without_a_terminal_unless_yes() {
    let Some(repo) = Repo::start("host \"web1\" {}\n") else { return };
    snapshot!("apply_without_yes", repo.run(&["apply"], 1));
    assert!(repo.servers().is_empty(), "nothing was created");
    repo.run(&["apply", "--yes"], 0);
    snapshot!("destroy_without_yes", repo.run(&["destroy", "host", "web1"], 1));
    assert_eq!(repo.servers(), ["web1"]);
    let destroyed = repo.run(&["destroy", "host", "web1", "--yes"], 0);
    assert!(destroyed.contains("\nweb1  destroyed  "), "{destroyed}");
    assert!(repo.servers().is_empty());
}

/// Issue 14 item 6: Hetzner's IPv6 is static, so the flake must be told the address.
#[test]
fn apply_writes_each_servers_ipv6_into_cairn_network_json_and_destroy_removes_it() {
    let Some(repo) = Repo::start("host \"web1\" {}\n") else { return };
    let network = repo.path().join("cairn/network.json");
    repo.run(&["apply", "--yes"], 0);
    let id = repo.machine_of("web1");
    let server = repo.rt.block_on(repo.ca.get(&format!("/servers/{id}")));
    // The server's own address is the ::1 of the /64 the emulator routed to it.
    let block = server["server"]["public_net"]["ipv6"]["ip"].as_str().unwrap().to_owned();
    let (net, prefix) = block.split_once('/').unwrap();
    let net: std::net::Ipv6Addr = net.parse().unwrap();
    let address = std::net::Ipv6Addr::from(u128::from(net) | 1);
    let file: Value = serde_json::from_str(&fs_err::read_to_string(&network).unwrap()).unwrap();
    assert_eq!(
        file["hosts"],
        json!({"web1": {"ipv4": null, "ipv6": format!("{address}/{prefix}"), "gateway6": "fe80::1"}})
    );
    // State keeps it typed (reach takes it, as cloudalone gives no IPv4: src/reach/tests.rs).
    assert_eq!(repo.state()["hosts"]["web1"]["network"]["ipv6"], format!("{address}/{prefix}"));

    repo.run(&["destroy", "host", "web1", "--yes"], 0);
    let file: Value = serde_json::from_str(&fs_err::read_to_string(&network).unwrap()).unwrap();
    assert_eq!(file["hosts"], json!({}), "the destroyed server's address is gone");
}

#[test]
fn a_provider_error_shows_for_its_hosts_and_the_others_are_planned() {
    let Some(repo) = Repo::start("host \"web1\" {}\n") else { return };
    let inv = fs_err::read_to_string(repo.path().join("cairn.hcl")).unwrap();
    let wrong = format!(
        "{inv}\nprovider \"hcloud\" \"other\" {{\n  token    = \"not-the-token\"\n  endpoint = \"{}\"\n}}\nhost \"db1\" {{\n  provider = \"other\"\n}}\n",
        repo.ca.endpoint()
    );
    fs_err::write(repo.path().join("cairn.hcl"), wrong).unwrap();
    snapshot!("plan_with_a_failing_provider", repo.run(&["plan", "--detailed-exitcode"], 1));
    let applied = repo.run(&["apply", "--yes"], 1);
    assert!(applied.contains("\nweb1  created  "), "{applied}");
    assert_eq!(repo.servers(), ["web1"]);
}

/// `cairn plan` over 120 hcloud hosts (state records each one's server; one more host has
/// none yet) asks for the servers in pages of 50, not a request or two per host: 3 requests
/// on the stand-in API, which pages as the real one does.
#[test]
fn refresh_of_many_hcloud_hosts_lists_servers_by_pages() {
    use crate::support::hcloud_fake::{Cloud, Fake};

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fake = runtime.block_on(Fake::start(Cloud::default()));
    let dir = tempfile::tempdir().unwrap();
    let mut hcl = format!(
        "provider \"hcloud\" \"cloud\" {{\n  token = env(\"HCLOUD_TOKEN\")\n  endpoint = \"{}\"\n  location = \"fsn1\"\n}}\n\n",
        fake.endpoint()
    );
    let mut state_hosts = serde_json::Map::new();
    for i in 1..=121u64 {
        let name = format!("web{i}");
        hcl.push_str(&format!(
            "host \"{name}\" {{\n  size = \"cx22\"\n  image = \"debian-13\"\n}}\n"
        ));
        if i == 121 {
            continue; // not created yet
        }
        fake.cloud(|c| {
            c.servers.push(json!({
                "id": i,
                "name": name,
                "status": "running",
                "public_net": { "ipv4": { "ip": "203.0.113.10" }, "ipv6": null },
                "server_type": { "name": "cx22" },
                "image": { "name": "debian-13" },
                "datacenter": { "name": "fsn1-dc14", "location": { "name": "fsn1" } },
                "labels": { "cairn-host": name, "managed-by": "cairn" },
                "rescue_enabled": false,
            }))
        });
        state_hosts.insert(
            name,
            json!({ "provider": "cloud", "provider_id": i.to_string(), "size": "cx22", "image": "debian-13", "location": "fsn1" }),
        );
    }
    fs_err::write(dir.path().join("cairn.hcl"), hcl).unwrap();
    fs_err::create_dir_all(dir.path().join(".cairn")).unwrap();
    let state = json!({ "schema": 2, "serial": 1, "hosts": state_hosts });
    fs_err::write(dir.path().join(".cairn/state.json"), state.to_string()).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["plan", "--json"])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .env("HCLOUD_TOKEN", "test-token")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let requests: Vec<String> = fake
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/v1/servers"))
        .map(|r| format!("{} {} {:?}", r.method, r.path, r.query))
        .collect();
    assert_eq!(requests.len(), 3, "{requests:#?}");
    let plan: Value = serde_json::from_str(&stdout).unwrap();
    let text = plan.to_string();
    assert!(text.contains("web121"), "the new host is planned: {text}");
}
