//! The keys cairn seeds before the first boot, and whether the host's sops-nix will find
//! them there. sops-nix fails outright when `sops.age.keyFile` names a file that does not
//! exist ("cannot read keyfile"), and then there is no /run/secrets (and no token for the
//! GitOps agent). The built system says what it expects: sops-nix writes its settings into a
//! `manifest.json` store path of the closure (`ageKeyFile`, `ageSshKeyPaths`).

use crate::nix::PathInfo;

/// The SSH host key cairn seeds (and verifies the installed host presents).
pub(crate) const HOST_SSH_KEY: &str = "/etc/ssh/ssh_host_ed25519_key";
/// The age key cairn seeds for hosts with `age_key = true`.
pub(crate) const AGE_KEY_FILE: &str = "/var/lib/sops-nix/key.txt";

/// What sops-nix's manifest says about keys (other members are not read).
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    age_key_file: Option<String>,
    #[serde(default)]
    age_ssh_key_paths: Vec<String>,
}

/// A key the configuration expects that cairn will not put there: what to say and what to do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Unseeded {
    pub what: String,
    pub help: String,
}

/// Checks every sops-nix manifest of the closure (`<hash>-manifest.json`, and the
/// `manifest-for-users.json` of secrets needed for users) against what cairn seeds.
pub(crate) fn check(closure: &[PathInfo], age_key: bool) -> Result<(), Unseeded> {
    for info in closure {
        let name = info.path.name();
        if !(name.starts_with("manifest") && name.ends_with(".json")) {
            continue;
        }
        let Ok(text) = fs_err::read_to_string(info.path.as_str()) else { continue };
        // Other manifests (not sops-nix's) have no such members and are skipped.
        let Ok(manifest) = serde_json::from_str::<Manifest>(&text) else { continue };
        if manifest.age_key_file.is_none() && manifest.age_ssh_key_paths.is_empty() {
            continue;
        }
        check_manifest(&manifest, age_key, info.path.as_str())?;
    }
    Ok(())
}

fn check_manifest(m: &Manifest, age_key: bool, source: &str) -> Result<(), Unseeded> {
    if let Some(file) = m.age_key_file.as_deref().filter(|f| !f.is_empty()) {
        if !(age_key && file == AGE_KEY_FILE) {
            let seeded = if age_key {
                format!("cairn seeds the age key at {AGE_KEY_FILE}")
            } else {
                "the host has no `age_key = true`, so cairn seeds no age key file".to_owned()
            };
            return Err(Unseeded {
                what: format!(
                    "the configuration sets sops.age.keyFile = \"{file}\", but {seeded}: sops-nix would stop at \"cannot read keyfile\" on the first boot and leave /run/secrets empty ({source})"
                ),
                help: format!(
                    "remove sops.age.keyFile and decrypt with sops.age.sshKeyPaths = [ \"{HOST_SSH_KEY}\" ], or set `age_key = true` on the host in cairn.hcl and sops.age.keyFile = \"{AGE_KEY_FILE}\""
                ),
            });
        }
    }
    if let Some(path) = m.age_ssh_key_paths.iter().find(|p| p.as_str() != HOST_SSH_KEY) {
        return Err(Unseeded {
            what: format!(
                "the configuration sets sops.age.sshKeyPaths to include \"{path}\", but cairn seeds only {HOST_SSH_KEY}: sops-nix would fail to read it on the first boot ({source})"
            ),
            help: format!("set sops.age.sshKeyPaths = [ \"{HOST_SSH_KEY}\" ] (the key cairn generates, seeds and verifies)"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The manifest sops-nix's NixOS module writes (modules/sops/manifest-for.nix: toJSON of
    // secrets, templates, secretsMountPoint, symlinkPath, keepGenerations, gnupgHome,
    // sshKeyPaths, ageKeyFile, ageSshKeyPaths, useTmpfs, placeholderBySecretName, userMode,
    // logging), for the example flake before its fix.
    const EXAMPLE: &str = r#"{"ageKeyFile":"/var/lib/sops-nix/key.txt","ageSshKeyPaths":["/etc/ssh/ssh_host_ed25519_key"],"gnupgHome":null,"keepGenerations":1,"logging":{"keyImport":true,"secretChanges":true},"placeholderBySecretName":{},"secrets":[],"secretsMountPoint":"/run/secrets.d","sshKeyPaths":[],"symlinkPath":"/run/secrets","templates":[],"useTmpfs":false,"userMode":false}"#;

    fn manifest(text: &str) -> Manifest {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn a_key_file_without_age_key_is_refused_naming_both_settings() {
        let err =
            check_manifest(&manifest(EXAMPLE), false, "/nix/store/x-manifest.json").unwrap_err();
        assert!(err.what.starts_with("the configuration sets sops.age.keyFile = \"/var/lib/sops-nix/key.txt\", but the host has no `age_key = true`"), "{}", err.what);
        assert!(
            err.help.contains("`age_key = true`") && err.help.contains("sops.age.sshKeyPaths"),
            "{}",
            err.help
        );
        assert_eq!(check_manifest(&manifest(EXAMPLE), true, "m"), Ok(()));
    }

    #[test]
    fn ssh_keys_other_than_the_seeded_one_are_refused() {
        let only_ssh =
            EXAMPLE.replace(r#""ageKeyFile":"/var/lib/sops-nix/key.txt""#, r#""ageKeyFile":null"#);
        assert_eq!(check_manifest(&manifest(&only_ssh), false, "m"), Ok(()));
        let rsa = only_ssh
            .replace(r#"["/etc/ssh/ssh_host_ed25519_key"]"#, r#"["/etc/ssh/ssh_host_rsa_key"]"#);
        let err = check_manifest(&manifest(&rsa), false, "m").unwrap_err();
        assert!(err.what.contains("\"/etc/ssh/ssh_host_rsa_key\""), "{}", err.what);
        let elsewhere = EXAMPLE.replace("/var/lib/sops-nix/key.txt", "/persist/age.key");
        assert!(check_manifest(&manifest(&elsewhere), true, "m").is_err());
    }
}
