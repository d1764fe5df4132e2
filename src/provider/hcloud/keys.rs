//! The operator's SSH key at the project: uploaded once, reused by its fingerprint.

use super::*;

impl HcloudProvider {
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
}
