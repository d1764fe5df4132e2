//! Never the wrong machine: a machine named like a host that cairn did not create is reported
//! by `plan`, refused by `apply` and `bootstrap` (neither taken nor doubled), and becomes the
//! host's only through `cairn import`. Before bootstrap erases a machine it asks, and without
//! a terminal it refuses unless `--yes`. Against cloudalone (Hetzner Cloud), moto (EC2) and a
//! real sshd on 127.0.0.1, with the cairn binary as a user runs it (no terminal).

#![allow(clippy::print_stderr)] // tests say why they skip

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

use crate::provider_aws::{Moto, AMI, REGION};
use crate::support::cloudalone::{Cloudalone, TOKEN};
use crate::support::sshd;

const ADMIN_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEuQlFqSmGUbUsPOcL0cy1ofDlmzwOJL9LvFB+ADvTcV me@x";

/// A fleet repository in a temp dir, and the environment cairn runs with.
pub(crate) struct Fleet {
    dir: tempfile::TempDir,
    env: Vec<(&'static str, String)>,
}

impl Fleet {
    pub(crate) fn new(providers_and_hosts: &str, env: Vec<(&'static str, String)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let text =
            format!("admin \"alice\" {{\n  age = \"{ADMIN_KEY}\"\n}}\n{providers_and_hosts}");
        fs_err::write(dir.path().join("cairn.hcl"), text).unwrap();
        Self { dir, env }
    }

    /// web1 at an hcloud provider (cloudalone).
    pub(crate) fn hcloud(ca: &Cloudalone) -> Self {
        Self::new(
            &format!(
                "provider \"hcloud\" \"cloud\" {{\n  token    = env(\"HCLOUD_TOKEN\")\n  endpoint = \"{}\"\n}}\n\nhost \"web1\" {{\n  provider = \"cloud\"\n  size     = \"small\"\n  image    = \"debian-13\"\n}}\n",
                ca.endpoint()
            ),
            vec![("HCLOUD_TOKEN", TOKEN.to_owned())],
        )
    }

    /// web1 at an aws provider (moto).
    pub(crate) fn aws(moto: &Moto) -> Self {
        Self::new(
            &format!(
                "provider \"aws\" \"cloud\" {{\n  region            = \"{REGION}\"\n  endpoint          = \"{}\"\n  access_key_id     = env(\"AWS_ACCESS_KEY_ID\")\n  secret_access_key = env(\"AWS_SECRET_ACCESS_KEY\")\n  ami               = \"{AMI}\"\n}}\n\nhost \"web1\" {{\n  provider = \"cloud\"\n  size     = \"t3.small\"\n}}\n",
                moto.endpoint()
            ),
            vec![
                ("AWS_ACCESS_KEY_ID", moto.access_key_id.clone()),
                ("AWS_SECRET_ACCESS_KEY", moto.secret_access_key.clone()),
            ],
        )
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// cairn without a terminal (stdin is /dev/null).
    fn cairn(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
        cmd.args(args)
            .current_dir(self.path())
            .stdin(Stdio::null())
            .env("NO_COLOR", "1")
            .env_remove("CAIRN_INVENTORY")
            .env_remove("CAIRN_SSH_KEY")
            .env_remove("CAIRN_INSTALLER")
            .env_remove("RUST_LOG");
        for var in ["AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"] {
            cmd.env_remove(var);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    /// Runs cairn, expects `code`; what the user saw, stdout then stderr.
    pub(crate) fn run(&self, args: &[&str], code: i32) -> String {
        let out = self.cairn(args);
        let shown = format!(
            "{}--- stderr\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(code), "cairn {args:?}:\n{shown}");
        shown
    }

    /// What state records of `host` (null when nothing).
    pub(crate) fn host_state(&self, host: &str) -> Value {
        let Ok(text) = fs_err::read_to_string(self.path().join(".cairn/state.json")) else {
            return Value::Null;
        };
        let state: Value = serde_json::from_str(&text).unwrap();
        state["hosts"][host].clone()
    }
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// What plan, apply, bootstrap and import do with a machine named `web1` that cairn did not
/// create, whose provider id is `id`. `machines` counts the provider's machines.
fn reported_refused_then_imported(fleet: &Fleet, id: &str, machines: &dyn Fn() -> usize) {
    let import = format!("cairn import web1 {id}");

    let plan = fleet.run(&["plan"], 1);
    assert!(plan.contains("! host \"web1\" is left alone"), "{plan}");
    assert!(plan.contains(&format!("adopt it: {import}")), "{plan}");
    assert!(plan.contains("nothing is planned for it"), "{plan}");
    assert!(plan.contains(&format!(" {id} named web1 that cairn did not create")), "{plan}");
    assert!(!plan.contains("will be created") && !plan.contains("will be adopted"), "{plan}");
    fleet.run(&["plan", "--out", "web1.plan"], 1);

    let applied = fleet.run(&["apply", "--yes"], 1);
    assert!(applied.contains(&import), "{applied}");
    assert_eq!(machines(), 1, "apply made no second machine:\n{applied}");
    assert_eq!(fleet.host_state("web1")["provider_id"], Value::Null, "{applied}");

    let bootstrapped = fleet.run(&["bootstrap", "host", "web1", "--yes", "--skip-check"], 1);
    assert!(bootstrapped.contains("web1: provision failed"), "{bootstrapped}");
    assert!(bootstrapped.contains(&import), "{bootstrapped}");
    assert_eq!(machines(), 1, "{bootstrapped}");
    assert_eq!(fleet.host_state("web1")["provider_id"], Value::Null, "{bootstrapped}");

    // Adopted on purpose, it is the host's: plan, apply and bootstrap use it.
    let imported = fleet.run(&["import", "web1", id], 0);
    assert!(imported.contains(&format!("web1: imported machine {id}")), "{imported}");
    assert_eq!(fleet.host_state("web1")["provider_id"], id);
    let plan = fleet.run(&["plan"], 0);
    assert!(!plan.contains("left alone") && !plan.contains("will be created"), "{plan}");
    fleet.run(&["apply", "--yes"], 0);
    let provisioned = fleet
        .run(&["bootstrap", "host", "web1", "--yes", "--skip-check", "--phases", "provision"], 0);
    assert!(provisioned.contains("1 of 1 hosts ok"), "{provisioned}");
    assert_eq!(fleet.host_state("web1")["provider_id"], id);
    assert_eq!(machines(), 1);
}

#[test]
fn hcloud_a_server_named_like_the_host_is_reported_refused_and_taken_only_by_import() {
    let Some(ca) = Cloudalone::start() else { return };
    let rt = runtime();
    let fleet = Fleet::hcloud(&ca);
    let made = rt.block_on(
        ca.post("/servers", &json!({"name": "web1", "server_type": "small", "image": "debian-13"})),
    );
    let id = made["server"]["id"].to_string();
    let servers = || {
        let list = rt.block_on(ca.get("/servers"));
        let servers = list["servers"].as_array().unwrap().clone();
        for s in &servers {
            // cairn did not label (or rename) it.
            assert_eq!(s["labels"], json!({}), "{s}");
            assert_eq!(s["name"], "web1", "{s}");
        }
        servers.len()
    };
    reported_refused_then_imported(&fleet, &id, &servers);
}

#[test]
fn aws_an_instance_named_like_the_host_is_reported_refused_and_taken_only_by_import() {
    let rt = runtime();
    let Some(moto) = rt.block_on(Moto::start()) else { return };
    let fleet = Fleet::aws(&moto);
    let started = rt.block_on(moto.ec2(&[
        ("Action", "RunInstances"),
        ("ImageId", AMI),
        ("InstanceType", "t3.small"),
        ("MinCount", "1"),
        ("MaxCount", "1"),
        ("TagSpecification.1.ResourceType", "instance"),
        ("TagSpecification.1.Tag.1.Key", "Name"),
        ("TagSpecification.1.Tag.1.Value", "web1"),
    ]));
    let id = regex::Regex::new(r"<instanceId>(i-[0-9a-f]+)</instanceId>")
        .unwrap()
        .captures(&started)
        .unwrap_or_else(|| panic!("no instance id in {started}"))[1]
        .to_owned();
    let instances = || {
        let live = rt.block_on(moto.live_instances());
        for i in &live {
            // cairn did not tag it.
            assert!(
                !i.contains_key("tag:cairn-host") && !i.contains_key("tag:managed-by"),
                "{i:?}"
            );
            assert_eq!(i["tag:Name"], "web1", "{i:?}");
        }
        live.len()
    };
    reported_refused_then_imported(&fleet, &id, &instances);
}

/// The stock system is this machine's sshd (reached as root), its key pinned in state; the
/// installer bundle does not exist, so a run that got past the question stops right after it,
/// before anything is uploaded.
#[test]
fn bootstrap_refuses_to_erase_a_machine_without_a_terminal_unless_yes() {
    if !sshd::is_root() {
        eprintln!("skipped: the stock system is reached as root here");
        return;
    }
    let ssh = sshd::Sshd::start();
    let fleet = Fleet::new(
        &format!(
            "provider \"existing\" \"mine\" {{}}\n\nhost \"web1\" {{\n  provider    = \"mine\"\n  address     = \"127.0.0.1:{}\"\n  flake       = \".#web1\"\n  disk_layout = \"main\"\n  installer   = \"missing-kexec-bundle.tar.gz\"\n  installer_min_memory = 1\n}}\n\ndisk_layout \"main\" {{\n  device = \"/dev/cairn-test-disk\"\n  partition \"root\" {{\n    type       = \"filesystem\"\n    size       = \"rest\"\n    filesystem = \"ext4\"\n    mountpoint = \"/\"\n  }}\n}}\n",
            ssh.port
        ),
        vec![("CAIRN_SSH_KEY", ssh.client_key().display().to_string())],
    );
    let state = json!({
        "schema": 1,
        "serial": 1,
        "hosts": { "web1": {
            "provider": "mine",
            "addresses": [format!("127.0.0.1:{}", ssh.port)],
            "host_keys": { "stock": [ssh.host_public_key("ed25519")] },
        }},
    });
    fs_err::create_dir_all(fleet.path().join(".cairn")).unwrap();
    fs_err::write(fleet.path().join(".cairn/state.json"), state.to_string()).unwrap();
    let uploaded = PathBuf::from("/root/cairn-kexec");

    let refused = fleet.run(&["bootstrap", "host", "web1", "--skip-check", "--phases", "kexec"], 1);
    assert!(
        refused.contains(&format!(
            "refusing to erase /dev/cairn-test-disk on web1 at root@127.0.0.1:{} (existing.mine) \
             without confirmation: there is no terminal to ask on",
            ssh.port
        )),
        "{refused}"
    );
    assert!(refused.contains("pass --yes"), "{refused}");
    assert!(!refused.contains("missing-kexec-bundle"), "stopped at the question:\n{refused}");
    assert!(!uploaded.exists(), "nothing was uploaded");
    assert_eq!(fleet.host_state("web1")["last_phase"], Value::Null);

    // With --yes the run goes past the question, to the next check.
    let agreed =
        fleet.run(&["bootstrap", "host", "web1", "--skip-check", "--phases", "kexec", "--yes"], 1);
    assert!(!agreed.contains("without confirmation"), "{agreed}");
    assert!(agreed.contains("missing-kexec-bundle.tar.gz does not exist"), "{agreed}");
    assert!(!uploaded.exists(), "nothing was uploaded");
}
