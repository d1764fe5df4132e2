//! `cairn plan` over many aws hosts against moto (see `provider_aws`): refresh lists the
//! instances by pages instead of asking EC2 per host. Requests are counted in moto's own
//! request log (one line per HTTP request).

use std::process::Command;

use cairn::provider::Provider as _;
use cairn::state::HostState;

use crate::provider_aws::{moto_inventory, provider, render, state_with_id, Moto, AMI, REGION};

/// Starts one instance with `tags`; its id.
async fn run_instance(moto: &Moto, tags: &[(&str, &str)]) -> String {
    let mut form: Vec<(String, String)> = [
        ("Action", "RunInstances"),
        ("ImageId", AMI),
        ("InstanceType", "t3.small"),
        ("MinCount", "1"),
        ("MaxCount", "1"),
        ("TagSpecification.1.ResourceType", "instance"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (n, (k, v)) in tags.iter().enumerate() {
        form.push((format!("TagSpecification.1.Tag.{}.Key", n + 1), k.to_string()));
        form.push((format!("TagSpecification.1.Tag.{}.Value", n + 1), v.to_string()));
    }
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let started = moto.ec2(&form).await;
    regex::Regex::new(r"<instanceId>(i-[0-9a-f]+)</instanceId>")
        .unwrap()
        .captures(&started)
        .unwrap_or_else(|| panic!("no instance id in {started}"))[1]
        .to_owned()
}

/// The listing path decides every case as the per-host lookup does: a recorded instance
/// still the host's (tagged, or adopted under another name: asked for alone), a recorded
/// instance that is gone or tagged for another host (then cairn's tag decides), an instance
/// only named like the host (reported), and nothing at all.
#[tokio::test]
async fn lookup_many_decides_each_host_as_lookup_does() {
    let Some(moto) = Moto::start().await else { return };
    let ours = |h: &'static str| [("Name", h), ("cairn-host", h), ("managed-by", "cairn")];
    let tagged = run_instance(&moto, &ours("tagged")).await;
    let adopted = run_instance(&moto, &[("Name", "bought-by-hand")]).await;
    let gone = run_instance(&moto, &ours("replaced")).await;
    moto.ec2(&[("Action", "TerminateInstances"), ("InstanceId.1", &gone)]).await;
    let replacement = run_instance(&moto, &ours("replaced")).await;
    let others = run_instance(&moto, &ours("other")).await;
    let named = run_instance(&moto, &[("Name", "named")]).await;
    let names = ["tagged", "adopted", "replaced", "misrecorded", "other", "named", "nothing"];
    let inv = moto_inventory(&moto, "", &names);
    let aws = provider(&inv);
    let recorded: [Option<&str>; 7] =
        [Some(&tagged), Some(&adopted), Some(&gone), Some(&others), None, None, None];
    let hosts: Vec<(cairn::inventory::Host, Option<HostState>)> = names
        .iter()
        .zip(recorded)
        .map(|(n, id)| (inv.host(n).unwrap().clone(), id.map(state_with_id)))
        .collect();
    let shown =
        |r: Result<Option<cairn::provider::Machine>, cairn::provider::ProviderError>| match r {
            Ok(m) => format!("{:?}", m.map(|m| m.id)),
            Err(e) => render(&e),
        };
    let many = aws.lookup_many(&hosts).await.unwrap().expect("aws lists");
    let many: Vec<String> = many.into_iter().map(shown).collect();
    let mut one = Vec::new();
    for (host, state) in &hosts {
        one.push(shown(aws.lookup(host, state.as_ref()).await));
    }
    assert_eq!(many, one);
    let some = |id: &str| format!("{:?}", Some(id));
    assert_eq!(many[0], some(&tagged));
    assert_eq!(many[1], some(&adopted));
    assert_eq!(many[2], some(&replacement));
    assert_eq!(many[3], "None", "misrecorded: the instance is other's");
    assert_eq!(many[4], some(&others));
    assert!(many[5].contains(&named) && many[5].contains("cairn leaves it alone"), "{}", many[5]);
    assert_eq!(many[6], "None");
}

/// `cairn plan` over 120 aws hosts whose state records each one's instance, plus web121
/// (no instance yet) and web122 (only an instance named like it, which cairn did not tag):
/// two DescribeInstances (cairn's tag, the hosts' names) explain them all. Asking per host,
/// as before, took 124 requests here.
#[test]
fn refresh_of_many_aws_hosts_lists_instances_by_pages() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let Some(moto) = rt.block_on(Moto::start()) else { return };
    let run_instance = |tags: &[(&str, &str)]| rt.block_on(run_instance(&moto, tags));

    let dir = tempfile::tempdir().unwrap();
    let mut hcl = format!(
        "provider \"aws\" \"cloud\" {{\n  region            = \"{REGION}\"\n  endpoint          = \"{}\"\n  access_key_id     = env(\"AWS_ACCESS_KEY_ID\")\n  secret_access_key = env(\"AWS_SECRET_ACCESS_KEY\")\n  ami               = \"{AMI}\"\n}}\n\n",
        moto.endpoint()
    );
    let mut state_hosts = serde_json::Map::new();
    for i in 1..=122u32 {
        let name = format!("web{i}");
        hcl.push_str(&format!("host \"{name}\" {{\n  size = \"t3.small\"\n}}\n"));
        match i {
            121 => {} // not created yet
            122 => drop(run_instance(&[("Name", &name)])),
            _ => {
                let id = run_instance(&[
                    ("Name", &name),
                    ("cairn-host", &name),
                    ("managed-by", "cairn"),
                ]);
                state_hosts.insert(
                    name,
                    serde_json::json!({ "provider": "cloud", "provider_id": id, "size": "t3.small", "image": AMI }),
                );
            }
        }
    }
    fs_err::write(dir.path().join("cairn.hcl"), hcl).unwrap();
    fs_err::create_dir_all(dir.path().join(".cairn")).unwrap();
    let state = serde_json::json!({ "schema": 2, "serial": 1, "hosts": state_hosts });
    fs_err::write(dir.path().join(".cairn/state.json"), state.to_string()).unwrap();

    let before = moto.requests();
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("plan")
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .env("AWS_ACCESS_KEY_ID", &moto.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", &moto.secret_access_key)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let requests = moto.requests() - before;
    let shown = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(requests <= 4, "{requests} requests to EC2 for 122 hosts:\n{shown}");
    assert!(shown.contains("web121"), "the new host is planned:\n{shown}");
    assert!(shown.contains("cairn leaves it alone"), "web122's instance is reported:\n{shown}");
    assert!(!shown.contains("web7 "), "web7 is found unchanged:\n{shown}");
}
