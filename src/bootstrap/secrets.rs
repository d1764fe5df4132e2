//! Before a host is installed, the secrets it may read are re-encrypted to include its
//! recipient, so it can decrypt them on its first boot.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::PhaseError;
use crate::inventory::Inventory;
use crate::keys::Identities;
use crate::secrets::rekey::{self, RekeyStatus};
use crate::state::SharedStateLock;

/// One repository-wide secrets update at a time in this process. Each host's keys phase
/// reads every host's recipient from state and rewrites `.sops.yaml` and the secrets files;
/// two at once could each start from files without the other's recipient and drop it. (Two
/// cairn processes on one fleet are already kept apart by the state lock.)
static SECRETS_UPDATE: Mutex<()> = Mutex::new(());

/// Brings `.sops.yaml` and the secrets files up to date with every host's recipient in
/// state, one caller at a time, each starting from the current files and recipients.
pub(super) fn update_host_recipients(
    inv: &Inventory,
    state: &SharedStateLock,
    identities: &Identities,
) -> Result<(), PhaseError> {
    // A panic elsewhere poisons the mutex but leaves no half-written file (writes are
    // atomic), so the next update may go on.
    update_host_recipients_pausing(inv, state, identities, &|_| {})
}

/// [`update_host_recipients`], calling `pause` between reading the recipients and writing
/// the files: a test makes one update slow there, as a slow re-key would be.
fn update_host_recipients_pausing(
    inv: &Inventory,
    state: &SharedStateLock,
    identities: &Identities,
    pause: &dyn Fn(&BTreeMap<String, String>),
) -> Result<(), PhaseError> {
    let _one_at_a_time = SECRETS_UPDATE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let recipients: BTreeMap<String, String> = state
        .snapshot()
        .hosts
        .into_iter()
        .filter_map(|(n, h)| Some((n, h.age_recipient?)))
        .collect();
    pause(&recipients);
    update_recipients(inv, &recipients, identities)
}

/// Writes `.sops.yaml` from the inventory (with every bootstrapped host's recipient) so plain
/// sops and `cairn secrets` agree on who reads what, then re-keys every secrets file whose
/// recipients differ (same data key, values untouched, files already right not rewritten).
fn update_recipients(
    inv: &Inventory,
    recipients: &BTreeMap<String, String>,
    identities: &Identities,
) -> Result<(), PhaseError> {
    let lookup = |h: &crate::inventory::HostName| recipients.get(h.as_str()).cloned();
    let Some((update, plan)) = rekey::plan_from_inventory(inv, &lookup, &inv.root, &[], false)?
    else {
        return Ok(());
    };
    if update.changed() {
        tracing::info!("updated .sops.yaml from the inventory");
    }
    let mut failed = Vec::new();
    for report in rekey::rekey(&plan, identities, false, false) {
        let shown =
            report.path.strip_prefix(&inv.root).unwrap_or(&report.path).display().to_string();
        match report.status {
            RekeyStatus::UpToDate => {}
            RekeyStatus::Changed(_) | RekeyStatus::Rotated(_) => {
                tracing::info!(file = %shown, "re-encrypted to the recipients the inventory gives");
            }
            RekeyStatus::Failed(e) => {
                tracing::error!(file = %shown, "cannot re-key: {e}");
                failed.push(shown);
            }
        }
    }
    if !failed.is_empty() {
        return Err(PhaseError::Config {
            what: format!("cannot re-key {} so the host can read them", failed.join(", ")),
            help: "re-keying needs an admin identity (SOPS_AGE_KEY_FILE or ~/.config/sops/age/keys.txt); \
                   run `cairn secrets rekey` to see why"
                .into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{AgeIdentity, IdentityEnv};
    use crate::secrets::store::Format;
    use crate::secrets::SopsFile;
    use crate::state::{FileState, LockHolder, LockWait, State as _};

    /// Four hosts' keys phases updating one shared secrets file at once (the part of the
    /// phase that races; the SSH uploads around it are per host): every host stays a
    /// recipient, and each host's own identity decrypts the file.
    #[test]
    fn four_hosts_updating_recipients_at_once_all_stay_recipients() {
        let repo = tempfile::tempdir().unwrap();
        let root = repo.path();
        let admin = AgeIdentity::generate();
        let hosts: Vec<(String, AgeIdentity)> =
            (1..=4).map(|i| (format!("web{i}"), AgeIdentity::generate())).collect();
        let mut hcl = format!(
            "provider \"existing\" \"mine\" {{}}\nadmin \"alice\" {{\n  age = \"{}\"\n}}\nsecrets \"secrets/shared.yaml\" {{\n  tags = [\"web\"]\n}}\n",
            admin.to_public()
        );
        for (name, _) in &hosts {
            hcl.push_str(&format!(
                "host \"{name}\" {{\n  provider = \"mine\"\n  address = \"127.0.0.1:9\"\n  flake = \".#{name}\"\n  tags = [\"web\"]\n}}\n"
            ));
        }
        fs_err::write(root.join("cairn.hcl"), &hcl).unwrap();
        let opts =
            crate::inventory::LoadOptions { path: root.join("cairn.hcl"), ..Default::default() };
        let inv = crate::inventory::load(&opts).unwrap();
        let key_file = root.join("admin.txt");
        fs_err::write(&key_file, format!("{}\n", admin.expose_secret())).unwrap();
        let mut env = IdentityEnv::default();
        env.set("SOPS_AGE_KEY_FILE", key_file.display().to_string());
        let identities = Identities::discover(&env);
        // The shared file, encrypted to the admin only, as before any host was bootstrapped.
        fs_err::create_dir_all(root.join("secrets")).unwrap();
        let plain = root.join("secrets/shared.yaml");
        fs_err::write(&plain, "token: s3cret\n").unwrap();
        let spec = crate::secrets::ops::spec_from_age_list(&admin.to_public().to_string()).unwrap();
        let bytes = crate::secrets::ops::encrypt_to_bytes(
            &plain,
            Format::Yaml,
            Format::Yaml,
            &spec,
            &Default::default(),
        )
        .unwrap();
        fs_err::write(&plain, bytes).unwrap();

        let state = SharedStateLock::new(
            FileState::new(root).lock(LockHolder::current("cairn test"), LockWait::Fail).unwrap(),
        );
        // web1's update reads the recipients first (only its own) and is slow to write; the
        // other three start once it has read them. Unserialised, web1's write would come
        // last and drop them.
        let go = std::sync::Barrier::new(hosts.len());
        std::thread::scope(|scope| {
            for (i, (name, identity)) in hosts.iter().enumerate() {
                let (inv, state, identities, go) = (&inv, &state, &identities, &go);
                scope.spawn(move || {
                    if i > 0 {
                        go.wait();
                    }
                    state
                        .update_host(name, |h| {
                            h.age_recipient = Some(identity.to_public().to_string())
                        })
                        .unwrap();
                    let slow_first = |seen: &BTreeMap<String, String>| {
                        if i == 0 {
                            assert_eq!(seen.len(), 1);
                            go.wait();
                            std::thread::sleep(std::time::Duration::from_millis(500));
                        }
                    };
                    update_host_recipients_pausing(inv, state, identities, &slow_first).unwrap();
                });
            }
        });

        let file = SopsFile::read(&plain, Format::Yaml).unwrap();
        let recipients: Vec<&str> = file.metadata.recipients().collect();
        for (name, identity) in &hosts {
            let public = identity.to_public().to_string();
            assert!(recipients.contains(&public.as_str()), "{name} lost: {recipients:?}");
            let mut env = IdentityEnv::default();
            let own = root.join(format!("{name}.txt"));
            fs_err::write(&own, format!("{}\n", identity.expose_secret())).unwrap();
            env.set("SOPS_AGE_KEY_FILE", own.display().to_string());
            let opened = file.decrypt(&Identities::discover(&env), false);
            assert!(opened.is_ok(), "{name} cannot decrypt: {:?}", opened.err());
        }
        let sops_yaml = fs_err::read_to_string(root.join(".sops.yaml")).unwrap();
        for (name, _) in &hosts {
            assert!(sops_yaml.contains(&format!("# host {name}")), "{sops_yaml}");
        }
    }
}
