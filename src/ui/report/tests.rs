use std::time::Duration;

use super::*;
use crate::bootstrap::{BootstrapError, PhaseError, PhaseTiming, Verified};
use crate::phase::Phase;

fn timing(phase: Phase, outcome: Outcome, secs: u64) -> PhaseTiming {
    PhaseTiming { phase, outcome, elapsed: Duration::from_secs(secs) }
}

/// web1 verified after a skip; web2 failed in reach.
fn two_hosts() -> Vec<HostReport> {
    let verified = Verified {
        address: "127.0.0.1:2222".into(),
        host_key: "ssh-ed25519 SHA256:XcFx8ZXXzz/OToQd1ZOBpT6lYvHd2o8OGDbJcTlPd20".into(),
        boot_id: "6f0e3c1a".into(),
        root_device: "/dev/vda2".into(),
        checks: vec!["sops secrets decrypt".into()],
        unchanged: false,
        agent: None,
    };
    let failure = BootstrapError {
        host: "web2".into(),
        phase: Some(Phase::Reach),
        source: PhaseError::Remote {
            what:
                "root@127.0.0.1:2223 did not answer over SSH within 3s (the `reach` timeout)\nmore"
                    .into(),
            help: "look at the console".into(),
        },
    };
    vec![
        HostReport {
            host: "web1".into(),
            result: Ok(Finished::Verified(verified)),
            timings: vec![
                timing(Phase::Provision, Outcome::Skipped("an existing machine".into()), 0),
                timing(Phase::Reach, Outcome::Done, 2),
                timing(Phase::Copy, Outcome::Done, 14),
                timing(Phase::Verify, Outcome::Done, 21),
            ],
            elapsed: Duration::from_secs(90),
        },
        HostReport {
            host: "web2".into(),
            result: Err(failure),
            timings: vec![
                timing(Phase::Provision, Outcome::Skipped("an existing machine".into()), 0),
                timing(Phase::Reach, Outcome::Failed, 3),
            ],
            elapsed: Duration::from_secs(3),
        },
    ]
}

#[test]
fn a_two_host_run_ends_in_a_table() {
    insta::assert_snapshot!(bootstrap(&two_hosts(), false));
}

#[test]
fn timings_for_all_hosts_with_the_flag() {
    insta::assert_snapshot!(bootstrap(&two_hosts(), true));
}

#[test]
fn one_host_shows_its_timings_with_the_reasons_for_skips() {
    let mut reports = two_hosts();
    reports.truncate(1);
    insta::assert_snapshot!(bootstrap(&reports, false));
}
