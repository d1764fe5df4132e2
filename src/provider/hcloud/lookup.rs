//! Finding a host's server: by the id state recorded, else by cairn's labels; same-named
//! servers without them are reported, never taken.

use super::*;

impl HcloudProvider {
    /// What state recorded of the host's server at this provider: its id, and the name an
    /// imported server keeps (state records it).
    pub(super) fn recorded<'s>(
        &self,
        state: Option<&'s HostState>,
    ) -> (Option<&'s str>, Option<&'s str>) {
        let id = state
            .filter(|s| s.provider.as_deref().is_none_or(|p| p == self.name))
            .and_then(|s| s.provider_id.as_deref());
        let name = state.and_then(|s| s.provider_data.get("server_name")).and_then(|v| v.as_str());
        (id, name)
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
    pub(super) fn pick_for_host(
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
}

/// The server id state recorded, if it is one.
pub(super) fn recorded_id(host: &str, recorded: Option<&str>) -> Option<u64> {
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
pub(super) fn still_recorded(
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

pub(super) fn is_labelled_for(s: &Server, host: &str) -> bool {
    ownership::claim(&s.labels, host) == Claim::ThisHost
}

pub(super) fn server_id(host: &str, machine: &Machine) -> Result<u64, ProviderError> {
    machine.id.parse().map_err(|_| ProviderError::Invalid {
        host: host.to_owned(),
        message: format!("`{}` is not a Hetzner Cloud server id", machine.id),
        help: "the state names a machine from another provider: check the host's `provider`".into(),
    })
}
