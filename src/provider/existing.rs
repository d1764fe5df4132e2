//! `provider "existing" "NAME" {}`: machines you already have, reached at the host's
//! `address`. Nothing is ordered or deleted; cairn only installs onto them.

use std::collections::BTreeMap;

use super::{CreateRequest, Machine, MachineStatus, PowerAction, Provider, ProviderError};
use crate::inventory::{Host, ProviderKind};
use crate::state::HostState;

pub struct ExistingProvider;

impl ExistingProvider {
    fn machine(host: &Host) -> Result<Machine, ProviderError> {
        let address = host.address.as_deref().ok_or_else(|| ProviderError::Invalid {
            host: host.name.to_string(),
            message: "an existing machine needs an address".into(),
            help: "add `address = \"203.0.113.7\"` (or a DNS name) to the host".into(),
        })?;
        let target =
            crate::ssh::Target::from_address(address, host.ssh.port, host.ssh.user.clone())
                .ok_or_else(|| ProviderError::Invalid {
                    host: host.name.to_string(),
                    message: format!("`{address}` is not an address cairn can connect to"),
                    help: "use an IPv4/IPv6 address or a host name, optionally with :PORT".into(),
                })?;
        // Nothing to ask: cairn only knows the address it was given.
        let attributes =
            BTreeMap::from([("address".to_owned(), format!("{}:{}", target.host, target.port))]);
        Ok(Machine {
            id: format!("existing:{}", target.host),
            status: MachineStatus::Running,
            ssh_address: target.host,
            ssh_port: target.port,
            network: Default::default(),
            attributes,
            provider_data: BTreeMap::new(),
        })
    }
}

#[async_trait::async_trait]
impl Provider for ExistingProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Existing
    }

    fn console_hint(&self, _host: &Host) -> String {
        "look at the machine's console".into()
    }

    async fn lookup(
        &self,
        host: &Host,
        _state: Option<&HostState>,
    ) -> Result<Option<Machine>, ProviderError> {
        Self::machine(host).map(Some)
    }

    async fn create(&self, host: &Host, _req: &CreateRequest) -> Result<Machine, ProviderError> {
        Self::machine(host)
    }

    async fn destroy(&self, host: &Host, _machine: &Machine) -> Result<(), ProviderError> {
        tracing::info!(host = %host.name, "an existing machine is not deleted; cairn forgets it");
        Ok(())
    }

    async fn power(
        &self,
        host: &Host,
        _machine: &Machine,
        action: PowerAction,
    ) -> Result<(), ProviderError> {
        match action {
            PowerAction::On => Ok(()),
            _ => Err(ProviderError::Invalid {
                host: host.name.to_string(),
                message: "cairn has no power control over an existing machine".into(),
                help: "power it off or reset it where it runs".into(),
            }),
        }
    }
}
