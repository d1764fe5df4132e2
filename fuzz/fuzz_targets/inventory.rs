//! The inventory: hcl-edit, then cairn's evaluation and resolution.
#![no_main]

use cairn::inventory::{load_str, LoadOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let opts = LoadOptions {
        path: "/nonexistent-cairn-fuzz/cairn.hcl".into(),
        cli_vars: Vec::new(),
        env: [("FUZZ".to_owned(), "value".to_owned())].into_iter().collect(),
    };
    let _ = load_str(&opts, text.to_owned());
});
