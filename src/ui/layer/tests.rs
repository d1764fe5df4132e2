//! A two-host run (a transfer, a skip, a warning, a failure) as a terminal of 100 columns
//! shows it, and as plain lines.

use super::*;
use std::sync::atomic::{AtomicU64, Ordering};
use tracing_subscriber::layer::SubscriberExt;

const MIB: u64 = 1024 * 1024;

fn places() -> Places {
    Places { repo: Some("/home/me/fleet".into()), home: Some("/home/me".into()) }
}

fn lines_filter() -> Option<Targets> {
    Some("cairn=info,warn".parse().unwrap())
}

/// Emits the run; `at(secs)` sets the clock, `moment(name)` marks a point to look at.
fn run(at: &dyn Fn(u64), moment: &mut dyn FnMut(&str)) {
    use crate::ui::progress::{report, Step};
    let web1 = tracing::info_span!(HOST_SPAN, host = "web1");
    let web2 = tracing::info_span!(HOST_SPAN, host = "web2");
    at(0);
    web1.in_scope(|| {
        report("web1", "provision", Step::Started, "");
        report("web1", "provision", Step::Skipped, "an existing machine");
        report("web1", "reach", Step::Started, "");
        tracing::info!(target: "cairn::bootstrap", os = "debian", installer = false, mem_mib = 2048, "reached");
    });
    web2.in_scope(|| report("web2", "reach", Step::Started, ""));
    at(2);
    web1.in_scope(|| report("web1", "reach", Step::Done, ""));
    web2.in_scope(|| {
        tracing::warn!(target: "cairn::provider", "KVM does not work here; the VM runs under TCG, several times slower");
        report("web2", "reach", Step::Failed, "ssh: 127.0.0.1:2223 refused the connection (/home/me/fleet/.cairn/state.json records it)");
    });
    web1.in_scope(|| {
        report("web1", "kexec", Step::Started, "");
        tracing::info!(
            target: "cairn::bootstrap",
            bundle = "/home/me/.cache/cairn/vm/560eec4a/installer.tar.gz",
            total_bytes = 312 * MIB,
            "uploading the installer"
        );
        at(12);
        tracing::info!(target: TRANSFER_TARGET, kind = "upload", bytes = 200 * MIB);
    });
    moment("during the upload");
    at(40);
    web1.in_scope(|| {
        tracing::info!(target: "cairn::bootstrap", boot_id = "6f0e", "running the installer");
        report("web1", "kexec", Step::Done, "");
        report("web1", "build", Step::Started, "");
        tracing::info!(target: "cairn::nix", source = "nix", "\x1b[35;1mwarning:\x1b[0m Git tree '/home/me/fleet' is dirty");
        tracing::info!(target: "cairn::nix", source = "nix", "warning: Git tree '/home/me/fleet' is dirty");
        tracing::info!(
            target: "cairn::bootstrap",
            system = "/nix/store/8f3k2l-nixos-system-web1-25.05",
            paths = 8u64,
            mib = 144u64,
            "built"
        );
        at(55);
        report("web1", "build", Step::Done, "");
        report("web1", "copy", Step::Started, "");
        tracing::info!(
            target: "cairn::bootstrap",
            "copy: 3 of 8 paths already on the target, sending 5 (96 MiB), and a long tail of words that a terminal of 100 columns cannot hold"
        );
        for s in 1..=11u64 {
            at(55 + s);
            tracing::info!(target: TRANSFER_TARGET, bytes = s * 3 * MIB, raw = s * 7 * MIB, total = 96 * MIB, "copy: sent so far");
            if s == 6 {
                moment("during the copy");
            }
        }
        at(69);
        tracing::info!(target: "cairn::bootstrap", "copy: sent 5 paths in 13.9 s: 96 MiB of store paths as 40 MiB of zstd");
        report("web1", "copy", Step::Done, "");
        report("web1", "verify", Step::Started, "");
        moment("during verify");
        at(90);
        report("web1", "verify", Step::Done, "host key ssh-ed25519 SHA256:XcFx8ZXXzz/OToQd1ZOBpT6lYvHd2o8OGDbJcTlPd20");
    });
    tracing::info!(target: "cairn::bootstrap", file = "/home/me/fleet/secrets/web1.yaml", "re-encrypted to the recipients the inventory gives");
    moment("at the end");
}

#[test]
fn a_two_host_run_on_a_terminal_of_100_columns() {
    let frame = Arc::new(Mutex::new(Frame::new(100, 12)));
    let clock = Arc::new(AtomicU64::new(0));
    let now = clock.clone();
    let layer = ProgressLayer::with_surface(
        Surface::Frame(frame.clone()),
        false,
        lines_filter(),
        places(),
        Box::new(move || Duration::from_secs(now.load(Ordering::SeqCst))),
    );
    let mut shots = Vec::new();
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        run(&|s| clock.store(s, Ordering::SeqCst), &mut |name| {
            shots.push(format!("--- {name}\n{}", frame.lock().unwrap().render()));
        })
    });
    insta::assert_snapshot!(shots.join("\n"));
}

#[test]
fn the_same_run_as_plain_lines() {
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = lines.clone();
    let clock = Arc::new(AtomicU64::new(0));
    let now = clock.clone();
    let layer = ProgressLayer::with_surface(
        Surface::Lines(Box::new(move |l: &str| sink.lock().unwrap().push(l.to_string()))),
        false,
        lines_filter(),
        places(),
        Box::new(move || Duration::from_secs(now.load(Ordering::SeqCst))),
    );
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        run(&|s| clock.store(s, Ordering::SeqCst), &mut |_| {})
    });
    let text = lines.lock().unwrap().join("\n");
    assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text:?}");
    insta::assert_snapshot!(text);
}

#[test]
fn counts_are_a_spinner_line_or_a_bar_for_many_items() {
    assert_eq!(count::count_line("asked", 37, 120, "hosts"), "asked 37/120 hosts");
    assert_eq!(
        count::count_line("re-keyed", 340, 1200, "files"),
        "re-keyed  █████░░░░░░░░░░░░░░░  340/1200 files"
    );
    let frame = Arc::new(Mutex::new(Frame::new(100, 5)));
    let layer = ProgressLayer::with_surface(
        Surface::Frame(frame.clone()),
        false,
        lines_filter(),
        places(),
        Box::new(|| Duration::ZERO),
    );
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        crate::ui::progress::count("asked", 37, 120, "hosts");
        assert_eq!(frame.lock().unwrap().render(), "⠿ asked 37/120 hosts");
        crate::ui::progress::count("asked", 120, 120, "hosts");
        assert_eq!(frame.lock().unwrap().render(), "");
    });
}

mod bars;
