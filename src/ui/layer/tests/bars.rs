//! The bars of a host's line other than the copy's: nix's build progress (replayed from
//! nix's recorded internal-json output, see tests/fixtures/nix-internal-json), a download,
//! the disko closure; on a terminal of 100 columns, as plain lines and as `--json`.

use super::*;
use crate::nix::{tell, NixLog};
use crate::ui::progress::{report, Step};

const BUILD_OK: &str = include_str!("../../../../tests/fixtures/nix-internal-json/build-ok.stderr");
const BUILD_FAILS: &str =
    include_str!("../../../../tests/fixtures/nix-internal-json/build-fails.stderr");

/// A layer on a frame of 100 columns, or on plain lines (`lines`), with a settable clock.
fn layer(
    frame: &Arc<Mutex<Frame>>,
    lines: Option<Arc<Mutex<Vec<String>>>>,
) -> (ProgressLayer, Arc<AtomicU64>) {
    let clock = Arc::new(AtomicU64::new(0));
    let now = clock.clone();
    let surface = match lines {
        Some(lines) => {
            Surface::Lines(Box::new(move |l: &str| lines.lock().unwrap().push(l.to_string())))
        }
        None => Surface::Frame(frame.clone()),
    };
    let places = Places { repo: Some("/tmp/nixlog-fx".into()), home: Some("/home/me".into()) };
    let clock_fn = Box::new(move || Duration::from_secs(now.load(Ordering::SeqCst)));
    (ProgressLayer::with_surface(surface, false, lines_filter(), places, clock_fn), clock)
}

/// web1's build phase with nix's recorded `stderr` fed to the UI as the runner does, one
/// line a second; `each` looks after every line. Ends as the phase does: `built`, or the
/// error of nix.
fn build_phase(stderr: &str, clock: &AtomicU64, each: &mut dyn FnMut()) {
    let web1 = tracing::info_span!(HOST_SPAN, host = "web1");
    web1.in_scope(|| {
        report("web1", "build", Step::Started, "");
        let mut log = NixLog::new();
        let mut tail = Vec::new();
        for line in stderr.lines() {
            tail.extend(log.read(line).into_iter().filter_map(tell));
            clock.fetch_add(1, Ordering::SeqCst);
            each();
        }
        clock.fetch_add(1, Ordering::SeqCst);
        if stderr.contains("error:") {
            let err = crate::nix::NixError::Failed {
                command: "nix build .#broken".into(),
                status: "exit status: 1".into(),
                stderr_tail: tail.join("\n"),
            };
            report("web1", "build", Step::Failed, &err.to_string());
        } else {
            tracing::info!(target: "cairn::bootstrap", system = "/nix/store/y9dz-top", paths = 1u64, mib = 0u64, "built");
            report("web1", "build", Step::Done, "");
        }
    });
}

#[test]
fn nix_build_progress_on_the_host_line() {
    let frame = Arc::new(Mutex::new(Frame::new(100, 6)));
    let (layer, clock) = layer(&frame, None);
    let mut shots = Vec::new();
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        let mut seen = false;
        build_phase(BUILD_OK, &clock, &mut || {
            let now = frame.lock().unwrap().render();
            if !seen && now.contains("building 3/7") {
                seen = true;
                shots.push(format!("--- while nix builds\n{now}"));
            }
        });
        shots.push(format!("--- when the build is done\n{}", frame.lock().unwrap().render()));
    });
    assert_eq!(shots.len(), 2, "{shots:?}");
    insta::assert_snapshot!(shots.join("\n"));
}

#[test]
fn nix_build_progress_as_plain_lines() {
    let frame = Arc::new(Mutex::new(Frame::new(100, 6)));
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let (layer, clock) = layer(&frame, Some(lines.clone()));
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || build_phase(BUILD_OK, &clock, &mut || {}));
    let text = lines.lock().unwrap().join("\n");
    assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text:?}");
    insta::assert_snapshot!(text);
}

#[test]
fn a_failed_nix_build_shows_why_on_the_terminal() {
    let frame = Arc::new(Mutex::new(Frame::new(100, 12)));
    let (layer, clock) = layer(&frame, None);
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || build_phase(BUILD_FAILS, &clock, &mut || {}));
    insta::assert_snapshot!(frame.lock().unwrap().render());
}

#[test]
fn nix_build_progress_as_json_events() {
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = lines.clone();
    let layer = crate::ui::json::JsonEvents::with_sink(Arc::new(move |v: &serde_json::Value| {
        sink.lock().unwrap().push(v.to_string());
    }));
    let subscriber = tracing_subscriber::registry().with(layer);
    let clock = AtomicU64::new(0);
    tracing::subscriber::with_default(subscriber, || build_phase(BUILD_OK, &clock, &mut || {}));
    let lines = lines.lock().unwrap();
    let builds: Vec<&String> = lines.iter().filter(|l| l.contains(r#""event":"build""#)).collect();
    assert_eq!(
        builds.last().unwrap().as_str(),
        r#"{"event":"build","built":7,"builds":7,"running":0,"failed":0,"fetched":0,"fetches":0,"host":"web1"}"#
    );
    let warning = lines.iter().find(|l| l.contains(r#""event":"warning""#)).unwrap();
    assert_eq!(
        warning.as_str(),
        r#"{"event":"warning","message":"warning: Git tree '/tmp/nixlog-fx' is dirty","host":"web1"}"#
    );
}

#[test]
fn a_download_and_the_disko_closure_have_bars() {
    const MIB: u64 = 1024 * 1024;
    let frame = Arc::new(Mutex::new(Frame::new(100, 6)));
    let (layer, clock) = layer(&frame, None);
    let at = |s: u64| clock.store(s, Ordering::SeqCst);
    let mut shots = Vec::new();
    let mut shot =
        |name: &str| shots.push(format!("--- {name}\n{}", frame.lock().unwrap().render()));
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        let web1 = tracing::info_span!(HOST_SPAN, host = "web1");
        let _in = web1.enter();
        let url = "https://github.com/nix-community/nixos-images/releases/download/nixos-25.05/nixos-kexec-installer-noninteractive-x86_64-linux.tar.gz";
        report("web1", "kexec", Step::Started, "");
        tracing::info!(target: DOWNLOAD_TARGET, url, step = "started", resumed_from = 0u64, total = 412 * MIB, "downloading");
        at(4);
        tracing::info!(target: DOWNLOAD_TARGET, url, step = "progress", bytes = 100 * MIB, total = 412 * MIB);
        shot("during the installer's download");
        at(16);
        tracing::info!(target: DOWNLOAD_TARGET, url, step = "downloaded", bytes = 412 * MIB, total = 412 * MIB);
        tracing::info!(target: DOWNLOAD_TARGET, url, step = "verified", path = "/home/me/.cache/cairn/installer.tar.gz", checksum = "sha256:0f", "download verified");
        report("web1", "kexec", Step::Done, "");
        report("web1", "disk", Step::Started, "");
        tracing::info!(target: "cairn::bootstrap", script = "/nix/store/a1b2-disko", paths = 42u64, "built the flake's disko script");
        tracing::info!(target: "cairn::bootstrap", "copy: 0 of 42 paths already on the target, sending 42 (61 MiB)");
        for s in 1..=3u64 {
            at(16 + 2 * s);
            tracing::info!(target: TRANSFER_TARGET, bytes = s * 6 * MIB, raw = s * 15 * MIB, total = 61 * MIB, "copy: sent so far");
        }
        shot("during the disko closure's copy");
    });
    insta::assert_snapshot!(shots.join("\n"));
}
