//! The Hetzner Cloud API's answers as cairn reads them, and its paged lists.

use super::*;

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
pub(super) struct ServerEnvelope {
    pub(super) server: Server,
}

#[derive(Deserialize)]
pub(super) struct ActionEnvelope {
    pub(super) action: Action,
}

#[derive(Deserialize)]
pub(super) struct SshKeyEnvelope {
    pub(super) ssh_key: SshKey,
}

#[derive(Deserialize)]
pub(super) struct CreatedServer {
    pub(super) server: Server,
    pub(super) action: Action,
    #[serde(default)]
    pub(super) next_actions: Vec<Action>,
}

#[derive(Deserialize)]
pub(super) struct RescueEnabled {
    pub(super) action: Action,
    #[serde(default)]
    pub(super) root_password: Option<String>,
}

#[derive(Deserialize, Default)]
pub(super) struct Meta {
    #[serde(default)]
    pub(super) pagination: Option<Pagination>,
}

#[derive(Deserialize)]
pub(super) struct Pagination {
    #[serde(default)]
    pub(super) next_page: Option<u64>,
}

#[derive(Deserialize)]
pub(super) struct ServersPage {
    pub(super) servers: Vec<Server>,
    #[serde(default)]
    pub(super) meta: Meta,
}

#[derive(Deserialize)]
pub(super) struct SshKeysPage {
    pub(super) ssh_keys: Vec<SshKey>,
    #[serde(default)]
    pub(super) meta: Meta,
}

pub(super) trait Page: serde::de::DeserializeOwned {
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

impl HcloudProvider {
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

    pub(super) async fn list_all<P: Page>(
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
}

/// The server's own address in its IPv6 network: Hetzner routes a /64 to each server and
/// gives the server `<network>::1`.
pub(super) fn first_address(block: &str) -> Option<String> {
    crate::state::Ipv6Interface::first_of(block).map(|i| i.address.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

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
