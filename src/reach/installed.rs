//! A host cairn installed is known by its own SSH host key, which cairn generated and the
//! repository holds (`secrets/hosts/<host>/ssh_host_ed25519_key.pub`), and by the marker the
//! install leaves (`/var/lib/cairn/host`). Neither depends on state: with state lost, a
//! machine showing either is the installed host, never a fresh one to wipe.

use russh::keys::PublicKey;

use super::{ReachError, Recorded};
use crate::keys::store::SSH_HOST_PUBLIC_KEY_FILE;
use crate::keys::HostKeyStore;
use crate::ssh::fingerprint;

/// Where the install leaves the name of the host it installed, on the installed system.
pub const MARKER: &str = "/var/lib/cairn/host";

/// `secrets/hosts/web1/ssh_host_ed25519_key.pub`, as messages name it.
pub fn repository_key_path(host: &str) -> String {
    format!("{}/{host}/{SSH_HOST_PUBLIC_KEY_FILE}", HostKeyStore::relative_dir())
}

/// The host's own key from the repository, if it holds one.
pub(super) fn repository_key(recorded: &Recorded<'_>) -> Result<Option<PublicKey>, ReachError> {
    let Some(line) = recorded.repository_key else { return Ok(None) };
    parse_repository_key(recorded.host, line).map(Some)
}

fn parse_repository_key(host: &str, line: &str) -> Result<PublicKey, ReachError> {
    PublicKey::from_openssh(line.trim()).map_err(|e| ReachError::BadRepositoryKey {
        host: host.to_owned(),
        path: repository_key_path(host),
        reason: e.to_string(),
    })
}

/// The machine at `reached_at` presented `presented`, the host's own key, where bootstrap
/// expected a stock image (nothing recorded): it is the installed host.
pub fn refused(recorded: &Recorded<'_>, reached_at: &str, presented: &str) -> ReachError {
    ReachError::LooksInstalled {
        host: recorded.host.to_owned(),
        evidence: format!(
            "{reached_at} presents {}'s own host key ({presented}), which cairn generated \
             ({})",
            recorded.host,
            repository_key_path(recorded.host)
        ),
        location: recorded.location.to_owned(),
    }
}

/// Refuses a machine, reached as a stock image, whose install marker (`marker`, the content
/// of [`MARKER`]) says cairn installed it.
pub fn check_marker(
    recorded: &Recorded<'_>,
    reached_at: &str,
    marker: Option<&str>,
) -> Result<(), ReachError> {
    let Some(named) = marker.map(str::trim).filter(|m| !m.is_empty()) else { return Ok(()) };
    let whose =
        if named == recorded.host { "this host".to_owned() } else { format!("host `{named}`") };
    Err(ReachError::LooksInstalled {
        host: recorded.host.to_owned(),
        evidence: format!(
            "{reached_at} runs a NixOS system cairn installed for {whose} ({MARKER} says \
             `{named}`)"
        ),
        location: recorded.location.to_owned(),
    })
}

/// The repository's key of the host (`repository_line`) must be the installed key state
/// pinned, if any: a different one is never re-pinned silently (whoever can commit could
/// seal a key they hold to the admins and have cairn trust it).
pub fn check_repository_key(
    recorded: &Recorded<'_>,
    repository_line: &str,
) -> Result<(), ReachError> {
    let repository = parse_repository_key(recorded.host, repository_line)?;
    let state = recorded.state;
    let pinned_lines: Vec<&String> = state
        .host_keys
        .get(&super::Stage::Installed)
        .into_iter()
        .flatten()
        .chain(state.ssh_public_key.as_ref())
        .collect();
    if pinned_lines.is_empty() {
        return Ok(());
    }
    let mut pinned = Vec::new();
    for line in pinned_lines {
        let key = PublicKey::from_openssh(line.trim()).map_err(|e| ReachError::BadRecordedKey {
            host: recorded.host.to_owned(),
            stage: super::Stage::Installed,
            reason: e.to_string(),
            location: recorded.location.to_owned(),
        })?;
        if key.key_data() == repository.key_data() {
            return Ok(());
        }
        let shown = fingerprint(&key);
        if !pinned.contains(&shown) {
            pinned.push(shown);
        }
    }
    Err(ReachError::RepositoryKeyChanged {
        host: recorded.host.to_owned(),
        pinned: pinned.join(", "),
        repository: fingerprint(&repository),
        path: repository_key_path(recorded.host),
        location: recorded.location.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reach::{route, Endpoint, Stage, Trust};
    use crate::ssh::HostKeyPolicy;
    use crate::state::HostState;

    const OWN: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKna0glgZAokHtKFwcbxTtqCIs1dpDtPCgmJepLqN7JR web1";
    const OTHER: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBJ+DnwH3YL9K5PuI+YBHLQTeN+B82YXtDAdh5mvxpr0nJPx5BPImJhHkUm6tfDvVrg397o5P2AQqKELQjZ3WMVc=";

    fn recorded<'a>(state: &'a HostState, repository_key: Option<&'a str>) -> Recorded<'a> {
        Recorded { host: "web1", state, location: "/r/.cairn/state.json", repository_key }
    }

    fn ssh() -> crate::inventory::SshSettings {
        crate::inventory::SshSettings { user: "debian".into(), port: 22, ..Default::default() }
    }

    #[test]
    fn first_contact_refuses_the_hosts_own_key_unless_reinstalling() {
        let state = HostState::default();
        let rec = recorded(&state, Some(OWN));
        let endpoint = Endpoint { ssh: &ssh(), address: Some("192.0.2.7") };
        let r = route(endpoint, &rec, Stage::Stock).unwrap();
        assert!(matches!(r.trust, Trust::FirstContact));
        let HostKeyPolicy::RecordUnless(refused) = r.policy() else {
            panic!("the host's own key must be refused: {:?}", r.policy())
        };
        assert_eq!(refused[0].to_openssh().unwrap(), OWN);
        let again = r.allowing_reinstall();
        assert!(matches!(again.policy(), HostKeyPolicy::RecordOnFirstContact));

        // Without a repository key there is nothing to refuse.
        let r = route(endpoint, &recorded(&state, None), Stage::Stock).unwrap();
        assert!(matches!(r.policy(), HostKeyPolicy::RecordOnFirstContact));
    }

    #[test]
    fn with_nothing_recorded_the_installed_system_is_pinned_to_the_repository_key() {
        let state = HostState::default();
        let endpoint = Endpoint { ssh: &ssh(), address: Some("192.0.2.7") };
        let r = route(endpoint, &recorded(&state, Some(OWN)), Stage::Installed).unwrap();
        let HostKeyPolicy::Pinned(keys) = r.policy() else { panic!("{:?}", r.policy()) };
        assert_eq!(keys[0].to_openssh().unwrap(), OWN);
        assert_eq!(r.target.user, "root");
        assert!(route(endpoint, &recorded(&state, None), Stage::Installed).is_err());
    }

    #[test]
    fn a_repository_key_unlike_the_pinned_one_is_refused_with_both_fingerprints() {
        let mut state = HostState::default();
        state.host_keys.insert(Stage::Installed, vec![OTHER.into()]);
        let err = check_repository_key(&recorded(&state, None), OWN).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("ecdsa-sha2-nistp256 SHA256:"), "{text}");
        assert!(text.contains("ssh-ed25519 SHA256:"), "{text}");
        assert!(text.contains("secrets/hosts/web1/ssh_host_ed25519_key.pub"), "{text}");

        state.host_keys.insert(Stage::Installed, vec![OWN.into()]);
        check_repository_key(&recorded(&state, None), OWN).unwrap();
        // Nothing pinned yet: the repository's key is the one to pin.
        check_repository_key(&recorded(&HostState::default(), None), OWN).unwrap();
    }

    #[test]
    fn an_install_marker_names_the_host_it_was_installed_for() {
        let state = HostState::default();
        let rec = recorded(&state, None);
        check_marker(&rec, "debian@192.0.2.7:22", None).unwrap();
        check_marker(&rec, "debian@192.0.2.7:22", Some("")).unwrap();
        let err = check_marker(&rec, "debian@192.0.2.7:22", Some("web1\n")).unwrap_err();
        assert!(err.to_string().contains("cairn installed for this host"), "{err}");
        let err = check_marker(&rec, "debian@192.0.2.7:22", Some("db1")).unwrap_err();
        assert!(err.to_string().contains("for host `db1`"), "{err}");
    }
}
