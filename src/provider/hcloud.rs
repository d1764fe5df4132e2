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

use std::collections::BTreeMap;
use std::net::Ipv6Addr;
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

/// A server as the API describes it (the fields cairn reads).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Server {
    pub id: u64,
    pub name: String,
    /// `initializing`, `starting`, `running`, `stopping`, `off`, `deleting`, `migrating`,
    /// `rebuilding`, `unknown`.
    pub status: String,
    #[serde(default)]
    pub public_net: PublicNet,
    pub server_type: Named,
    #[serde(default)]
    pub image: Option<Named>,
    #[serde(default)]
    pub datacenter: Option<Datacenter>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub rescue_enabled: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PublicNet {
    #[serde(default)]
    pub ipv4: Option<IpBlock>,
    #[serde(default)]
    pub ipv6: Option<IpBlock>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct IpBlock {
    /// An IPv4 address, or an IPv6 network (`2a01:4f8:c0c:1::/64`).
    pub ip: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Named {
    /// Absent for snapshots and backups.
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Datacenter {
    pub name: String,
    pub location: Named,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Action {
    pub id: u64,
    pub command: String,
    /// `running`, `success` or `error`.
    pub status: String,
    #[serde(default)]
    pub error: Option<ActionError>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ActionError {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SshKey {
    pub id: u64,
    pub name: String,
    /// MD5, as `aa:bb:...`.
    pub fingerprint: String,
    pub public_key: String,
}

/// What [`HcloudProvider::boot_rescue`] hands back.
#[derive(Debug, Clone)]
pub struct RescueBoot {
    /// The rescue system's root password, if the API gave one (it does when no SSH key is
    /// set; cairn always sets one and logs in with the operator's key).
    pub root_password: Option<Sensitive>,
}

#[derive(Deserialize)]
struct ServerEnvelope {
    server: Server,
}

#[derive(Deserialize)]
struct ActionEnvelope {
    action: Action,
}

#[derive(Deserialize)]
struct SshKeyEnvelope {
    ssh_key: SshKey,
}

#[derive(Deserialize)]
struct CreatedServer {
    server: Server,
    action: Action,
    #[serde(default)]
    next_actions: Vec<Action>,
}

#[derive(Deserialize)]
struct RescueEnabled {
    action: Action,
    #[serde(default)]
    root_password: Option<String>,
}

#[derive(Deserialize, Default)]
struct Meta {
    #[serde(default)]
    pagination: Option<Pagination>,
}

#[derive(Deserialize)]
struct Pagination {
    #[serde(default)]
    next_page: Option<u64>,
}

#[derive(Deserialize)]
struct ServersPage {
    servers: Vec<Server>,
    #[serde(default)]
    meta: Meta,
}

#[derive(Deserialize)]
struct SshKeysPage {
    ssh_keys: Vec<SshKey>,
    #[serde(default)]
    meta: Meta,
}

trait Page: serde::de::DeserializeOwned {
    type Item;
    fn into_parts(self) -> (Vec<Self::Item>, Option<u64>);
}

impl Page for ServersPage {
    type Item = Server;
    fn into_parts(self) -> (Vec<Server>, Option<u64>) {
        (self.servers, self.meta.pagination.and_then(|p| p.next_page))
    }
}

impl Page for SshKeysPage {
    type Item = SshKey;
    fn into_parts(self) -> (Vec<SshKey>, Option<u64>) {
        (self.ssh_keys, self.meta.pagination.and_then(|p| p.next_page))
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

    /// What state recorded of the host's server at this provider: its id, and the name an
    /// imported server keeps (state records it).
    fn recorded<'s>(&self, state: Option<&'s HostState>) -> (Option<&'s str>, Option<&'s str>) {
        let id = state
            .filter(|s| s.provider.as_deref().is_none_or(|p| p == self.name))
            .and_then(|s| s.provider_id.as_deref());
        let name = state.and_then(|s| s.provider_data.get("server_name")).and_then(|v| v.as_str());
        (id, name)
    }

    /// The server with this id, or `None` if there is none.
    pub async fn server(&self, host: &str, id: u64) -> Result<Option<Server>, ProviderError> {
        match self.client.get::<ServerEnvelope>(&format!("/servers/{id}"), &[]).await {
            Ok(s) => Ok(Some(s.server)),
            Err(e) if e.code() == Some("not_found") => Ok(None),
            Err(e) => Err(self.api_error(host, &format!("could not read server {id}"))(e)),
        }
    }

    /// Every server matching `query` (`name`, `label_selector`...), page by page.
    pub async fn servers(
        &self,
        host: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<Server>, ProviderError> {
        self.list_all::<ServersPage>("/servers", query)
            .await
            .map_err(self.api_error(host, "could not list servers"))
    }

    async fn list_all<P: Page>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<P::Item>, HttpError> {
        let mut out = Vec::new();
        let mut page = 1u64;
        // A bound, in case an API keeps pointing at a next page.
        for _ in 0..10_000 {
            let mut q = query.to_vec();
            q.push(("page", page.to_string()));
            q.push(("per_page", self.options.per_page.to_string()));
            let (items, next) = self.client.get::<P>(path, &q).await?.into_parts();
            out.extend(items);
            match next {
                Some(n) if n > page => page = n,
                _ => break,
            }
        }
        Ok(out)
    }

    /// The server cairn made for `host`: labelled `cairn-host=<host>,managed-by=cairn`. A
    /// server that only has the host's name is reported ([`ProviderError::Unclaimed`]), never
    /// taken (see [`ownership`]). Labels are checked here too, not only by the API's
    /// `label_selector`.
    pub async fn find_for_host(&self, host: &Host) -> Result<Option<Server>, ProviderError> {
        let name = host.name.as_str();
        let selector = format!("{LABEL_HOST}={name},{LABEL_MANAGED_BY}={MANAGED_BY}");
        let mut candidates = self.servers(name, &[("label_selector", selector)]).await?;
        candidates.extend(self.servers(name, &[("name", name.to_owned())]).await?);
        self.pick_for_host(name, candidates)
    }

    /// The host's server among `servers` (any list: it keeps those labelled for the host or
    /// named like it, each once), by cairn's labels; same-named ones are reported.
    fn pick_for_host(
        &self,
        name: &str,
        servers: impl IntoIterator<Item = Server>,
    ) -> Result<Option<Server>, ProviderError> {
        let mut candidates: Vec<Server> = Vec::new();
        for s in servers {
            if (is_labelled_for(&s, name) || s.name == name)
                && !candidates.iter().any(|c| c.id == s.id)
            {
                candidates.push(s);
            }
        }
        match ownership::pick(name, candidates, |s| &s.labels) {
            Pick::Ours(server) => Ok(Some(server)),
            Pick::Nothing => Ok(None),
            Pick::Unclaimed(servers) => Err(ownership::unclaimed(
                name,
                &format!("hcloud.{}", self.name),
                "server",
                "label",
                servers.iter().map(|s| s.id.to_string()).collect(),
            )),
            Pick::Several(many) => Err(ProviderError::Invalid {
                host: name.to_owned(),
                message: format!(
                    "{} servers carry the label {LABEL_HOST}={name} (ids {})",
                    many.len(),
                    many.iter().map(|s| s.id.to_string()).collect::<Vec<_>>().join(", ")
                ),
                help: format!(
                    "delete the servers that are not this host's in the Cloud Console, or remove \
                     their {LABEL_HOST} label"
                ),
            }),
        }
    }

    /// Polls `action` until it succeeds, fails or the deadline passes: first after
    /// [`FIRST_POLL`], then twice as long each time, up to `poll_interval`, so short actions
    /// end in a fraction of a second and long ones cost one request per `poll_interval`.
    pub async fn wait_action(
        &self,
        host: &str,
        mut action: Action,
    ) -> Result<Action, ProviderError> {
        let started = Instant::now();
        let mut delay = FIRST_POLL.min(self.options.poll_interval);
        loop {
            match action.status.as_str() {
                "success" => return Ok(action),
                "error" => {
                    let (code, message) = action
                        .error
                        .map(|e| (e.code, e.message))
                        .unwrap_or_else(|| ("unknown".into(), "no reason given".into()));
                    return Err(ProviderError::Invalid {
                        host: host.to_owned(),
                        message: format!(
                            "Hetzner Cloud action `{}` (id {}) failed: {message} ({code})",
                            action.command, action.id
                        ),
                        help: "look at the server in the Cloud Console, fix the cause and run the \
                               command again"
                            .into(),
                    });
                }
                _ => {}
            }
            if started.elapsed() >= self.options.action_timeout {
                return Err(ProviderError::Timeout {
                    host: host.to_owned(),
                    what: format!(
                        "finish the Hetzner Cloud action `{}` (id {})",
                        action.command, action.id
                    ),
                    seconds: self.options.action_timeout.as_secs(),
                    help:
                        "the action may still finish: check the server in the Cloud Console, then \
                           run the command again"
                            .into(),
                });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(self.options.poll_interval);
            let id = action.id;
            action = self
                .client
                .get::<ActionEnvelope>(&format!("/actions/{id}"), &[])
                .await
                .map_err(self.api_error(host, &format!("could not follow action {id}")))?
                .action;
        }
    }

    /// The project's SSH key for `public_key` (an OpenSSH line): found by fingerprint, else
    /// uploaded as `ssh_key_name` or `cairn-<fingerprint prefix>`.
    pub async fn ensure_ssh_key(
        &self,
        host: &str,
        public_key: &str,
    ) -> Result<SshKey, ProviderError> {
        let (fingerprint, line) =
            ssh_key_fingerprint(public_key).ok_or_else(|| ProviderError::Invalid {
                host: host.to_owned(),
                message: "the operator's SSH public key is not an OpenSSH public key line".into(),
                help: "use a line like `ssh-ed25519 AAAA... you@example`".into(),
            })?;
        let mut cache = self.ssh_keys.lock().await;
        if let Some(key) = cache.get(&fingerprint) {
            return Ok(key.clone());
        }
        let find = || async {
            let keys = self
                .list_all::<SshKeysPage>("/ssh_keys", &[("fingerprint", fingerprint.clone())])
                .await
                .map_err(self.api_error(host, "could not list SSH keys"))?;
            Ok::<_, ProviderError>(keys.into_iter().find(|k| k.fingerprint == fingerprint))
        };
        if let Some(key) = find().await? {
            tracing::debug!(host, key = %key.name, id = key.id, "reusing the project's SSH key");
            cache.insert(fingerprint, key.clone());
            return Ok(key);
        }
        let name = self.ssh_key_name.clone().unwrap_or_else(|| {
            format!("cairn-{}", fingerprint.replace(':', "").get(..12).unwrap_or("key"))
        });
        let body = json!({
            "name": name,
            "public_key": line,
            "labels": { LABEL_MANAGED_BY: MANAGED_BY },
        });
        let key = match self.client.post::<SshKeyEnvelope>("/ssh_keys", &body).await {
            Ok(k) => k.ssh_key,
            Err(e) if e.code() == Some("uniqueness_error") => match find().await? {
                // Someone uploaded it meanwhile.
                Some(key) => key,
                None => {
                    return Err(ProviderError::Api {
                        host: host.to_owned(),
                        what: format!(
                            "could not upload the SSH key as `{name}` (hcloud provider `{}`)",
                            self.name
                        ),
                        help: "another SSH key already has this name: set `ssh_key_name` in the \
                               provider block to a free name"
                            .into(),
                        source: Box::new(e),
                    })
                }
            },
            Err(e) => {
                return Err(
                    self.api_error(host, &format!("could not upload the SSH key `{name}`"))(e),
                )
            }
        };
        tracing::info!(host, key = %key.name, id = key.id, "uploaded the operator's SSH key");
        cache.insert(fingerprint, key.clone());
        Ok(key)
    }

    /// Orders a server for `host`, waits for it to be created and started. `user_data`
    /// (cloud-init, at most 32 KiB) is passed through.
    pub async fn create_server(
        &self,
        host: &Host,
        operator_ssh_key: &str,
        user_data: Option<&str>,
    ) -> Result<Machine, ProviderError> {
        let name = host.name.as_str();
        let missing = |what: &str, example: &str| ProviderError::Invalid {
            host: name.to_owned(),
            message: format!("no {what}: a Hetzner Cloud server needs one"),
            help: format!("set `{example}` on the host or in `defaults`"),
        };
        let server_type = host.size.as_deref().ok_or_else(|| missing("size", "size = \"cx22\""))?;
        let image =
            host.image.as_deref().ok_or_else(|| missing("image", "image = \"debian-12\""))?;
        if let Some(ud) = user_data {
            if ud.len() > MAX_USER_DATA {
                return Err(ProviderError::Invalid {
                    host: name.to_owned(),
                    message: format!(
                        "user data is {} bytes; Hetzner accepts at most {MAX_USER_DATA}",
                        ud.len()
                    ),
                    help: "shorten the cloud-init configuration".into(),
                });
            }
        }
        let key = self.ensure_ssh_key(name, operator_ssh_key).await?;
        let location = host.location.as_deref().or(self.location.as_deref());
        let mut body = json!({
            "name": name,
            "server_type": server_type,
            "image": image,
            "ssh_keys": [key.id],
            "labels": ownership::marks(name).into_iter().collect::<BTreeMap<_, _>>(),
            "start_after_create": true,
        });
        if let Some(location) = location {
            body["location"] = json!(location);
        }
        if let Some(ud) = user_data {
            body["user_data"] = json!(ud);
        }
        tracing::info!(
            host = name,
            server_type,
            image,
            location,
            "creating a Hetzner Cloud server"
        );
        let created = match self.client.post::<CreatedServer>("/servers", &body).await {
            Ok(c) => c,
            Err(e) if e.code() == Some("uniqueness_error") => {
                // A request repeated after a timeout or 5xx may have created it already.
                match self.find_for_host(host).await? {
                    Some(server) if is_labelled_for(&server, name) => {
                        tracing::info!(
                            host = name,
                            server_id = server.id,
                            "the server exists already; using it"
                        );
                        return Ok(self.machine(host, &server));
                    }
                    _ => return Err(self.api_error(name, "could not create the server")(e)),
                }
            }
            Err(e) => return Err(self.api_error(name, "could not create the server")(e)),
        };
        let id = created.server.id;
        tracing::debug!(host = name, server_id = id, "server ordered; waiting for its actions");
        self.wait_action(name, created.action).await?;
        for next in created.next_actions {
            self.wait_action(name, next).await?;
        }
        let server = self.server(name, id).await?.ok_or_else(|| ProviderError::Invalid {
            host: name.to_owned(),
            message: format!("server {id} vanished right after it was created"),
            help: "someone deleted it meanwhile; run the command again".into(),
        })?;
        Ok(self.machine(host, &server))
    }

    async fn server_action(
        &self,
        host: &str,
        machine: &Machine,
        action: &str,
        body: serde_json::Value,
    ) -> Result<Action, ProviderError> {
        let id = server_id(host, machine)?;
        let started: ActionEnvelope = self
            .client
            .post(&format!("/servers/{id}/actions/{action}"), &body)
            .await
            .map_err(self.api_error(host, &format!("could not {action} server {id}")))?;
        self.wait_action(host, started.action).await
    }

    /// Boots the server into Hetzner's rescue system (`linux64`, in RAM, root login with the
    /// operator's key): enables rescue for the next boot, then resets the server (or powers it
    /// on if it is off). The rescue system has its own SSH host key, so the caller pins it as
    /// a new phase's key, then runs the kexec phase there as on a stock image. Rescue mode is
    /// one-shot: the next reboot starts from the disk again.
    pub async fn boot_rescue(
        &self,
        host: &Host,
        machine: &Machine,
        operator_ssh_key: &str,
    ) -> Result<RescueBoot, ProviderError> {
        let name = host.name.as_str();
        let key = self.ensure_ssh_key(name, operator_ssh_key).await?;
        let id = server_id(name, machine)?;
        let enabled: RescueEnabled = self
            .client
            .post(
                &format!("/servers/{id}/actions/enable_rescue"),
                &json!({ "type": "linux64", "ssh_keys": [key.id] }),
            )
            .await
            .map_err(
                self.api_error(name, &format!("could not enable rescue mode on server {id}")),
            )?;
        self.wait_action(name, enabled.action).await?;
        let off = self.server(name, id).await?.is_some_and(|s| s.status == "off");
        let action = if off { PowerAction::On } else { PowerAction::Reset };
        self.power(host, machine, action).await?;
        Ok(RescueBoot { root_password: enabled.root_password.map(Sensitive) })
    }

    /// Turns rescue mode off again before the next boot (it also ends by itself after one
    /// boot or an hour unused).
    pub async fn disable_rescue(
        &self,
        host: &Host,
        machine: &Machine,
    ) -> Result<(), ProviderError> {
        self.server_action(host.name.as_str(), machine, "disable_rescue", json!({})).await.map(drop)
    }

    fn machine(&self, host: &Host, s: &Server) -> Machine {
        let status = match s.status.as_str() {
            "running" => MachineStatus::Running,
            "off" | "stopping" | "deleting" => MachineStatus::Stopped,
            _ => MachineStatus::Starting,
        };
        let ipv4 = s.public_net.ipv4.as_ref().map(|b| b.ip.clone());
        let ipv6 = s.public_net.ipv6.as_ref().and_then(|b| first_address(&b.ip));
        let location = s.datacenter.as_ref().and_then(|d| d.location.name.clone());
        let mut attributes = BTreeMap::new();
        let mut provider_data = BTreeMap::new();
        if let Some(t) = &s.server_type.name {
            attributes.insert("size".to_owned(), t.clone());
            attributes.insert("server_type".to_owned(), t.clone());
        }
        if let Some(image) = s.image.as_ref().and_then(|i| i.name.clone()) {
            attributes.insert("image".to_owned(), image);
        }
        if let Some(location) = location {
            attributes.insert("location".to_owned(), location);
        }
        attributes.insert("status".to_owned(), s.status.clone());
        provider_data.insert("server_id".to_owned(), json!(s.id));
        provider_data.insert("server_name".to_owned(), json!(s.name));
        if let Some(dc) = &s.datacenter {
            provider_data.insert("datacenter".to_owned(), json!(dc.name));
        }
        if let Some(ip) = &ipv4 {
            provider_data.insert("ipv4".to_owned(), json!(ip));
        }
        if let Some(ip) = &ipv6 {
            provider_data.insert("ipv6".to_owned(), json!(ip));
        }
        if s.rescue_enabled {
            provider_data.insert("rescue_enabled".to_owned(), json!(true));
        }
        Machine {
            id: s.id.to_string(),
            status,
            ssh_address: ipv4.or(ipv6).unwrap_or_default(),
            ssh_port: host.ssh.port,
            attributes,
            provider_data,
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

/// The server id state recorded, if it is one.
fn recorded_id(host: &str, recorded: Option<&str>) -> Option<u64> {
    let recorded = recorded?;
    let id = recorded.parse::<u64>().ok();
    if id.is_none() {
        tracing::warn!(host, id = recorded, "state holds no hcloud server id; searching by labels");
    }
    id
}

/// The recorded server `found` under `id`, if it is still this host's: ids may be reused
/// after a delete, so it must carry the host's name or labels (or the name state recorded
/// for an imported server) and no label giving it to another host.
fn still_recorded(
    host: &str,
    id: u64,
    recorded_name: Option<&str>,
    found: Option<Server>,
) -> Option<Server> {
    match found {
        Some(s)
            if !matches!(ownership::claim(&s.labels, host), Claim::OtherHost(_))
                && (s.name == host
                    || is_labelled_for(&s, host)
                    || recorded_name == Some(s.name.as_str())) =>
        {
            Some(s)
        }
        Some(s) => {
            tracing::warn!(
                host, server_id = id, server_name = %s.name,
                "the server recorded in state now belongs to something else; searching by labels"
            );
            None
        }
        None => {
            tracing::debug!(host, server_id = id, "the recorded server is gone");
            None
        }
    }
}

fn is_labelled_for(s: &Server, host: &str) -> bool {
    ownership::claim(&s.labels, host) == Claim::ThisHost
}

fn server_id(host: &str, machine: &Machine) -> Result<u64, ProviderError> {
    machine.id.parse().map_err(|_| ProviderError::Invalid {
        host: host.to_owned(),
        message: format!("`{}` is not a Hetzner Cloud server id", machine.id),
        help: "the state names a machine from another provider: check the host's `provider`".into(),
    })
}

/// The server's own address in its IPv6 network: Hetzner routes a /64 to each server and
/// gives the server `<network>::1`.
fn first_address(block: &str) -> Option<String> {
    let (net, _) = block.split_once('/').unwrap_or((block, ""));
    let net: Ipv6Addr = net.parse().ok()?;
    if block.contains('/') {
        Some(Ipv6Addr::from(u128::from(net) | 1).to_string())
    } else {
        Some(net.to_string())
    }
}

/// Hetzner's fingerprint of an OpenSSH public key line (MD5 of the key blob, `aa:bb:...`),
/// and the line reduced to `type base64 [comment]`.
pub fn ssh_key_fingerprint(line: &str) -> Option<(String, String)> {
    let line = line.trim();
    let mut parts = line.split_whitespace();
    let kind = parts.next()?;
    let blob = parts.next()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(blob).ok()?;
    // The blob starts with the key type again: a cheap check that this is a key.
    let name_len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    if bytes.get(4..4 + name_len)? != kind.as_bytes() {
        return None;
    }
    let digest = Md5::digest(&bytes);
    let fingerprint = digest.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
    Some((fingerprint, line.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_matches_ssh_keygen_md5() {
        // `ssh-keygen -l -E md5 -f k.pub` printed MD5:91:8f:4a:b7:8f:16:94:9d:cd:2f:9d:aa:80:42:13:98
        let line =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEuQlFqSmGUbUsPOcL0cy1ofDlmzwOJL9LvFB+ADvTcV me@x";
        let (fp, normalized) = ssh_key_fingerprint(line).unwrap();
        assert_eq!(fp, "91:8f:4a:b7:8f:16:94:9d:cd:2f:9d:aa:80:42:13:98");
        assert_eq!(normalized, line);
        assert!(ssh_key_fingerprint(
            "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIEuQlFqSmGUbUsPOcL0cy1ofDlmzwOJL9LvFB+ADvTcV"
        )
        .is_none());
        assert!(ssh_key_fingerprint("not a key").is_none());
        assert!(ssh_key_fingerprint("").is_none());
    }

    #[test]
    fn ipv6_address_is_the_first_in_the_network() {
        assert_eq!(first_address("2a01:4f8:c0c:1::/64").as_deref(), Some("2a01:4f8:c0c:1::1"));
        assert_eq!(
            first_address("2001:bc8:1200:19:c10d:1::/96").as_deref(),
            Some("2001:bc8:1200:19:c10d:1:0:1")
        );
        assert_eq!(first_address("2001:db8::7").as_deref(), Some("2001:db8::7"));
        assert_eq!(first_address("nonsense/64"), None);
    }
}
