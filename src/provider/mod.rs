//! Providers: where machines come from. The bootstrap pipeline and `plan`/`apply` talk to
//! every provider through the [`Provider`] trait.
//!
//! - `qemu`: local VMs under QEMU (the built-in default for trying cairn and for tests);
//! - `hcloud`: Hetzner Cloud servers, over the shared [`http`] client;
//! - `aws`: EC2 instances, over the same client (SigV4, the EC2 Query API);
//! - `existing`: a machine you already have, named by address (to come).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::inventory::{Host, ProviderKind};
use crate::state::HostState;

pub mod aws;
pub mod cloud_init;
pub mod existing;
pub mod hcloud;
pub mod http;
pub mod ownership;
pub mod qemu;

/// The provider implementation for a provider block.
pub fn for_block(
    inv: &crate::inventory::Inventory,
    block: &crate::inventory::Provider,
) -> Result<std::sync::Arc<dyn Provider>, ProviderError> {
    match block.kind {
        ProviderKind::Qemu => Ok(std::sync::Arc::new(qemu::QemuProvider::new(inv, block)?)),
        ProviderKind::Existing => Ok(std::sync::Arc::new(existing::ExistingProvider)),
        ProviderKind::Hcloud => Ok(std::sync::Arc::new(hcloud::HcloudProvider::new(block)?)),
        ProviderKind::Aws => Ok(std::sync::Arc::new(aws::AwsProvider::new(block)?)),
    }
}

/// The provider implementations for these provider blocks, one instance each (a name
/// given twice gets one; a name with no block in the inventory is left out).
pub fn for_blocks(
    inv: &crate::inventory::Inventory,
    names: impl IntoIterator<Item = crate::inventory::ProviderName>,
) -> Result<
    std::collections::BTreeMap<crate::inventory::ProviderName, std::sync::Arc<dyn Provider>>,
    ProviderError,
> {
    let mut out = std::collections::BTreeMap::new();
    for name in names {
        if out.contains_key(&name) {
            continue;
        }
        if let Some(block) = inv.providers.get(&name) {
            out.insert(name, for_block(inv, block)?);
        }
    }
    Ok(out)
}

/// What a provider knows about one machine.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Machine {
    /// The provider's id for it (server id, instance id, qemu: the VM directory).
    pub id: String,
    pub status: MachineStatus,
    /// Where SSH answers: address and port.
    pub ssh_address: String,
    pub ssh_port: u16,
    /// Every public address the provider reports (empty where it reports none: qemu, existing).
    pub network: crate::state::PublicNetwork,
    /// What the provider reports about the machine. `plan` compares `size`, `image` and
    /// `location` with the inventory; the rest (`status`, `server_type`, `memory`...) is shown.
    pub attributes: BTreeMap<String, String>,
    /// Provider-specific facts to keep in state (qemu: pid, files).
    pub provider_data: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MachineStatus {
    Running,
    Stopped,
    Starting,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    On,
    /// Hard power off (no guest shutdown).
    Off,
    /// Hard reset, like pressing the reset button.
    Reset,
}

/// What `create` needs beyond the host's inventory entry.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    /// The operator's SSH public key (OpenSSH line), handed to the stock image the way the
    /// provider does it (cloud-init/NoCloud seed, hcloud ssh_keys, EC2 key pair).
    pub operator_ssh_key: String,
    /// The stock image's host key cairn made, injected through user data by the providers
    /// that take it; its public half is pinned before the first connection.
    pub stock_host_key: Option<cloud_init::StockHostKey>,
    /// cairn logs in to the stock image as root (`ssh.user`, root by default): the user
    /// data then turns off cloud-init's `disable_root`, which Debian, Ubuntu and Amazon
    /// Linux images set and which answers every root login with "Please login as the user
    /// ..." and exit 142.
    pub root_login: bool,
}

impl CreateRequest {
    /// The request for `host`'s next machine: where the provider takes user data, with a
    /// fresh stock host key, kept privately in `stock_key_dir`.
    pub fn for_host(
        kind: ProviderKind,
        host: &Host,
        operator_ssh_key: String,
        stock_key_dir: &std::path::Path,
    ) -> Result<Self, ProviderError> {
        let takes_user_data =
            matches!(kind, ProviderKind::Hcloud | ProviderKind::Aws | ProviderKind::Qemu);
        let stock_host_key = if takes_user_data {
            let key = cloud_init::StockHostKey::generate_in(stock_key_dir, host.name.as_str())
                .map_err(|source| ProviderError::Command {
                    host: host.name.to_string(),
                    what: "keeping the stock image's host key".into(),
                    help: format!("check that {} is writable", stock_key_dir.display()),
                    source,
                })?;
            Some(key)
        } else {
            None
        };
        Ok(Self { operator_ssh_key, stock_host_key, root_login: host.ssh.user == "root" })
    }

    /// The user data for a cloud image: root logins allowed when cairn logs in as root, and
    /// the stock host key, if any.
    pub fn user_data(&self) -> Option<String> {
        if !self.root_login && self.stock_host_key.is_none() {
            return None;
        }
        let mut out = String::from("#cloud-config\n");
        if self.root_login {
            out.push_str("disable_root: false\n");
        }
        if let Some(key) = &self.stock_host_key {
            out.push_str(&key.cloud_config_lines());
        }
        Some(out)
    }
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum ProviderError {
    #[error("{host}: {what} failed")]
    #[diagnostic(help("{help}"))]
    Command {
        host: String,
        what: String,
        help: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{host}: `{program}` exited with {status}: {stderr_tail}")]
    #[diagnostic(help("{help}"))]
    CommandFailed {
        host: String,
        program: String,
        status: String,
        stderr_tail: String,
        help: String,
    },
    #[error("{host}: {message}")]
    #[diagnostic(help("{help}"))]
    Invalid { host: String, message: String, help: String },
    /// A cloud API refused a request or did not answer.
    #[error("{host}: {what}")]
    #[diagnostic(help("{help}"))]
    Api {
        host: String,
        /// What cairn was doing (`could not create the server (hcloud provider main)`).
        what: String,
        help: String,
        #[source]
        source: Box<http::HttpError>,
    },
    #[error("{host}: the machine did not {what} within {seconds} s")]
    #[diagnostic(help("{help}"))]
    Timeout { host: String, what: String, seconds: u64, help: String },
    /// Machines named like the host that cairn did not create: left alone until a user
    /// adopts one with `cairn import`.
    #[error("{host}: {provider} has {found}; cairn leaves it alone")]
    #[diagnostic(help(
        "if it is {host}'s machine, adopt it with `{import}`, then run the command again; if \
         not, rename or delete it at the provider, or give the host another name"
    ))]
    Unclaimed {
        host: String,
        /// `hcloud.cloud`
        provider: String,
        /// `server 42 named web1 that cairn did not create (no label cairn-host=web1)`
        found: String,
        /// `cairn import web1 42`
        import: String,
    },
    /// A pinned download (the qemu provider's base image) failed or did not match its sum.
    #[error("{host}: the base image could not be downloaded")]
    Download {
        host: String,
        #[source]
        #[diagnostic_source]
        source: crate::download::DownloadError,
    },
}

/// A source of machines. Implementations must be idempotent: `lookup` finds a machine by the
/// id in state or else by the marks cairn set when it created it ([`ownership`]), so a crash
/// between create and record never leads to a second machine. A machine that merely has the
/// host's name is never returned: it is reported as [`ProviderError::Unclaimed`].
#[async_trait::async_trait]
pub trait Provider: Send + Sync {
    fn kind(&self) -> ProviderKind;

    /// Where to look when the host's machine does not answer (boot messages, firmware).
    fn console_hint(&self, _host: &Host) -> String {
        "look at the machine's console in the provider's web interface".into()
    }

    /// The machine for `host`, if it exists.
    async fn lookup(
        &self,
        host: &Host,
        state: Option<&HostState>,
    ) -> Result<Option<Machine>, ProviderError>;

    /// Every listed host's machine (as [`Provider::lookup`] would find it), asking the
    /// provider as few times as its API allows: one paged list of its machines instead of a
    /// request or two per host. `Ok(None)` where the provider can only look up host by host
    /// (the caller then calls `lookup` for each); an `Err` when the list itself failed.
    async fn lookup_many(
        &self,
        _hosts: &[(Host, Option<HostState>)],
    ) -> Result<Option<Vec<Result<Option<Machine>, ProviderError>>>, ProviderError> {
        Ok(None)
    }

    /// The machine with the provider's id `id`, for `cairn import`: found by that id alone,
    /// whatever it is named. `None` if the provider has no such machine. Providers whose
    /// `lookup` checks the recorded id first get this for free; override it where `lookup`
    /// also insists on the host's name or labels (hcloud).
    async fn lookup_id(&self, host: &Host, id: &str) -> Result<Option<Machine>, ProviderError> {
        let recorded = HostState { provider_id: Some(id.to_owned()), ..HostState::default() };
        Ok(self.lookup(host, Some(&recorded)).await?.filter(|m| m.id == id))
    }

    /// Orders a new machine booting the host's stock image, reachable with the operator's key.
    async fn create(&self, host: &Host, req: &CreateRequest) -> Result<Machine, ProviderError>;

    /// Removes the machine and everything the provider made for it.
    async fn destroy(&self, host: &Host, machine: &Machine) -> Result<(), ProviderError>;

    async fn power(
        &self,
        host: &Host,
        machine: &Machine,
        action: PowerAction,
    ) -> Result<(), ProviderError>;
}
