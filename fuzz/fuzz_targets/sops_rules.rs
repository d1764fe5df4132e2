//! `.sops.yaml`: parse, validate every rule, and match a few paths.
#![no_main]

use std::path::Path;

use cairn::secrets::rules::SopsConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(config) = SopsConfig::parse(Path::new("/repo/.sops.yaml"), text.to_owned()) else {
        return;
    };
    let _ = config.validate_all();
    for file in ["/repo/secrets/a.yaml", "/repo/hosts/web1/é.env", "/elsewhere/x.json"] {
        let _ = config.rule_for(Path::new(file), Path::new("/repo"));
    }
});
