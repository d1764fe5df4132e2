//! nix 2.8's (Debian's nix-bin) internal-json output, recorded: see
//! tests/fixtures/nix-internal-json/README.md for how.

use super::*;

const BUILD_OK: &str = include_str!("../../../tests/fixtures/nix-internal-json/build-ok.stderr");
const BUILD_FAILS: &str =
    include_str!("../../../tests/fixtures/nix-internal-json/build-fails.stderr");
const FETCH: &str = include_str!("../../../tests/fixtures/nix-internal-json/fetch.stderr");

fn read_all(stderr: &str) -> Vec<Said> {
    let mut log = NixLog::new();
    stderr.lines().flat_map(|l| log.read(l)).collect()
}

fn lines(said: &[Said]) -> Vec<String> {
    said.iter()
        .filter_map(|s| match s {
            Said::Line { level, text } => Some(format!("{level} {text}")),
            _ => None,
        })
        .collect()
}

fn progress(said: &[Said]) -> Vec<Progress> {
    said.iter()
        .filter_map(|s| match s {
            Said::Progress(p) => Some(*p),
            _ => None,
        })
        .collect()
}

#[test]
fn a_build_of_seven_derivations_counts_up_to_seven() {
    let said = read_all(BUILD_OK);
    assert_eq!(lines(&said), ["1 warning: Git tree '/tmp/nixlog-fx' is dirty"]);
    let p = progress(&said);
    let last = p.last().unwrap();
    assert_eq!((last.built, last.builds, last.running, last.failed), (7, 7, 0, 0));
    // It counts through every step, never back.
    let built: Vec<u64> = p.iter().map(|p| p.built).collect();
    assert!(built.windows(2).all(|w| w[0] <= w[1]), "{built:?}");
    for n in 0..=7 {
        assert!(p.iter().any(|p| p.built == n && p.builds == 7), "no {n}/7 in {p:?}");
    }
    // The builds nix started are in the host's log.
    let details = said
        .iter()
        .filter(|s| matches!(s, Said::Detail(t) if t.starts_with("building '/nix/store/")))
        .count();
    assert_eq!(details, 7);
}

#[test]
fn a_failed_build_keeps_its_log_tail_as_nix_prints_it_without_json() {
    let said = read_all(BUILD_FAILS);
    let text = lines(&said).join("\n");
    insta::assert_snapshot!(text, @r"
    1 warning: Git tree '/tmp/nixlog-fx' is dirty
    0 error: builder for '/nix/store/rfa7vqjfcylsazjzy6fsxmwnrl8h8811-broken.drv' failed with exit code 1;
    0 last 2 log lines:
    0 > compiling
    0 > main.c:3: error: expected ; before }
    0 For full logs, run 'nix log /nix/store/rfa7vqjfcylsazjzy6fsxmwnrl8h8811-broken.drv'.
    ");
}

#[test]
fn paths_fetched_from_a_cache_count_as_fetches() {
    let said = read_all(FETCH);
    let last = *progress(&said).last().unwrap();
    assert_eq!((last.fetched, last.fetches), (6, 6));
    assert!(said
        .iter()
        .any(|s| matches!(s, Said::Detail(t) if t.starts_with("copying path '/nix/store/"))));
}

#[test]
fn lines_that_are_not_json_stay_text() {
    let mut log = NixLog::new();
    assert_eq!(
        log.read("error: unrecognised flag '--log-format'"),
        [Said::Line { level: 3, text: "error: unrecognised flag '--log-format'".into() }]
    );
    assert_eq!(log.read("@nix {broken"), [Said::Detail("@nix {broken".into())]);
    assert_eq!(
        log.read(r#"@nix {"action":"msg","level":4,"msg":"evaluating"}"#),
        [Said::Detail("evaluating".into())]
    );
}

#[test]
fn the_failed_drv_is_found_in_the_error() {
    assert_eq!(
        failed_builder("error: builder for '/nix/store/x.drv' failed with exit code 1"),
        Some("/nix/store/x.drv")
    );
    assert_eq!(
        failed_builder("error: 1 dependencies of derivation '/nix/store/x.drv' failed to build"),
        None
    );
}
