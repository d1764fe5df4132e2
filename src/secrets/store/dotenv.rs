//! dotenv as sops reads and writes it: one `KEY=value` per line (key and value verbatim,
//! `\n` escapes for newlines), `#` comment lines, metadata as sorted `sops_` keys.

use crate::secrets::cipher::to_bytes;
use crate::secrets::tree::{Map, MapItem, Value};

pub fn parse(text: &str) -> Result<Map, String> {
    let mut map = Map::new();
    for (n, line) in text.split('\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        if let Some(c) = line.strip_prefix('#') {
            map.push(MapItem::Comment(c.to_owned()));
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {}: invalid dotenv line (no `=`)", n + 1));
        };
        map.push(MapItem::Entry {
            key: key.to_owned(),
            value: Value::str(value.replace("\\n", "\n")),
        });
    }
    Ok(map)
}

pub fn emit(map: &Map) -> Result<String, String> {
    let mut out = String::new();
    for item in map {
        match item {
            MapItem::Comment(c) => {
                out.push('#');
                out.push_str(c);
                out.push('\n');
            }
            MapItem::Entry { key, value } => {
                let Value::Scalar(s) = value else {
                    return Err(format!("`{key}` has a nested value, which dotenv cannot hold"));
                };
                let text = String::from_utf8_lossy(&to_bytes(s)).replace('\n', "\\n");
                out.push_str(key);
                out.push('=');
                out.push_str(&text);
                out.push('\n');
            }
        }
    }
    Ok(out)
}
