//! Creating servers, powering them, booting the rescue system, and waiting for the
//! actions the API starts.

use super::*;
use crate::state::{Ipv6Interface, PublicNetwork};

impl HcloudProvider {
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

    pub(super) async fn server_action(
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

    pub(super) fn machine(&self, host: &Host, s: &Server) -> Machine {
        let status = match s.status.as_str() {
            "running" => MachineStatus::Running,
            "off" | "stopping" | "deleting" => MachineStatus::Stopped,
            _ => MachineStatus::Starting,
        };
        let ipv4 = s.public_net.ipv4.as_ref().map(|b| b.ip.clone());
        let ipv6 = s.public_net.ipv6.as_ref().and_then(|b| first_address(&b.ip));
        let v6 = s.public_net.ipv6.as_ref().and_then(|b| Ipv6Interface::first_of(&b.ip));
        let network = PublicNetwork {
            ipv4: ipv4.as_deref().and_then(|ip| ip.parse().ok()),
            // Hetzner Cloud routes the /64 to the server with no DHCPv6: the gateway is the
            // link-local fe80::1 (docs.hetzner.com, "Static IP configuration").
            gateway6: v6.map(|_| std::net::Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1)),
            ipv6: v6,
        };
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
            network,
            attributes,
            provider_data,
        }
    }
}
