//! Which key cairn logs into hosts with: `-i`/CAIRN_SSH_KEY, else the repository's operator
//! key (the one bootstrap authorizes), else what ssh would use.

use std::path::{Path, PathBuf};

use crate::keys::IdentityEnv;
use crate::ssh::Auth;

/// `CAIRN_SSH_KEY`: the operator key to use instead of the repository's (an empty value
/// counts as unset). Read here only, for every command that logs in or hands out the key.
pub(crate) fn operator_key_override(env: &IdentityEnv) -> Option<PathBuf> {
    env.get("CAIRN_SSH_KEY").filter(|k| !k.is_empty()).map(PathBuf::from)
}

pub(crate) fn login_auth(root: &Path, identity: Option<&PathBuf>) -> miette::Result<Auth> {
    let operator_key = crate::repo::Repo::new(root).operator_key();
    match identity {
        Some(path) => Ok(Auth::KeyFile(path.clone())),
        None if operator_key.is_file() => Ok(Auth::KeyFile(operator_key)),
        None => Auth::default_for_user().ok_or_else(|| {
            miette::miette!(
                help = "pass `-i KEYFILE` (or set CAIRN_SSH_KEY), or start an SSH agent holding your key",
                "no SSH key to log in with: no operator key in .cairn/ssh, $SSH_AUTH_SOCK is not set and ~/.ssh has no id_ed25519 or id_rsa"
            )
        }),
    }
}
