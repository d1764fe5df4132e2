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

mod api;
mod lifecycle;
mod lookup;
mod setup;

pub use api::Instance;
use api::*;
use lookup::*;

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
