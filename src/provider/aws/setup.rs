//! What an instance needs before it starts: the operator's key pair and a security group
//! opening SSH, each found or made once and never silently replaced.

use super::*;

impl AwsProvider {
    /// The key pair holding `public_key` (an OpenSSH line): `key_name`, or
    /// `cairn-<fingerprint prefix>`, imported once. The same name holding another key is an
    /// error, never silently replaced.
    pub async fn ensure_key_pair(
        &self,
        host: &str,
        public_key: &str,
    ) -> Result<String, ProviderError> {
        let (fingerprint, line) = crate::provider::hcloud::ssh_key_fingerprint(public_key)
            .ok_or_else(|| ProviderError::Invalid {
                host: host.to_owned(),
                message: "the operator's SSH public key is not an OpenSSH public key line".into(),
                help: "use a line like `ssh-ed25519 AAAA... you@example`".into(),
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
    pub(super) async fn check_key_pair(
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

    pub(super) fn label(&self) -> String {
        format!("provider \"aws\" \"{}\"", self.name)
    }

    /// The VPC new instances land in: the subnet's, else the region's default VPC.
    pub(super) async fn vpc_id(&self, host: &str) -> Result<String, ProviderError> {
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
    pub(super) async fn find_security_group(
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
}

/// The base64 key blob of an OpenSSH public key line (the part compared between keys).
pub(super) fn key_blob(line: &str) -> Option<&str> {
    line.split_whitespace().nth(1)
}
