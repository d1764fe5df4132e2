//! One host's run through the phases.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use super::{
    report_step, BootstrapError, Context, Deadlines, Finished, HostReport, Outcome, Phase,
    PhaseError, PhaseTiming, Verified,
};
use crate::download::{self, Source};
use crate::installer;
use crate::inventory::{HealthCheck, Host, Wait};
use crate::keys::{AgeRecipient, HostKeyStore, HostKeys};
use crate::nix::{PathInfo, StorePath};
use crate::provider::{CreateRequest, Machine, Provider};
use crate::reach::{self, Recorded, Trust};
use crate::ssh::{self, RemoteCommand, Session, UploadSource};
use crate::state::{HostState, KeyPhase, PhaseRecord, VerifiedRecord};
use crate::ui::progress::Step;
use crate::util::parallel::{catch_panic, Panicked};
use crate::util::template::{self, Vars};

const FACTS_SH: &str = include_str!("../../templates/bootstrap/facts.sh");
const KEXEC_SH: &str = include_str!("../../templates/bootstrap/kexec.sh");
const INSTALL_SH: &str = include_str!("../../templates/bootstrap/install.sh");
const REBOOT_SH: &str = include_str!("../../templates/bootstrap/reboot.sh");
const DISKO_SH: &str = include_str!("../../templates/bootstrap/disko.sh");

/// Where the installer bundle is unpacked on the stock system.
const BUNDLE_DIR: &str = "/root/cairn-kexec";
/// Where the disko script's closure is unpacked on the installer before it joins /nix/store.
const DISKO_STAGING: &str = "/root/cairn-disko";
/// The root of the system being installed, on the installer.
const TARGET_ROOT: &str = "/mnt";
/// What the nixos-images kexec installer asks for; a host or provider may lower it for a
/// lighter installer (`installer_min_memory`).
const DEFAULT_INSTALLER_MIN_MEMORY_MIB: u64 = 1024;

/// What `facts.sh` reports.
#[derive(Debug, Clone, Default)]
struct Facts {
    installer: bool,
    boot_id: String,
    mem_mib: u64,
    mnt_mounted: bool,
    os_id: String,
    /// `uname -m`: which installer bundles can run.
    arch: String,
}

impl Facts {
    fn parse(text: &str) -> Self {
        let map: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
        Facts {
            installer: map.get("installer") == Some(&"yes"),
            boot_id: map.get("boot_id").unwrap_or(&"").trim().to_string(),
            mem_mib: map.get("mem_kib").and_then(|k| k.trim().parse::<u64>().ok()).unwrap_or(0)
                / 1024,
            mnt_mounted: map.get("mnt_mounted") == Some(&"yes"),
            os_id: map.get("os_id").unwrap_or(&"unknown").to_string(),
            arch: map.get("arch").unwrap_or(&"unknown").trim().to_string(),
        }
    }
}

struct HostRun<'a> {
    ctx: &'a Context,
    host: &'a Host,
    provider: Arc<dyn Provider>,
    machine: Option<Machine>,
    session: Option<(KeyPhase, Session)>,
    toplevel: Option<StorePath>,
    closure: Vec<PathInfo>,
    ran_any: bool,
    deadlines: Deadlines,
}

/// Runs the pipeline for one host and reports how each phase went.
pub(super) async fn run(ctx: &Context, host: &Host) -> HostReport {
    let started = Instant::now();
    let provider = ctx.providers[&host.provider].clone();
    let mut run = HostRun {
        ctx,
        host,
        provider,
        machine: None,
        session: None,
        toplevel: None,
        closure: Vec::new(),
        ran_any: false,
        deadlines: Deadlines::resolve(&host.timeouts, &ctx.options.timeouts),
    };
    let mut timings = Vec::new();
    let last_done = run.state_snapshot().last_phase.map(|r| r.phase);
    let selected = ctx.options.phases.clone();
    let mut result = Err(BootstrapError {
        host: host.name.to_string(),
        phase: Some(Phase::Verify),
        source: PhaseError::Config {
            what: "no phase ran".into(),
            help: "check the --phases list".into(),
        },
    });
    for phase in Phase::ALL {
        if selected.as_ref().is_some_and(|s| !s.contains(&phase)) {
            continue;
        }
        let phase_started = Instant::now();
        let done_before = selected.is_none() && last_done.is_some_and(|d| phase <= d);
        report_step(host, phase, Step::Started, "");
        let outcome = match catch_panic(run.phase(phase, done_before, last_done)).await {
            Ok(outcome) => outcome,
            Err(Panicked { message }) => Err(PhaseError::Panicked { message }),
        };
        let elapsed = phase_started.elapsed();
        match outcome {
            Ok(PhaseResult::Done) => {
                report_step(host, phase, Step::Done, "");
                run.ran_any |= phase != Phase::Verify && phase != Phase::Provision;
                if let Err(e) = run.record_phase(phase) {
                    result = Err(BootstrapError {
                        host: host.name.to_string(),
                        phase: Some(phase),
                        source: e,
                    });
                    timings.push(PhaseTiming { phase, outcome: Outcome::Failed, elapsed });
                    break;
                }
                timings.push(PhaseTiming { phase, outcome: Outcome::Done, elapsed });
            }
            Ok(PhaseResult::Skipped(why)) => {
                report_step(host, phase, Step::Skipped, &why);
                timings.push(PhaseTiming { phase, outcome: Outcome::Skipped(why), elapsed });
            }
            Ok(PhaseResult::Verified(mut v)) => {
                v.unchanged = !run.ran_any;
                report_step(host, phase, Step::Done, &format!("host key {}", v.host_key));
                if let Err(e) = run.record_phase(phase) {
                    result = Err(BootstrapError {
                        host: host.name.to_string(),
                        phase: Some(phase),
                        source: e,
                    });
                    timings.push(PhaseTiming { phase, outcome: Outcome::Failed, elapsed });
                    break;
                }
                timings.push(PhaseTiming { phase, outcome: Outcome::Done, elapsed });
                result = Ok(Finished::Verified(v));
            }
            Err(source) => {
                report_step(host, phase, Step::Failed, &source.to_string());
                timings.push(PhaseTiming { phase, outcome: Outcome::Failed, elapsed });
                result =
                    Err(BootstrapError { host: host.name.to_string(), phase: Some(phase), source });
                break;
            }
        }
    }
    if let Some((_, session)) = run.session.take() {
        session.close().await;
    }
    // A subset of phases that did not include verify still succeeded.
    if result.as_ref().is_err_and(|e| matches!(e.source, PhaseError::Config { .. }))
        && timings.iter().all(|t| t.outcome != Outcome::Failed)
    {
        result = Ok(Finished::PhasesRan(
            timings.iter().filter(|t| t.outcome == Outcome::Done).map(|t| t.phase).collect(),
        ));
    }
    HostReport { host: host.name.to_string(), result, timings, elapsed: started.elapsed() }
}

enum PhaseResult {
    Done,
    Skipped(String),
    Verified(Verified),
}

impl HostRun<'_> {
    async fn phase(
        &mut self,
        phase: Phase,
        done_before: bool,
        last_done: Option<Phase>,
    ) -> Result<PhaseResult, PhaseError> {
        let done_note = || {
            format!(
                "done earlier (last completed: {})",
                last_done.map(Phase::as_str).unwrap_or("-")
            )
        };
        match phase {
            Phase::Provision => self.provision().await,
            Phase::Reach if done_before => Ok(PhaseResult::Skipped(done_note())),
            Phase::Reach => self.reach().await,
            Phase::Kexec if done_before => Ok(PhaseResult::Skipped(done_note())),
            Phase::Kexec => self.kexec().await,
            // Once installed, the installer's mounts are gone by design: nothing to check.
            Phase::Disk if done_before && last_done >= Some(Phase::Install) => {
                Ok(PhaseResult::Skipped(done_note()))
            }
            Phase::Disk if done_before => self.disk_if_unmounted().await,
            Phase::Disk => self.disk().await,
            Phase::Build if done_before && last_done >= Some(Phase::Install) => {
                Ok(PhaseResult::Skipped(done_note()))
            }
            Phase::Build => self.build().await,
            Phase::Copy if done_before => Ok(PhaseResult::Skipped(done_note())),
            Phase::Copy => self.copy().await,
            Phase::Keys if done_before => Ok(PhaseResult::Skipped(done_note())),
            Phase::Keys => self.keys().await,
            Phase::Install if done_before => Ok(PhaseResult::Skipped(done_note())),
            Phase::Install => self.install().await,
            Phase::Reboot if done_before => Ok(PhaseResult::Skipped(done_note())),
            Phase::Reboot => self.reboot().await,
            Phase::Verify => self.verify().await.map(PhaseResult::Verified),
        }
    }

    fn name(&self) -> &str {
        self.host.name.as_str()
    }

    fn state_snapshot(&self) -> HostState {
        self.ctx.state.host(self.name()).unwrap_or_default()
    }

    fn update_state(&self, f: impl FnOnce(&mut HostState)) -> Result<(), PhaseError> {
        self.ctx.state.update_host(self.name(), f)?;
        Ok(())
    }

    fn record_phase(&self, phase: Phase) -> Result<(), PhaseError> {
        let at = OffsetDateTime::now_utc();
        let at = at.replace_nanosecond(0).unwrap_or(at);
        self.update_state(|h| {
            if h.last_phase.as_ref().is_none_or(|r| phase >= r.phase) {
                h.last_phase = Some(PhaseRecord { phase, at });
            }
            // What verify proved no longer describes a machine changed since.
            if (Phase::Kexec..=Phase::Reboot).contains(&phase) {
                h.bootstrap.verified = None;
            }
        })
    }

    // ---- provision ----------------------------------------------------------------------

    async fn provision(&mut self) -> Result<PhaseResult, PhaseError> {
        let state = self.state_snapshot();
        if let Some(machine) = self.provider.lookup(self.host, Some(&state)).await? {
            let why = format!("{} exists ({:?})", machine.id, machine.status);
            if machine.status != crate::provider::MachineStatus::Running {
                self.provider.power(self.host, &machine, crate::provider::PowerAction::On).await?;
            }
            let machine = self.provider.lookup(self.host, Some(&state)).await?.unwrap_or(machine);
            self.remember_machine(&machine, false)?;
            self.machine = Some(machine);
            return Ok(PhaseResult::Skipped(why));
        }
        let req = CreateRequest { operator_ssh_key: self.ctx.operator.public_line.clone() };
        let machine = self.provider.create(self.host, &req).await?;
        self.remember_machine(&machine, true)?;
        self.machine = Some(machine);
        Ok(PhaseResult::Done)
    }

    /// Records the machine as `cairn apply` does ([`crate::plan::apply::record_machine`]).
    /// `created`: a new machine; what state knew of the old one's keys and progress is
    /// forgotten, and what it was created with is kept so `cairn plan` can tell when the
    /// inventory asks for something else.
    fn remember_machine(&self, machine: &Machine, created: bool) -> Result<(), PhaseError> {
        let desired = crate::plan::Recorded::desired(&self.ctx.inventory, self.host);
        self.update_state(|h| {
            crate::plan::apply::record_machine(
                h,
                &self.host.provider,
                machine,
                created.then_some(&desired),
            )
        })
    }

    // ---- connections --------------------------------------------------------------------

    /// A session to the system in `stage`, reusing the open one when it matches; a new one
    /// may take as long as the `wait` deadline allows.
    async fn session(&mut self, stage: KeyPhase, wait: Wait) -> Result<&Session, PhaseError> {
        let limit = self.deadlines.get(wait);
        self.session_within(stage, wait, limit).await
    }

    /// [`Self::session`] with only `within` left of the `wait` deadline. A machine that does
    /// not answer in time is a [`PhaseError::Timeout`] of `wait`.
    async fn session_within(
        &mut self,
        stage: KeyPhase,
        wait: Wait,
        within: Duration,
    ) -> Result<&Session, PhaseError> {
        if self.session.as_ref().is_some_and(|(s, _)| *s == stage) {
            return Ok(&self.session.as_ref().expect("checked").1);
        }
        if let Some((_, old)) = self.session.take() {
            old.close().await;
        }
        let state = self.state_snapshot();
        let location = self.ctx.state.location();
        let recorded = Recorded { host: self.name(), state: &state, location: &location };
        let route = reach::route(self.host, &recorded, stage)?;
        let (target, policy) = (route.target.clone(), route.policy());
        let record = matches!(route.trust, Trust::FirstContact);
        let options = ssh::ConnectOptions {
            pinned_key_location: route.key_location.clone(),
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
            Err(e) => return Err(e.into()),
        };
        if record {
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

    async fn facts(&mut self, stage: KeyPhase, wait: Wait) -> Result<Facts, PhaseError> {
        let limit = self.deadlines.get(wait);
        self.facts_within(stage, wait, limit).await
    }

    async fn facts_within(
        &mut self,
        stage: KeyPhase,
        wait: Wait,
        within: Duration,
    ) -> Result<Facts, PhaseError> {
        let session = self.session_within(stage, wait, within).await?;
        let out = session.exec(&RemoteCommand::script("facts", FACTS_SH)).await?;
        Ok(Facts::parse(&out.stdout_trimmed()))
    }

    // ---- reach --------------------------------------------------------------------------

    async fn reach(&mut self) -> Result<PhaseResult, PhaseError> {
        // A machine already in the installer (an interrupted run, or rescue) answers with the
        // same carried keys; either way the key is pinned or recorded here.
        let facts = self.facts(KeyPhase::Stock, Wait::Reach).await?;
        tracing::info!(os = %facts.os_id, installer = facts.installer, mem_mib = facts.mem_mib, "reached");
        Ok(PhaseResult::Done)
    }

    // ---- kexec --------------------------------------------------------------------------

    async fn kexec(&mut self) -> Result<PhaseResult, PhaseError> {
        let before = self.facts(KeyPhase::Stock, Wait::Reach).await?;
        if before.installer {
            return Ok(PhaseResult::Skipped("already running an installer".into()));
        }
        let need = self.installer_min_memory();
        if before.mem_mib < need {
            return Err(PhaseError::NotEnoughMemory { have_mib: before.mem_mib, need_mib: need });
        }
        let bundle = self.installer_bundle(&before.arch).await?;
        let decompress = bundle_decompressor(&bundle)?;
        let session = self.session(KeyPhase::Stock, Wait::Reach).await?;
        let unpack = format!(
            "rm -rf {d} && mkdir -p {d} && {decompress} | tar -x -f - -C {d}",
            d = BUNDLE_DIR
        );
        let file = tokio::fs::File::open(&bundle).await.map_err(|source| PhaseError::Io {
            what: format!("opening the installer bundle {}", bundle.display()),
            help: "check the `installer` path".into(),
            source,
        })?;
        tracing::info!(bundle = %bundle.display(), "uploading the installer");
        session.exec_with_input(&RemoteCommand::new("sh").arg("-c").arg(&unpack), file).await?;
        let script = template::render(
            "templates/bootstrap/kexec.sh",
            KEXEC_SH,
            &Vars::new().word("dir", BUNDLE_DIR),
        )?;
        session.exec(&RemoteCommand::script("kexec", script)).await?;
        if let Some((_, s)) = self.session.take() {
            s.close().await;
        }
        // The old system keeps answering for a moment after `kexec/run` returns: wait for
        // the installer's own identity (a new boot id, the installer marker).
        let limit = self.deadlines.get(Wait::Kexec);
        let deadline = Instant::now() + limit;
        let mut last_seen =
            format!("the stock system ({}, boot id {})", before.os_id, before.boot_id);
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
                        "{}; a machine that kexec cannot jump on (some hypervisors, Secure Boot) needs a rescue system or an installer image instead",
                        self.console_hint()
                    ),
                ));
            }
            match self.facts_within(KeyPhase::Installer, Wait::Kexec, left).await {
                Ok(f) if f.boot_id != before.boot_id && f.installer => {
                    let key = self.session.as_ref().map(|(_, s)| s.host_key().to_openssh());
                    if let Some(Ok(line)) = key {
                        self.update_state(|h| {
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
                    if let Some((_, s)) = self.session.take() {
                        s.close().await;
                    }
                }
                Err(PhaseError::Ssh(e)) if is_transient(&e) => last_seen = e.to_string(),
                Err(PhaseError::Timeout { last_seen: seen, .. }) => last_seen = seen,
                Err(e) => return Err(e),
            }
        }
    }

    fn installer_min_memory(&self) -> u64 {
        self.host.install.installer_min_memory.unwrap_or(DEFAULT_INSTALLER_MIN_MEMORY_MIB)
    }

    /// The kexec bundle (see [`crate::installer`]), checked against the machine's
    /// architecture, and downloaded and verified when it is a URL: all before any upload.
    async fn installer_bundle(&self, arch: &str) -> Result<PathBuf, PhaseError> {
        let source = installer::source(
            self.ctx.options.installer.as_deref(),
            &self.host.install,
            self.ctx.env.get("CAIRN_INSTALLER").map(PathBuf::from),
            &self.ctx.inventory.root,
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
                help: "check the `installer` path (relative paths are relative to cairn.hcl)"
                    .into(),
            });
        }
        Ok(path)
    }

    fn console_hint(&self) -> String {
        match self
            .machine
            .as_ref()
            .and_then(|m| m.provider_data.get("dir"))
            .and_then(|d| d.as_str())
        {
            Some(dir) => format!("the VM's serial console log may say why: {dir}/console.log"),
            None if self.ctx.inventory.provider_of(self.host).kind
                == crate::inventory::ProviderKind::Existing =>
            {
                "look at the machine's console".into()
            }
            None => "look at the machine's console in the provider's web interface".into(),
        }
    }

    // ---- disk ---------------------------------------------------------------------------

    async fn disk_if_unmounted(&mut self) -> Result<PhaseResult, PhaseError> {
        let facts = self.facts(KeyPhase::Installer, Wait::Reach).await?;
        if facts.mnt_mounted {
            Ok(PhaseResult::Skipped("done earlier, /mnt is mounted".into()))
        } else {
            tracing::warn!("the disk was prepared earlier but /mnt is not mounted any more: preparing it again");
            self.disk().await
        }
    }

    async fn disk(&mut self) -> Result<PhaseResult, PhaseError> {
        if self.host.install.disko {
            return self.disko().await;
        }
        let layout_name = self.host.disk_layout.as_ref().ok_or_else(|| PhaseError::Config {
            what: "the host has no disk_layout".into(),
            help: "add `disk_layout = \"...\"` to the host (or to `defaults`) naming a disk_layout block".into(),
        })?;
        let layout = &self.ctx.inventory.disk_layouts[layout_name];
        let options = crate::disk::ScriptOptions {
            target: TARGET_ROOT.into(),
            expected_by_id: self.host.install.disk_by_id.clone(),
        };
        let script = crate::disk::render_script(layout, &options)?;
        let session = self.session(KeyPhase::Installer, Wait::Reach).await?;
        session.exec(&RemoteCommand::script("partition", script)).await?;
        // A fresh disk: whatever an earlier copy left is gone.
        Ok(PhaseResult::Done)
    }

    /// `disko = true`: the flake's `diskoScript`, built here like the system, its closure
    /// streamed to the installer, run there. A `disk_layout` on the host still names the
    /// device, which is checked first (nothing is touched if it is not the expected disk).
    async fn disko(&mut self) -> Result<PhaseResult, PhaseError> {
        let options = crate::disk::ScriptOptions {
            target: TARGET_ROOT.into(),
            expected_by_id: self.host.install.disk_by_id.clone(),
        };
        if let Some(layout) =
            self.host.disk_layout.as_ref().map(|n| &self.ctx.inventory.disk_layouts[n])
        {
            let check = crate::disk::render_device_check(layout, &options)?;
            let session = self.session(KeyPhase::Installer, Wait::Reach).await?;
            session.exec(&RemoteCommand::script("disk-check", check)).await?;
        }
        let flake = self.flake()?;
        let installable = crate::nix::installable_for_build(&flake, "diskoScript");
        let script = self.ctx.options.nix.build(&installable).await?;
        let closure = self.ctx.options.nix.closure(std::slice::from_ref(&script)).await?;
        tracing::info!(script = %script, paths = closure.len(), "built the flake's disko script");
        // The copy phase's stream, into a staging root: the installer's own store may hold
        // paths cairn did not send, which the stream's resume would take for cut-off ones.
        self.session(KeyPhase::Installer, Wait::Reach).await?;
        let (_, session) = self.session.as_ref().expect("just connected");
        super::copy::stream_closure(session, &closure, DISKO_STAGING).await?;
        let run = template::render(
            "templates/bootstrap/disko.sh",
            DISKO_SH,
            &Vars::new().word("staging", DISKO_STAGING).word("script", script.as_str()),
        )?;
        let session = self.session(KeyPhase::Installer, Wait::Reach).await?;
        session.exec(&RemoteCommand::script("disko", run)).await?;
        Ok(PhaseResult::Done)
    }

    // ---- build --------------------------------------------------------------------------

    async fn build(&mut self) -> Result<PhaseResult, PhaseError> {
        let flake = self.flake()?;
        let toplevel = self.ctx.options.nix.build_toplevel(&flake).await?;
        let closure = self.ctx.options.nix.closure(std::slice::from_ref(&toplevel)).await?;
        let bytes: u64 = closure.iter().map(|p| p.nar_size).sum();
        tracing::info!(system = %toplevel, paths = closure.len(), mib = bytes / (1024 * 1024), "built");
        self.toplevel = Some(toplevel);
        self.closure = closure;
        Ok(PhaseResult::Done)
    }

    fn flake(&self) -> Result<crate::inventory::FlakeRef, PhaseError> {
        let mut flake = self.host.flake.clone().ok_or_else(|| PhaseError::Config {
            what: "the host has no flake".into(),
            help: "add `flake = \".#NAME\"` to the host".into(),
        })?;
        if !flake.flake.contains(':') {
            flake.flake = self.ctx.inventory.root.join(&flake.flake).display().to_string();
        }
        Ok(flake)
    }

    async fn built(&mut self) -> Result<StorePath, PhaseError> {
        if self.toplevel.is_none() {
            self.build().await?;
        }
        Ok(self.toplevel.clone().expect("built"))
    }

    // ---- copy ---------------------------------------------------------------------------

    async fn copy(&mut self) -> Result<PhaseResult, PhaseError> {
        let toplevel = self.built().await?;
        let strategy = self.host.install.copy.unwrap_or_default();
        self.session(KeyPhase::Installer, Wait::Reach).await?;
        let (_, session) = self.session.as_ref().expect("just connected");
        let job = super::copy::CopyJob {
            strategy,
            closure: &self.closure,
            toplevel: &toplevel,
            root: TARGET_ROOT,
            nix: &self.ctx.options.nix,
            identity: &self.ctx.operator.private_key_path,
        };
        super::copy::copy_closure(session, &job).await?;
        Ok(PhaseResult::Done)
    }

    // ---- keys ---------------------------------------------------------------------------

    async fn keys(&mut self) -> Result<PhaseResult, PhaseError> {
        let keys = self.host_keys()?;
        let operator = format!("{}\n", self.ctx.operator.public_line);
        let session = self.session(KeyPhase::Installer, Wait::Reach).await?;
        let dirs = format!(
            "mkdir -p -m 0755 {r}/etc/ssh {r}/var/lib && mkdir -p -m 0700 {r}/root/.ssh {r}/var/lib/sops-nix",
            r = TARGET_ROOT
        );
        session.exec(&RemoteCommand::new("sh").arg("-c").arg(&dirs)).await?;
        let private = keys.ssh_private_openssh();
        session
            .upload(
                UploadSource::Bytes(private.as_bytes()),
                &format!("{TARGET_ROOT}/etc/ssh/ssh_host_ed25519_key"),
                0o600,
            )
            .await?;
        let public = format!("{}\n", keys.ssh_public_line());
        session
            .upload(
                UploadSource::Bytes(public.as_bytes()),
                &format!("{TARGET_ROOT}/etc/ssh/ssh_host_ed25519_key.pub"),
                0o644,
            )
            .await?;
        if let Some(age) = keys.age_identity() {
            let text = zeroize::Zeroizing::new(format!("{}\n", age.expose_secret()));
            session
                .upload(
                    UploadSource::Bytes(text.as_bytes()),
                    &format!("{TARGET_ROOT}/var/lib/sops-nix/key.txt"),
                    0o600,
                )
                .await?;
        }
        session
            .upload(
                UploadSource::Bytes(operator.as_bytes()),
                &format!("{TARGET_ROOT}/root/.ssh/authorized_keys"),
                0o600,
            )
            .await?;
        Ok(PhaseResult::Done)
    }

    /// The host's keys: loaded from the repository, or generated, stored encrypted to the
    /// admins, and their public halves recorded in state. The host's secrets are re-keyed to
    /// include it, so it decrypts them on first boot.
    fn host_keys(&self) -> Result<HostKeys, PhaseError> {
        let inv = &self.ctx.inventory;
        let store = HostKeyStore::new(&inv.root);
        let identities = crate::keys::Identities::discover(&self.ctx.env);
        let codec = crate::keys::store::SopsBinaryCodec { keyring: &identities };
        let keys = if store.exists(self.name()) {
            store.load(self.name(), &codec)?
        } else {
            let admins = inv
                .admins
                .iter()
                .map(|a| AgeRecipient::parse(&a.age))
                .collect::<Result<Vec<_>, _>>()?;
            let separate = self.host.install.age_key;
            let keys = HostKeys::generate(&self.host.name, separate);
            store.save(&keys, &admins, &codec)?;
            tracing::info!(key = %keys.ssh_public_line(), "generated the host's keys");
            keys
        };
        let recipient = keys.age_recipient().to_string();
        let public = keys.ssh_public_line().to_string();
        self.update_state(|h| {
            h.ssh_public_key = Some(public.clone());
            h.age_recipient = Some(recipient);
            h.host_keys.insert(KeyPhase::Installed, vec![public]);
        })?;
        let recipients: BTreeMap<String, String> = self
            .ctx
            .state
            .snapshot()
            .hosts
            .into_iter()
            .filter_map(|(n, h)| Some((n, h.age_recipient?)))
            .collect();
        super::secrets::update_recipients(inv, &recipients, &identities)?;
        Ok(keys)
    }

    // ---- install ------------------------------------------------------------------------

    async fn install(&mut self) -> Result<PhaseResult, PhaseError> {
        let system = self.built().await?;
        let script = template::render(
            "templates/bootstrap/install.sh",
            INSTALL_SH,
            &Vars::new().word("root", TARGET_ROOT).word("system", system.as_str()),
        )?;
        let session = self.session(KeyPhase::Installer, Wait::Reach).await?;
        session.exec(&RemoteCommand::script("install", script)).await?;
        let system = system.as_str().to_string();
        self.update_state(|h| h.bootstrap.system = Some(system))?;
        Ok(PhaseResult::Done)
    }

    // ---- reboot -------------------------------------------------------------------------

    async fn reboot(&mut self) -> Result<PhaseResult, PhaseError> {
        let facts = self.facts(KeyPhase::Installer, Wait::Reach).await?;
        if !facts.installer {
            return Ok(PhaseResult::Skipped("not in the installer any more".into()));
        }
        let installer_boot = facts.boot_id.clone();
        self.update_state(|h| h.bootstrap.installer_boot_id = Some(installer_boot))?;
        let session = self.session(KeyPhase::Installer, Wait::Reach).await?;
        match session.exec(&RemoteCommand::script("reboot", REBOOT_SH)).await {
            Ok(_) => {}
            Err(e) if is_transient(&e) => {}
            Err(e) => return Err(e.into()),
        }
        if let Some((_, s)) = self.session.take() {
            s.close().await;
        }
        Ok(PhaseResult::Done)
    }

    // ---- verify -------------------------------------------------------------------------

    async fn verify(&mut self) -> Result<Verified, PhaseError> {
        let state = self.state_snapshot();
        let installer_boot = state.bootstrap.installer_boot_id.clone();
        let limit = self.deadlines.get(Wait::Reboot);
        let deadline = Instant::now() + limit;
        let old_keys: Vec<String> = [KeyPhase::Stock, KeyPhase::Installer]
            .iter()
            .filter_map(|p| state.host_keys.get(p))
            .flatten()
            .filter_map(|line| russh::keys::PublicKey::from_openssh(line.trim()).ok())
            .map(|k| ssh::fingerprint(&k))
            .collect();
        let mut last_seen = String::from("nothing: no connection was tried");
        // Only the key cairn generated is accepted: a stock image or an installer answering
        // here (the reboot did not happen, or booted the wrong disk) is refused.
        let facts = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(PhaseError::timeout(
                    Wait::Reboot,
                    limit,
                    "the installed system did not answer with its own host key",
                    last_seen,
                    format!(
                        "{}; if it booted but has another address now, set the host's `address`",
                        self.console_hint()
                    ),
                ));
            }
            match self.facts_within(KeyPhase::Installed, Wait::Reboot, left).await {
                Ok(f) if !f.installer && installer_boot.as_deref() != Some(f.boot_id.as_str()) => break f,
                Ok(f) => {
                    return Err(PhaseError::Remote {
                        what: format!("the host answered but is still the installer (boot id {})", f.boot_id),
                        help: "the reboot did not happen or the boot loader is wrong; run with --phases install,reboot,verify".into(),
                    })
                }
                Err(PhaseError::Ssh(e)) if is_transient(&e) => {
                    last_seen = e.to_string();
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                Err(PhaseError::Timeout { last_seen: seen, .. }) => last_seen = seen,
                // The installer answers for a moment after `reboot`, with its own (known) key:
                // not the installed system yet, so wait; any other key is refused.
                Err(PhaseError::Ssh(ssh::Error::HostKeyMismatch { presented, .. }))
                    if old_keys.contains(&presented) =>
                {
                    tracing::debug!("the installer still answers; waiting for the reboot");
                    last_seen = format!("the installer still answering with its key {presented}");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                Err(e) => return Err(e),
            }
        };
        let session = self.session(KeyPhase::Installed, Wait::Reboot).await?;
        let host_key = ssh::fingerprint(session.host_key());
        let target = session.target().to_string();
        let root_device = session
            .exec(
                &RemoteCommand::new("sh")
                    .arg("-c")
                    .arg("awk '$2 == \"/\" { d = $1 } END { print d }' /proc/mounts"),
            )
            .await?
            .stdout_trimmed();
        let checks = self.health_checks().await?;
        let at = OffsetDateTime::now_utc();
        let record = VerifiedRecord {
            at: at.replace_nanosecond(0).unwrap_or(at),
            boot_id: facts.boot_id.clone(),
            host_key: host_key.clone(),
        };
        self.update_state(|h| h.bootstrap.verified = Some(record))?;
        Ok(Verified {
            address: target,
            host_key,
            boot_id: facts.boot_id,
            root_device,
            checks,
            unchanged: false,
        })
    }

    async fn health_checks(&mut self) -> Result<Vec<String>, PhaseError> {
        let checks: Vec<(String, String)> = if self.host.health_checks.is_empty() {
            DEFAULT_HEALTH_CHECKS.iter().map(|(l, c)| (l.to_string(), c.to_string())).collect()
        } else {
            self.host.health_checks.iter().map(health_check_command).collect()
        };
        let limit = self.deadlines.get(Wait::Verify);
        let deadline = Instant::now() + limit;
        let mut passed = Vec::new();
        for (label, command) in checks {
            let mut output = String::new();
            let mut exit = None;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(PhaseError::health_check(self.name(), label, &output, exit, limit));
                }
                let session = self.session_within(KeyPhase::Installed, Wait::Verify, left).await?;
                let check = RemoteCommand::new("sh")
                    .arg("-c")
                    .arg(format!("exec 2>&1\n{command}"))
                    .allow_exit_codes(1..=255);
                let run = session.exec(&check);
                // A check that hangs (a unit that never settles) fails at the deadline too.
                match tokio::time::timeout(left, run).await {
                    Ok(out) => {
                        let out = out?;
                        if out.exit_code == 0 {
                            passed.push(label);
                            break;
                        }
                        output = out.stdout_trimmed();
                        exit = Some(out.exit_code);
                    }
                    // Cut off by the deadline: the last complete run (if any) says more.
                    Err(_) => continue,
                }
                let left = deadline.saturating_duration_since(Instant::now());
                tokio::time::sleep(left.min(Duration::from_secs(2))).await;
            }
        }
        Ok(passed)
    }
}

/// The checks of a NixOS host that names none: (what it proves, the shell command).
const DEFAULT_HEALTH_CHECKS: [(&str, &str); 3] = [
    (
        "the system finished booting without failed units",
        "state=$(systemctl is-system-running --wait); echo \"$state\"; \
         [ \"$state\" = running ] || { systemctl --failed --no-legend --plain; exit 1; }",
    ),
    ("comin.service is active", "systemctl is-active comin.service"),
    (
        "its sops secrets are decrypted (/run/secrets is not empty)",
        "ls -A /run/secrets | grep -q . || { echo '/run/secrets is empty or missing'; exit 1; }",
    ),
];

/// A configured check as (what it proves, the shell command that proves it).
fn health_check_command(check: &HealthCheck) -> (String, String) {
    match check {
        HealthCheck::SystemdUnit { unit } => {
            (format!("{unit} is active"), format!("systemctl is-active {}", ssh::quote(unit)))
        }
        HealthCheck::Command { command } => (format!("`{command}` succeeds"), command.clone()),
        HealthCheck::FileExists { path } => (
            format!("{path} exists"),
            format!("test -e {p} || {{ echo 'no such file: '{p}; exit 1; }}", p = ssh::quote(path)),
        ),
    }
}

/// Errors that mean "not there yet" while a machine boots or jumps.
fn is_transient(e: &ssh::Error) -> bool {
    e.is_retryable_connect()
        || matches!(e, ssh::Error::ConnectionLost { .. } | ssh::Error::Unreachable { .. })
}

/// How the stock system unpacks the bundle, from its first bytes.
fn bundle_decompressor(path: &std::path::Path) -> Result<&'static str, PhaseError> {
    let mut magic = [0u8; 4];
    let read =
        std::fs::File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic));
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

    #[test]
    fn facts_are_read_from_key_value_lines() {
        let f = Facts::parse("os_id=debian\nos_variant=\ninstaller=no\nboot_id=abc\narch=x86_64\nmem_kib=1012345\nmnt_mounted=no\n");
        assert!(!f.installer);
        assert_eq!(f.boot_id, "abc");
        assert_eq!(f.mem_mib, 988);
        assert_eq!(f.os_id, "debian");
        assert!(!f.mnt_mounted);
    }
}
