//! The operator's SSH key: how cairn logs into stock images, installers and installed hosts.
//!
//! `CAIRN_SSH_KEY` names an existing private key file; otherwise cairn keeps one key per
//! repository in `.cairn/ssh/operator_ed25519` (0600), generated on first use, and hands its
//! public half to providers (NoCloud seed, hcloud ssh_keys, EC2 key pair) and to the
//! installed system's root account.

use std::path::{Path, PathBuf};

use super::PhaseError;
use crate::keys::HostKeys;
use crate::ssh::Auth;

#[derive(Debug, Clone)]
pub struct Operator {
    pub auth: Auth,
    /// `ssh-ed25519 AAAA... cairn-operator`
    pub public_line: String,
    pub private_key_path: PathBuf,
}

impl Operator {
    /// The operator key for the repository at `repo_root`.
    pub fn load_or_create(repo_root: &Path, env_key: Option<PathBuf>) -> Result<Self, PhaseError> {
        let io = |what: String| {
            move |source| PhaseError::Io {
                what,
                help: "check the permissions of the .cairn directory".into(),
                source,
            }
        };
        let private = match env_key {
            Some(path) => path,
            None => {
                let repo = crate::repo::Repo::new(repo_root);
                let (dir, path) = (repo.operator_key_dir(), repo.operator_key());
                if !path.exists() {
                    crate::repo::create_private_dir(&dir)
                        .map_err(io(format!("creating {}", dir.display())))?;
                    let keys = HostKeys::generate("cairn-operator", false);
                    crate::util::atomic::write(&path, keys.ssh_private_openssh().as_bytes(), 0o600)
                        .map_err(io(format!("writing {}", path.display())))?;
                    let public = format!("{}\n", keys.ssh_public_line());
                    crate::util::atomic::write(
                        &path.with_extension("pub"),
                        public.as_bytes(),
                        0o644,
                    )
                    .map_err(io(format!("writing {}.pub", path.display())))?;
                    tracing::info!(path = %path.display(), "generated the operator SSH key");
                }
                path
            }
        };
        let public_path = PathBuf::from(format!("{}.pub", private.display()));
        let public_line = fs_err::read_to_string(&public_path)
            .map_err(|source| PhaseError::Io {
                what: format!("reading the operator's public key {}", public_path.display()),
                help: "put the public key next to the private key (ssh-keygen -y -f KEY > KEY.pub)"
                    .into(),
                source,
            })?
            .trim()
            .to_string();
        Ok(Self { auth: Auth::KeyFile(private.clone()), public_line, private_key_path: private })
    }
}
