//! Issue 14 item 6: the addresses cairn writes into `cairn/network.json` configure the
//! host's uplink in the example flake. The file is cairn's own rendering of a state; the
//! module is evaluated by the real Nix evaluator (`lib.optional` is the only part of nixpkgs
//! it uses, given here as nixpkgs' lib defines it). Whether nixpkgs' networkd module and a
//! real Hetzner server accept the result is not testable here (README status table).
#![allow(clippy::print_stderr)] // tests say why they skip

use std::path::Path;
use std::process::Command;

use cairn::gitops::network::{render, sync, NETWORK_FILE};
use cairn::state::{Ipv6Interface, PublicNetwork, StateData};

fn evaluate(repo: &Path, host: &str) -> serde_json::Value {
    let expr = format!(
        r#"
      let
        lib = {{ optional = cond: elem: if cond then [ elem ] else [ ]; }};
        m = import ./modules/network.nix {{ config.networking.hostName = "{host}"; inherit lib; }};
      in {{ inherit (m) networking; uplink = m.systemd.network.networks."10-uplink"; }}"#
    );
    let out = Command::new("nix-instantiate")
        .current_dir(repo)
        .args(["--eval", "--strict", "--json", "-E", &expr])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_example_flake_configures_static_ipv6_from_the_file_cairn_writes() {
    if Command::new("nix-instantiate").arg("--version").output().is_err() {
        eprintln!("skipped: no nix-instantiate");
        return;
    }
    let repo = tempfile::tempdir().unwrap();
    fs_err::create_dir_all(repo.path().join("modules")).unwrap();
    fs_err::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/flake/modules/network.nix"),
        repo.path().join("modules/network.nix"),
    )
    .unwrap();
    // No file yet (a fresh repository): DHCP for both families, nothing static.
    let none = evaluate(repo.path(), "web1");
    assert_eq!(none["uplink"]["networkConfig"]["DHCP"], "yes");
    assert_eq!(none["uplink"]["address"], serde_json::json!([]));

    let mut state = StateData::default();
    state.host_mut("web1").network = PublicNetwork {
        ipv4: None,
        ipv6: Ipv6Interface::first_of("2a01:4f8:c0c:1::/64"),
        gateway6: "fe80::1".parse().ok(),
    };
    state.host_mut("aws1").network = PublicNetwork {
        ipv4: "203.0.113.7".parse().ok(),
        ipv6: Ipv6Interface::first_of("2001:db8:1234:1a00::123"),
        gateway6: None,
    };
    sync(repo.path(), &render(&state)).unwrap();
    assert!(repo.path().join(NETWORK_FILE).is_file());

    let web1 = evaluate(repo.path(), "web1");
    assert_eq!(web1["networking"]["useNetworkd"], true);
    assert_eq!(
        web1["uplink"],
        serde_json::json!({
            "matchConfig": {"Name": "en* eth*"},
            "networkConfig": {"DHCP": "ipv4"},
            "address": ["2a01:4f8:c0c:1::1/64"],
            "routes": [{"Gateway": "fe80::1", "GatewayOnLink": true}],
        })
    );
    // Router advertisements configure aws's IPv6: nothing static, DHCP for both.
    let aws1 = evaluate(repo.path(), "aws1");
    assert_eq!(aws1["uplink"]["networkConfig"]["DHCP"], "yes");
    assert_eq!(aws1["uplink"]["routes"], serde_json::json!([]));
}
