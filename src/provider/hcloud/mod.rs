//! Hetzner Cloud servers.
//!
//! `provider "hcloud" "main" { token = env("HCLOUD_TOKEN"), location = "fsn1" }`; optional
//! `endpoint` (default [`DEFAULT_ENDPOINT`]) and `ssh_key_name`. A host's `size` is the
//! server type (`cx22`), `image` the stock image (`debian-12`), `location` overrides the
//! block's.
//!
//! Every server cairn creates is named after its host and labelled `cairn-host=<host>` and
//! `managed-by=cairn`. [`HcloudProvider::lookup`] finds a machine by the server id in state,
//! else by those labels, so a crash between create and recording the id never orders a second
//! server. A server with the host's name but not cairn's labels is reported, never taken (see
//! [`super::ownership`]). The operator's SSH key is uploaded once per project and reused by
//! its fingerprint. Every action the API starts is polled to completion.
//!
//! Besides the [`Provider`] trait, [`HcloudProvider::boot_rescue`] boots a server into
//! Hetzner's rescue system: a second way into the kexec phase, for images that cannot kexec.

mod actions;
mod api;
mod keys;
mod lookup;

pub use api::*;
pub use keys::ssh_key_fingerprint;
use lookup::*;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use md5::{Digest as _, Md5};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Mutex;

use super::http::{ClientConfig, HttpClient, HttpError, HETZNER_CLOUD};
use super::ownership::{self, Claim, Pick};
use super::{CreateRequest, Machine, MachineStatus, PowerAction, Provider, ProviderError};
use crate::inventory::{self, Host, ProviderKind, Sensitive};
use crate::state::HostState;

pub const DEFAULT_ENDPOINT: &str = "https://api.hetzner.cloud/v1";
/// The label naming the host a server belongs to.
pub const LABEL_HOST: &str = ownership::HOST_MARK;
pub const LABEL_MANAGED_BY: &str = ownership::MANAGED_BY_MARK;
pub const MANAGED_BY: &str = ownership::MANAGED_BY;
/// The first look at a running action (the next ones wait longer, up to `poll_interval`).
pub const FIRST_POLL: Duration = Duration::from_millis(100);
/// Hetzner refuses larger `user_data`.
pub const MAX_USER_DATA: usize = 32 * 1024;

/// Knobs with production defaults; tests shorten the waits.
#[derive(Debug, Clone)]
pub struct HcloudOptions {
    /// How often a running action is polled (Hetzner's clients: about once a second).
    pub poll_interval: Duration,
    /// How long one action may run before cairn stops waiting.
    pub action_timeout: Duration,
    /// Page size for lists (the API's maximum is 50).
    pub per_page: u32,
    pub http: ClientConfig,
}

impl Default for HcloudOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(1),
            action_timeout: Duration::from_secs(600),
            per_page: 50,
            http: ClientConfig::default(),
        }
    }
}

/// The Hetzner Cloud provider of one `provider "hcloud"` block.
#[derive(Debug)]
pub struct HcloudProvider {
    /// The block's name.
    name: String,
    client: HttpClient,
    /// The block's default location, used when a host names none.
    location: Option<String>,
    ssh_key_name: Option<String>,
    options: HcloudOptions,
    /// Keys uploaded or found in this run, by fingerprint; the lock also keeps parallel
    /// hosts from uploading the same key twice.
    ssh_keys: Mutex<BTreeMap<String, SshKey>>,
}

impl HcloudProvider {
    pub fn new(block: &inventory::Provider) -> Result<Self, ProviderError> {
        Self::with_options(block, HcloudOptions::default())
    }

    pub fn with_options(
        block: &inventory::Provider,
        options: HcloudOptions,
    ) -> Result<Self, ProviderError> {
        let label = format!("provider \"hcloud\" \"{}\"", block.name);
        let settings = block.hcloud().ok_or_else(|| ProviderError::Invalid {
            host: label.clone(),
            message: format!("provider `{}` is a {} provider, not hcloud", block.name, block.kind),
            help: "name a `provider \"hcloud\"` block".into(),
        })?;
        let token = settings
            .token
            .as_ref()
            .map(|t| Sensitive(t.0.trim().to_owned()))
            .filter(|t| !t.0.is_empty())
            .ok_or_else(|| ProviderError::Invalid {
                host: label.clone(),
                message: "no API token".into(),
                help: "add `token = env(\"HCLOUD_TOKEN\")` to the block and export HCLOUD_TOKEN: \
                       a read/write API token from the Cloud Console (your project → Security → \
                       API tokens)"
                    .into(),
            })?;
        // Written but empty is a mistake (an unset variable?), unlike not written at all.
        let setting =
            |key: &str, value: &Option<String>| -> Result<Option<String>, ProviderError> {
                match value.as_deref().map(str::trim) {
                    None => Ok(None),
                    Some("") => Err(ProviderError::Invalid {
                        host: label.clone(),
                        message: format!(
                            "`{key}` must be a non-empty string, not {:?}",
                            value.as_deref().unwrap_or_default()
                        ),
                        help: format!("write `{key} = \"...\"`"),
                    }),
                    Some(s) => Ok(Some(s.to_owned())),
                }
            };
        let endpoint =
            setting("endpoint", &settings.endpoint)?.unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        let location = setting("location", &settings.location)?;
        let ssh_key_name = setting("ssh_key_name", &settings.ssh_key_name)?;
        let client =
            HttpClient::new(HETZNER_CLOUD, &endpoint, &token, options.http).map_err(|source| {
                ProviderError::Api {
                    host: label.clone(),
                    what: "cannot use these settings".into(),
                    help: source.help(),
                    source: Box::new(source),
                }
            })?;
        Ok(Self {
            name: block.name.to_string(),
            client,
            location,
            ssh_key_name,
            options,
            ssh_keys: Mutex::new(BTreeMap::new()),
        })
    }

    /// The HTTP client (for its retry count in diagnostics and tests).
    pub fn client(&self) -> &HttpClient {
        &self.client
    }

    fn api_error(&self, host: &str, what: &str) -> impl FnOnce(HttpError) -> ProviderError {
        let host = host.to_owned();
        let what = format!("{what} (hcloud provider `{}`)", self.name);
        move |source| ProviderError::Api {
            host,
            what,
            help: source.help(),
            source: Box::new(source),
        }
    }
}

#[async_trait::async_trait]
impl Provider for HcloudProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Hcloud
    }

    async fn lookup(
        &self,
        host: &Host,
        state: Option<&HostState>,
    ) -> Result<Option<Machine>, ProviderError> {
        let name = host.name.as_str();
        let (recorded, recorded_name) = self.recorded(state);
        if let Some(id) = recorded_id(name, recorded) {
            if let Some(s) = still_recorded(name, id, recorded_name, self.server(name, id).await?) {
                return Ok(Some(self.machine(host, &s)));
            }
        }
        Ok(self.find_for_host(host).await?.map(|s| self.machine(host, &s)))
    }

    /// One paged list of every server of the project (50 a page) explains every host, as
    /// `lookup` would: by the recorded id, else by cairn's labels (same-named servers
    /// reported).
    async fn lookup_many(
        &self,
        hosts: &[(Host, Option<HostState>)],
    ) -> Result<Option<Vec<Result<Option<Machine>, ProviderError>>>, ProviderError> {
        let all = self.servers("(all hosts)", &[]).await?;
        let by_id: BTreeMap<u64, &Server> = all.iter().map(|s| (s.id, s)).collect();
        let found = hosts
            .iter()
            .map(|(host, state)| {
                let name = host.name.as_str();
                let (recorded, recorded_name) = self.recorded(state.as_ref());
                if let Some(id) = recorded_id(name, recorded) {
                    let listed = by_id.get(&id).map(|s| (*s).clone());
                    if let Some(s) = still_recorded(name, id, recorded_name, listed) {
                        return Ok(Some(self.machine(host, &s)));
                    }
                }
                Ok(self.pick_for_host(name, all.iter().cloned())?.map(|s| self.machine(host, &s)))
            })
            .collect();
        Ok(Some(found))
    }

    /// The server with this id, whatever its name; refused if cairn's label gives it to
    /// another host.
    async fn lookup_id(&self, host: &Host, id: &str) -> Result<Option<Machine>, ProviderError> {
        let name = host.name.as_str();
        let id: u64 = id.parse().map_err(|_| ProviderError::Invalid {
            host: name.to_owned(),
            message: format!("`{id}` is not a Hetzner Cloud server id"),
            help: "give the server's number, as the Cloud Console or `hcloud server list` shows it"
                .into(),
        })?;
        let Some(server) = self.server(name, id).await? else { return Ok(None) };
        match ownership::claim(&server.labels, name) {
            Claim::OtherHost(other) => Err(ProviderError::Invalid {
                host: name.to_owned(),
                message: format!(
                    "server {id} (`{}`) is labelled {LABEL_HOST}={other}: it belongs to host {other}",
                    server.name
                ),
                help: format!("import the server for {other}, or remove its {LABEL_HOST} label"),
            }),
            _ => Ok(Some(self.machine(host, &server))),
        }
    }

    async fn create(&self, host: &Host, req: &CreateRequest) -> Result<Machine, ProviderError> {
        self.create_server(host, &req.operator_ssh_key, req.user_data().as_deref()).await
    }

    /// Deletes the server. The SSH key stays: other hosts share it.
    async fn destroy(&self, host: &Host, machine: &Machine) -> Result<(), ProviderError> {
        let name = host.name.as_str();
        let id = server_id(name, machine)?;
        match self.client.delete::<Option<ActionEnvelope>>(&format!("/servers/{id}")).await {
            Ok(Some(a)) => self.wait_action(name, a.action).await.map(drop),
            Ok(None) => Ok(()),
            Err(e) if e.code() == Some("not_found") => {
                tracing::debug!(host = name, server_id = id, "server already gone");
                Ok(())
            }
            Err(e) => Err(self.api_error(name, &format!("could not delete server {id}"))(e)),
        }
    }

    async fn power(
        &self,
        host: &Host,
        machine: &Machine,
        action: PowerAction,
    ) -> Result<(), ProviderError> {
        let verb = match action {
            PowerAction::On => "poweron",
            PowerAction::Off => "poweroff",
            PowerAction::Reset => "reset",
        };
        self.server_action(host.name.as_str(), machine, verb, json!({})).await.map(drop)
    }
}
