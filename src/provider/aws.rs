//! AWS EC2 instances, over the EC2 Query API (version 2016-11-15) signed with SigV4.
//!
//! ```hcl
//! provider "aws" "main" {
//!   region            = "eu-central-1"
//!   access_key_id     = env("AWS_ACCESS_KEY_ID")
//!   secret_access_key = env("AWS_SECRET_ACCESS_KEY")
//!   ami               = "ami-0abcdef1234567890"   # default image for hosts that name none
//! }
//! ```
//! Optional: `endpoint` (default `https://ec2.<region>.amazonaws.com`), `session_token`,
//! `subnet_id` (else the region's default VPC), `key_name` (the EC2 key pair for the operator's
//! SSH key; default `cairn-<fingerprint>`), `security_group` (name of the group opening SSH;
//! default [`DEFAULT_SECURITY_GROUP`]). Without `region` or credentials in the block, the
//! standard variables `AWS_REGION`/`AWS_DEFAULT_REGION`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN` are read. A host's `size` is the instance
//! type (`t3.small`), `image` the AMI id, `location` the availability zone (`eu-central-1a`).
//!
//! Every instance cairn starts is tagged `Name=<host>`, `cairn-host=<host>` and
//! `managed-by=cairn` in the RunInstances call itself, so [`AwsProvider::lookup`] finds it by
//! the instance id in state, else by those tags, and a crash between create and recording the
//! id never starts a second instance. An instance with the host's `Name` but not cairn's tags
//! is reported, never taken (see [`super::ownership`]). Instances shutting down or terminated count as gone.
//! RunInstances also carries a `ClientToken`, so AWS itself drops a repeated request.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use base64::Engine as _;
use rand::Rng as _;
use serde_json::json;
use tokio::sync::Mutex;

use super::http::{
    AwsCredentials, ClientConfig, HttpClient, HttpError, SigningScope, AWS_AUTH_CODES, AWS_EC2,
};
use super::ownership::{self, Claim, Pick};
use super::{CreateRequest, Machine, MachineStatus, PowerAction, Provider, ProviderError};
use crate::inventory::{self, Host, ProviderKind, Sensitive};
use crate::state::HostState;

/// The EC2 Query API version cairn speaks.
pub const API_VERSION: &str = "2016-11-15";
/// The tag naming the host an instance belongs to.
pub const TAG_HOST: &str = ownership::HOST_MARK;
pub const TAG_MANAGED_BY: &str = ownership::MANAGED_BY_MARK;
pub const MANAGED_BY: &str = ownership::MANAGED_BY;
/// The security group cairn creates (or reuses) to open SSH.
pub const DEFAULT_SECURITY_GROUP: &str = "cairn-ssh";
/// EC2 refuses larger user data (before base64).
pub const MAX_USER_DATA: usize = 16 * 1024;
/// Instance states that still hold a machine (not `shutting-down`, not `terminated`).
const LIVE_STATES: &[&str] = &["pending", "running", "stopping", "stopped"];

/// Knobs with production defaults; tests shorten the waits.
#[derive(Debug, Clone)]
pub struct AwsOptions {
    /// How often an instance is polled while cairn waits for a state.
    pub poll_interval: Duration,
    /// How long an instance may take to reach `running`, `stopped` or `terminated`.
    pub state_timeout: Duration,
    pub http: ClientConfig,
}

impl Default for AwsOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(2),
            state_timeout: Duration::from_secs(600),
            http: ClientConfig::default(),
        }
    }
}

/// An instance as DescribeInstances reports it (the fields cairn reads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    /// `pending`, `running`, `shutting-down`, `terminated`, `stopping`, `stopped`.
    pub state: String,
    pub instance_type: String,
    pub image_id: String,
    pub availability_zone: Option<String>,
    pub public_ip: Option<String>,
    pub private_ip: Option<String>,
    pub ipv6: Option<String>,
    pub key_name: Option<String>,
    pub subnet_id: Option<String>,
    pub vpc_id: Option<String>,
    pub security_group_ids: Vec<String>,
    pub tags: BTreeMap<String, String>,
    /// Why the instance changed state, when EC2 says (`Client.UserInitiatedShutdown`...).
    pub state_reason: Option<String>,
}

impl Instance {
    fn is_live(&self) -> bool {
        LIVE_STATES.contains(&self.state.as_str())
    }

    fn is_tagged_for(&self, host: &str) -> bool {
        ownership::claim(&self.tags, host) == Claim::ThisHost
    }
}

/// Where a credential came from, for messages: `AWS_SECRET_ACCESS_KEY` or
/// `` `secret_access_key` of provider "aws" "main" (env MY_SECRET) ``.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CredentialSources {
    access_key_id: String,
    secret_access_key: String,
}

/// The EC2 provider of one `provider "aws"` block.
pub struct AwsProvider {
    /// The block's name.
    name: String,
    client: HttpClient,
    region: String,
    ami: Option<String>,
    subnet_id: Option<String>,
    key_name: Option<String>,
    security_group: String,
    sources: CredentialSources,
    options: AwsOptions,
    /// Key pairs checked or imported in this run, by key blob; the lock also keeps parallel
    /// hosts from importing the same key twice.
    key_pairs: Mutex<BTreeMap<String, String>>,
    /// The SSH security group's id and the ports it is known to open.
    security_group_id: Mutex<Option<(String, BTreeSet<u16>)>>,
}

impl std::fmt::Debug for AwsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsProvider")
            .field("name", &self.name)
            .field("region", &self.region)
            .field("client", &self.client)
            .field("ami", &self.ami)
            .field("subnet_id", &self.subnet_id)
            .field("security_group", &self.security_group)
            .finish_non_exhaustive()
    }
}

impl AwsProvider {
    /// The provider for `block`, with credentials and region from the block or else the
    /// process environment.
    pub fn new(block: &inventory::Provider) -> Result<Self, ProviderError> {
        Self::with_options(block, AwsOptions::default(), &|k| std::env::var(k).ok())
    }

    /// As [`AwsProvider::new`], reading fallbacks from `env` instead of the process.
    pub fn with_options(
        block: &inventory::Provider,
        options: AwsOptions,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ProviderError> {
        let label = format!("provider \"aws\" \"{}\"", block.name);
        let invalid = |message: String, help: String| ProviderError::Invalid {
            host: label.clone(),
            message,
            help,
        };
        let settings = block.aws().ok_or_else(|| {
            invalid(
                format!("provider `{}` is a {} provider, not aws", block.name, block.kind),
                "name a `provider \"aws\"` block".into(),
            )
        })?;
        // An empty string counts as unset, so `env("AWS_REGION", "")` falls back like a
        // missing attribute.
        let setting = |value: Option<&str>| -> Option<String> {
            value.map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned)
        };
        let env = |k: &str| env(k).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        // Where a block attribute read its value from, for messages.
        let from_block = |attr: &str, env_var: &Option<String>| match env_var {
            Some(var) => format!("{var} (read by `{attr}` of {label})"),
            None => format!("`{attr}` of {label}"),
        };

        let region = setting(settings.region.as_deref())
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .ok_or_else(|| {
                invalid(
                    "no region".into(),
                    "add `region = \"eu-central-1\"` (or another region) to the block, or \
                     export AWS_REGION"
                        .into(),
                )
            })?;
        let block_key = settings
            .access_key_id
            .as_ref()
            .and_then(|k| Some((setting(Some(&k.value))?, &k.env_var)));
        let block_secret = settings
            .secret_access_key
            .as_ref()
            .map(|s| (Sensitive(s.value.0.trim().to_owned()), &s.env_var))
            .filter(|(s, _)| !s.0.is_empty());
        let key_from_block = block_key.is_some();
        let (access_key_id, key_source) = match block_key {
            Some((k, env_var)) => (k, from_block("access_key_id", env_var)),
            None => match env("AWS_ACCESS_KEY_ID") {
                Some(k) => (k, "AWS_ACCESS_KEY_ID".to_owned()),
                None => {
                    return Err(invalid(
                        "no access key id".into(),
                        "add `access_key_id = env(\"AWS_ACCESS_KEY_ID\")` and \
                         `secret_access_key = env(\"AWS_SECRET_ACCESS_KEY\")` to the block and \
                         export both: an access key from the IAM console (Users → your user → \
                         Security credentials)"
                            .into(),
                    ))
                }
            },
        };
        let (secret_access_key, secret_source) =
            match block_secret {
                Some((s, env_var)) => (s, from_block("secret_access_key", env_var)),
                None => match env("AWS_SECRET_ACCESS_KEY") {
                    Some(s) => (Sensitive(s), "AWS_SECRET_ACCESS_KEY".to_owned()),
                    None => return Err(invalid(
                        "no secret access key".into(),
                        "add `secret_access_key = env(\"AWS_SECRET_ACCESS_KEY\")` to the block \
                         and export AWS_SECRET_ACCESS_KEY: the secret shown once when the access \
                         key was created"
                            .into(),
                    )),
                },
            };
        // A session token from the environment belongs to the environment's key only.
        let session_token = settings
            .session_token
            .as_ref()
            .map(|s| Sensitive(s.0.trim().to_owned()))
            .filter(|s| !s.0.is_empty())
            .or_else(|| (!key_from_block).then(|| env("AWS_SESSION_TOKEN").map(Sensitive))?);
        if access_key_id.chars().any(|c| !c.is_ascii_alphanumeric()) {
            return Err(invalid(
                format!("the access key id from {key_source} is not an AWS access key id"),
                "an access key id is letters and digits only (AKIA...); check that the id and \
                 the secret are not swapped"
                    .into(),
            ));
        }
        let endpoint = setting(settings.endpoint.as_deref())
            .unwrap_or_else(|| format!("https://ec2.{region}.amazonaws.com"));
        let credentials = AwsCredentials { access_key_id, secret_access_key, session_token };
        let scope = SigningScope { region: region.clone(), service: "ec2" };
        let client = HttpClient::new_sigv4(AWS_EC2, &endpoint, &credentials, scope, options.http)
            .map_err(|source| ProviderError::Api {
            host: label.clone(),
            what: "cannot use these settings".into(),
            help: source.help(),
            source: Box::new(source),
        })?;
        Ok(Self {
            name: block.name.to_string(),
            client,
            region,
            ami: setting(settings.ami.as_deref()),
            subnet_id: setting(settings.subnet_id.as_deref()),
            key_name: setting(settings.key_name.as_deref()),
            security_group: setting(settings.security_group.as_deref())
                .unwrap_or_else(|| DEFAULT_SECURITY_GROUP.to_owned()),
            sources: CredentialSources {
                access_key_id: key_source,
                secret_access_key: secret_source,
            },
            options,
            key_pairs: Mutex::new(BTreeMap::new()),
            security_group_id: Mutex::new(None),
        })
    }

    /// The HTTP client (for its retry count in diagnostics and tests).
    pub fn client(&self) -> &HttpClient {
        &self.client
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// Turns an API error into a provider error saying what cairn was doing; refused
    /// credentials name where they came from.
    fn api_error(&self, host: &str, what: &str) -> impl FnOnce(HttpError) -> ProviderError {
        let host = host.to_owned();
        let what = format!("{what} (aws provider `{}`, region {})", self.name, self.region);
        let sources = self.sources.clone();
        move |source| {
            let help = match source.code() {
                Some(code) if AWS_AUTH_CODES.contains(&code) && code != "RequestExpired" => {
                    format!(
                        "check the access key: its id comes from {}, its secret from {}; both \
                         must belong to one active access key (the secret is shown only once, \
                         when the key is created: make a new access key in the IAM console if \
                         it is lost)",
                        sources.access_key_id, sources.secret_access_key
                    )
                }
                _ => source.help(),
            };
            ProviderError::Api { host, what, help, source: Box::new(source) }
        }
    }

    /// One EC2 action; the parsed XML answer is handed to `read`.
    async fn call<T>(
        &self,
        host: &str,
        what: &str,
        form: Form,
        read: impl FnOnce(roxmltree::Node) -> Option<T>,
    ) -> Result<T, ProviderError> {
        let action = form.action.clone();
        let text =
            self.client.post_form("/", &form.pairs).await.map_err(self.api_error(host, what))?;
        let unreadable = |reason: &str| {
            self.api_error(host, what)(self.client.unreadable(&action, reason, &text))
        };
        let doc = roxmltree::Document::parse(&text).map_err(|_| unreadable("not XML"))?;
        read(doc.root_element())
            .ok_or_else(|| unreadable(&format!("no {action} result in the answer")))
    }

    /// Instances matching `filters` (name, values), following `nextToken`.
    async fn describe(
        &self,
        host: &str,
        ids: &[&str],
        filters: &[(&str, Vec<String>)],
    ) -> Result<Vec<Instance>, ProviderError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        // A bound, in case an API keeps pointing at a next page.
        for _ in 0..1_000 {
            let mut form = Form::new("DescribeInstances");
            for (i, id) in ids.iter().enumerate() {
                form.set(format!("InstanceId.{}", i + 1), id);
            }
            form.filters(filters);
            if ids.is_empty() {
                // EC2's largest page; it refuses MaxResults next to instance ids.
                form.set("MaxResults", "1000");
            }
            if let Some(t) = &token {
                form.set("NextToken", t);
            }
            let (page, next) = self
                .call(host, "could not list instances", form, |root| {
                    let set = child(root, "reservationSet")?;
                    let instances: Vec<Instance> = items(set)
                        .filter_map(|r| child(r, "instancesSet"))
                        .flat_map(items)
                        .filter_map(parse_instance)
                        .collect();
                    Some((instances, text(root, "nextToken").map(str::to_owned)))
                })
                .await?;
            out.extend(page);
            match next {
                Some(n) if !n.is_empty() => token = Some(n),
                _ => break,
            }
        }
        Ok(out)
    }

    /// The instance with this id, whatever its state; `None` if EC2 knows no such id.
    pub async fn instance(&self, host: &str, id: &str) -> Result<Option<Instance>, ProviderError> {
        match self.describe(host, &[id], &[]).await {
            Ok(found) => Ok(found.into_iter().find(|i| i.id == id)),
            Err(ProviderError::Api { source, .. })
                if matches!(
                    source.code(),
                    Some("InvalidInstanceID.NotFound" | "InvalidInstanceID.Malformed")
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The live instance cairn started for `host` (tagged `cairn-host=<host>` and
    /// `managed-by=cairn`). Instances that only carry the host's `Name` tag are reported
    /// ([`ProviderError::Unclaimed`]), never taken (see [`ownership`]).
    pub async fn find_for_host(&self, host: &Host) -> Result<Option<Instance>, ProviderError> {
        let name = host.name.as_str();
        let mut found = self
            .describe(
                name,
                &[],
                &[
                    (&format!("tag:{TAG_HOST}"), vec![name.to_owned()]),
                    (&format!("tag:{TAG_MANAGED_BY}"), vec![MANAGED_BY.to_owned()]),
                    live_filter(),
                ],
            )
            .await?;
        found.extend(
            self.describe(name, &[], &[("tag:Name", vec![name.to_owned()]), live_filter()]).await?,
        );
        self.pick_for_host(name, &found)
    }

    /// `host`'s instance among `instances` (any, in any state): of the live ones tagged for
    /// it by cairn or named like it, the one cairn tagged; instances only named like it are
    /// reported, never taken. `lookup` and `lookup_many` both decide here.
    fn pick_for_host<'a>(
        &self,
        name: &str,
        instances: impl IntoIterator<Item = &'a Instance>,
    ) -> Result<Option<Instance>, ProviderError> {
        let mut candidates: Vec<Instance> = Vec::new();
        for i in instances {
            let same_name = i.tags.get("Name").is_some_and(|n| n == name);
            if i.is_live()
                && (i.is_tagged_for(name) || same_name)
                && !candidates.iter().any(|c| c.id == i.id)
            {
                candidates.push(i.clone());
            }
        }
        match ownership::pick(name, candidates, |i| &i.tags) {
            Pick::Ours(instance) => Ok(Some(instance)),
            Pick::Nothing => Ok(None),
            Pick::Unclaimed(instances) => Err(ownership::unclaimed(
                name,
                &format!("aws.{}", self.name),
                "instance",
                "tag",
                instances.into_iter().map(|i| i.id).collect(),
            )),
            Pick::Several(many) => {
                Err(several(name, &many, &format!("carry the tag {TAG_HOST}={name}")))
            }
        }
    }

    /// The instance id state records for the host, if it was recorded by this provider block.
    fn recorded_id<'s>(&self, state: Option<&'s HostState>) -> Option<&'s str> {
        state
            .filter(|s| s.provider.as_deref().is_none_or(|p| p == self.name))
            .and_then(|s| s.provider_id.as_deref())
    }

    /// Every live instance that could be one of `names`' (cairn's tag, or a `Name` among
    /// them), in a few paged DescribeInstances calls, each instance once.
    async fn list_for(&self, names: &[&str]) -> Result<Vec<Instance>, ProviderError> {
        let all = "(all hosts)";
        let mut found = self
            .describe(
                all,
                &[],
                &[(&format!("tag:{TAG_MANAGED_BY}"), vec![MANAGED_BY.to_owned()]), live_filter()],
            )
            .await?;
        // EC2 takes at most 200 values per filter.
        for chunk in names.chunks(200) {
            let names = chunk.iter().map(|n| n.to_string()).collect();
            found.extend(self.describe(all, &[], &[("tag:Name", names), live_filter()]).await?);
        }
        let mut seen = BTreeSet::new();
        found.retain(|i| seen.insert(i.id.clone()));
        Ok(found)
    }

    /// Polls the instance until its state is one of `wanted`. An instance EC2 does not know
    /// (yet: DescribeInstances is eventually consistent) or that ends up terminated while
    /// cairn waits for something else is an error at the deadline or at once, respectively.
    pub async fn wait_state(
        &self,
        host: &str,
        id: &str,
        wanted: &[&str],
    ) -> Result<Option<Instance>, ProviderError> {
        let started = Instant::now();
        let gone_is_fine = wanted.contains(&"terminated");
        loop {
            match self.instance(host, id).await? {
                Some(i) if wanted.contains(&i.state.as_str()) => return Ok(Some(i)),
                None if gone_is_fine => return Ok(None),
                Some(i) if matches!(i.state.as_str(), "shutting-down" | "terminated") => {
                    let reason = i.state_reason.as_deref().unwrap_or("no reason given");
                    return Err(ProviderError::Invalid {
                        host: host.to_owned(),
                        message: format!("instance {id} is {} ({reason})", i.state),
                        help: "EC2 stopped the instance: look at it in the EC2 console (its \
                               state reason and system log), fix the cause and run the \
                               command again"
                            .into(),
                    });
                }
                Some(i) => tracing::debug!(host, instance_id = id, state = %i.state, "waiting"),
                None => tracing::debug!(host, instance_id = id, "not visible yet; waiting"),
            }
            if started.elapsed() >= self.options.state_timeout {
                return Err(ProviderError::Timeout {
                    host: host.to_owned(),
                    what: format!("reach the state {} (instance {id})", wanted.join(" or ")),
                    seconds: self.options.state_timeout.as_secs(),
                    help: "the instance may still get there: check it in the EC2 console, then \
                           run the command again"
                        .into(),
                });
            }
            tokio::time::sleep(self.options.poll_interval).await;
        }
    }

    /// The key pair holding `public_key` (an OpenSSH line): `key_name`, or
    /// `cairn-<fingerprint prefix>`, imported once. The same name holding another key is an
    /// error, never silently replaced.
    pub async fn ensure_key_pair(
        &self,
        host: &str,
        public_key: &str,
    ) -> Result<String, ProviderError> {
        let (fingerprint, line) =
            super::hcloud::ssh_key_fingerprint(public_key).ok_or_else(|| {
                ProviderError::Invalid {
                    host: host.to_owned(),
                    message: "the operator's SSH public key is not an OpenSSH public key line"
                        .into(),
                    help: "use a line like `ssh-ed25519 AAAA... you@example`".into(),
                }
            })?;
        let blob = key_blob(&line).unwrap_or_default().to_owned();
        let mut cache = self.key_pairs.lock().await;
        if let Some(name) = cache.get(&blob) {
            return Ok(name.clone());
        }
        let name = self.key_name.clone().unwrap_or_else(|| {
            format!("cairn-{}", fingerprint.replace(':', "").get(..12).unwrap_or("key"))
        });
        if self.check_key_pair(host, &name, &blob).await? {
            tracing::debug!(host, key = %name, "reusing the EC2 key pair");
        } else {
            let mut form = Form::new("ImportKeyPair");
            form.set("KeyName", &name);
            form.set(
                "PublicKeyMaterial",
                base64::engine::general_purpose::STANDARD.encode(line.as_bytes()),
            );
            form.tags("key-pair", &[(TAG_MANAGED_BY, MANAGED_BY)]);
            let what = format!("could not import the SSH key as key pair `{name}`");
            match self.call(host, &what, form, |r| text(r, "keyName").map(drop)).await {
                Ok(()) => tracing::info!(host, key = %name, "imported the operator's SSH key"),
                // Imported meanwhile, by a parallel run: it must be the same key.
                Err(ProviderError::Api { source, .. })
                    if source.code() == Some("InvalidKeyPair.Duplicate")
                        && self.check_key_pair(host, &name, &blob).await? => {}
                Err(e) => return Err(e),
            }
        }
        cache.insert(blob, name.clone());
        Ok(name)
    }

    /// Whether key pair `name` exists with the key `blob`; an error if it holds another key.
    async fn check_key_pair(
        &self,
        host: &str,
        name: &str,
        blob: &str,
    ) -> Result<bool, ProviderError> {
        let mut form = Form::new("DescribeKeyPairs");
        form.set("KeyName.1", name);
        form.set("IncludePublicKey", "true");
        let found = self
            .call(host, "could not list key pairs", form, |root| {
                let set = child(root, "keySet")?;
                Some(
                    items(set)
                        .find(|k| text(*k, "keyName") == Some(name))
                        .map(|k| text(k, "publicKey").map(str::to_owned)),
                )
            })
            .await;
        let public_key = match found {
            Ok(Some(k)) => k,
            Ok(None) => return Ok(false),
            Err(ProviderError::Api { source, .. })
                if source.code() == Some("InvalidKeyPair.NotFound") =>
            {
                return Ok(false)
            }
            Err(e) => return Err(e),
        };
        match public_key.as_deref().and_then(key_blob) {
            Some(existing) if existing == blob => Ok(true),
            Some(_) => Err(ProviderError::Invalid {
                host: host.to_owned(),
                message: format!(
                    "the EC2 key pair `{name}` in {} holds a different SSH key than the \
                     operator's",
                    self.region
                ),
                help: format!(
                    "set `key_name` in {} to a name not taken yet, or delete the key pair `{name}` \
                     in the EC2 console if it is stale",
                    self.label()
                ),
            }),
            None => {
                // AWS answers without the key only when it cannot show it; trust the name.
                tracing::warn!(
                    host, key = %name,
                    "EC2 did not show the key pair's public key; assuming it is the operator's"
                );
                Ok(true)
            }
        }
    }

    fn label(&self) -> String {
        format!("provider \"aws\" \"{}\"", self.name)
    }

    /// The VPC new instances land in: the subnet's, else the region's default VPC.
    async fn vpc_id(&self, host: &str) -> Result<String, ProviderError> {
        let (action, form, set) = match &self.subnet_id {
            Some(subnet) => {
                let mut form = Form::new("DescribeSubnets");
                form.set("SubnetId.1", subnet);
                ("DescribeSubnets", form, "subnetSet")
            }
            None => {
                let mut form = Form::new("DescribeVpcs");
                form.filters(&[("is-default", vec!["true".into()])]);
                ("DescribeVpcs", form, "vpcSet")
            }
        };
        let vpc = self
            .call(host, &format!("could not find the VPC ({action})"), form, |root| {
                Some(items(child(root, set)?).find_map(|i| text(i, "vpcId").map(str::to_owned)))
            })
            .await?;
        vpc.ok_or_else(|| ProviderError::Invalid {
            host: host.to_owned(),
            message: match &self.subnet_id {
                Some(s) => format!("subnet {s} does not exist in {}", self.region),
                None => format!("the region {} has no default VPC", self.region),
            },
            help: format!("set `subnet_id` in {} to a subnet of the region", self.label()),
        })
    }

    /// The security group that opens SSH (`ports`, from anywhere): found by name in the VPC,
    /// else created; missing rules are added.
    pub async fn ensure_security_group(
        &self,
        host: &str,
        ports: &[u16],
    ) -> Result<String, ProviderError> {
        let mut cache = self.security_group_id.lock().await;
        if let Some((id, open)) = cache.as_ref() {
            if ports.iter().all(|p| open.contains(p)) {
                return Ok(id.clone());
            }
        }
        let vpc = self.vpc_id(host).await?;
        let name = self.security_group.as_str();
        let (id, open) = match self.find_security_group(host, &vpc).await? {
            Some(found) => found,
            None => {
                let mut form = Form::new("CreateSecurityGroup");
                form.set("GroupName", name);
                form.set("GroupDescription", "SSH to machines cairn manages");
                form.set("VpcId", &vpc);
                form.tags("security-group", &[(TAG_MANAGED_BY, MANAGED_BY)]);
                let what = format!("could not create the security group `{name}`");
                match self.call(host, &what, form, |r| text(r, "groupId").map(str::to_owned)).await
                {
                    Ok(id) => {
                        tracing::info!(host, group = name, id = %id, "created the security group");
                        (id, BTreeSet::new())
                    }
                    Err(ProviderError::Api { source, .. })
                        if source.code() == Some("InvalidGroup.Duplicate") =>
                    {
                        self.find_security_group(host, &vpc).await?.ok_or_else(|| {
                            ProviderError::Invalid {
                                host: host.to_owned(),
                                message: format!(
                                    "security group `{name}` exists but cannot be found"
                                ),
                                help: "run the command again".into(),
                            }
                        })?
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        let missing: Vec<u16> = ports.iter().copied().filter(|p| !open.contains(p)).collect();
        if !missing.is_empty() {
            let mut form = Form::new("AuthorizeSecurityGroupIngress");
            form.set("GroupId", &id);
            for (i, port) in missing.iter().enumerate() {
                let p = format!("IpPermissions.{}", i + 1);
                form.set(format!("{p}.IpProtocol"), "tcp");
                form.set(format!("{p}.FromPort"), port.to_string());
                form.set(format!("{p}.ToPort"), port.to_string());
                form.set(format!("{p}.IpRanges.1.CidrIp"), "0.0.0.0/0");
                form.set(format!("{p}.Ipv6Ranges.1.CidrIpv6"), "::/0");
            }
            let what = format!("could not open SSH in the security group `{name}`");
            match self.call(host, &what, form, |r| Some(text(r, "return") != Some("false"))).await {
                Ok(_) => {}
                Err(ProviderError::Api { source, .. })
                    if source.code() == Some("InvalidPermission.Duplicate") => {}
                Err(e) => return Err(e),
            }
        }
        let mut all = open;
        all.extend(ports);
        *cache = Some((id.clone(), all));
        Ok(id)
    }

    /// The group named `security_group` in `vpc`, and the TCP ports it opens to everyone.
    async fn find_security_group(
        &self,
        host: &str,
        vpc: &str,
    ) -> Result<Option<(String, BTreeSet<u16>)>, ProviderError> {
        let mut form = Form::new("DescribeSecurityGroups");
        form.filters(&[
            ("group-name", vec![self.security_group.clone()]),
            ("vpc-id", vec![vpc.to_owned()]),
        ]);
        self.call(host, "could not list security groups", form, |root| {
            let group = items(child(root, "securityGroupInfo")?)
                .find(|g| text(*g, "groupName") == Some(self.security_group.as_str()));
            let Some(group) = group else { return Some(None) };
            let id = text(group, "groupId")?.to_owned();
            let mut open = BTreeSet::new();
            for perm in child(group, "ipPermissions").into_iter().flat_map(items) {
                let tcp = matches!(text(perm, "ipProtocol"), Some("tcp" | "6" | "-1"));
                let anywhere = child(perm, "ipRanges")
                    .into_iter()
                    .flat_map(items)
                    .any(|r| text(r, "cidrIp") == Some("0.0.0.0/0"));
                let from = text(perm, "fromPort").and_then(|p| p.parse::<u16>().ok());
                let to = text(perm, "toPort").and_then(|p| p.parse::<u16>().ok());
                if let (true, true, Some(from), Some(to)) = (tcp, anywhere, from, to) {
                    open.extend(from..=to);
                }
            }
            Some(Some((id, open)))
        })
        .await
    }

    /// Starts an instance for `host` and waits until it runs. `user_data` (cloud-init, at
    /// most 16 KiB) is passed through.
    pub async fn create_instance(
        &self,
        host: &Host,
        operator_ssh_key: &str,
        user_data: Option<&str>,
    ) -> Result<Machine, ProviderError> {
        let name = host.name.as_str();
        let instance_type = host.size.as_deref().ok_or_else(|| ProviderError::Invalid {
            host: name.to_owned(),
            message: "no size: an EC2 instance needs an instance type".into(),
            help: "set `size = \"t3.small\"` (or `instance_type`) on the host or in `defaults`"
                .into(),
        })?;
        let image = host.image.as_deref().or(self.ami.as_deref()).ok_or_else(|| {
            ProviderError::Invalid {
                host: name.to_owned(),
                message: "no image: an EC2 instance needs an AMI id".into(),
                help: format!(
                    "set `image = \"ami-...\"` on the host, or `ami = \"ami-...\"` in {}",
                    self.label()
                ),
            }
        })?;
        if let Some(ud) = user_data {
            if ud.len() > MAX_USER_DATA {
                return Err(ProviderError::Invalid {
                    host: name.to_owned(),
                    message: format!(
                        "user data is {} bytes; EC2 accepts at most {MAX_USER_DATA}",
                        ud.len()
                    ),
                    help: "shorten the cloud-init configuration".into(),
                });
            }
        }
        let key_name = self.ensure_key_pair(name, operator_ssh_key).await?;
        let mut ports = vec![22];
        if host.ssh.port != 22 {
            ports.push(host.ssh.port);
        }
        let group = self.ensure_security_group(name, &ports).await?;

        let mut form = Form::new("RunInstances");
        form.set("ImageId", image);
        form.set("InstanceType", instance_type);
        form.set("MinCount", "1");
        form.set("MaxCount", "1");
        form.set("KeyName", &key_name);
        form.set("SecurityGroupId.1", &group);
        if let Some(subnet) = &self.subnet_id {
            form.set("SubnetId", subnet);
        }
        if let Some(zone) = &host.location {
            form.set("Placement.AvailabilityZone", zone);
        }
        if let Some(ud) = user_data {
            form.set("UserData", base64::engine::general_purpose::STANDARD.encode(ud));
        }
        // The same token on every retry of this request: AWS starts at most one instance for
        // it. (moto ignores ClientToken; the tag lookup covers crashes in any case.)
        form.set("ClientToken", client_token());
        let [host_mark, managed_by] = ownership::marks(name);
        form.tags("instance", &[("Name", name), host_mark, managed_by]);
        tracing::info!(
            host = name,
            instance_type,
            image,
            region = %self.region,
            zone = host.location.as_deref(),
            "starting an EC2 instance"
        );
        let id = self
            .call(name, "could not start the instance", form, |root| {
                items(child(root, "instancesSet")?)
                    .find_map(|i| text(i, "instanceId").map(str::to_owned))
            })
            .await?;
        tracing::debug!(host = name, instance_id = %id, "instance ordered; waiting until it runs");
        let instance = self.wait_state(name, &id, &["running"]).await?.ok_or_else(|| {
            ProviderError::Invalid {
                host: name.to_owned(),
                message: format!("instance {id} vanished right after it was started"),
                help: "someone terminated it meanwhile; run the command again".into(),
            }
        })?;
        Ok(self.machine(host, &instance))
    }

    fn machine(&self, host: &Host, i: &Instance) -> Machine {
        let status = match i.state.as_str() {
            "running" => MachineStatus::Running,
            "pending" => MachineStatus::Starting,
            _ => MachineStatus::Stopped,
        };
        let mut attributes = BTreeMap::new();
        attributes.insert("size".to_owned(), i.instance_type.clone());
        attributes.insert("instance_type".to_owned(), i.instance_type.clone());
        attributes.insert("image".to_owned(), i.image_id.clone());
        if let Some(zone) = &i.availability_zone {
            attributes.insert("location".to_owned(), zone.clone());
        }
        attributes.insert("region".to_owned(), self.region.clone());
        attributes.insert("status".to_owned(), i.state.clone());
        let mut provider_data = BTreeMap::new();
        provider_data.insert("instance_id".to_owned(), json!(i.id));
        provider_data.insert("region".to_owned(), json!(self.region));
        for (key, value) in [
            ("availability_zone", &i.availability_zone),
            ("public_ip", &i.public_ip),
            ("private_ip", &i.private_ip),
            ("ipv6", &i.ipv6),
            ("key_name", &i.key_name),
            ("subnet_id", &i.subnet_id),
            ("vpc_id", &i.vpc_id),
        ] {
            if let Some(v) = value {
                provider_data.insert(key.to_owned(), json!(v));
            }
        }
        if !i.security_group_ids.is_empty() {
            provider_data.insert("security_group_ids".to_owned(), json!(i.security_group_ids));
        }
        let address =
            i.public_ip.clone().or_else(|| i.ipv6.clone()).or_else(|| i.private_ip.clone());
        Machine {
            id: i.id.clone(),
            status,
            ssh_address: address.unwrap_or_default(),
            ssh_port: host.ssh.port,
            attributes,
            provider_data,
        }
    }

    /// Starts, stops or reboots an instance; waits for `running` or `stopped`.
    async fn instance_action(
        &self,
        host: &str,
        id: &str,
        action: &str,
        wait_for: Option<&str>,
    ) -> Result<(), ProviderError> {
        let mut form = Form::new(action);
        form.set("InstanceId.1", id);
        if action == "StopInstances" {
            // A hard power off, as PowerAction::Off promises.
            form.set("Force", "true");
        }
        self.call(host, &format!("could not {action} {id}"), form, |_| Some(())).await?;
        if let Some(state) = wait_for {
            self.wait_state(host, id, &[state]).await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Provider for AwsProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Aws
    }

    async fn lookup(
        &self,
        host: &Host,
        state: Option<&HostState>,
    ) -> Result<Option<Machine>, ProviderError> {
        let name = host.name.as_str();
        if let Some(id) = self.recorded_id(state) {
            if let Some(i) = still_recorded(name, id, self.instance(name, id).await?) {
                return Ok(Some(self.machine(host, &i)));
            }
        }
        Ok(self.find_for_host(host).await?.map(|i| self.machine(host, &i)))
    }

    /// One paged list of the live instances tagged by cairn or named like a host, then each
    /// host decided as [`Provider::lookup`] decides. Only a recorded id the list does not
    /// hold (an adopted instance named otherwise, or one that is gone) is asked for alone.
    async fn lookup_many(
        &self,
        hosts: &[(Host, Option<HostState>)],
    ) -> Result<Option<Vec<Result<Option<Machine>, ProviderError>>>, ProviderError> {
        let names: Vec<&str> = hosts.iter().map(|(h, _)| h.name.as_str()).collect();
        let listed = self.list_for(&names).await?;
        let by_id: BTreeMap<&str, &Instance> = listed.iter().map(|i| (i.id.as_str(), i)).collect();
        let mut found = Vec::with_capacity(hosts.len());
        for (host, state) in hosts {
            let name = host.name.as_str();
            if let Some(id) = self.recorded_id(state.as_ref()) {
                let recorded = match by_id.get(id) {
                    Some(i) => Ok(Some((*i).clone())),
                    None => self.instance(name, id).await,
                };
                match recorded.map(|r| still_recorded(name, id, r)) {
                    Ok(Some(i)) => {
                        found.push(Ok(Some(self.machine(host, &i))));
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        found.push(Err(e));
                        continue;
                    }
                }
            }
            found
                .push(self.pick_for_host(name, &listed).map(|i| i.map(|i| self.machine(host, &i))));
        }
        Ok(Some(found))
    }

    /// The live instance with this id, whatever its tags; refused if cairn's tag gives it to
    /// another host.
    async fn lookup_id(&self, host: &Host, id: &str) -> Result<Option<Machine>, ProviderError> {
        let name = host.name.as_str();
        let Some(instance) = self.instance(name, id).await?.filter(Instance::is_live) else {
            return Ok(None);
        };
        match ownership::claim(&instance.tags, name) {
            Claim::OtherHost(other) => Err(ProviderError::Invalid {
                host: name.to_owned(),
                message: format!(
                    "instance {id} is tagged {TAG_HOST}={other}: it belongs to host {other}"
                ),
                help: format!("import the instance for {other}, or remove its {TAG_HOST} tag"),
            }),
            _ => Ok(Some(self.machine(host, &instance))),
        }
    }

    async fn create(&self, host: &Host, req: &CreateRequest) -> Result<Machine, ProviderError> {
        self.create_instance(host, &req.operator_ssh_key, req.user_data().as_deref()).await
    }

    /// Terminates the instance and waits until it is terminated. The key pair and the
    /// security group stay: other hosts share them.
    async fn destroy(&self, host: &Host, machine: &Machine) -> Result<(), ProviderError> {
        let name = host.name.as_str();
        let id = machine.id.as_str();
        let mut form = Form::new("TerminateInstances");
        form.set("InstanceId.1", id);
        match self
            .call(name, &format!("could not terminate instance {id}"), form, |_| Some(()))
            .await
        {
            Ok(()) => {}
            Err(ProviderError::Api { source, .. })
                if source.code() == Some("InvalidInstanceID.NotFound") =>
            {
                tracing::debug!(host = name, instance_id = id, "instance already gone");
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        self.wait_state(name, id, &["terminated"]).await.map(drop)
    }

    async fn power(
        &self,
        host: &Host,
        machine: &Machine,
        action: PowerAction,
    ) -> Result<(), ProviderError> {
        let name = host.name.as_str();
        match action {
            PowerAction::On => {
                self.instance_action(name, &machine.id, "StartInstances", Some("running")).await
            }
            PowerAction::Off => {
                self.instance_action(name, &machine.id, "StopInstances", Some("stopped")).await
            }
            // EC2 reboots asynchronously and reports no state for it.
            PowerAction::Reset => {
                self.instance_action(name, &machine.id, "RebootInstances", None).await
            }
        }
    }
}

/// The `instance-state-name` filter for instances that still hold a machine.
fn live_filter() -> (&'static str, Vec<String>) {
    ("instance-state-name", LIVE_STATES.iter().map(|s| s.to_string()).collect())
}

/// The instance state recorded for `host` as `id`, if it is still the host's: alive, and
/// not tagged by cairn for another host.
fn still_recorded(host: &str, id: &str, found: Option<Instance>) -> Option<Instance> {
    match found {
        Some(i)
            if i.is_live() && !matches!(ownership::claim(&i.tags, host), Claim::OtherHost(_)) =>
        {
            Some(i)
        }
        Some(i) if !i.is_live() => {
            tracing::debug!(host, instance_id = id, state = %i.state, "the recorded instance is gone");
            None
        }
        Some(i) => {
            tracing::warn!(
                host, instance_id = id, tags = ?i.tags,
                "the instance recorded in state belongs to something else; searching by tags"
            );
            None
        }
        None => {
            tracing::debug!(host, instance_id = id, "the recorded instance is gone");
            None
        }
    }
}

fn several(host: &str, many: &[Instance], what: &str) -> ProviderError {
    ProviderError::Invalid {
        host: host.to_owned(),
        message: format!(
            "{} instances {what} (ids {})",
            many.len(),
            many.iter().map(|i| i.id.as_str()).collect::<Vec<_>>().join(", ")
        ),
        help: format!(
            "terminate the instances that are not this host's in the EC2 console, or remove their \
             {TAG_HOST} and Name tags"
        ),
    }
}

/// A fresh idempotency token for one RunInstances request (at most 64 ASCII characters).
fn client_token() -> String {
    format!("cairn-{:032x}", rand::thread_rng().gen::<u128>())
}

/// The base64 key blob of an OpenSSH public key line (the part compared between keys).
fn key_blob(line: &str) -> Option<&str> {
    line.split_whitespace().nth(1)
}

/// The parameters of one EC2 Query API request, in order.
#[derive(Debug, Clone)]
struct Form {
    action: String,
    pairs: Vec<(String, String)>,
}

impl Form {
    fn new(action: &str) -> Self {
        Self {
            action: action.to_owned(),
            pairs: vec![
                ("Action".to_owned(), action.to_owned()),
                ("Version".to_owned(), API_VERSION.to_owned()),
            ],
        }
    }

    fn set(&mut self, key: impl Into<String>, value: impl AsRef<str>) {
        self.pairs.push((key.into(), value.as_ref().to_owned()));
    }

    /// `Filter.N.Name` / `Filter.N.Value.M`.
    fn filters(&mut self, filters: &[(&str, Vec<String>)]) {
        for (n, (name, values)) in filters.iter().enumerate() {
            self.set(format!("Filter.{}.Name", n + 1), name);
            for (m, value) in values.iter().enumerate() {
                self.set(format!("Filter.{}.Value.{}", n + 1, m + 1), value);
            }
        }
    }

    /// Tags applied on creation: `TagSpecification.1.ResourceType` / `.Tag.N.Key|Value`.
    fn tags(&mut self, resource_type: &str, tags: &[(&str, &str)]) {
        self.set("TagSpecification.1.ResourceType", resource_type);
        for (n, (key, value)) in tags.iter().enumerate() {
            self.set(format!("TagSpecification.1.Tag.{}.Key", n + 1), key);
            self.set(format!("TagSpecification.1.Tag.{}.Value", n + 1), value);
        }
    }
}

// EC2's XML: elements are camelCase, lists are `<xxxSet><item>...</item></xxxSet>`.

fn child<'a, 'i>(node: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    node.children().find(|n| n.is_element() && n.tag_name().name() == name)
}

fn text<'a>(node: roxmltree::Node<'a, '_>, name: &str) -> Option<&'a str> {
    child(node, name).and_then(|n| n.text()).map(str::trim).filter(|t| !t.is_empty())
}

fn items<'a, 'i>(set: roxmltree::Node<'a, 'i>) -> impl Iterator<Item = roxmltree::Node<'a, 'i>> {
    set.children().filter(|n| n.is_element() && n.tag_name().name() == "item")
}

fn parse_instance(node: roxmltree::Node) -> Option<Instance> {
    let owned = |name: &str| text(node, name).map(str::to_owned);
    let tags = child(node, "tagSet")
        .into_iter()
        .flat_map(items)
        .filter_map(|t| {
            Some((text(t, "key")?.to_owned(), text(t, "value").unwrap_or("").to_owned()))
        })
        .collect();
    let ipv6 = child(node, "networkInterfaceSet")
        .into_iter()
        .flat_map(items)
        .filter_map(|n| child(n, "ipv6AddressesSet"))
        .flat_map(items)
        .find_map(|a| text(a, "ipv6Address").map(str::to_owned))
        .or_else(|| owned("ipv6Address"));
    Some(Instance {
        id: owned("instanceId")?,
        state: text(child(node, "instanceState")?, "name")?.to_owned(),
        instance_type: owned("instanceType").unwrap_or_default(),
        image_id: owned("imageId").unwrap_or_default(),
        availability_zone: child(node, "placement")
            .and_then(|p| text(p, "availabilityZone"))
            .map(str::to_owned),
        public_ip: owned("ipAddress"),
        private_ip: owned("privateIpAddress"),
        ipv6,
        key_name: owned("keyName"),
        subnet_id: owned("subnetId"),
        vpc_id: owned("vpcId"),
        security_group_ids: child(node, "groupSet")
            .into_iter()
            .flat_map(items)
            .filter_map(|g| text(g, "groupId").map(str::to_owned))
            .collect(),
        tags,
        state_reason: child(node, "stateReason")
            .and_then(|r| text(r, "message").or_else(|| text(r, "code")))
            .map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_numbers_filters_and_tags_from_one() {
        let mut f = Form::new("DescribeInstances");
        f.filters(&[("tag:cairn-host", vec!["web1".into()]), ("a", vec!["x".into(), "y".into()])]);
        f.tags("instance", &[("Name", "web1"), ("managed-by", "cairn")]);
        let got: Vec<String> = f.pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            got,
            [
                "Action=DescribeInstances",
                "Version=2016-11-15",
                "Filter.1.Name=tag:cairn-host",
                "Filter.1.Value.1=web1",
                "Filter.2.Name=a",
                "Filter.2.Value.1=x",
                "Filter.2.Value.2=y",
                "TagSpecification.1.ResourceType=instance",
                "TagSpecification.1.Tag.1.Key=Name",
                "TagSpecification.1.Tag.1.Value=web1",
                "TagSpecification.1.Tag.2.Key=managed-by",
                "TagSpecification.1.Tag.2.Value=cairn",
            ]
        );
    }

    /// Abridged from the EC2 API reference's DescribeInstances example.
    const DESCRIBE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>8f7724cf-496f-496e-8fe3-example</requestId>
  <reservationSet>
    <item>
      <reservationId>r-1234567890abcdef0</reservationId>
      <instancesSet>
        <item>
          <instanceId>i-1234567890abcdef0</instanceId>
          <imageId>ami-bff32ccc</imageId>
          <instanceState><code>16</code><name>running</name></instanceState>
          <privateIpAddress>192.168.1.88</privateIpAddress>
          <ipAddress>54.194.252.215</ipAddress>
          <keyName>cairn-918f4ab78f16</keyName>
          <instanceType>t2.micro</instanceType>
          <placement><availabilityZone>eu-west-1c</availabilityZone></placement>
          <subnetId>subnet-56f5f633</subnetId>
          <vpcId>vpc-11112222</vpcId>
          <groupSet><item><groupId>sg-e4076980</groupId><groupName>cairn-ssh</groupName></item></groupSet>
          <tagSet>
            <item><key>Name</key><value>web1</value></item>
            <item><key>cairn-host</key><value>web1</value></item>
            <item><key>managed-by</key><value>cairn</value></item>
          </tagSet>
          <networkInterfaceSet><item><ipv6AddressesSet><item><ipv6Address>2001:db8:1234:1a00::123</ipv6Address></item></ipv6AddressesSet></item></networkInterfaceSet>
        </item>
      </instancesSet>
    </item>
  </reservationSet>
</DescribeInstancesResponse>"#;

    #[test]
    fn describe_instances_is_read() {
        let doc = roxmltree::Document::parse(DESCRIBE).unwrap();
        let set = child(doc.root_element(), "reservationSet").unwrap();
        let all: Vec<Instance> = items(set)
            .filter_map(|r| child(r, "instancesSet"))
            .flat_map(items)
            .filter_map(parse_instance)
            .collect();
        assert_eq!(all.len(), 1);
        let i = &all[0];
        assert_eq!(i.id, "i-1234567890abcdef0");
        assert_eq!(i.state, "running");
        assert_eq!(i.instance_type, "t2.micro");
        assert_eq!(i.image_id, "ami-bff32ccc");
        assert_eq!(i.availability_zone.as_deref(), Some("eu-west-1c"));
        assert_eq!(i.public_ip.as_deref(), Some("54.194.252.215"));
        assert_eq!(i.private_ip.as_deref(), Some("192.168.1.88"));
        assert_eq!(i.ipv6.as_deref(), Some("2001:db8:1234:1a00::123"));
        assert_eq!(i.security_group_ids, ["sg-e4076980"]);
        assert!(i.is_live() && i.is_tagged_for("web1") && !i.is_tagged_for("web2"));
    }

    #[test]
    fn client_tokens_are_fresh_and_fit_the_limit() {
        let (a, b) = (client_token(), client_token());
        assert_ne!(a, b);
        assert!(a.len() <= 64 && a.is_ascii(), "{a}");
    }
}
