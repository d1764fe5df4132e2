//! The EC2 provider against moto (PyPI `moto[server,ec2]` 5.2.5) in server mode, started per
//! test on 127.0.0.1 with signature checking on: moto lets the first three requests through
//! unsigned (`INITIAL_NO_AUTH_ACTION_COUNT=3`), which make an IAM user, give it `ec2:*` and
//! create its access key; every later request must carry a valid SigV4 signature of that key.
//! Each test has its own moto, so no state is shared and no reset is needed.
//!
//! What moto does not check, and so these tests cannot: the region in the signing scope, the
//! `ClientToken` idempotency of RunInstances, whether an AMI or instance type exists (it
//! accepts any), and instance boot (states change on the next DescribeInstances).
//!
//! moto is found via `CAIRN_TEST_MOTO`, `.ci/venv-aws/bin/moto_server` under the crate root
//! (`.ci/install` puts it there). Without it the tests are skipped
//! with a message, unless `CI=true`, where they fail.
#![allow(clippy::print_stderr)]

use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cairn::inventory::{self, Host, Inventory, LoadOptions, Sensitive};
use cairn::provider::aws::{AwsOptions, AwsProvider};
use cairn::provider::http::{
    AwsCredentials, ClientConfig, HttpClient, RetryPolicy, SigningScope, AWS_EC2,
};
use cairn::provider::{CreateRequest, MachineStatus, PowerAction, Provider, ProviderError};
use cairn::state::HostState;

pub(crate) const REGION: &str = "eu-central-1";
/// One of the AMIs moto lists in every region.
pub(crate) const AMI: &str = "ami-03cf127a";
const OPERATOR_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEuQlFqSmGUbUsPOcL0cy1ofDlmzwOJL9LvFB+ADvTcV me@x";
const OTHER_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDqe0QIB6Nkwg81ZSkAlsKzvxLI4dszH/e0zAUcxZG+7 other@y";

// ---------------------------------------------------------------------------------------
// moto

fn moto_binary() -> Option<PathBuf> {
    crate::support::tools::moto_server()
}

/// A running moto with an IAM user allowed `ec2:*`; killed (by its pid) when dropped.
pub(crate) struct Moto {
    child: Child,
    port: u16,
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: String,
    dir: tempfile::TempDir,
}

impl Moto {
    /// Starts one whose user may do `ec2:*`, or returns `None` (test skipped) when it is not
    /// installed outside CI.
    pub(crate) async fn start() -> Option<Self> {
        Self::start_with_policy(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ec2:*","Resource":"*"}]}"#,
        )
        .await
    }

    /// As [`Moto::start`], the user's permissions given by the IAM policy document `policy`.
    async fn start_with_policy(policy: &str) -> Option<Self> {
        let Some(bin) = moto_binary() else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("moto is not installed: run .ci/install (it makes .ci/venv-aws)");
            }
            eprintln!("skipped: moto not found (run .ci/install or set CAIRN_TEST_MOTO)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = fs_err::File::create(dir.path().join("moto.log")).unwrap().into_parts().0;
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "3")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut moto = Self {
            child,
            port,
            access_key_id: String::new(),
            secret_access_key: String::new(),
            dir,
        };
        moto.wait_ready();
        moto.make_user(policy).await;
        Some(moto)
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        let mut log = String::new();
        fs_err::File::open(self.dir.path().join("moto.log"))
            .and_then(|mut f| f.read_to_string(&mut log))
            .ok();
        log
    }

    /// How many HTTP requests moto has answered so far, by its request log.
    pub(crate) fn requests(&self) -> usize {
        self.log().lines().filter(|l| l.contains(" HTTP/1.1\" ")).count()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("moto exited with {status}:\n{}", self.log());
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "moto did not listen on port {}", self.port);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The three unauthenticated calls: CreateUser, PutUserPolicy, CreateAccessKey.
    /// moto routes a request to a service by the credential scope of its Authorization
    /// header, so these carry one naming `iam`, with a signature moto does not check yet.
    async fn make_user(&mut self, policy: &str) {
        let endpoint = self.endpoint();
        iam_unsigned(&endpoint, &[("Action", "CreateUser"), ("UserName", "cairn")]).await;
        iam_unsigned(
            &endpoint,
            &[
                ("Action", "PutUserPolicy"),
                ("UserName", "cairn"),
                ("PolicyName", "ec2-all"),
                ("PolicyDocument", policy),
            ],
        )
        .await;
        let created =
            iam_unsigned(&endpoint, &[("Action", "CreateAccessKey"), ("UserName", "cairn")]).await;
        let doc = roxmltree::Document::parse(&created).unwrap();
        let field = |name: &str| {
            doc.descendants()
                .find(|n| n.has_tag_name(name))
                .and_then(|n| n.text())
                .unwrap_or_else(|| panic!("no {name} in {created}"))
                .to_owned()
        };
        self.access_key_id = field("AccessKeyId");
        self.secret_access_key = field("SecretAccessKey");
    }

    /// moto's instances that are not terminated, as plain DescribeInstances (no cairn logic)
    /// reports them: instance id, public IP, key name, client token and tags.
    pub(crate) async fn live_instances(&self) -> Vec<BTreeMap<String, String>> {
        let xml = self
            .ec2(&[
                ("Action", "DescribeInstances"),
                ("Filter.1.Name", "instance-state-name"),
                ("Filter.1.Value.1", "pending"),
                ("Filter.1.Value.2", "running"),
                ("Filter.1.Value.3", "stopping"),
                ("Filter.1.Value.4", "stopped"),
            ])
            .await;
        let doc = roxmltree::Document::parse(&xml).unwrap();
        doc.descendants()
            .filter(|n| n.has_tag_name("instancesSet"))
            .flat_map(|set| set.children().filter(|n| n.has_tag_name("item")))
            .map(|i| {
                let mut fields = BTreeMap::new();
                for name in ["instanceId", "ipAddress", "keyName", "clientToken"] {
                    if let Some(v) = element_text(i, name) {
                        fields.insert(name.to_owned(), v);
                    }
                }
                for tag in i.descendants().filter(|n| n.has_tag_name("item")) {
                    if let (Some(k), Some(v)) =
                        (element_text(tag, "key"), element_text(tag, "value"))
                    {
                        fields.insert(format!("tag:{k}"), v);
                    }
                }
                fields
            })
            .collect()
    }

    /// The key pairs: name → public key line.
    async fn key_pairs(&self) -> BTreeMap<String, String> {
        let xml = self.ec2(&[("Action", "DescribeKeyPairs"), ("IncludePublicKey", "true")]).await;
        let doc = roxmltree::Document::parse(&xml).unwrap();
        doc.descendants()
            .filter(|n| n.has_tag_name("item"))
            .filter_map(|k| Some((element_text(k, "keyName")?, element_text(k, "publicKey")?)))
            .collect()
    }

    /// The security groups named `name`, as DescribeSecurityGroups' XML.
    async fn security_groups(&self, name: &str) -> (usize, String) {
        let xml = self
            .ec2(&[
                ("Action", "DescribeSecurityGroups"),
                ("Filter.1.Name", "group-name"),
                ("Filter.1.Value.1", name),
            ])
            .await;
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let count = doc
            .descendants()
            .filter(|n| n.has_tag_name("groupName") && n.text() == Some(name))
            .count();
        (count, xml)
    }

    /// A raw EC2 call signed with the test user's key (cairn's signer, no provider logic).
    pub(crate) async fn ec2(&self, form: &[(&str, &str)]) -> String {
        let creds = AwsCredentials {
            access_key_id: self.access_key_id.clone(),
            secret_access_key: Sensitive(self.secret_access_key.clone()),
            session_token: None,
        };
        let scope = SigningScope { region: REGION.into(), service: "ec2" };
        let client =
            HttpClient::new_sigv4(AWS_EC2, &self.endpoint(), &creds, scope, fast_http()).unwrap();
        let mut pairs = vec![("Version".to_owned(), "2016-11-15".to_owned())];
        pairs.extend(form.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        client.post_form("/", &pairs).await.unwrap()
    }
}

/// One IAM request with a dummy Authorization header (see [`Moto::make_user`]).
async fn iam_unsigned(endpoint: &str, params: &[(&str, &str)]) -> String {
    let mut form: Vec<(&str, &str)> = vec![("Version", "2010-05-08")];
    form.extend_from_slice(params);
    let resp = reqwest::Client::new()
        .post(endpoint)
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20260101/us-east-1/iam/aws4_request, \
             SignedHeaders=host, Signature=00",
        )
        .form(&form)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body = resp.text().await.unwrap();
    assert!(status.is_success(), "IAM setup failed: {status} {body}");
    body
}

impl Drop for Moto {
    fn drop(&mut self) {
        // Only the process this test started, by its pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------------------
// inventory and provider setup

/// An inventory with one aws provider at `endpoint` (extra block lines in `extra`) and the
/// given hosts, loaded the way cairn loads `cairn.hcl`, with the key from the environment.
fn inventory(endpoint: &str, key: Option<(&str, &str)>, extra: &str, hosts: &[&str]) -> Inventory {
    let mut text = format!(
        r#"
provider "aws" "cloud" {{
  region            = "{REGION}"
  endpoint          = "{endpoint}"
  access_key_id     = env("AWS_ACCESS_KEY_ID", "")
  secret_access_key = env("AWS_SECRET_ACCESS_KEY", "")
  ami               = "{AMI}"
  {extra}
}}

admin "alice" {{
  age = "{OPERATOR_KEY}"
}}
"#
    );
    for name in hosts {
        text.push_str(&format!("host \"{name}\" {{\n  size = \"t3.small\"\n}}\n"));
    }
    let mut env = BTreeMap::new();
    if let Some((id, secret)) = key {
        env.insert("AWS_ACCESS_KEY_ID".to_owned(), id.to_owned());
        env.insert("AWS_SECRET_ACCESS_KEY".to_owned(), secret.to_owned());
    }
    let opts = LoadOptions { path: PathBuf::from("/nonexistent/cairn.hcl"), cli_vars: vec![], env };
    inventory::load_str(&opts, text)
        .unwrap_or_else(|e| panic!("test inventory does not load: {e:?}"))
}

fn fast_http() -> ClientConfig {
    ClientConfig {
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(30),
        retry: RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
        },
    }
}

fn fast_options() -> AwsOptions {
    AwsOptions {
        poll_interval: Duration::from_millis(50),
        state_timeout: Duration::from_secs(30),
        http: fast_http(),
    }
}

/// The provider of the inventory's block; the process environment is not consulted.
pub(crate) fn provider(inv: &Inventory) -> AwsProvider {
    let block = inv.providers.values().next().unwrap();
    AwsProvider::with_options(block, fast_options(), &|_| None).unwrap()
}

pub(crate) fn moto_inventory(moto: &Moto, extra: &str, hosts: &[&str]) -> Inventory {
    inventory(&moto.endpoint(), Some((&moto.access_key_id, &moto.secret_access_key)), extra, hosts)
}

fn host<'a>(inv: &'a Inventory, name: &str) -> &'a Host {
    inv.host(name).unwrap()
}

fn req() -> CreateRequest {
    CreateRequest {
        operator_ssh_key: OPERATOR_KEY.to_owned(),
        stock_host_key: None,
        root_login: false,
    }
}

pub(crate) fn state_with_id(id: &str) -> HostState {
    HostState { provider: Some("cloud".into()), provider_id: Some(id.into()), ..Default::default() }
}

/// What a user sees: the error as miette renders it (no colours), help included.
pub(crate) fn render(err: &ProviderError) -> String {
    let mut out = String::new();
    miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
        .with_width(100)
        .render_report(&mut out, err)
        .unwrap();
    out
}

fn element_text(node: roxmltree::Node, name: &str) -> Option<String> {
    node.children().find(|n| n.has_tag_name(name)).and_then(|n| n.text()).map(str::to_owned)
}

// ---------------------------------------------------------------------------------------
// against moto

#[tokio::test]
async fn lifecycle_create_lookup_power_destroy() {
    let Some(moto) = Moto::start().await else { return };
    let inv = moto_inventory(&moto, "", &["web1", "web2"]);
    let p = provider(&inv);
    let web1 = host(&inv, "web1");

    assert_eq!(p.lookup(web1, None).await.unwrap(), None, "nothing exists yet");
    let machine = p.create(web1, &req()).await.unwrap();
    assert_eq!(machine.status, MachineStatus::Running, "create waits until it runs");
    assert!(machine.id.starts_with("i-"), "{}", machine.id);
    assert_eq!(machine.attributes["size"], "t3.small");
    assert_eq!(machine.attributes["image"], AMI);
    assert_eq!(machine.attributes["status"], "running");
    assert_eq!(machine.attributes["region"], REGION);
    assert!(machine.attributes["location"].starts_with(REGION), "{:?}", machine.attributes);
    assert_eq!(machine.ssh_port, 22);

    // moto's side: one instance, tagged, with the key pair and the SSH group.
    let live = moto.live_instances().await;
    assert_eq!(live.len(), 1, "{live:?}");
    let instance = &live[0];
    assert_eq!(instance["instanceId"], machine.id);
    assert_eq!(machine.ssh_address, instance["ipAddress"]);
    assert_eq!(instance["tag:Name"], "web1");
    assert_eq!(instance["tag:cairn-host"], "web1");
    assert_eq!(instance["tag:managed-by"], "cairn");
    assert_eq!(instance["keyName"], "cairn-918f4ab78f16");
    assert!(instance["clientToken"].starts_with("cairn-"), "{instance:?}");
    let keys = moto.key_pairs().await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(
        keys["cairn-918f4ab78f16"].split(' ').nth(1),
        OPERATOR_KEY.split(' ').nth(1),
        "the operator's key"
    );
    let (groups, described) = moto.security_groups("cairn-ssh").await;
    assert_eq!(groups, 1, "{described}");
    assert!(described.contains("<fromPort>22</fromPort>"), "{described}");
    assert!(described.contains("<cidrIp>0.0.0.0/0</cidrIp>"), "{described}");

    // Found by the id in state...
    let by_id = p.lookup(web1, Some(&state_with_id(&machine.id))).await.unwrap();
    assert_eq!(by_id.as_ref().map(|m| &m.id), Some(&machine.id));
    // ...and after a crash between create and record (the id never reached state), by tags,
    // from a fresh provider as a re-run would have: `apply` creates nothing new.
    let id = machine.id.clone();
    drop(machine);
    let rerun = provider(&inv);
    let found = rerun.lookup(web1, None).await.unwrap().expect("found by its tags");
    assert_eq!(found.id, id);
    let found = rerun.lookup(web1, Some(&HostState::default())).await.unwrap().unwrap();
    assert_eq!(found.id, id);
    assert_eq!(moto.live_instances().await.len(), 1);
    // The other host does not see web1's instance.
    assert_eq!(rerun.lookup(host(&inv, "web2"), None).await.unwrap(), None);
    assert_eq!(rerun.lookup(host(&inv, "web2"), Some(&state_with_id(&id))).await.unwrap(), None);
    // `cairn import web1 <id>` finds it by id; importing it for web2 is refused.
    assert_eq!(rerun.lookup_id(web1, &id).await.unwrap().map(|m| m.id), Some(id.clone()));
    let err = rerun.lookup_id(host(&inv, "web2"), &id).await.unwrap_err();
    assert!(render(&err).contains("belongs to host web1"), "{}", render(&err));
    assert_eq!(rerun.lookup_id(web1, "i-0123456789abcdef0").await.unwrap(), None);

    // A second host (fresh provider, nothing cached) reuses the key pair and the group.
    let web2 = rerun.create(host(&inv, "web2"), &req()).await.unwrap();
    assert_eq!(moto.key_pairs().await.len(), 1);
    assert_eq!(moto.security_groups("cairn-ssh").await.0, 1);
    assert_ne!(web2.id, id);

    // Power.
    p.power(web1, &found, PowerAction::Off).await.unwrap();
    let off = p.lookup(web1, Some(&state_with_id(&id))).await.unwrap().unwrap();
    assert_eq!(off.status, MachineStatus::Stopped);
    assert_eq!(off.attributes["status"], "stopped");
    p.power(web1, &found, PowerAction::On).await.unwrap();
    p.power(web1, &found, PowerAction::Reset).await.unwrap();
    let on = p.lookup(web1, Some(&state_with_id(&id))).await.unwrap().unwrap();
    assert_eq!(on.status, MachineStatus::Running);

    // Destroy waits for `terminated`; a terminated instance is gone for lookup.
    p.destroy(web1, &found).await.unwrap();
    assert_eq!(p.lookup(web1, Some(&state_with_id(&id))).await.unwrap(), None);
    assert_eq!(p.lookup(web1, None).await.unwrap(), None);
    // Destroying what is gone already is not an error.
    p.destroy(web1, &found).await.unwrap();
    let live = moto.live_instances().await;
    assert_eq!(live.len(), 1, "only web2 is left");
    assert_eq!(live[0]["instanceId"], web2.id);
    assert_eq!(p.client().retries(), 0);
}

#[tokio::test]
async fn user_data_reaches_the_instance_base64_encoded() {
    let Some(moto) = Moto::start().await else { return };
    let inv = moto_inventory(&moto, "", &["web1"]);
    let p = provider(&inv);
    let cloud_config = "#cloud-config\nruncmd:\n  - echo hello\n";
    let m = p.create_instance(host(&inv, "web1"), OPERATOR_KEY, Some(cloud_config)).await.unwrap();
    let attr = moto
        .ec2(&[
            ("Action", "DescribeInstanceAttribute"),
            ("InstanceId", &m.id),
            ("Attribute", "userData"),
        ])
        .await;
    let doc = roxmltree::Document::parse(&attr).unwrap();
    let value = doc
        .descendants()
        .find(|n| n.has_tag_name("userData"))
        .and_then(|n| n.children().find(|c| c.has_tag_name("value")))
        .and_then(|n| n.text())
        .unwrap_or_else(|| panic!("no user data in {attr}"));
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD.decode(value.trim()).unwrap();
    assert_eq!(String::from_utf8(decoded).unwrap(), cloud_config);
}

#[tokio::test]
async fn a_wrong_secret_is_refused_naming_the_variables() {
    let Some(moto) = Moto::start().await else { return };
    let wrong = "wR0ngSecretKeyThatMustNeverBeShown0000000";
    let inv = inventory(&moto.endpoint(), Some((&moto.access_key_id, wrong)), "", &["web1"]);
    let p = provider(&inv);
    let err = p.lookup(host(&inv, "web1"), None).await.unwrap_err();
    let shown = render(&err);
    insta::assert_snapshot!(shown);
    let debug = format!("{err:?} {p:?}");
    for text in [&shown, &debug] {
        assert!(!text.contains(wrong), "the secret leaked: {text}");
        assert!(!text.contains(&moto.access_key_id), "the key id shows: {text}");
    }
    assert_eq!(p.client().retries(), 0, "refused credentials are not retried");
    assert!(moto.live_instances().await.is_empty());
}

#[tokio::test]
async fn a_missing_permission_is_named() {
    let read_only = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ec2:Describe*","Resource":"*"}]}"#;
    let Some(moto) = Moto::start_with_policy(read_only).await else { return };
    let inv = moto_inventory(&moto, "", &["web1"]);
    let p = provider(&inv);
    assert_eq!(p.lookup(host(&inv, "web1"), None).await.unwrap(), None, "reading is allowed");
    let err = p.create(host(&inv, "web1"), &req()).await.unwrap_err();
    insta::assert_snapshot!(render(&err));
    assert_eq!(p.client().retries(), 0, "a refusal is not retried");
}

#[tokio::test]
async fn another_key_under_the_key_pair_name_is_an_error() {
    let Some(moto) = Moto::start().await else { return };
    let inv = moto_inventory(&moto, r#"key_name = "ops""#, &["web1"]);
    let p = provider(&inv);
    assert_eq!(p.ensure_key_pair("web1", OTHER_KEY).await.unwrap(), "ops");
    // A fresh run with the operator's key finds `ops` holding another key.
    let err = provider(&inv).create(host(&inv, "web1"), &req()).await.unwrap_err();
    insta::assert_snapshot!(render(&err));
    assert!(moto.live_instances().await.is_empty(), "no instance without the right key");
    // The same key again is simply reused.
    assert_eq!(provider(&inv).ensure_key_pair("web1", OTHER_KEY).await.unwrap(), "ops");
}

// ---------------------------------------------------------------------------------------
// without an API

#[test]
fn a_block_without_credentials_says_what_to_export() {
    let inv = inventory("http://127.0.0.1:9", None, "", &["web1"]);
    let block = inv.providers.values().next().unwrap();
    let err = AwsProvider::with_options(block, AwsOptions::default(), &|_| None).unwrap_err();
    insta::assert_snapshot!(render(&err));
}

#[test]
fn credentials_fall_back_to_the_standard_variables_and_never_show() {
    let text = r#"
provider "aws" "cloud" {
  endpoint = "http://127.0.0.1:9"
}
"#;
    let opts = LoadOptions {
        path: PathBuf::from("/nonexistent/cairn.hcl"),
        cli_vars: vec![],
        env: BTreeMap::new(),
    };
    let inv = inventory::load_str(&opts, text.to_owned()).unwrap();
    let block = inv.providers.values().next().unwrap();
    let env = |k: &str| match k {
        "AWS_REGION" => Some("us-west-2".to_owned()),
        "AWS_ACCESS_KEY_ID" => Some("AKIAEXAMPLEKEYID0000".to_owned()),
        "AWS_SECRET_ACCESS_KEY" => Some("env-s3cr3t-value".to_owned()),
        "AWS_SESSION_TOKEN" => Some("env-sessi0n-token".to_owned()),
        _ => None,
    };
    let p = AwsProvider::with_options(block, AwsOptions::default(), &env).unwrap();
    assert_eq!(p.region(), "us-west-2");
    let debug = format!("{p:?}");
    assert!(!debug.contains("s3cr3t") && !debug.contains("sessi0n"), "{debug}");
    assert!(debug.contains("us-west-2"), "{debug}");

    // Without a region anywhere: a clear error.
    let err = AwsProvider::with_options(block, AwsOptions::default(), &|k| {
        (k != "AWS_REGION").then(|| env(k)).flatten()
    })
    .unwrap_err();
    assert!(render(&err).contains("export AWS_REGION"), "{}", render(&err));
}

#[test]
fn for_block_builds_the_aws_provider() {
    let inv =
        inventory("http://127.0.0.1:9", Some(("AKIAEXAMPLEKEYID0000", "s3cr3t")), "", &["web1"]);
    let block = inv.providers.values().next().unwrap();
    let p = cairn::provider::for_block(&inv, block).unwrap();
    assert_eq!(p.kind(), cairn::inventory::ProviderKind::Aws);
}
