//! kexec: jump from the stock system into the in-RAM installer. Check: not in an installer
//! already, and enough memory for one; then the user confirms the machine may be erased
//! (see [`crate::bootstrap::confirm`]). Act: upload the bundle (unless an earlier attempt's
//! is there whole: [`super::bundle`]) and run its `kexec/run`.
//! Prove: a fresh connection finds a new boot id and the installer marker. Record: the
//! installer's host key.
//!
//! A machine already running a system from RAM (a provider's rescue system, or any with
//! `kexec = false`) is installed from as it is: no jump, the same confirmation, and its host
//! key stays the one the next phases pin ([`jump`]).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::bundle::{self, Upload};
use super::{PhaseResult, BUNDLE_DIR, KEXEC_SH};
use crate::bootstrap::host_run::{is_transient, Facts, HostRun};
use crate::bootstrap::PhaseError;
use crate::download::{self, Source};
use crate::installer;
use crate::inventory::{Budget, Wait};
use crate::ssh::RemoteCommand;
use crate::state::KeyPhase;
use crate::util::template::{self, Vars};

/// What the nixos-images kexec installer asks for: "at least 1GB of physical RAM (swap does
/// not count)" (its README). Compared with physical RAM (facts.sh), not MemTotal, which a
/// 1 GiB machine shows as about 980 MiB. A host or provider may lower it for a lighter
/// installer (`installer_min_memory`).
const DEFAULT_INSTALLER_MIN_MEMORY_MIB: u64 = 1024;

pub(super) async fn kexec(r: &mut HostRun<'_>) -> Result<PhaseResult, PhaseError> {
    let before = r.facts(KeyPhase::Stock, Wait::Reach).await?;
    if before.installer {
        return Ok(PhaseResult::Skipped("already running an installer".into()));
    }
    // The jump leads to the wipe: never on a system cairn installed (reach may have run in
    // an earlier run, before the marker could be seen).
    r.refuse_if_installed(&before)?;
    match jump(r.host.install.kexec, &before) {
        Jump::Kexec => {}
        Jump::InPlace(why) => return install_in_place(r, &before, why).await,
        Jump::Refuse { what, help } => return Err(PhaseError::Config { what, help }),
    }
    let need = installer_min_memory(r);
    if before.mem_mib < need {
        return Err(PhaseError::NotEnoughMemory { have_mib: before.mem_mib, need_mib: need });
    }
    // The first destructive step: from here on the stock system and then its disk are lost.
    crate::bootstrap::confirm::before_erasing(r).await?;
    let bundle = installer_bundle(r, &before.arch).await?;
    let decompress = bundle_decompressor(&bundle)?;
    let size = fs_err::metadata(&bundle).map(|m| m.len()).unwrap_or(0);
    let limit = r.budgets.for_transfer(Budget::Command, size);
    let sha256 = bundle::sha256(&bundle).await?;
    let session = r.session(KeyPhase::Stock, Wait::Reach).await?;
    // The upload's rate is the link's measure, for the copy phase's choice of strategy.
    let link_rate = match bundle::decide(&bundle::probe(session, &sha256).await?, size) {
        Upload::Skip => {
            tracing::info!(
                bundle = %bundle.display(),
                sha256 = %sha256,
                "the installer bundle is on the target already (an earlier attempt's): not uploading it again"
            );
            None
        }
        Upload::NoRoom { free_mib, need_mib } => {
            return Err(PhaseError::Remote {
                what: format!(
                    "the target has {free_mib} MiB free for the installer bundle in {BUNDLE_DIR}; unpacked, it needs about {need_mib} MiB"
                ),
                help: "free space on the machine's root file system (or, on a system running from RAM, give it more memory)".into(),
            })
        }
        Upload::Send => {
            let file = tokio::fs::File::open(&bundle).await.map_err(|source| PhaseError::Io {
                what: format!("opening the installer bundle {}", bundle.display()),
                help: "check the `installer` path".into(),
                source,
            })?;
            tracing::info!(bundle = %bundle.display(), total_bytes = size, "uploading the installer");
            let unpack = bundle::unpack_script(&sha256, decompress)?;
            let upload = RemoteCommand::inline_script("unpack-installer", unpack).time_limit(limit);
            let uploading = Instant::now();
            session.exec_with_input(&upload, file).await?;
            Some(size as f64 / uploading.elapsed().as_secs_f64().max(0.001))
        }
    };
    let script = template::render(
        "templates/bootstrap/kexec.sh",
        KEXEC_SH,
        &Vars::new().word("dir", BUNDLE_DIR),
    )?;
    session.exec(&RemoteCommand::script("kexec", script)).await?;
    if let Some((_, s)) = r.session.take() {
        s.close().await;
    }
    r.link_rate = link_rate;
    // The old system keeps answering for a moment after `kexec/run` returns: wait for
    // the installer's own identity (a new boot id, the installer marker).
    let limit = r.deadlines.get(Wait::Kexec);
    let deadline = Instant::now() + limit;
    let mut last_seen = format!("the stock system ({}, boot id {})", before.os_id, before.boot_id);
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(PhaseError::timeout(
                Wait::Kexec,
                limit,
                "the machine did not come back running the installer",
                last_seen,
                format!(
                    "{}; cairn looks for the installer's sshd on port 22 (set `ssh {{ installer_port }}` if yours listens elsewhere); a machine that kexec cannot jump on (some hypervisors, Secure Boot) needs a rescue system or an installer image instead",
                    r.console_hint()
                ),
            ));
        }
        match r.facts_within(KeyPhase::Installer, Wait::Kexec, left).await {
            Ok(f) if f.boot_id != before.boot_id && f.installer => {
                let key = r.session.as_ref().map(|(_, s)| s.host_key().to_openssh());
                if let Some(Ok(line)) = key {
                    r.update_state(|h| {
                        h.host_keys.insert(KeyPhase::Installer, vec![line]);
                    })?;
                }
                tracing::info!(boot_id = %f.boot_id, "running the installer");
                return Ok(PhaseResult::Done);
            }
            Ok(f) => {
                last_seen = if f.boot_id == before.boot_id {
                    format!("the stock system still answering (boot id {})", f.boot_id)
                } else {
                    format!(
                        "a new boot ({}, boot id {}) that is not an installer",
                        f.os_id, f.boot_id
                    )
                };
                // Still the old system: drop the session and look again.
                if let Some((_, s)) = r.session.take() {
                    s.close().await;
                }
            }
            Err(PhaseError::Ssh(e)) if is_transient(&e) => last_seen = e.to_string(),
            Err(PhaseError::Timeout { last_seen: seen, .. }) => last_seen = seen,
            Err(e) => return Err(e),
        }
    }
}

/// Whether the machine is installed from after a jump into the installer, or as it runs.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Jump {
    Kexec,
    /// Installed from the running system, with why (shown as the phase's outcome).
    InPlace(String),
    Refuse {
        what: String,
        help: String,
    },
}

/// The host's `kexec` setting against what the machine runs: `true` always jumps; `false`
/// installs from the running system, which must not run from the disk it would wipe;
/// unset jumps unless the machine is a provider's rescue system ([`Facts::rescue`]).
pub(super) fn jump(kexec: Option<bool>, facts: &Facts) -> Jump {
    match kexec {
        Some(true) => Jump::Kexec,
        Some(false) if facts.root_off_disk() => Jump::InPlace(format!(
            "kexec = false: installing from the running system (root on {})",
            facts.root_fs
        )),
        Some(false) => Jump::Refuse {
            what: format!(
                "kexec = false, but the running system's root is on a disk ({}): installing \
                 from it would wipe the disk it runs from",
                if facts.root_fs.is_empty() { "unknown" } else { &facts.root_fs }
            ),
            help: "boot the machine into its provider's rescue system first (it runs from RAM), \
                   or remove `kexec = false` so that cairn jumps into its installer"
                .into(),
        },
        None if facts.rescue() => Jump::InPlace(format!(
            "a rescue system (host name {}, root on {}): installing from it without kexec",
            facts.hostname, facts.root_fs
        )),
        None => Jump::Kexec,
    }
}

/// No jump: the user confirms the erasure as before a kexec, and the running system's key
/// (recorded on first contact) is the one the installing phases pin; its boot is the one the
/// reboot phase leaves and verify refuses to take for the installed system.
async fn install_in_place(
    r: &mut HostRun<'_>,
    before: &Facts,
    why: String,
) -> Result<PhaseResult, PhaseError> {
    crate::bootstrap::confirm::before_erasing(r).await?;
    let key = r.session.as_ref().map(|(_, s)| s.host_key().to_openssh());
    let boot_id = before.boot_id.clone();
    r.update_state(|h| {
        if let Some(Ok(line)) = key {
            h.host_keys.insert(KeyPhase::Installer, vec![line]);
        }
        h.bootstrap.installer_boot_id = Some(boot_id);
    })?;
    tracing::info!(reason = %why, "installing without kexec");
    Ok(PhaseResult::Skipped(why))
}

fn installer_min_memory(r: &HostRun<'_>) -> u64 {
    r.host.install.installer_min_memory.unwrap_or(DEFAULT_INSTALLER_MIN_MEMORY_MIB)
}

/// The kexec bundle (see [`crate::installer`]), checked against the machine's
/// architecture, and downloaded and verified when it is a URL: all before any upload.
async fn installer_bundle(r: &HostRun<'_>, arch: &str) -> Result<PathBuf, PhaseError> {
    let source = installer::source(
        r.ctx.options.installer.as_deref(),
        &r.host.install,
        r.ctx.env.get("CAIRN_INSTALLER").map(PathBuf::from),
        &r.ctx.inventory.root,
    )
    .map_err(|e| PhaseError::Config { what: e.to_string(), help: e.help() })?
    .ok_or_else(|| PhaseError::Config {
        what: format!("no installer bundle is configured for this host ({arch})"),
        help: format!(
            "set `installer` on the host or its provider to a nixos-images kexec tarball for \
             {arch}: a local file, or its URL with `installer_sha256` (GitHub shows each \
             release file's sha256 on https://github.com/nix-community/nixos-images/releases), \
             e.g. nixos-kexec-installer-noninteractive-{arch}-linux.tar.gz; or pass --installer"
        ),
    })?;
    installer::check_arch(&source, arch).map_err(|what| PhaseError::Config {
        what,
        help: "set `installer` to the bundle built for the machine's architecture \
               (nixos-images names it in the file name, e.g. ...-aarch64-linux.tar.gz)"
            .into(),
    })?;
    let path = match &source {
        Source::Local(path) => path.clone(),
        Source::Url(_) => {
            let cache = download::cache_dir().map_err(PhaseError::Download)?;
            download::resolve(&source, &cache).await.map_err(PhaseError::Download)?
        }
    };
    if !path.is_file() {
        return Err(PhaseError::Config {
            what: format!("the installer bundle {} does not exist", path.display()),
            help: "check the `installer` path (relative paths are relative to cairn.hcl)".into(),
        });
    }
    Ok(path)
}

/// How the stock system unpacks the bundle, from its first bytes.
fn bundle_decompressor(path: &std::path::Path) -> Result<&'static str, PhaseError> {
    let mut magic = [0u8; 4];
    let read =
        fs_err::File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic));
    read.map_err(|source| PhaseError::Io {
        what: format!("reading the installer bundle {}", path.display()),
        help: "check the `installer` path".into(),
        source,
    })?;
    match magic {
        [0x1f, 0x8b, ..] => Ok("gzip -dc"),
        [0x28, 0xb5, 0x2f, 0xfd] => Ok("zstd -dc"),
        [0xfd, b'7', b'z', b'X'] => Ok("xz -dc"),
        _ => Ok("cat"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(hostname: &str, root_fs: &str) -> Facts {
        Facts { hostname: hostname.into(), root_fs: root_fs.into(), ..Default::default() }
    }

    #[test]
    fn a_rescue_system_is_installed_from_without_kexec_unless_told_otherwise() {
        let rescue = facts("rescue", "rootfs");
        assert!(
            matches!(jump(None, &rescue), Jump::InPlace(why) if why.starts_with("a rescue system (host name rescue, root on rootfs)"))
        );
        assert!(matches!(jump(Some(false), &rescue), Jump::InPlace(_)));
        assert_eq!(jump(Some(true), &rescue), Jump::Kexec);
    }

    #[test]
    fn a_stock_system_is_never_taken_for_a_rescue_system() {
        // Named `rescue`, but running from its disk: the jump, as for any stock system.
        assert_eq!(jump(None, &facts("rescue", "ext4")), Jump::Kexec);
        assert_eq!(jump(None, &facts("web1", "ext4")), Jump::Kexec);
        // In RAM but not named so: cairn does not guess.
        assert_eq!(jump(None, &facts("localhost", "tmpfs")), Jump::Kexec);
    }

    #[test]
    fn kexec_false_on_a_system_running_from_its_disk_is_refused() {
        let Jump::Refuse { what, help } = jump(Some(false), &facts("web1", "ext4")) else {
            panic!("not refused")
        };
        assert!(what.contains("root is on a disk (ext4)"), "{what}");
        assert!(help.contains("rescue system"), "{help}");
        assert!(matches!(jump(Some(false), &facts("web1", "tmpfs")), Jump::InPlace(_)));
    }
}
