//! INI as sops 3.11 (go-ini v1.67) reads and writes it. The tree is a map of sections,
//! `DEFAULT` (the keys before any header) first; a section's leading comment is its first
//! item, a key's comments (the lines above it and an inline `; …`) follow the key, and
//! are written back above it.

use crate::secrets::cipher::to_bytes;
use crate::secrets::tree::{Map, MapItem, Value};

const DEFAULT: &str = "DEFAULT";

/// go-ini keeps a comment with its `#`/`;`; sops' tree holds it without the first marker.
fn comment_text(buf: &str) -> Option<String> {
    let t = buf.trim();
    if t.is_empty() {
        return None;
    }
    let t = t.strip_prefix(['#', ';']).unwrap_or(t);
    let t = t.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

pub fn parse(text: &str) -> Result<Map, String> {
    let mut sections: Vec<(String, Map)> = vec![(DEFAULT.to_owned(), Map::new())];
    // Section name → index in `sections`, so many headers cost no quadratic search.
    let mut index: std::collections::HashMap<String, usize> =
        [(DEFAULT.to_owned(), 0)].into_iter().collect();
    let mut comment = String::new();
    let mut lines = text.split('\n').enumerate();
    while let Some((n, raw)) = lines.next() {
        let line = raw.trim_start().trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with('#') || line.starts_with(';') {
            comment.push_str(line);
            comment.push('\n');
            continue;
        }
        if line.starts_with('[') {
            let Some(end) = line.find(']') else {
                return Err(format!("line {}: unclosed section header", n + 1));
            };
            let name = line[1..end].trim().to_owned();
            let mut map = Map::new();
            if let Some(c) = comment_text(&comment) {
                map.push(MapItem::Comment(c));
            }
            comment.clear();
            match index.get(&name) {
                Some(&i) => sections[i].1.extend(map),
                None => {
                    index.insert(name.clone(), sections.len());
                    sections.push((name, map));
                }
            }
            continue;
        }
        let Some(pos) = line.find(['=', ':']) else {
            return Err(format!(
                "line {}: `{}` is neither a key = value nor a section",
                n + 1,
                line.trim()
            ));
        };
        let key = line[..pos].trim();
        let key = unquote_key(key);
        let rest = line[pos + 1..].trim_start();
        let value = if let Some(body) = rest.strip_prefix("\"\"\"").filter(|_| rest.len() > 3) {
            match body.find("\"\"\"") {
                Some(end) => body[..end].to_owned(),
                None => {
                    // A multi-line value runs until the closing `"""`.
                    let mut v = body.to_owned();
                    loop {
                        let Some((_, next)) = lines.next() else {
                            return Err(format!("line {}: unterminated \"\"\" value", n + 1));
                        };
                        v.push('\n');
                        if let Some(end) = next.find("\"\"\"") {
                            v.push_str(&next[..end]);
                            break;
                        }
                        v.push_str(next);
                    }
                    v
                }
            }
        } else if let Some(body) = rest.strip_prefix('`') {
            match body.rfind('`') {
                Some(end) => body[..end].to_owned(),
                None => body.to_owned(),
            }
        } else {
            let mut v = rest.trim().to_owned();
            if let Some(i) = v.find(['#', ';']) {
                comment.push_str(&v[i..]);
                v = v[..i].trim().to_owned();
            }
            let quoted = |q: char| v.len() >= 2 && v.starts_with(q) && v.ends_with(q);
            if quoted('"') || quoted('\'') {
                v = v[1..v.len() - 1].to_owned();
            }
            v
        };
        let section = &mut sections.last_mut().expect("DEFAULT exists").1;
        section.push(MapItem::Entry { key: key.to_owned(), value: Value::str(value) });
        if let Some(c) = comment_text(&comment) {
            section.push(MapItem::Comment(c));
        }
        comment.clear();
    }
    Ok(sections
        .into_iter()
        .map(|(key, map)| MapItem::Entry { key, value: Value::Map(map) })
        .collect())
}

fn unquote_key(k: &str) -> &str {
    for q in ["\"\"\"", "`", "\""] {
        if k.len() >= 2 * q.len() && k.starts_with(q) && k.ends_with(q) {
            return &k[q.len()..k.len() - q.len()];
        }
    }
    k
}

fn push_comment(out: &mut String, text: &str) {
    for line in text.split('\n') {
        if line.starts_with('#') || line.starts_with(';') {
            out.push_str(&line[..1]);
            out.push(' ');
            out.push_str(line[1..].trim());
        } else {
            out.push_str("; ");
            out.push_str(line.trim());
        }
        out.push('\n');
    }
}

fn quote_key(k: &str) -> String {
    if k.contains('"') || k.contains("=:") {
        format!("`{k}`")
    } else if k.contains('`') {
        format!("\"\"\"{k}\"\"\"")
    } else {
        k.to_owned()
    }
}

fn quote_value(v: &str) -> String {
    if v.contains(['\n', '`']) {
        format!("\"\"\"{v}\"\"\"")
    } else if v.contains(['#', ';']) {
        format!("`{v}`")
    } else if v.trim().len() != v.len() {
        format!("\"{v}\"")
    } else {
        v.to_owned()
    }
}

/// One section as go-ini writes it: its comment, its header (none for a non-empty
/// `DEFAULT`), the key comments above their keys, `=` aligned.
fn emit_section(
    name: &str,
    comment: Option<&str>,
    keys: &[(String, String, Option<String>)],
    first: bool,
    out: &mut String,
) {
    if let Some(c) = comment {
        push_comment(out, c);
    }
    if !(first && name == DEFAULT) {
        out.push('[');
        out.push_str(name);
        out.push_str("]\n");
    }
    let quoted: Vec<String> = keys.iter().map(|(k, _, _)| quote_key(k)).collect();
    let align = quoted.iter().map(String::len).max().unwrap_or(0);
    for ((_, v, c), k) in keys.iter().zip(&quoted) {
        if let Some(c) = c {
            push_comment(out, c);
        }
        out.push_str(k);
        out.push_str(&" ".repeat(align - k.len()));
        out.push_str(" = ");
        out.push_str(&quote_value(v));
        out.push('\n');
    }
}

/// Emits the sections, then the flattened metadata as a last `[sops]` section.
pub fn emit(map: &Map, meta: Option<&[(String, String)]>) -> Result<String, String> {
    type Keys = Vec<(String, String, Option<String>)>;
    let mut sections: Vec<(String, Option<String>, Keys)> = Vec::new();
    for item in map {
        let MapItem::Entry { key: name, value } = item else { continue };
        let Value::Map(section) = value else {
            return Err(format!("`{name}` is not a section: INI files hold sections of keys"));
        };
        let mut comment: Option<String> = None;
        let mut keys: Keys = Vec::new();
        for item in section {
            match item {
                MapItem::Comment(c) => match keys.last_mut() {
                    Some((_, _, kc)) => match kc {
                        Some(existing) => {
                            existing.push('\n');
                            existing.push_str(c);
                        }
                        None => *kc = Some(c.clone()),
                    },
                    None => comment = Some(comment.map_or(c.clone(), |e| format!("{e}\n{c}"))),
                },
                MapItem::Entry { key, value: Value::Scalar(s) } => {
                    keys.push((
                        key.clone(),
                        String::from_utf8_lossy(&to_bytes(s)).into_owned(),
                        None,
                    ));
                }
                MapItem::Entry { key, .. } => {
                    return Err(format!("`{name}.{key}` is nested: INI values must be scalars"));
                }
            }
        }
        sections.push((name.clone(), comment, keys));
    }
    if let Some(meta) = meta {
        let keys = meta.iter().map(|(k, v)| (k.clone(), v.replace('\n', "\\n"), None)).collect();
        sections.push(("sops".to_owned(), None, keys));
    }
    // go-ini skips an empty DEFAULT section entirely.
    let sections: Vec<_> = sections
        .into_iter()
        .enumerate()
        .filter(|(i, (name, c, keys))| {
            !(*i == 0 && name == DEFAULT && keys.is_empty() && c.is_none())
        })
        .map(|(_, s)| s)
        .collect();
    let mut out = String::new();
    for (i, (name, comment, keys)) in sections.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        emit_section(name, comment.as_deref(), keys, i == 0, &mut out);
    }
    Ok(out)
}
