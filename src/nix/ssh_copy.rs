//! The `nix-copy` strategy: `nix copy` over SSH into the Nix store under a root directory
//! on the target (`/mnt` on an installer that has Nix). Nix runs the OpenSSH client, which
//! gets cairn's pinned host keys through `NIX_SSHOPTS`: a key the target did not present
//! before is refused, never learnt.

use std::path::{Path, PathBuf};

use super::runner::Nix;
use super::store_path::StorePath;
use super::NixError;

/// A Nix store on a machine reached over SSH, rooted at `root` there.
#[derive(Debug, Clone)]
pub struct SshStore {
    pub user: String,
    pub host: String,
    pub port: u16,
    /// The directory holding `nix/store` on the target (`/mnt`).
    pub root: String,
    /// An OpenSSH known_hosts file pinning the target's host keys
    /// ([`crate::ssh::known_hosts`]).
    pub known_hosts: PathBuf,
    /// The private key to log in with; `None` leaves it to ssh (agent, ~/.ssh).
    pub identity: Option<PathBuf>,
}

impl SshStore {
    /// `ssh://root@host?remote-store=local%3Froot%3D%2Fmnt`: the legacy SSH store (the target
    /// runs `nix-store --serve --write`) writing to the store under `root`. Nix 2.8 and later.
    pub fn url(&self) -> String {
        format!(
            "ssh://{}@{}?remote-store={}",
            self.user,
            self.host,
            percent_encode(&format!("local?root={}", self.root))
        )
    }

    /// `NIX_SSHOPTS`: the port, the key, and only the pinned known_hosts.
    pub fn ssh_opts(&self) -> Result<String, NixError> {
        let mut opts = vec!["-p".to_owned(), self.port.to_string()];
        if let Some(identity) = &self.identity {
            opts.extend([
                "-i".to_owned(),
                word(identity)?,
                "-o".into(),
                "IdentitiesOnly=yes".into(),
            ]);
        }
        word(&self.known_hosts)?;
        opts.extend(crate::ssh::openssh_options(&self.known_hosts));
        opts.extend(["-o".to_owned(), "BatchMode=yes".to_owned()]);
        // No hang on a dead link: connecting gives up after 15 s, and a connection whose
        // peer stops answering keepalives (4 missed, 15 s apart) is closed, failing `nix copy`.
        for opt in ["ConnectTimeout=15", "ServerAliveInterval=15", "ServerAliveCountMax=4"] {
            opts.extend(["-o".to_owned(), opt.to_owned()]);
        }
        Ok(opts.join(" "))
    }
}

/// Nix splits `NIX_SSHOPTS` at whitespace, without quoting: a path must be one word.
fn word(path: &Path) -> Result<String, NixError> {
    let s = path.display().to_string();
    if s.is_empty() || s.chars().any(char::is_whitespace) {
        return Err(NixError::SshOptions { path: s });
    }
    Ok(s)
}

/// Everything but unreserved URL characters as `%XX`.
fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Nix {
    /// The arguments of `nix copy --to URL PATHS...`.
    pub fn copy_args(&self, url: &str, paths: &[StorePath]) -> Vec<String> {
        let mut a = self.base_args();
        a.extend(["copy".to_owned(), "--to".to_owned(), url.to_owned()]);
        a.extend(paths.iter().map(|p| p.to_string()));
        a
    }

    /// Copies `paths` and their closure into `store`; the target registers them itself.
    pub async fn copy_to(&self, store: &SshStore, paths: &[StorePath]) -> Result<(), NixError> {
        let url = store.url();
        let args = self.copy_args(&url, paths);
        let command = self.display(&["copy", "--to", &url, "…"]);
        let env = [("NIX_SSHOPTS".to_owned(), store.ssh_opts()?)];
        tracing::info!(to = %url, paths = paths.len(), "nix copy");
        self.run_with_env(&args, &env, &command).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> SshStore {
        SshStore {
            user: "root".into(),
            host: "10.0.0.5".into(),
            port: 2222,
            root: "/mnt".into(),
            known_hosts: "/tmp/cairn-x/known_hosts".into(),
            identity: Some("/repo/.cairn/ssh/operator_ed25519".into()),
        }
    }

    #[test]
    fn the_store_url_names_the_root_on_the_target() {
        assert_eq!(store().url(), "ssh://root@10.0.0.5?remote-store=local%3Froot%3D%2Fmnt");
    }

    #[test]
    fn ssh_options_pin_the_known_hosts_and_nothing_else() {
        assert_eq!(
            store().ssh_opts().unwrap(),
            "-p 2222 -i /repo/.cairn/ssh/operator_ed25519 -o IdentitiesOnly=yes \
             -o StrictHostKeyChecking=yes -o UserKnownHostsFile=/tmp/cairn-x/known_hosts \
             -o GlobalKnownHostsFile=/dev/null -o UpdateHostKeys=no -o CheckHostIP=no \
             -o BatchMode=yes -o ConnectTimeout=15 -o ServerAliveInterval=15 \
             -o ServerAliveCountMax=4"
        );
        let spaced = SshStore { identity: Some("/my keys/id".into()), ..store() };
        assert_eq!(
            spaced.ssh_opts().unwrap_err().to_string(),
            "`/my keys/id` contains whitespace, which NIX_SSHOPTS cannot carry"
        );
    }

    #[test]
    fn copy_command_line() {
        let nix = Nix::new();
        let p = StorePath::new("/nix/store/wgqb4b5brcyb0y5ggx8yjykdi84rs7xw-top").unwrap();
        assert_eq!(
            nix.copy_args(&store().url(), &[p]).join(" "),
            "--extra-experimental-features nix-command flakes copy --to \
             ssh://root@10.0.0.5?remote-store=local%3Froot%3D%2Fmnt \
             /nix/store/wgqb4b5brcyb0y5ggx8yjykdi84rs7xw-top"
        );
    }
}
