//! `cairn apply` and `cairn destroy` over many hosts ask the provider with paged lists before
//! acting, not a request or two per host. Requests are counted where the emulators log them:
//! cloudalone's access log (one line per request, with method and path) and moto's request
//! log (one line per request; EC2's Query API names its action in the body, so moto's lines
//! are counted as a whole).

use std::path::Path;
use std::process::{Command, Output};

use crate::provider_aws::{Moto, AMI, REGION};
use crate::support::cloudalone::{Cloudalone, TOKEN};

const HOSTS: usize = 120;

fn hosts(count: usize, body: &str) -> String {
    (1..=count).map(|i| format!("host \"web{i}\" {{\n{body}}}\n")).collect()
}

fn cairn(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .current_dir(dir)
        .envs(env.iter().copied())
        .env("NO_COLOR", "1")
        .env_remove("CAIRN_INVENTORY")
        .env_remove("CAIRN_SSH_KEY")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let shown = format!(
        "{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "cairn {args:?}:\n{shown}");
    out
}

/// Requests whose method and path start with `prefix` and go no deeper (`/v1/servers` with
/// any query, not `/v1/servers/7`).
fn count(requests: &[String], method: &str, path: &str) -> usize {
    requests
        .iter()
        .filter(|r| {
            r.strip_prefix(method)
                .and_then(|r| r.strip_prefix(' '))
                .and_then(|r| r.strip_prefix(path))
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('?'))
        })
        .count()
}

fn by_id(requests: &[String], method: &str) -> usize {
    let re = regex::Regex::new(&format!(r"^{method} /v1/servers/\d+$")).unwrap();
    requests.iter().filter(|r| re.is_match(r)).count()
}

/// 120 hosts applied, then destroyed, at cloudalone: each run lists the servers once for its
/// plan and once more, after the confirmation, right before acting (3 pages of 50 for 120
/// servers; 2 for the apply, 6 for the destroy when each run takes less than a minute); no
/// host is looked up alone by id, name or label. Asking per host, as before,
/// took 240 searches (by label, by name) for the apply and 120 GETs by id for the destroy.
#[test]
fn apply_and_destroy_of_many_hcloud_hosts_list_servers_by_pages() {
    let Some(ca) = Cloudalone::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let hcl = format!(
        "provider \"hcloud\" \"cloud\" {{\n  token    = env(\"HCLOUD_TOKEN\")\n  endpoint = \"{}\"\n}}\n\ndefaults {{\n  provider = \"cloud\"\n  size     = \"small\"\n  image    = \"debian-13\"\n}}\n{}",
        ca.endpoint(),
        hosts(HOSTS, "")
    );
    fs_err::write(dir.path().join("cairn.hcl"), hcl).unwrap();
    let env = [("HCLOUD_TOKEN", TOKEN)];

    let before = ca.requests().len();
    // One create at a time: cloudalone loses an action now and then under concurrent creates.
    cairn(dir.path(), &["apply", "--yes", "--parallel", "1"], &env);
    let applied = ca.requests()[before..].to_vec();
    let lists = count(&applied, "GET", "/v1/servers");
    // Nothing at the emulator yet: one page for the plan, one right before creating (and the
    // hosts still waiting listed again each minute, should the run last that long).
    assert!(lists <= 12, "{lists} list requests to apply {HOSTS} hosts: {applied:#?}");
    // Each server is read back once when its create action finished, not looked up.
    assert_eq!(by_id(&applied, "GET"), HOSTS, "{applied:#?}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let listed = rt.block_on(ca.get("/servers?per_page=1"));
    assert_eq!(listed["meta"]["pagination"]["total_entries"], HOSTS);

    let before = ca.requests().len();
    let out = cairn(dir.path(), &["destroy", "host", "web*", "--yes"], &env);
    let destroyed = ca.requests()[before..].to_vec();
    let lists = count(&destroyed, "GET", "/v1/servers");
    assert!(lists <= 12, "{lists} list requests to destroy {HOSTS} hosts: {destroyed:#?}");
    assert_eq!(by_id(&destroyed, "DELETE"), HOSTS);
    assert_eq!(by_id(&destroyed, "GET"), 0, "no server was looked up alone: {destroyed:#?}");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_eq!(shown.matches("  destroyed  ").count(), HOSTS, "{shown}");
    let state = fs_err::read_to_string(dir.path().join(".cairn/state.json")).unwrap();
    assert!(!state.contains("web1"), "every host is forgotten: {state}");
}

/// 40 aws hosts applied, then destroyed, at moto. Per host EC2 is asked to run (or
/// terminate) the instance and to show it until it is running (terminated); the lookups
/// before acting are a few paged DescribeInstances for all hosts, where asking per host took
/// two (apply: cairn's tag, then the Name) or one (destroy: the recorded id) for each.
#[test]
fn apply_and_destroy_of_many_aws_hosts_list_instances_by_pages() {
    const N: usize = 40;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let Some(moto) = rt.block_on(Moto::start()) else { return };
    let dir = tempfile::tempdir().unwrap();
    let hcl = format!(
        "provider \"aws\" \"cloud\" {{\n  region            = \"{REGION}\"\n  endpoint          = \"{}\"\n  access_key_id     = env(\"AWS_ACCESS_KEY_ID\")\n  secret_access_key = env(\"AWS_SECRET_ACCESS_KEY\")\n  ami               = \"{AMI}\"\n}}\n\ndefaults {{\n  provider = \"cloud\"\n  size     = \"t3.small\"\n}}\n{}",
        moto.endpoint(),
        hosts(N, "")
    );
    fs_err::write(dir.path().join("cairn.hcl"), hcl).unwrap();
    let env = [
        ("AWS_ACCESS_KEY_ID", moto.access_key_id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", moto.secret_access_key.as_str()),
    ];

    let before = moto.requests();
    let out = cairn(dir.path(), &["apply", "--yes"], &env);
    let applied = moto.requests() - before;
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_eq!(shown.matches("  created  ").count(), N, "{shown}");
    // Per host: RunInstances and the DescribeInstances that see it running; once per run:
    // the key pair, the security group and the lists.
    assert!(applied <= 2 * N + 12, "{applied} requests to EC2 to apply {N} hosts");

    let before = moto.requests();
    let out = cairn(dir.path(), &["destroy", "host", "web*", "--yes"], &env);
    let destroyed = moto.requests() - before;
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_eq!(shown.matches("  destroyed  ").count(), N, "{shown}");
    // Per host: TerminateInstances and the DescribeInstances that see it terminated; the
    // lookups: the lists of the plan and of the run, two pages each.
    assert!(destroyed <= 2 * N + 8, "{destroyed} requests to EC2 to destroy {N} hosts");
}
