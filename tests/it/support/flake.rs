//! The smallest flake a test fleet's hosts evaluate in: where nix is installed, the check that
//! bootstrap runs first evaluates every host's `flake` attribute, and a host whose flake does
//! not exist is an error there (as it would be at the build phase).

use std::path::Path;

/// Writes `dir/flake.nix` with `nixosConfigurations.<host>.config.networking.hostName` for
/// each of `hosts` (no inputs: it evaluates offline in a fraction of a second).
pub fn write_minimal(dir: &Path, hosts: &[&str]) {
    let configs: String = hosts
        .iter()
        .map(|h| format!("    nixosConfigurations.{h}.config.networking.hostName = \"{h}\";\n"))
        .collect();
    fs_err::write(
        dir.join("flake.nix"),
        format!("{{\n  outputs = {{ self }}: {{\n{configs}  }};\n}}\n"),
    )
    .unwrap();
}
