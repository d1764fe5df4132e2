use super::*;
use crate::state::PhaseRecord;

const STOCK: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKna0glgZAokHtKFwcbxTtqCIs1dpDtPCgmJepLqN7JR stock";
const INSTALLED: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBJ+DnwH3YL9K5PuI+YBHLQTeN+B82YXtDAdh5mvxpr0nJPx5BPImJhHkUm6tfDvVrg397o5P2AQqKELQjZ3WMVc=";
const LOCATION: &str = "/r/.cairn/state.json";

fn state(addresses: &[&str], keys: &[(Stage, &str)]) -> HostState {
    let mut s = HostState {
        addresses: addresses.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    };
    for (stage, key) in keys {
        s.host_keys.entry(*stage).or_default().push(key.to_string());
    }
    s
}

fn recorded<'a>(name: &'a str, state: &'a HostState) -> Recorded<'a> {
    Recorded { host: name, state, location: LOCATION, repository_key: None }
}

/// As `cairn ssh` asks: `phase` from `--phase`, or the stage state says the host runs.
fn resolve(
    name: &str,
    ssh: &SshSettings,
    address: Option<&str>,
    state: Option<&HostState>,
    phase: Option<Stage>,
) -> Result<Route, ReachError> {
    let empty = HostState::default();
    let state = state.unwrap_or(&empty);
    known_host(Endpoint { ssh, address }, &recorded(name, state), phase)
}

/// The key algorithms pinned (the test keys differ in algorithm).
fn pinned(route: &Route) -> Vec<String> {
    match &route.trust {
        Trust::Pinned { policy: HostKeyPolicy::Pinned(keys), .. } => {
            keys.iter().map(|k| k.algorithm().as_str().to_owned()).collect()
        }
        other => panic!("never record for a known host: {other:?}"),
    }
}

fn at(phase: Phase) -> Option<PhaseRecord> {
    Some(PhaseRecord { phase, at: time::OffsetDateTime::UNIX_EPOCH })
}

#[test]
fn pins_the_newest_phase_and_uses_the_recorded_address() {
    let ssh = SshSettings { user: "admin".into(), port: 2222, ..Default::default() };
    let st = state(
        &["127.0.0.1:2201", "10.0.0.2"],
        &[(Stage::Stock, STOCK), (Stage::Installed, INSTALLED)],
    );
    let k = resolve("web1", &ssh, Some("192.0.2.1"), Some(&st), None).unwrap();
    // The installed system is reached as root; the inventory's user is the stock image's.
    assert_eq!(k.target, Target::new("127.0.0.1", 2201, "root"));
    assert_eq!(k.stage, Stage::Installed);
    assert_eq!(pinned(&k), ["ecdsa-sha2-nistp256"]);

    let k = resolve("web1", &ssh, None, Some(&st), Some(Stage::Stock)).unwrap();
    assert_eq!(k.target, Target::new("127.0.0.1", 2201, "admin"));
    assert_eq!(pinned(&k), ["ssh-ed25519"]);
    assert_eq!(k.key_location, "hosts.web1.host_keys.stock in /r/.cairn/state.json");
}

#[test]
fn follows_the_last_completed_phase_not_the_newest_key() {
    // Keys of the installed system are known from the keys phase on, but until the
    // reboot the machine still runs the installer (with the stock keys carried over).
    let ssh = SshSettings { user: "debian".into(), port: 22, ..Default::default() };
    let mut st = state(
        &["127.0.0.1:2201"],
        &[(Stage::Stock, STOCK), (Stage::Installer, STOCK), (Stage::Installed, INSTALLED)],
    );
    st.last_phase = at(Phase::Copy);
    let k = resolve("web1", &ssh, None, Some(&st), None).unwrap();
    assert_eq!(k.stage, Stage::Installer);
    assert_eq!(k.target.user, "root");
}

#[test]
fn falls_back_to_the_inventory_address() {
    let ssh = SshSettings { user: "root".into(), port: 22, ..Default::default() };
    let st = state(&[], &[(Stage::Stock, STOCK)]);
    let k = resolve("db1", &ssh, Some("192.0.2.9"), Some(&st), None).unwrap();
    assert_eq!(k.target, Target::new("192.0.2.9", 22, "root"));
}

#[test]
fn refuses_without_an_address_or_a_recorded_key() {
    let ssh = SshSettings::default();
    let err = resolve("web1", &ssh, None, None, None).unwrap_err();
    assert!(matches!(err, ReachError::NoAddress { .. }), "{err:?}");
    let err = resolve("web1", &ssh, Some("192.0.2.1"), None, None).unwrap_err();
    assert!(matches!(err, ReachError::NoRecordedKey { .. }), "{err:?}");
    let st = state(&[], &[(Stage::Stock, STOCK)]);
    let err =
        resolve("web1", &ssh, Some("192.0.2.1"), Some(&st), Some(Stage::Installed)).unwrap_err();
    assert_eq!(err.to_string(), "no installed host key of web1 is recorded in state");
    let st = state(&[], &[(Stage::Stock, "ssh-ed25519 garbage")]);
    let err = resolve("web1", &ssh, Some("192.0.2.1"), Some(&st), None).unwrap_err();
    assert!(matches!(err, ReachError::BadRecordedKey { .. }), "{err:?}");
    // The help names where the state really is (a pg backend too), not a fixed path.
    let help = miette::Diagnostic::help(&err).unwrap().to_string();
    assert!(help.contains("hosts.web1.host_keys.stock in /r/.cairn/state.json"), "{help}");
}

/// What a stage's connection accepts, given what state recorded: (stage, recorded keys
/// [stage, line], the generated key, expected: `Some((recorded_as, algorithm))` when pinned,
/// `None` for first contact; `Err` for refused).
#[test]
fn expected_keys_per_stage() {
    type Case = (
        Stage,
        &'static [(Stage, &'static str)],
        Option<&'static str>,
        Result<Option<(Stage, &'static str)>, &'static str>,
    );
    let cases: &[Case] = &[
        // A stock image nobody has seen: recorded on first contact (bootstrap's reach only).
        (Stage::Stock, &[], None, Ok(None)),
        (Stage::Stock, &[(Stage::Stock, STOCK)], None, Ok(Some((Stage::Stock, "ssh-ed25519")))),
        // The generated key never stands in for a stock image's.
        (Stage::Stock, &[], Some(INSTALLED), Ok(None)),
        // The installer carries the stock keys across the jump.
        (Stage::Installer, &[(Stage::Stock, STOCK)], None, Ok(Some((Stage::Stock, "ssh-ed25519")))),
        (
            Stage::Installer,
            &[(Stage::Stock, STOCK), (Stage::Installer, INSTALLED)],
            None,
            Ok(Some((Stage::Installer, "ecdsa-sha2-nistp256"))),
        ),
        // Nothing known of the installer: never trusted on first contact.
        (Stage::Installer, &[], Some(INSTALLED), Err("no installer host key")),
        // The installed system: the key cairn generated, known before contact.
        (
            Stage::Installed,
            &[],
            Some(INSTALLED),
            Ok(Some((Stage::Installed, "ecdsa-sha2-nistp256"))),
        ),
        (
            Stage::Installed,
            &[(Stage::Installed, INSTALLED)],
            None,
            Ok(Some((Stage::Installed, "ecdsa-sha2-nistp256"))),
        ),
        // The stock keys never stand in for the installed system's.
        (Stage::Installed, &[(Stage::Stock, STOCK)], None, Err("no installed host key")),
    ];
    for (i, (stage, keys, generated, expected)) in cases.iter().enumerate() {
        let mut st = state(&["192.0.2.1"], keys);
        st.ssh_public_key = generated.map(str::to_owned);
        let got = expected_keys(&recorded("web1", &st), *stage);
        match (got, expected) {
            (Ok(Trust::FirstContact), Ok(None)) => {}
            (
                Ok(Trust::Pinned { policy: HostKeyPolicy::Pinned(k), recorded_as }),
                Ok(Some((as_, alg))),
            ) => {
                assert_eq!((recorded_as, k[0].algorithm().as_str()), (*as_, *alg), "case {i}");
            }
            (Err(e), Err(says)) => assert!(e.to_string().starts_with(says), "case {i}: {e}"),
            (got, _) => panic!("case {i}: {stage:?} gave {got:?}, expected {expected:?}"),
        }
    }
}

#[test]
fn only_earlier_stages_keys_mean_not_there_yet() {
    let st = state(
        &[],
        &[(Stage::Stock, STOCK), (Stage::Installer, STOCK), (Stage::Installed, INSTALLED)],
    );
    let stock = crate::ssh::fingerprint(&russh::keys::PublicKey::from_openssh(STOCK).unwrap());
    assert_eq!(keys_before(&st, Stage::Installed), [stock.clone(), stock.clone()]);
    assert_eq!(keys_before(&st, Stage::Installer), [stock]);
    assert!(keys_before(&st, Stage::Stock).is_empty());
}

#[test]
fn the_stage_a_host_runs_follows_its_last_phase() {
    let cases = [
        (None, &[][..], Stage::Stock),
        (None, &[(Stage::Stock, STOCK), (Stage::Installed, INSTALLED)][..], Stage::Installed),
        (Some(Phase::Provision), &[][..], Stage::Stock),
        (Some(Phase::Reach), &[(Stage::Installed, INSTALLED)][..], Stage::Stock),
        (Some(Phase::Kexec), &[][..], Stage::Installer),
        (Some(Phase::Install), &[(Stage::Installed, INSTALLED)][..], Stage::Installer),
        (Some(Phase::Reboot), &[][..], Stage::Installed),
        (Some(Phase::Verify), &[][..], Stage::Installed),
    ];
    for (phase, keys, expected) in cases {
        let mut st = state(&[], keys);
        st.last_phase = phase.and_then(at);
        assert_eq!(running_stage(&st), expected, "after {phase:?}");
    }
}

#[test]
fn the_login_is_the_inventory_user_on_the_stock_image_and_root_after() {
    let ssh = SshSettings { user: "debian".into(), port: 2222, ..Default::default() };
    let st = state(&["[2001:db8::7]:22"], &[]);
    let rec = recorded("web1", &st);
    let host = Endpoint { ssh: &ssh, address: Some("192.0.2.1") };
    assert_eq!(target(host, &rec, Stage::Stock).unwrap(), Target::new("2001:db8::7", 22, "debian"));
    assert_eq!(target(host, &rec, Stage::Installer).unwrap().user, "root");
    assert_eq!(target(host, &rec, Stage::Installed).unwrap().user, "root");
    // Without a recorded address, the inventory's, on the inventory's port.
    let none = HostState::default();
    assert_eq!(
        target(host, &recorded("web1", &none), Stage::Stock).unwrap(),
        Target::new("192.0.2.1", 2222, "debian")
    );
    let bad = state(&["not an address"], &[]);
    let err = target(host, &recorded("web1", &bad), Stage::Stock).unwrap_err();
    assert!(matches!(err, ReachError::BadAddress { .. }), "{err:?}");
}

#[test]
fn each_stage_has_its_own_port() {
    let moved = SshSettings { user: "debian".into(), port: 2222, ..Default::default() };
    let set =
        SshSettings { installer_port: Some(2200), installed_port: Some(2201), ..moved.clone() };
    let none = HostState::default();
    let existing = state(&["203.0.113.5:2222"], &[]);
    let forwarded = state(&["127.0.0.1:40022"], &[]);
    // (ssh settings, inventory address, state, [stock, installer, installed] ports)
    let cases: [(&SshSettings, Option<&str>, &HostState, [u16; 3]); 5] = [
        // A stock sshd moved to 2222: the installer and NixOS still listen on 22.
        (&moved, Some("203.0.113.5"), &none, [2222, 22, 22]),
        (&moved, None, &existing, [2222, 22, 22]),
        // One forwarded port reaches the machine's 22 at every stage.
        (&moved, None, &forwarded, [40022, 40022, 40022]),
        // What the inventory says wins.
        (&set, None, &existing, [2222, 2200, 2201]),
        (&set, None, &forwarded, [40022, 2200, 2201]),
    ];
    for (ssh, address, st, ports) in cases {
        let host = Endpoint { ssh, address };
        let got: Vec<u16> = [Stage::Stock, Stage::Installer, Stage::Installed]
            .iter()
            .map(|&stage| target(host, &recorded("web1", st), stage).unwrap().port)
            .collect();
        assert_eq!(got, ports, "{ssh:?} {address:?} {:?}", st.addresses);
    }
}

#[test]
fn a_host_without_ipv4_is_reached_on_its_ipv6() {
    use crate::state::{Ipv6Interface, PublicNetwork};
    let ssh = SshSettings { user: "root".into(), port: 22, ..Default::default() };
    let v6 = Ipv6Interface::first_of("2001:db8:1::/64");
    let both = PublicNetwork { ipv4: "203.0.113.7".parse().ok(), ipv6: v6, gateway6: None };
    let v6_only = PublicNetwork { ipv4: None, ipv6: v6, gateway6: None };
    let with = |addresses: &[&str], network: &PublicNetwork| HostState {
        network: network.clone(),
        ..state(addresses, &[])
    };
    // (state, inventory address, where the stock image is reached)
    let cases: [(HostState, Option<&str>, &str); 6] = [
        (with(&["[2001:db8:1::1]:22"], &both), None, "root@203.0.113.7:22"),
        (with(&[], &v6_only), None, "root@[2001:db8:1::1]:22"),
        // The provider's address list put IPv4 first; no IPv4 means IPv6, whatever it says.
        (with(&["198.51.100.1:22"], &v6_only), None, "root@[2001:db8:1::1]:22"),
        // The recorded address's port is kept.
        (with(&["[2001:db8:1::1]:2222"], &v6_only), None, "root@[2001:db8:1::1]:2222"),
        // Nothing reported by the provider: the recorded address, else the inventory's.
        (state(&["127.0.0.1:2201"], &[]), None, "root@127.0.0.1:2201"),
        (HostState::default(), Some("2001:db8::9"), "root@[2001:db8::9]:22"),
    ];
    for (st, address, expected) in cases {
        let host = Endpoint { ssh: &ssh, address };
        let got = target(host, &recorded("web1", &st), Stage::Stock).unwrap();
        assert_eq!(got.to_string(), expected, "{:?} {:?}", st.network, st.addresses);
    }
}
