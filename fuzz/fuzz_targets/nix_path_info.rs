//! `nix path-info --recursive --json` output, and the registration text built from it.
#![no_main]

use cairn::nix::{load_db_registration, parse_path_info};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(infos) = parse_path_info(text) {
        let _ = load_db_registration(&infos);
    }
});
