//! Which kexec installer bundle a host gets, and whether it can run on the host.
//!
//! The bundle is `--installer`, else the host's `installer` (with the host's
//! `installer_sha256` / `installer_sha512`), else its provider's (with the provider's), else
//! `CAIRN_INSTALLER`. A URL must carry a pinned checksum and is downloaded into the cache
//! before anything is uploaded (see [`crate::download`]).
//!
//! cairn ships no default bundle: nix-community/nixos-images publishes its kexec tarballs
//! under release tags that are rebuilt every week (`nixos-unstable`, `nixos-25.11`) and
//! publishes no checksum files, so no URL and sum could be pinned that stay true.

use std::path::{Path, PathBuf};

use crate::download::{Source, SourceError};
use crate::inventory::InstallSettings;

/// The bundle configured for a host (`install`: its settings, with its provider's where it
/// sets none), if any.
pub fn source(
    flag: Option<&Path>,
    install: &InstallSettings,
    env: Option<PathBuf>,
    root: &Path,
) -> Result<Option<Source>, SourceError> {
    if let Some(path) = flag {
        return Ok(Some(Source::Local(path.to_path_buf())));
    }
    if let Some(value) = &install.installer {
        let checksum = install.installer_checksum.as_ref();
        return Source::from_setting("installer", value, checksum, root).map(Some);
    }
    Ok(env.map(Source::Local))
}

/// The CPU architecture (`uname -m`) a bundle is built for, when its file name says so the
/// way nixos-images names them (`nixos-kexec-installer-noninteractive-x86_64-linux.tar.gz`).
pub fn bundle_arch(source: &Source) -> Option<&'static str> {
    let name = match source {
        Source::Local(path) => path.file_name()?.to_string_lossy().into_owned(),
        Source::Url(pinned) => pinned.url.path_segments()?.next_back()?.to_owned(),
    };
    ["x86_64", "aarch64"].into_iter().find(|arch| name.contains(&format!("-{arch}-linux")))
}

/// Refuses a bundle built for another architecture than the host's (`arch` fact, `uname -m`):
/// kexec would load a kernel the machine cannot run, and the machine would be lost until a
/// console reset. `Err` says why.
pub fn check_arch(source: &Source, host_arch: &str) -> Result<(), String> {
    match bundle_arch(source) {
        Some(arch) if arch != host_arch => Err(format!(
            "the installer bundle {} is built for {arch}, but the machine runs {host_arch}",
            source.display()
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_for_another_architecture_is_refused() {
        let x86 =
            Source::Local("/b/nixos-kexec-installer-noninteractive-x86_64-linux.tar.gz".into());
        assert_eq!(bundle_arch(&x86), Some("x86_64"));
        assert!(check_arch(&x86, "x86_64").is_ok());
        let err = check_arch(&x86, "aarch64").unwrap_err();
        assert_eq!(
            err,
            "the installer bundle /b/nixos-kexec-installer-noninteractive-x86_64-linux.tar.gz \
             is built for x86_64, but the machine runs aarch64"
        );
        let install = InstallSettings {
            installer: Some(
                "https://example.org/nixos-kexec-installer-aarch64-linux.tar.gz".into(),
            ),
            installer_checksum: Some(crate::download::Checksum::sha256(&"ab".repeat(32)).unwrap()),
            ..InstallSettings::default()
        };
        let arm = source(None, &install, None, Path::new("/")).unwrap().unwrap();
        assert_eq!(bundle_arch(&arm), Some("aarch64"));
        assert!(check_arch(&arm, "x86_64").is_err());
        // A bundle whose name does not say is not second-guessed.
        assert!(check_arch(&Source::Local("/b/installer.tar.gz".into()), "riscv64").is_ok());
    }
}
