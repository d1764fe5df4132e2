//! No key trusted on first use where it can be avoided: for providers that take user data,
//! the machine cairn creates gets a stock host key cairn made (cloud-init `ssh_keys`), pinned
//! in state before anyone connects; an `existing` machine's first key is taken only when the
//! user confirms it or names it with `--trust-host-key`. Against cloudalone, moto and a real
//! sshd on 127.0.0.1, with the cairn binary as a user runs it (no terminal).

#![allow(clippy::print_stderr)] // tests say why they skip

use serde_json::{json, Value};

use crate::adopt::{runtime, Fleet};
use crate::provider_aws::Moto;
use crate::support::cloudalone::Cloudalone;
use crate::support::sshd;

/// After `cairn apply` made web1: the key state pins for its stock image is the one cairn
/// keeps in .cairn/ssh/stock (private half 0600), and `user_data` carries both halves in
/// cloud-init's `ssh_keys`, with root logins allowed.
fn the_injected_key_is_pinned(fleet: &Fleet, user_data: &str) {
    use std::os::unix::fs::PermissionsExt;
    let stock = fleet.path().join(".cairn/ssh/stock");
    let public = fs_err::read_to_string(stock.join("web1_ed25519.pub")).unwrap();
    let public = public.trim();
    assert_eq!(fleet.host_state("web1")["host_keys"]["stock"], json!([public]));
    let private = fs_err::read_to_string(stock.join("web1_ed25519")).unwrap();
    let mode = fs_err::metadata(stock.join("web1_ed25519")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(user_data.starts_with("#cloud-config\n"), "{user_data}");
    // web1 logs in as root: cloud-init must not turn root logins into "Please login as".
    assert!(user_data.contains("\ndisable_root: false\n"), "{user_data}");
    assert!(user_data.contains("ssh_genkeytypes: []\n"), "{user_data}");
    assert!(user_data.contains(&format!("\n  ed25519_public: {public}\n")), "{user_data}");
    let indented: String = private.lines().map(|l| format!("    {l}\n")).collect();
    assert!(user_data.contains(&format!("  ed25519_private: |\n{indented}")), "{user_data}");
}

#[test]
fn hcloud_servers_get_a_stock_key_cairn_made_and_pinned() {
    let Some(ca) = Cloudalone::start() else { return };
    let fleet = Fleet::hcloud(&ca);
    let applied = fleet.run(&["apply", "--yes"], 0);
    assert!(!applied.contains("PRIVATE KEY"), "never shown:\n{applied}");
    let id = fleet.host_state("web1")["provider_id"].as_str().unwrap().to_owned();
    let user_data = ca.user_data(&id).expect("the server got user data");
    the_injected_key_is_pinned(&fleet, &user_data);
}

#[test]
fn aws_instances_get_a_stock_key_cairn_made_and_pinned() {
    let rt = runtime();
    let Some(moto) = rt.block_on(Moto::start()) else { return };
    let fleet = Fleet::aws(&moto);
    let applied = fleet.run(&["apply", "--yes"], 0);
    assert!(!applied.contains("PRIVATE KEY"), "never shown:\n{applied}");
    let id = fleet.host_state("web1")["provider_id"].as_str().unwrap().to_owned();
    let attr = rt.block_on(moto.ec2(&[
        ("Action", "DescribeInstanceAttribute"),
        ("InstanceId", &id),
        ("Attribute", "userData"),
    ]));
    let doc = roxmltree::Document::parse(&attr).unwrap();
    let value = doc
        .descendants()
        .find(|n| n.has_tag_name("userData"))
        .and_then(|n| n.children().find(|c| c.has_tag_name("value")))
        .and_then(|n| n.text())
        .unwrap_or_else(|| panic!("no user data in {attr}"));
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD.decode(value.trim()).unwrap();
    the_injected_key_is_pinned(&fleet, &String::from_utf8(decoded).unwrap());
}

/// `bootstrap` up to reach, as the trust tests run it.
const REACH: [&str; 7] =
    ["bootstrap", "host", "web1", "--yes", "--skip-check", "--phases", "reach"];

/// A fleet whose `existing` host web1 is the loopback sshd `ssh`.
fn existing_fleet(ssh: &sshd::Sshd) -> Fleet {
    Fleet::new(
        &format!(
            "provider \"existing\" \"mine\" {{}}\n\nhost \"web1\" {{\n  provider = \"mine\"\n  address  = \"127.0.0.1:{}\"\n  flake    = \".#web1\"\n}}\n",
            ssh.port
        ),
        vec![("CAIRN_SSH_KEY", ssh.client_key().display().to_string())],
    )
}

/// An `existing` machine nobody pinned a key for: refused without a terminal (even with
/// --yes, which agrees to erasing, not to keys), refused when --trust-host-key names another
/// key, recorded when it names the one presented.
#[test]
fn an_existing_machines_first_key_is_confirmed_or_named_never_taken_silently() {
    if !sshd::is_root() {
        eprintln!("skipped: the stock system is reached as root here");
        return;
    }
    let ssh = sshd::Sshd::start();
    let fleet = existing_fleet(&ssh);
    let presented = ssh.host_fingerprint("ed25519");

    let refused = fleet.run(&REACH, 1);
    assert!(
        refused.contains(&format!(
            "refusing to trust the host key {presented} that web1 presented at root@127.0.0.1:{} \
             on first contact: there is no terminal to ask on",
            ssh.port
        )),
        "{refused}"
    );
    assert!(refused.contains(&format!("--trust-host-key {presented}")), "{refused}");
    assert_eq!(fleet.host_state("web1")["host_keys"]["stock"], Value::Null, "{refused}");

    let other = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let wrong = fleet.run(&[&REACH[..], &["--trust-host-key", other]].concat(), 1);
    assert!(wrong.contains(&format!("--trust-host-key names {other}")), "{wrong}");
    assert_eq!(fleet.host_state("web1")["host_keys"]["stock"], Value::Null, "{wrong}");

    fleet.run(&[&REACH[..], &["--trust-host-key", &presented]].concat(), 0);
    let recorded = fleet.host_state("web1")["host_keys"]["stock"][0].as_str().unwrap().to_owned();
    let blob = |line: &str| line.split_whitespace().nth(1).unwrap().to_owned();
    assert_eq!(blob(&recorded), blob(&ssh.host_public_key("ed25519")));
    // Pinned from now on: no question, no flag.
    fleet.run(&REACH, 0);
}

/// A stock image whose cloud-init disabled root logins (Debian, Ubuntu and Amazon Linux
/// images: every command prints "Please login as the user ..." and exits 142) is refused at
/// reach with the user to set, not reported as a failing script.
#[test]
fn a_stock_image_that_refuses_root_names_the_user_to_log_in_as() {
    if !sshd::is_root() {
        eprintln!("skipped: the stock system is reached as root here");
        return;
    }
    let ssh = sshd::Sshd::start();
    // cloud-init's DISABLE_USER_OPTS (cloudinit/ssh_util.py), with a shorter sleep.
    let client = fs_err::read_to_string(ssh.client_key().with_extension("pub")).unwrap();
    let forced = format!(
        "no-port-forwarding,no-agent-forwarding,no-X11-forwarding,command=\"echo 'Please login as the user \\\"admin\\\" rather than the user \\\"root\\\".';echo;sleep 1;exit 142\" {}",
        client.trim()
    );
    fs_err::write(ssh.dir().join("authorized_keys"), format!("{forced}\n")).unwrap();
    let fleet = existing_fleet(&ssh);
    let presented = ssh.host_fingerprint("ed25519");
    let out = fleet.run(&[&REACH[..], &["--trust-host-key", &presented]].concat(), 1);
    assert!(
        out.contains(
            "the stock image refuses logins as `root` and asks for `admin` (cloud-init's disable_root)"
        ),
        "{out}"
    );
    assert!(out.contains("set `ssh { user = \"admin\" }` on the host"), "{out}");
}
