//! Starting, waiting for, stopping and describing instances.

use super::*;

impl AwsProvider {
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

    pub(super) fn machine(&self, host: &Host, i: &Instance) -> Machine {
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
        // AWS hands IPv6 out by DHCPv6 and router advertisements: no static gateway.
        let network = crate::state::PublicNetwork {
            ipv4: i.public_ip.as_deref().and_then(|ip| ip.parse().ok()),
            ipv6: i.ipv6.as_deref().and_then(crate::state::Ipv6Interface::first_of),
            gateway6: None,
        };
        Machine {
            id: i.id.clone(),
            status,
            ssh_address: address.unwrap_or_default(),
            ssh_port: host.ssh.port,
            network,
            attributes,
            provider_data,
        }
    }

    /// Starts, stops or reboots an instance; waits for `running` or `stopped`.
    pub(super) async fn instance_action(
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

/// A fresh idempotency token for one RunInstances request (at most 64 ASCII characters).
pub(super) fn client_token() -> String {
    format!("cairn-{:032x}", rand::thread_rng().gen::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_tokens_are_fresh_and_fit_the_limit() {
        let (a, b) = (client_token(), client_token());
        assert_ne!(a, b);
        assert!(a.len() <= 64 && a.is_ascii(), "{a}");
    }
}
