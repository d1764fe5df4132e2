//! One host's run as the phases share it: the host, its machine, the open SSH session (to
//! one stage at a time), the built closure, the deadlines; and the helpers every phase uses
//! (connect to a stage, read the machine's facts, state updates).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::{Budgets, Context, Deadlines, PhaseError};
use crate::inventory::{Host, Wait};
use crate::nix::{PathInfo, StorePath};
use crate::provider::Provider;
use crate::reach::{self, Recorded, Trust};
use crate::ssh::{self, RemoteCommand, Session};
use crate::state::{HostState, KeyPhase};

const FACTS_SH: &str = include_str!("../../templates/bootstrap/facts.sh");

/// The status of cloud-init's forced command on a login it disables (`disable_root`, as on
/// Debian, Ubuntu and Amazon Linux cloud images): it prints `Please login as the user "admin"
/// rather than the user "root".`, sleeps 10 s and exits 142, whatever was asked.
const REFUSED_LOGIN_STATUS: u32 = 142;

/// The error for a login the image refuses, naming the user it asks for.
fn refused_login(stdout: &str, user: &str) -> PhaseError {
    let wanted = stdout
        .split_once("Please login as the user \"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(wanted, _)| wanted.to_owned());
    match wanted {
        Some(wanted) => PhaseError::Config {
            what: format!(
                "the stock image refuses logins as `{user}` and asks for `{wanted}` (cloud-init's disable_root)"
            ),
            help: format!(
                "set `ssh {{ user = \"{wanted}\" }}` on the host (or its provider's default): cairn logs in as that user and uses sudo; after kexec the installer takes the operator key as root"
            ),
        },
        None => PhaseError::Remote {
            what: format!(
                "the facts script exited with status {REFUSED_LOGIN_STATUS} as `{user}` (a forced command?): {}",
                stdout.lines().next().unwrap_or("no output")
            ),
            help: "log in by hand with `cairn ssh` to see what the machine runs for this key".into(),
        },
    }
}

/// What `facts.sh` reports.
#[derive(Debug, Clone, Default)]
pub(super) struct Facts {
    pub installer: bool,
    pub boot_id: String,
    pub mem_mib: u64,
    pub mnt_mounted: bool,
    pub os_id: String,
    /// `uname -m`: which installer bundles can run.
    pub arch: String,
    /// The host cairn installed this system for (its install marker), if any.
    pub installed_for: Option<String>,
    /// The kernel's host name.
    pub hostname: String,
    /// The file system type of the running system's root (`ext4`, `tmpfs`, `rootfs`...).
    pub root_fs: String,
}

impl Facts {
    /// Whether the running system's root is on no local disk: in RAM (the initramfs'
    /// `rootfs`, `tmpfs`, `ramfs`, a live system's `overlay`) or on the network (`nfs`), as
    /// a rescue system or an installer runs. Wiping the disks then takes nothing it runs from.
    pub fn root_off_disk(&self) -> bool {
        matches!(self.root_fs.as_str(), "rootfs" | "tmpfs" | "ramfs" | "overlay" | "nfs" | "nfs4")
    }

    /// A hosting provider's rescue system, as Hetzner's is: a Debian booted from the network
    /// into RAM, host name `rescue`, no installer marker. Both the name and a root off the
    /// disks are required: a stock system named `rescue` still runs from its disk.
    pub fn rescue(&self) -> bool {
        !self.installer && self.hostname == "rescue" && self.root_off_disk()
    }
}

impl Facts {
    fn parse(text: &str) -> Self {
        let map: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
        Facts {
            installer: map.get("installer") == Some(&"yes"),
            boot_id: map.get("boot_id").unwrap_or(&"").trim().to_string(),
            // Physical RAM where the kernel reports its memory blocks, else MemTotal.
            mem_mib: ["phys_kib", "mem_kib"]
                .iter()
                .find_map(|k| map.get(k).and_then(|v| v.trim().parse::<u64>().ok()))
                .unwrap_or(0)
                / 1024,
            mnt_mounted: map.get("mnt_mounted") == Some(&"yes"),
            os_id: map.get("os_id").unwrap_or(&"unknown").to_string(),
            arch: map.get("arch").unwrap_or(&"unknown").trim().to_string(),
            installed_for: map
                .get("cairn_host")
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty()),
            hostname: map.get("hostname").unwrap_or(&"").trim().to_string(),
            root_fs: map.get("root_fs").unwrap_or(&"").trim().to_string(),
        }
    }
}

pub(super) struct HostRun<'a> {
    pub ctx: &'a Context,
    pub host: &'a Host,
    pub provider: Arc<dyn Provider>,
    /// The open session, and the stage it reached.
    pub session: Option<(KeyPhase, Session)>,
    /// The system built in this run, and its closure.
    pub toplevel: Option<StorePath>,
    pub closure: Vec<PathInfo>,
    /// Whether a phase that changes the machine ran (else a verified run changed nothing).
    pub ran_any: bool,
    pub deadlines: Deadlines,
    pub budgets: Budgets,
    /// The limit of the running phase's remote commands outside its waits, applied to every
    /// session the phase opens or reuses.
    pub command_limit: ssh::TimeLimit,
    /// The upload rate to the target measured in this run (the installer bundle's), in
    /// bytes per second: what the copy phase chooses its strategy by.
    pub link_rate: Option<f64>,
}

impl HostRun<'_> {
    pub(super) fn name(&self) -> &str {
        self.host.name.as_str()
    }

    pub(super) fn state_snapshot(&self) -> HostState {
        self.ctx.state.host(self.name()).unwrap_or_default()
    }

    pub(super) fn update_state(&self, f: impl FnOnce(&mut HostState)) -> Result<(), PhaseError> {
        self.ctx.state.update_host(self.name(), f)?;
        Ok(())
    }

    /// A session to the system in `stage`, reusing the open one when it matches; a new one
    /// may take as long as the `wait` deadline allows.
    pub(super) async fn session(
        &mut self,
        stage: KeyPhase,
        wait: Wait,
    ) -> Result<&Session, PhaseError> {
        let limit = self.deadlines.get(wait);
        self.session_within(stage, wait, limit).await
    }

    /// [`Self::session`] with only `within` left of the `wait` deadline. A machine that does
    /// not answer in time is a [`PhaseError::Timeout`] of `wait`.
    pub(super) async fn session_within(
        &mut self,
        stage: KeyPhase,
        wait: Wait,
        within: Duration,
    ) -> Result<&Session, PhaseError> {
        if let Some((open, session)) = self.session.as_mut() {
            if *open == stage {
                session.set_command_limit(self.command_limit.clone());
                return Ok(&self.session.as_ref().expect("checked").1);
            }
        }
        if let Some((_, old)) = self.session.take() {
            old.close().await;
        }
        let state = self.state_snapshot();
        let location = self.ctx.state.location();
        let repository_key = self.repository_key()?;
        let recorded = Recorded {
            host: self.name(),
            state: &state,
            location: &location,
            repository_key: repository_key.as_deref(),
        };
        let mut route = reach::route(self.host, &recorded, stage)?;
        if self.ctx.options.reinstall {
            route = route.allowing_reinstall();
        }
        let (target, policy) = (route.target.clone(), route.policy());
        let record = matches!(route.trust, Trust::FirstContact);
        let options = ssh::ConnectOptions {
            pinned_key_location: route.key_location.clone(),
            command_limit: self.command_limit.clone(),
            ..Default::default()
        };
        let deadline = tokio::time::Instant::now() + within;
        let session = match ssh::wait_reachable(
            &target,
            &self.ctx.operator.auth,
            &policy,
            &options,
            deadline,
        )
        .await
        {
            Ok(session) => session,
            Err(ssh::Error::Unreachable { target, attempts, last_error, .. }) => {
                return Err(PhaseError::timeout(
                    wait,
                    self.deadlines.get(wait),
                    format!("{target} did not answer over SSH"),
                    format!("{last_error} ({attempts} attempts)"),
                    format!(
                        "{}; check that it got the address cairn uses and that sshd listens on port {}",
                        self.console_hint(),
                        target.port
                    ),
                ))
            }
            // The host's own key where a stock image was expected: the installed host.
            Err(ssh::Error::KnownHostKey { target, presented }) => {
                let reached_at = target.to_string();
                return Err(reach::installed::refused(&recorded, &reached_at, &presented).into());
            }
            Err(e) => return Err(e.into()),
        };
        if record {
            let address = session.target().to_string();
            if let Err(e) = super::confirm::before_trusting(self, address, session.host_key()).await
            {
                session.close().await;
                return Err(e);
            }
            let line = session.host_key().to_openssh().map_err(|e| PhaseError::Remote {
                what: format!("the host key the machine presented cannot be encoded: {e}"),
                help: "this is a bug in cairn".into(),
            })?;
            tracing::info!(key = %ssh::fingerprint(session.host_key()), "recorded the stock image's host key");
            self.update_state(|h| {
                h.host_keys.insert(KeyPhase::Stock, vec![line]);
            })?;
        }
        self.session = Some((stage, session));
        Ok(&self.session.as_ref().expect("just set").1)
    }

    /// The host's own SSH public key line, if the repository holds one.
    pub(super) fn repository_key(&self) -> Result<Option<String>, PhaseError> {
        Ok(crate::keys::HostKeyStore::new(&self.ctx.inventory.root).load_public(self.name())?)
    }

    /// Before anything is done to a machine reached as a stock image: refuses one whose
    /// install marker says cairn installed it (unless `--reinstall`); reach decides.
    pub(super) fn refuse_if_installed(&self, facts: &Facts) -> Result<(), PhaseError> {
        if self.ctx.options.reinstall {
            return Ok(());
        }
        let state = self.state_snapshot();
        let location = self.ctx.state.location();
        let recorded = Recorded {
            host: self.name(),
            state: &state,
            location: &location,
            repository_key: None,
        };
        let reached_at = match &self.session {
            Some((_, s)) => s.target().to_string(),
            None => self.name().to_owned(),
        };
        reach::installed::check_marker(&recorded, &reached_at, facts.installed_for.as_deref())?;
        Ok(())
    }

    pub(super) async fn facts(&mut self, stage: KeyPhase, wait: Wait) -> Result<Facts, PhaseError> {
        let limit = self.deadlines.get(wait);
        self.facts_within(stage, wait, limit).await
    }

    pub(super) async fn facts_within(
        &mut self,
        stage: KeyPhase,
        wait: Wait,
        within: Duration,
    ) -> Result<Facts, PhaseError> {
        // The facts are part of the wait: they get what is left of its deadline.
        let deadline = tokio::time::Instant::now() + within;
        let deadlines = self.deadlines.clone();
        let session = self.session_within(stage, wait, within).await?;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let limit = deadlines.command_limit(wait, left);
        let facts = RemoteCommand::script("facts", FACTS_SH)
            .time_limit(limit)
            .allow_exit_codes([REFUSED_LOGIN_STATUS]);
        let out = session.exec(&facts).await?;
        if out.exit_code == REFUSED_LOGIN_STATUS {
            let user = session.target().user.clone();
            return Err(refused_login(&out.stdout_trimmed(), &user));
        }
        Ok(Facts::parse(&out.stdout_trimmed()))
    }

    /// Where to look when the machine does not answer: the provider knows (qemu's serial
    /// console log, a cloud's web console).
    pub(super) fn console_hint(&self) -> String {
        self.provider.console_hint(self.host)
    }

    pub(super) fn flake(&self) -> Result<crate::inventory::FlakeRef, PhaseError> {
        let mut flake = self.host.flake.clone().ok_or_else(|| PhaseError::Config {
            what: "the host has no flake".into(),
            help: "add `flake = \".#NAME\"` to the host".into(),
        })?;
        if !flake.flake.contains(':') {
            flake.flake = self.ctx.inventory.root.join(&flake.flake).display().to_string();
        }
        Ok(flake)
    }

    pub(super) async fn built(&mut self) -> Result<StorePath, PhaseError> {
        if self.toplevel.is_none() {
            super::phases::build(self).await?;
        }
        Ok(self.toplevel.clone().expect("built"))
    }
}

/// Errors that mean "not there yet" while a machine boots or jumps.
pub(super) fn is_transient(e: &ssh::Error) -> bool {
    e.is_retryable_connect()
        || matches!(e, ssh::Error::ConnectionLost { .. } | ssh::Error::Unreachable { .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_cloud_init_disabled_names_the_user_to_set() {
        // What cloud-init's DISABLE_USER_OPTS forced command prints (cloudinit/ssh_util.py).
        let said = "Please login as the user \"admin\" rather than the user \"root\".";
        let err = refused_login(said, "root").to_string();
        assert_eq!(
            err,
            "the stock image refuses logins as `root` and asks for `admin` (cloud-init's disable_root)"
        );
        let PhaseError::Config { help, .. } = refused_login(said, "root") else { panic!() };
        assert!(help.starts_with("set `ssh { user = \"admin\" }` on the host"), "{help}");
        assert!(matches!(refused_login("", "root"), PhaseError::Remote { .. }));
    }

    #[test]
    fn facts_are_read_from_key_value_lines() {
        let f = Facts::parse("os_id=debian\nos_variant=\ninstaller=no\nboot_id=abc\narch=x86_64\nmem_kib=1012345\nmnt_mounted=no\n");
        assert!(!f.installer);
        assert_eq!(f.boot_id, "abc");
        assert_eq!(f.mem_mib, 988);
        assert_eq!(f.os_id, "debian");
        assert!(!f.mnt_mounted);
        assert_eq!(f.installed_for, None);
        assert_eq!(Facts::parse("cairn_host=web1\n").installed_for.as_deref(), Some("web1"));
        // A 1 GiB VM: 8 memory blocks of 128 MiB, though MemTotal shows less.
        assert_eq!(Facts::parse("mem_kib=1003520\nphys_kib=1048576\n").mem_mib, 1024);
    }

    #[test]
    fn a_rescue_system_is_named_rescue_and_runs_from_ram() {
        let facts = |text: &str| Facts::parse(text);
        // Hetzner's rescue: a Debian in RAM named `rescue`; the stand-in's initramfs root.
        assert!(facts("os_id=debian\ninstaller=no\nhostname=rescue\nroot_fs=rootfs\n").rescue());
        assert!(facts("installer=no\nhostname=rescue\nroot_fs=overlay\n").rescue());
        // A stock system named `rescue` still runs from its disk: never a rescue system.
        assert!(!facts("installer=no\nhostname=rescue\nroot_fs=ext4\n").rescue());
        // An installer or another system in RAM is not a provider's rescue system.
        assert!(!facts("installer=yes\nhostname=rescue\nroot_fs=rootfs\n").rescue());
        assert!(!facts("installer=no\nhostname=web1\nroot_fs=tmpfs\n").rescue());
        // Old facts (no root_fs line): on a disk, as far as cairn knows.
        assert!(!facts("installer=no\nhostname=rescue\n").rescue());
        assert!(facts("root_fs=tmpfs\n").root_off_disk());
        assert!(!facts("root_fs=xfs\n").root_off_disk());
    }
}
