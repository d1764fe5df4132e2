//! A fleet-sized inventory: 100,000 hosts over three providers, with tags, defaults and
//! secrets rules, resolves and lists through the real binary. Untimed (speed is measured by
//! `benches/inventory.sh`); about 4 s of CPU in a debug build.

use std::fmt::Write as _;
use std::process::Command;

use serde_json::Value;

const HOSTS: usize = 100_000;

fn inventory() -> String {
    let mut text = String::from(
        "provider \"hcloud\" \"cloud\" {\n  token    = \"test-token\"\n  location = \"fsn1\"\n}\n\n\
         provider \"aws\" \"ec2\" {\n  region            = \"eu-central-1\"\n  access_key_id     = \"AKIATEST\"\n  secret_access_key = \"test-secret\"\n  ami               = \"ami-0abcdef1234567890\"\n}\n\n\
         provider \"existing\" \"dc\" {}\n\n\
         admin \"ops\" {\n  age = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEuQlFqSmGUbUsPOcL0cy1ofDlmzwOJL9LvFB+ADvTcV ops@x\"\n}\n\n\
         defaults {\n  tags = [\"fleet\"]\n}\n\n\
         secrets \"secrets/web/*.yaml\" {\n  tags = [\"web\"]\n}\n\n",
    );
    for i in 1..=HOSTS {
        let role = ["web", "db"][i % 2];
        let _ = write!(text, "host \"h{i}\" {{\n  tags = [\"{role}\", \"zone{}\"]\n", i % 4);
        match i % 3 {
            0 => text
                .push_str("  provider = \"cloud\"\n  size = \"cx22\"\n  image = \"debian-13\"\n"),
            1 => text.push_str("  provider = \"ec2\"\n  size = \"t3.small\"\n"),
            _ => {
                let _ =
                    write!(text, "  provider = \"dc\"\n  address = \"192.0.2.{}\"\n", i % 250 + 1);
            }
        }
        text.push_str("}\n");
    }
    text
}

#[test]
fn an_inventory_of_100_000_hosts_resolves_and_lists() {
    let dir = tempfile::tempdir().unwrap();
    fs_err::write(dir.path().join("cairn.hcl"), inventory()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["hosts", "--json", "@zone3"])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .env_remove("CAIRN_INVENTORY")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let hosts: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(hosts.len(), HOSTS / 4, "{stderr}");
    let last = hosts.iter().find(|h| h["name"] == "h99999").expect("h99999 is in zone3");
    assert_eq!(last["provider"]["type"], "hcloud", "{last}");
    assert_eq!(last["tags"], serde_json::json!(["fleet", "db", "zone3"]), "{last}");
}
