//! Plaintext JSON, INI and dotenv files (the first byte picks the format): load, and what
//! cairn writes back must load again.
#![no_main]

use cairn::secrets::{Format, StoresConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else { return };
    let format = match which % 4 {
        0 => Format::Json,
        1 => Format::Ini,
        2 => Format::Dotenv,
        _ => Format::Binary,
    };
    let Ok(docs) = format.load_plain(bytes) else { return };
    let Ok(out) = format.emit_plain(&docs, &StoresConfig::default()) else { return };
    // dotenv cannot hold every tree it reads (a value with `\n` text is written as an
    // escape). INI is written as go-ini writes it for sops, byte for byte, and go-ini writes a
    // value that starts with a quote (`"""a`, read from a backquoted value) without quoting it
    // again, which it cannot read back either (fuzz/findings/plaintext/); nor a key that
    // starts with `[`. The rest must read
    // back what was written.
    let quoted_ini = format == Format::Ini
        && docs.iter().flatten().any(|section| match section {
            cairn::secrets::tree::MapItem::Entry { value: cairn::secrets::tree::Value::Map(m), .. } => {
                m.iter().any(|i| {
                    matches!(i, cairn::secrets::tree::MapItem::Entry {
                        value: cairn::secrets::tree::Value::Scalar(cairn::secrets::tree::Scalar::Str(v)),
                        ..
                    } if v.trim_start().starts_with(['"', '`', '\'']) || v.contains("\"\"\""))
                    // A key starting with `[` (read from a quoted key) is written bare, as
                    // go-ini writes it; sops then reads it back as a broken section header
                    // (fuzz/findings/plaintext/ini_key_starting_with_a_bracket).
                    || matches!(i, cairn::secrets::tree::MapItem::Entry { key, .. }
                        if key.trim_start().starts_with('['))
                })
            }
            _ => false,
        });
    if format != Format::Dotenv && !quoted_ini {
        format.load_plain(&out).unwrap_or_else(|e| {
            panic!("{format:?} output does not load: {e}\n{}", String::from_utf8_lossy(&out))
        });
    }
});
