//! The copy phase's default strategy: what the target already holds, then the rest of the
//! closure as one tar stream over one SSH channel, in zstd frames compressed or not as the
//! measured rates say, with progress a user can follow and a resume that never trusts a
//! path an interrupted copy cut off.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::PhaseError;
use crate::nix::{PathInfo, StorePath, TarStream, TransferOptions};
use crate::ssh::{RemoteCommand, Session};
use crate::util::template::{self, Vars};

const COPY_STATUS_SH: &str = include_str!("../../templates/bootstrap/copy-status.sh");
const COPY_UNPACK_SH: &str = include_str!("../../templates/bootstrap/copy-unpack.sh");
const REGISTER_SH: &str = include_str!("../../templates/bootstrap/register.sh");
const GATE_SH: &str = include_str!("../../templates/bootstrap/gate.sh");

/// How often a long copy says how far it got.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
const MIB: f64 = 1024.0 * 1024.0;

/// How the copy phase moves the closure: `copy = "stream"` (the default) or `"nix-copy"` on a
/// host or its provider.
pub use crate::inventory::CopyStrategy as Strategy;

/// One copy of a closure to the machine of an SSH session.
pub struct CopyJob<'a> {
    pub strategy: Strategy,
    /// The closure of `toplevel`, as `nix path-info --recursive --json` reports it.
    pub closure: &'a [PathInfo],
    pub toplevel: &'a StorePath,
    /// The directory on the target holding `nix/store` (`/mnt`).
    pub root: &'a str,
    pub nix: &'a crate::nix::Nix,
    /// The private key `nix copy` logs in with (the session's own credentials).
    pub identity: &'a std::path::Path,
}

/// The copy phase after its session is open: the closure into `root` on the target,
/// registered in the target's Nix database.
pub async fn copy_closure(session: &Session, job: &CopyJob<'_>) -> Result<(), PhaseError> {
    match job.strategy {
        // The target's own Nix registers what it receives.
        Strategy::NixCopy => {
            nix_copy(session, job.nix, job.closure, job.toplevel, job.identity, job.root).await?;
        }
        Strategy::Stream => {
            let register = Registration {
                nix_store: nix_store(job.closure, job.toplevel)?,
                text: crate::nix::load_db_registration(job.closure),
            };
            copy_stream(session, job.closure, job.root, Some(register)).await?;
        }
    }
    Ok(())
}

/// What registers the streamed paths: every path of the closure (idempotent) goes into the
/// target's Nix database with the closure's own nix-store, run in a chroot
/// (templates/bootstrap/register.sh), so the target needs no Nix.
struct Registration {
    /// `.../bin/nix-store` in the closure.
    nix_store: String,
    /// `nix-store --load-db` input.
    text: String,
}

/// `.../bin/nix-store` from the closure itself.
fn nix_store(closure: &[PathInfo], toplevel: &StorePath) -> Result<String, PhaseError> {
    // The system's own (NixOS: sw/bin) first, else any package in the closure.
    let system = std::iter::once(format!("{}/sw/bin/nix-store", toplevel.as_str()));
    let packages = closure.iter().map(|p| format!("{}/bin/nix-store", p.path.as_str()));
    system.chain(packages).find(|candidate| std::path::Path::new(candidate).exists()).ok_or_else(
        || PhaseError::Config {
            what: "the system's closure contains no nix-store to register the copied paths with"
                .into(),
            help: "every NixOS system includes Nix; for a custom system add a nix package to its closure"
                .into(),
        },
    )
}

/// Copies the closure of `toplevel` into the store under `root` on the session's machine
/// with `nix copy`, trusting only the host key the session verified.
async fn nix_copy(
    session: &Session,
    nix: &crate::nix::Nix,
    closure: &[PathInfo],
    toplevel: &StorePath,
    identity: &std::path::Path,
    root: &str,
) -> Result<Duration, PhaseError> {
    let started = Instant::now();
    let target = session.target();
    let dir = tempfile::Builder::new().prefix("cairn-nix-copy-").tempdir().map_err(|source| {
        PhaseError::Io {
            what: "creating a temporary directory for the pinned known_hosts".into(),
            help: "check TMPDIR".into(),
            source,
        }
    })?;
    let known_hosts = dir.path().join("known_hosts");
    let pinned = crate::ssh::known_hosts(target, std::slice::from_ref(session.host_key()));
    crate::util::atomic::write(&known_hosts, pinned.as_bytes(), 0o600).map_err(|source| {
        PhaseError::Io {
            what: format!("writing {}", known_hosts.display()),
            help: "check TMPDIR".into(),
            source,
        }
    })?;
    let store = crate::nix::SshStore {
        user: target.user.clone(),
        host: target.host.clone(),
        port: target.port,
        root: root.to_string(),
        known_hosts,
        identity: Some(identity.to_owned()),
    };
    let bytes: u64 = closure.iter().map(|p| p.nar_size).sum();
    tracing::info!(
        "copy: nix copy of {} paths ({}) to {}, sending what the target lacks",
        closure.len(),
        mib(bytes),
        store.url()
    );
    // The copy budget holds for `nix copy` too: a hung transfer is stopped (the process is
    // killed when its future is dropped).
    let limit = session.command_limit().clone();
    match tokio::time::timeout(limit.after, nix.copy_to(&store, std::slice::from_ref(toplevel)))
        .await
    {
        Ok(copied) => copied?,
        Err(_) => {
            return Err(PhaseError::Remote {
                what: format!("`nix copy` to {target} did not finish within {}", limit.name),
                help: format!(
                    "cairn stopped it. Check the link and the target's disk; if it only needs \
                     more time, raise the limit: {}",
                    limit.raise
                ),
            })
        }
    }
    let elapsed = started.elapsed();
    tracing::info!("copy: nix copy done in {:.1} s", elapsed.as_secs_f64());
    Ok(elapsed)
}

/// What `copy-status.sh` found on the target.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct TargetStore {
    /// Names (`hash-name`) of paths an earlier copy completed.
    pub complete: BTreeSet<String>,
    /// Names of paths an interrupted copy left unfinished (or finished but not yet
    /// recorded), now removed.
    pub removed: Vec<String>,
}

impl TargetStore {
    pub(super) fn parse(text: &str) -> Self {
        let mut store = TargetStore::default();
        for line in text.lines() {
            match line.trim().split_once(' ') {
                Some(("complete", name)) => {
                    store.complete.insert(name.to_string());
                }
                Some(("removed", name)) => store.removed.push(name.to_string()),
                _ => {}
            }
        }
        store
    }
}

/// What one copy did, for the phase's log line and the benchmark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CopyReport {
    pub total: usize,
    pub already: usize,
    pub sent_paths: usize,
    /// NAR size of the paths sent.
    pub sent_nar_bytes: u64,
    /// Compressed bytes on the wire.
    pub wire_bytes: u64,
    pub elapsed: Duration,
}

/// The line a user reads before the transfer starts.
pub(super) fn plan_line(total: usize, already: usize, nar_bytes: u64) -> String {
    let sending = total - already;
    if sending == 0 {
        return format!("copy: all {total} paths already on the target, sending nothing");
    }
    format!(
        "copy: {already} of {total} paths already on the target, sending {sending} ({})",
        mib(nar_bytes)
    )
}

fn mib(bytes: u64) -> String {
    let m = bytes as f64 / MIB;
    if m >= 10.0 {
        format!("{m:.0} MiB")
    } else {
        format!("{m:.1} MiB")
    }
}

/// How much of the stream went which way: `zstd -3 for 40 MiB, uncompressed for 104 MiB`.
pub(super) fn encodings(sent: &[(crate::nix::Compression, u64)]) -> String {
    let parts: Vec<String> =
        sent.iter().map(|(c, bytes)| format!("{c} for {}", mib(*bytes))).collect();
    if parts.is_empty() {
        "nothing".into()
    } else {
        parts.join(", ")
    }
}

/// Streams the paths of `closure` the target lacks into `root` (`/mnt`) over `session`.
pub(super) async fn stream_closure(
    session: &Session,
    closure: &[PathInfo],
    root: &str,
) -> Result<CopyReport, PhaseError> {
    copy_stream(session, closure, root, None).await
}

/// The copy as one remote script (one exec: each costs round trips and the start of a login
/// shell): the target says what it holds (copy-status.sh) and waits (gate.sh); cairn
/// answers with the registration, if any, and the paths the target lacks, which it unpacks
/// (copy-unpack.sh) and then registers (register.sh).
async fn copy_stream(
    session: &Session,
    closure: &[PathInfo],
    root: &str,
    register: Option<Registration>,
) -> Result<CopyReport, PhaseError> {
    let started = Instant::now();
    let script = copy_script(root, register.as_ref().map(|r| r.nix_store.as_str()))?;
    let mut remote =
        session.open_stream(&RemoteCommand::inline_script("copy", script).early_stdout()).await?;
    let found = TargetStore::parse(&remote.stdout_until("ready").await?);
    if !found.removed.is_empty() {
        tracing::info!(
            "copy: removed {} unfinished path{} an interrupted copy left behind: {}",
            found.removed.len(),
            if found.removed.len() == 1 { "" } else { "s" },
            found.removed.join(", ")
        );
    }
    let paths: Vec<StorePath> = closure.iter().map(|p| p.path.clone()).collect();
    let sizes: BTreeMap<&StorePath, u64> = closure.iter().map(|p| (&p.path, p.nar_size)).collect();
    let skip: BTreeSet<StorePath> =
        paths.iter().filter(|p| found.complete.contains(p.base_name())).cloned().collect();
    let missing_bytes: u64 =
        sizes.iter().filter(|(p, _)| !skip.contains(**p)).map(|(_, n)| n).sum();
    tracing::info!("{}", plan_line(paths.len(), skip.len(), missing_bytes));
    let mut report = CopyReport {
        total: paths.len(),
        already: skip.len(),
        sent_paths: 0,
        sent_nar_bytes: 0,
        wire_bytes: 0,
        elapsed: Duration::ZERO,
    };
    let registration = register.as_ref().map(|r| r.text.as_bytes()).unwrap_or_default();
    let streaming = skip.len() < paths.len();
    let mut go =
        format!("go {} {}\n", registration.len(), if streaming { "stream" } else { "none" })
            .into_bytes();
    go.extend_from_slice(registration);
    for piece in go.chunks(256 * 1024) {
        remote.write(piece.to_vec()).await?;
    }
    if !streaming {
        remote.finish().await?;
        report.elapsed = started.elapsed();
        registered(register.as_ref(), closure.len(), started);
        return Ok(report);
    }

    let mut tar = TarStream::spawn(&paths, &skip, &TransferOptions::default())?;
    let mut said = Instant::now();
    let sent: Result<u64, PhaseError> = async {
        let mut total = 0u64;
        while let Some(mut frame) = tar.next_frame().await {
            let sending = Instant::now();
            for piece in std::mem::take(&mut frame.pieces) {
                let n = piece.len() as u64;
                remote.write(piece).await?;
                total += n;
            }
            tar.sent(&frame, sending.elapsed());
            if said.elapsed() >= PROGRESS_EVERY {
                said = Instant::now();
                let secs = started.elapsed().as_secs_f64();
                tracing::info!(
                    target: crate::ui::progress::TRANSFER_TARGET,
                    bytes = total,
                    raw = tar.raw_bytes(),
                    total = missing_bytes,
                    "copy: {} sent so far, {} ({:.1} MiB/s on the wire)",
                    mib(total),
                    frame.compression,
                    total as f64 / MIB / secs
                );
            }
        }
        Ok(total)
    }
    .await;
    let by_compression = encodings(&tar.sent_by_compression);
    let local = tar.finish().await;
    let streamed = started.elapsed();
    let remote_result = remote.finish().await;
    // The remote side's error says most (its stderr tail), then the local one's.
    let wire = sent?;
    local?;
    remote_result?;
    report.sent_paths = paths.len() - skip.len();
    report.sent_nar_bytes = missing_bytes;
    report.wire_bytes = wire;
    report.elapsed = streamed;
    let secs = report.elapsed.as_secs_f64().max(0.001);
    tracing::info!(
        "copy: sent {} paths in {secs:.1} s: {} of store paths as {} on the wire ({by_compression}; {:.1} MiB/s on the wire, {:.1} MiB/s of store paths)",
        report.sent_paths,
        mib(report.sent_nar_bytes),
        mib(report.wire_bytes),
        report.wire_bytes as f64 / MIB / secs,
        report.sent_nar_bytes as f64 / MIB / secs,
    );
    registered(register.as_ref(), closure.len(), started + streamed);
    Ok(report)
}

/// The remote side of [`copy_stream`]: copy-status.sh, gate.sh, copy-unpack.sh if cairn
/// sends a stream, and register.sh (behind the chroot lock) when `nix_store` is given.
fn copy_script(root: &str, nix_store: Option<&str>) -> Result<String, PhaseError> {
    let vars = Vars::new().word("root", root);
    let mut script = format!(
        "{COPY_STATUS_SH}{GATE_SH}if [ \"$cairn_stream\" = stream ]; then\n{COPY_UNPACK_SH}fi\n"
    );
    let vars = match nix_store {
        Some(nix_store) => {
            script.push_str(&super::chroot::locked(REGISTER_SH));
            vars.word("nix_store", nix_store)
        }
        None => vars,
    };
    Ok(template::render("templates/bootstrap/copy-*.sh", &script, &vars)?)
}

/// Says that the registration after the stream (if any) is done, and how long after the
/// last byte: the target's unpacking still running then is counted too, as the same remote
/// command does both.
fn registered(register: Option<&Registration>, paths: usize, since: Instant) {
    if register.is_some() {
        tracing::info!(
            "copy: registered {paths} paths in the target's Nix database, {:.1} s after the last byte was sent",
            since.elapsed().as_secs_f64()
        );
    }
}

pub(crate) mod strategy;
#[cfg(test)]
mod tests;
