//! `nix build` with `--log-format internal-json`, for real with Debian's nix-bin: the
//! fixture flake of tests/fixtures/nix-internal-json (seven small derivations built by a
//! static busybox) counts its builds up to 7/7, and a failing build's error carries the
//! build's own last lines, which nix leaves out of its error in that format.

use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};

use crate::nix::{nix_runner, require};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The fixture flake in a fresh directory, with a salt so that nix builds it again.
fn fixture_flake() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let flake =
        fs_err::read_to_string(format!("{ROOT}/tests/fixtures/nix-internal-json/flake.nix"))
            .unwrap();
    let salt = format!("{}-{:?}", std::process::id(), std::time::SystemTime::now());
    let flake = flake.replace("inherit deps;", &format!("inherit deps; salt = \"{salt}\";"));
    assert!(flake.contains("salt ="), "the fixture flake changed: {flake}");
    fs_err::write(dir.path().join("flake.nix"), flake).unwrap();
    fs_err::create_dir(dir.path().join("bb")).unwrap();
    let busybox = which_busybox();
    fs_err::copy(busybox, dir.path().join("bb/busybox")).unwrap();
    dir
}

fn which_busybox() -> String {
    let out = std::process::Command::new("sh").args(["-c", "command -v busybox"]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The `built/builds` of every progress event.
#[derive(Default, Clone)]
struct Counts(Arc<Mutex<Vec<(u64, u64)>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Counts {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != cairn::nix::PROGRESS_TARGET {
            return;
        }
        #[derive(Default)]
        struct Two(u64, u64);
        impl Visit for Two {
            fn record_u64(&mut self, f: &Field, v: u64) {
                match f.name() {
                    "built" => self.0 = v,
                    "builds" => self.1 = v,
                    _ => {}
                }
            }
            fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
        }
        let mut two = Two::default();
        event.record(&mut two);
        self.0.lock().unwrap().push((two.0, two.1));
    }
}

#[test]
fn a_nix_build_reports_its_progress_and_a_failure_its_log_tail() {
    if !require(&["nix", "busybox"]) {
        return;
    }
    let flake = fixture_flake();
    let url = format!("path:{}", flake.path().display());
    let counts = Counts::default();
    let subscriber = tracing_subscriber::registry().with(counts.clone());
    let _default = tracing::subscriber::set_default(subscriber);
    // One thread: the stderr reader's task runs where the subscriber is set.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let nix = nix_runner();

    let top = rt.block_on(nix.build(&format!("{url}#default"))).unwrap();
    assert_eq!(top.name(), "top");
    let seen = counts.0.lock().unwrap().clone();
    assert_eq!(seen.last(), Some(&(7, 7)), "{seen:?}");
    assert!(seen.contains(&(3, 7)), "{seen:?}");

    let err = rt.block_on(nix.build(&format!("{url}#broken"))).unwrap_err().to_string();
    assert!(err.contains("error: builder for '/nix/store/"), "{err}");
    assert!(err.contains("-broken.drv' failed with exit code 1;\nlast 2 log lines:\n> compiling\n> main.c:3: error: expected ; before }\n"), "{err}");
    assert!(!err.contains("@nix"), "{err}");
}
