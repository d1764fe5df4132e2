//! Encrypted sops files in every format (the first byte picks it): metadata, then writing
//! the file again.
#![no_main]

use std::path::Path;

use cairn::secrets::{Format, SopsFile, StoresConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else { return };
    let format = match which % 5 {
        0 => Format::Yaml,
        1 => Format::Json,
        2 => Format::Ini,
        3 => Format::Dotenv,
        _ => Format::Binary,
    };
    let Ok(file) = SopsFile::from_bytes(Path::new("fuzz"), bytes, format) else { return };
    let _ = file.to_bytes(&StoresConfig::default());
});
