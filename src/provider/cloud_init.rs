//! The stock image's SSH host key, made by cairn and handed to the machine through
//! cloud-init user data (`ssh_keys`), so the first connection is pinned to a key cairn
//! knows: nothing is trusted on first use where a provider takes user data (hcloud, aws,
//! qemu's NoCloud seed).

use std::path::Path;

use zeroize::Zeroizing;

/// An ed25519 host key for a stock image. The private half never reaches a log: `Debug`
/// shows the public line only.
#[derive(Clone)]
pub struct StockHostKey {
    private_openssh: Zeroizing<String>,
    public_line: String,
}

impl std::fmt::Debug for StockHostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StockHostKey")
            .field("public_line", &self.public_line)
            .finish_non_exhaustive()
    }
}

impl StockHostKey {
    /// A fresh key for `host`'s next machine.
    pub fn generate(host: &str) -> Self {
        let keys = crate::keys::HostKeys::generate(host, false);
        Self {
            private_openssh: keys.ssh_private_openssh().clone(),
            public_line: keys.ssh_public_line().to_owned(),
        }
    }

    /// Generates one for `host` and keeps it privately in `dir` (`<host>_ed25519`, 0600,
    /// written atomically; the public half next to it with `.pub`).
    pub fn generate_in(dir: &Path, host: &str) -> std::io::Result<Self> {
        let key = Self::generate(host);
        crate::repo::create_private_dir(dir)?;
        let private = dir.join(format!("{host}_ed25519"));
        crate::util::atomic::write(&private, key.private_openssh.as_bytes(), 0o600)?;
        let public = dir.join(format!("{host}_ed25519.pub"));
        crate::util::atomic::write(&public, format!("{}\n", key.public_line).as_bytes(), 0o644)?;
        Ok(key)
    }

    /// `ssh-ed25519 AAAA... root@web1`
    pub fn public_line(&self) -> &str {
        &self.public_line
    }

    /// The cloud-config lines that install this key as the machine's only host key
    /// (cloud-init's `ssh_keys`, with no other key types generated).
    pub fn cloud_config_lines(&self) -> String {
        let mut out = String::from(
            "ssh_deletekeys: true\nssh_genkeytypes: []\nssh_keys:\n  ed25519_private: |\n",
        );
        for line in self.private_openssh.lines() {
            out.push_str("    ");
            out.push_str(line);
            out.push('\n');
        }
        out.push_str(&format!("  ed25519_public: {}\n", self.public_line));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_data_carries_the_key_and_debug_hides_the_private_half() {
        let key = StockHostKey::generate("web1");
        let req = super::super::CreateRequest {
            operator_ssh_key: String::new(),
            stock_host_key: Some(key.clone()),
            root_login: false,
        };
        let ud = req.user_data().unwrap();
        assert!(ud.starts_with("#cloud-config\nssh_deletekeys: true\n"), "{ud}");
        assert!(ud.contains("  ed25519_private: |\n    -----BEGIN OPENSSH PRIVATE KEY-----\n"));
        assert!(ud.contains("    -----END OPENSSH PRIVATE KEY-----\n"));
        assert!(ud.contains(&format!("  ed25519_public: {}\n", key.public_line())));
        assert!(
            key.public_line().starts_with("ssh-ed25519 ")
                && key.public_line().ends_with(" root@web1")
        );
        let debug = format!("{key:?}");
        assert!(!debug.contains("PRIVATE") && debug.contains(key.public_line()), "{debug}");
    }

    #[test]
    fn root_logins_turn_off_cloud_inits_disable_root() {
        let req = |root_login, key: Option<StockHostKey>| super::super::CreateRequest {
            operator_ssh_key: String::new(),
            stock_host_key: key,
            root_login,
        };
        let ud = req(true, None).user_data().unwrap();
        assert_eq!(ud, "#cloud-config\ndisable_root: false\n");
        let ud = req(true, Some(StockHostKey::generate("web1"))).user_data().unwrap();
        assert!(ud.starts_with("#cloud-config\ndisable_root: false\nssh_deletekeys: true\n"));
        // Logging in as the image's user (`ssh { user = "admin" }`): cloud-init as it is.
        assert_eq!(req(false, None).user_data(), None);
    }

    #[test]
    fn the_key_is_kept_private_on_disk() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let stock = dir.path().join("stock");
        let key = StockHostKey::generate_in(&stock, "web1").unwrap();
        let mode = |p: &Path| fs_err::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&stock), 0o700);
        assert_eq!(mode(&stock.join("web1_ed25519")), 0o600);
        let public = fs_err::read_to_string(stock.join("web1_ed25519.pub")).unwrap();
        assert_eq!(public.trim(), key.public_line());
    }
}
