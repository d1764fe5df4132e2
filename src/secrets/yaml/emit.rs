//! The YAML writer: the layout yaml.v3's encoder produces for the node trees sops builds.
//!
//! sops turns its tree into yaml.v3 nodes (every scalar encoded on its own, comments as head
//! comments of the next item) and lets the encoder write them with an indent of 4 by default.
//! The rules reproduced here, all observed on sops 3.11 output:
//! * block style everywhere; empty collections as `{}` / `[]`;
//! * a collection under a key is indented to the next multiple of the indent; an item of a
//!   list starts after `- `, so a map in a list continues at dash + 2;
//! * strings are plain unless they would read back as another type or contain characters a
//!   plain scalar cannot hold; then single-quoted, or double-quoted with escapes; strings with
//!   a newline are literal blocks (`|`, `|-`, `|+`, `|4` when they start with a space);
//! * comments are written verbatim as `#text` lines above the next item, at its indentation.

use super::resolve::{format_float, resolve_plain, Resolved};
use crate::secrets::tree::{ListItem, Map, MapItem, Scalar, Value};
use base64::Engine as _;

/// Keys longer than this (in bytes) are written as `? key` / `: value`, as libyaml does.
const MAX_SIMPLE_KEY: usize = 128;

pub(super) struct Emitter {
    out: String,
    /// Indentation step (sops: 4, or `stores.yaml.indent`).
    step: usize,
}

impl Emitter {
    pub(super) fn new(step: usize) -> Self {
        Emitter { out: String::new(), step: step.max(1) }
    }

    pub(super) fn finish(self) -> String {
        self.out
    }

    pub(super) fn document(&mut self, first: bool, map: &Map) {
        if !first {
            self.out.push_str("---\n");
        }
        if map.iter().any(|i| matches!(i, MapItem::Entry { .. })) {
            self.map_body(map, 0, false);
        } else {
            self.comments(map.iter().filter_map(comment_of), 0);
            self.out.push_str("{}\n");
        }
    }

    /// The indentation of a collection or block scalar nested under a key at `indent`.
    fn nested(&self, indent: usize) -> usize {
        self.step * ((indent + self.step) / self.step)
    }

    fn pad(&mut self, n: usize) {
        self.out.extend(std::iter::repeat_n(' ', n));
    }

    fn comments<'a>(&mut self, comments: impl IntoIterator<Item = &'a String>, indent: usize) {
        for c in comments {
            // A comment's text never spans lines in YAML; keep the output valid if one does.
            for line in c.split('\n') {
                self.pad(indent);
                self.out.push('#');
                self.out.push_str(line);
                self.out.push('\n');
            }
        }
    }

    /// Writes the entries of a non-empty map at `indent`. With `inline_first`, the cursor is
    /// already after a `- ` and the first key goes there.
    fn map_body(&mut self, map: &[MapItem], indent: usize, inline_first: bool) {
        let mut pending: Vec<&String> = Vec::new();
        let mut first = true;
        for item in map {
            match item {
                MapItem::Comment(c) => pending.push(c),
                MapItem::Entry { key, value } => {
                    if !(first && inline_first) {
                        self.comments(pending.drain(..), indent);
                        self.pad(indent);
                    }
                    first = false;
                    self.entry(key, value, indent);
                }
            }
        }
        self.comments(pending, indent);
    }

    fn entry(&mut self, key: &str, value: &Value, indent: usize) {
        let complex = key.len() > MAX_SIMPLE_KEY || key.contains(is_break);
        if complex {
            self.out.push_str("? ");
            let block_indent = self.nested(indent);
            self.out.push_str(&scalar_text(key, false, block_indent, self.step));
            if !self.out.ends_with('\n') {
                self.out.push('\n');
            }
            self.pad(indent);
            self.out.push(':');
        } else {
            self.out.push_str(&scalar_text(key, true, 0, self.step));
            self.out.push(':');
        }
        let nested = self.nested(indent);
        match value {
            Value::Scalar(s) => {
                self.out.push(' ');
                self.scalar(s, nested);
            }
            Value::Map(m) if has_entries(m) => {
                self.out.push('\n');
                self.map_body(m, nested, false);
            }
            Value::List(l) if has_values(l) => {
                self.out.push('\n');
                self.list_body(l, nested, false);
            }
            Value::Map(m) => {
                self.out.push_str(" {}\n");
                self.comments(m.iter().filter_map(comment_of), nested);
            }
            Value::List(l) => {
                self.out.push_str(" []\n");
                self.comments(l.iter().filter_map(list_comment_of), nested);
            }
        }
    }

    /// Writes the items of a non-empty list, dashes at `indent`.
    fn list_body(&mut self, list: &[ListItem], indent: usize, inline_first: bool) {
        let mut pending: Vec<&String> = Vec::new();
        let mut first = true;
        for item in list {
            let value = match item {
                ListItem::Comment(c) => {
                    pending.push(c);
                    continue;
                }
                ListItem::Value(v) => v,
            };
            // Comments at the start of a map item are head comments of the item.
            if let Value::Map(m) = value {
                if has_entries(m) {
                    pending.extend(m.iter().map_while(comment_of));
                }
            }
            if !(first && inline_first) {
                self.comments(pending.drain(..), indent);
                self.pad(indent);
            }
            first = false;
            self.out.push('-');
            let inner = indent + 2;
            match value {
                Value::Scalar(s) => {
                    self.out.push(' ');
                    self.scalar(s, inner);
                }
                Value::Map(m) if has_entries(m) => {
                    self.out.push(' ');
                    let skip = m.iter().take_while(|i| comment_of(i).is_some()).count();
                    self.map_body(&m[skip..], inner, true);
                }
                Value::List(l) if has_values(l) => {
                    self.out.push(' ');
                    self.list_body(l, inner, true);
                }
                Value::Map(m) => {
                    self.out.push_str(" {}\n");
                    self.comments(m.iter().filter_map(comment_of), inner);
                }
                Value::List(l) => {
                    self.out.push_str(" []\n");
                    self.comments(l.iter().filter_map(list_comment_of), inner);
                }
            }
        }
        self.comments(pending, indent);
    }

    /// Writes a scalar after `key: ` or `- `, ending the line. `block_indent` is where the
    /// lines of a literal block go.
    fn scalar(&mut self, s: &Scalar, block_indent: usize) {
        let text = match s {
            Scalar::Null => "null".to_string(),
            Scalar::Bool(b) => b.to_string(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => format_float(*f),
            Scalar::Time(t) => t.clone(),
            Scalar::Str(s) => scalar_text(s, false, block_indent, self.step),
            Scalar::Bytes(b) => match std::str::from_utf8(b) {
                Ok(s) => scalar_text(s, false, block_indent, self.step),
                Err(_) => binary_text(b, block_indent),
            },
        };
        self.out.push_str(&text);
        if !self.out.ends_with('\n') {
            self.out.push('\n');
        }
    }
}

fn comment_of(item: &MapItem) -> Option<&String> {
    match item {
        MapItem::Comment(c) => Some(c),
        MapItem::Entry { .. } => None,
    }
}

fn list_comment_of(item: &ListItem) -> Option<&String> {
    match item {
        ListItem::Comment(c) => Some(c),
        ListItem::Value(_) => None,
    }
}

fn has_entries(m: &[MapItem]) -> bool {
    m.iter().any(|i| matches!(i, MapItem::Entry { .. }))
}

fn has_values(l: &[ListItem]) -> bool {
    l.iter().any(|i| matches!(i, ListItem::Value(_)))
}

/// yaml.v3 writes strings that are not valid UTF-8 as base64 under `!!binary`, in lines of
/// 70 characters when longer than one line.
fn binary_text(bytes: &[u8], block_indent: usize) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    if b64.len() < 70 {
        return format!("!!binary {b64}");
    }
    let mut out = String::from("!!binary |\n");
    for chunk in b64.as_bytes().chunks(70) {
        out.extend(std::iter::repeat_n(' ', block_indent));
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out
}

#[derive(Clone, Copy, PartialEq)]
enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

/// Which styles libyaml's scalar analysis allows for a value (block context).
struct Analysis {
    multiline: bool,
    plain_allowed: bool,
    single_allowed: bool,
    block_allowed: bool,
}

fn is_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// libyaml's notion of printable (only the Basic Multilingual Plane counts).
fn is_printable(c: char) -> bool {
    matches!(c, '\n' | '\x20'..='\x7e' | '\u{a0}'..='\u{d7ff}')
        || (('\u{e000}'..='\u{fffd}').contains(&c) && c != '\u{feff}')
}

fn analyze(value: &str) -> Analysis {
    if value.is_empty() {
        return Analysis {
            multiline: false,
            plain_allowed: true,
            single_allowed: true,
            block_allowed: false,
        };
    }
    let mut block_indicators = value.starts_with("---") || value.starts_with("...");
    let (mut line_breaks, mut special, mut tabs) = (false, false, false);
    let (mut leading_space, mut leading_break) = (false, false);
    let (mut trailing_space, mut trailing_break) = (false, false);
    let (mut break_space, mut space_break) = (false, false);
    let (mut prev_space, mut prev_break) = (false, false);
    let mut preceded_by_ws = true;
    let chars: Vec<char> = value.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let next = chars.get(i + 1).copied();
        let followed_by_ws = next.is_none_or(|n| matches!(n, ' ' | '\t') || is_break(n));
        let last = i + 1 == chars.len();
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => block_indicators = true,
                '?' | ':' | '-' if followed_by_ws => block_indicators = true,
                _ => {}
            }
        } else {
            match c {
                ':' if followed_by_ws => block_indicators = true,
                '#' if preceded_by_ws => block_indicators = true,
                _ => {}
            }
        }
        if c == '\t' {
            tabs = true;
        } else if !is_printable(c) {
            special = true;
        }
        if c == ' ' {
            leading_space |= i == 0;
            trailing_space |= last;
            break_space |= prev_break;
            prev_space = true;
            prev_break = false;
        } else if is_break(c) {
            line_breaks = true;
            leading_break |= i == 0;
            trailing_break |= last;
            space_break |= prev_space;
            prev_space = false;
            prev_break = true;
        } else {
            prev_space = false;
            prev_break = false;
        }
        preceded_by_ws = matches!(c, ' ' | '\t') || is_break(c);
    }
    let mut a = Analysis {
        multiline: line_breaks,
        plain_allowed: true,
        single_allowed: true,
        block_allowed: true,
    };
    if leading_space || leading_break || trailing_space || trailing_break {
        a.plain_allowed = false;
    }
    if trailing_space {
        a.block_allowed = false;
    }
    if break_space {
        a.plain_allowed = false;
        a.single_allowed = false;
    }
    if space_break || tabs || special {
        a.plain_allowed = false;
        a.single_allowed = false;
    }
    if space_break || special {
        a.block_allowed = false;
    }
    // Where cairn leaves yaml.v3: a block scalar whose first non-empty line starts with a
    // tab cannot be read back, by yaml.v3 (sops) or by cairn: the reader is still finding
    // the indentation there, and a tab cannot be indentation. yaml.v3 writes it anyway
    // (fuzz target sops_yaml found it); cairn writes it double-quoted.
    if value.split('\n').find(|l| !l.is_empty()).is_some_and(|l| l.starts_with('\t')) {
        a.block_allowed = false;
    }
    if line_breaks || block_indicators {
        a.plain_allowed = false;
    }
    a
}

/// Strings yaml.v3 quotes so that YAML 1.1 readers do not take them for booleans.
fn is_old_bool(s: &str) -> bool {
    matches!(
        s,
        "y" | "Y"
            | "yes"
            | "Yes"
            | "YES"
            | "on"
            | "On"
            | "ON"
            | "n"
            | "N"
            | "no"
            | "No"
            | "NO"
            | "off"
            | "Off"
            | "OFF"
    )
}

/// YAML 1.1 sexagesimal floats (`1:30`), also quoted by yaml.v3:
/// `^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$`.
fn is_base60_float(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (body, frac) = match body.split_once('.') {
        Some((b, f)) => (b, Some(f)),
        None => (body, None),
    };
    if let Some(f) = frac {
        if !f.bytes().all(|c| c.is_ascii_digit() || c == b'_') {
            return false;
        }
    }
    let mut parts = body.split(':');
    let head = parts.next().unwrap_or_default();
    if !head.starts_with(|c: char| c.is_ascii_digit())
        || !head.bytes().all(|c| c.is_ascii_digit() || c == b'_')
    {
        return false;
    }
    let mut sixties = 0;
    for p in parts {
        sixties += 1;
        let ok = match p.as_bytes() {
            [d] => d.is_ascii_digit(),
            [a, b] => (b'0'..=b'5').contains(a) && b.is_ascii_digit(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    sixties > 0
}

/// Renders a string scalar as yaml.v3 would: `simple_key` for a mapping key, `block_indent`
/// for the lines of a literal block. The result has no trailing newline unless it is a block.
pub(super) fn scalar_text(s: &str, simple_key: bool, block_indent: usize, step: usize) -> String {
    if s == "<<" {
        // yaml.v3 writes the string `<<` plain, and re-reads it as the merge key.
        return "!!merge <<".to_string();
    }
    let mut style = if s.contains('\n') {
        Style::Literal
    } else if resolve_plain(s) == Resolved::Str && !is_base60_float(s) && !is_old_bool(s) {
        Style::Plain
    } else {
        Style::Double
    };
    let a = analyze(s);
    if simple_key && a.multiline {
        style = Style::Double;
    }
    if style == Style::Plain && (!a.plain_allowed || (s.is_empty() && simple_key)) {
        style = Style::Single;
    }
    if style == Style::Single && !a.single_allowed {
        style = Style::Double;
    }
    if style == Style::Literal && (!a.block_allowed || simple_key) {
        style = Style::Double;
    }
    match style {
        Style::Plain => s.to_string(),
        Style::Single => single_quoted(s, block_indent),
        Style::Double => double_quoted(s),
        Style::Literal => literal(s, block_indent, step),
    }
}

fn single_quoted(s: &str, indent: usize) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    // Only U+2028/U+2029 can put a line break here (other breaks force double quotes).
    let mut breaks = false;
    for c in s.chars() {
        if is_break(c) {
            if !breaks && c == '\n' {
                out.push('\n');
            }
            out.push(c);
            breaks = true;
            continue;
        }
        if breaks {
            // libyaml wrote the break character raw and now pads to the indent without a
            // newline (it counts U+2028 as a line break, YAML 1.2 readers do not).
            out.extend(std::iter::repeat_n(' ', indent));
            breaks = false;
        }
        if c == '\'' {
            out.push('\'');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    // libyaml checks for a byte order mark at the start of the *string* for every character,
    // so a string starting with one is escaped entirely.
    let bom = s.starts_with('\u{feff}');
    for c in s.chars() {
        if !(bom || !is_printable(c) || is_break(c) || c == '"' || c == '\\') {
            out.push(c);
            continue;
        }
        out.push('\\');
        match c {
            '\0' => out.push('0'),
            '\x07' => out.push('a'),
            '\x08' => out.push('b'),
            '\t' => out.push('t'),
            '\n' => out.push('n'),
            '\x0b' => out.push('v'),
            '\x0c' => out.push('f'),
            '\r' => out.push('r'),
            '\x1b' => out.push('e'),
            '"' => out.push('"'),
            '\\' => out.push('\\'),
            '\u{85}' => out.push('N'),
            '\u{a0}' => out.push('_'),
            '\u{2028}' => out.push('L'),
            '\u{2029}' => out.push('P'),
            c if u32::from(c) <= 0xff => out.push_str(&format!("x{:02X}", u32::from(c))),
            c if u32::from(c) <= 0xffff => out.push_str(&format!("u{:04X}", u32::from(c))),
            c => out.push_str(&format!("U{:08X}", u32::from(c))),
        }
    }
    out.push('"');
    out
}

fn literal(s: &str, indent: usize, step: usize) -> String {
    let mut out = String::with_capacity(s.len() + 8 + indent * 4);
    out.push('|');
    if s.starts_with(' ') || s.starts_with(is_break) {
        out.push_str(&step.to_string());
    }
    let mut rev = s.chars().rev();
    match (rev.next(), rev.next()) {
        (Some(c), _) if !is_break(c) => out.push('-'),
        (Some(_), None) => out.push('+'),
        (Some(_), Some(p)) if is_break(p) => out.push('+'),
        _ => {}
    }
    out.push('\n');
    let body = s.strip_suffix('\n').unwrap_or(s);
    for line in body.split('\n') {
        if !line.is_empty() {
            out.extend(std::iter::repeat_n(' ', indent));
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> String {
        scalar_text(s, false, 4, 4)
    }

    /// Found by fuzzing (fuzz target sops_yaml): `escapev: "\t tabnl\nfold..."` came out as
    /// a literal block whose first line starts with a tab, which no YAML reader takes back.
    #[test]
    fn a_multiline_value_starting_with_a_tab_is_double_quoted() {
        let value = "\t tabnl\nfold\\\\ \u{a0}";
        let text = t(value);
        assert!(text.starts_with('"'), "{text}");
        let docs = crate::secrets::yaml::parse(&format!("k: {text}\n")).unwrap();
        let again = crate::secrets::yaml::emit(&docs, crate::secrets::yaml::DEFAULT_INDENT);
        assert_eq!(again, format!("k: {text}\n"));
        // After a blank first line too; a tab further down stays in a block.
        assert!(t("\n\tx\ny").starts_with('"'));
        assert!(t("a\n\tb").starts_with('|'), "{}", t("a\n\tb"));
    }

    #[test]
    fn strings_are_quoted_like_yaml_v3() {
        assert_eq!(t("plain"), "plain");
        assert_eq!(t("yes"), "\"yes\"");
        assert_eq!(t("123"), "\"123\"");
        assert_eq!(t(""), "\"\"");
        assert_eq!(t("a: b"), "'a: b'");
        assert_eq!(t("a:b"), "a:b");
        assert_eq!(t("'sq"), "'''sq'");
        assert_eq!(t("tab\there"), "\"tab\\there\"");
        assert_eq!(t("😀"), "\"\\U0001F600\"");
        assert_eq!(t("\u{feff}bom"), "\"\\uFEFF\\x62\\x6F\\x6D\"");
        assert_eq!(t("1:30"), "\"1:30\"");
        assert_eq!(t("x]"), "x]");
        assert_eq!(t("-x"), "-x");
        assert_eq!(t("- x"), "'- x'");
        assert_eq!(t("trail "), "'trail '");
        assert_eq!(t("a\rb\nc"), "\"a\\rb\\nc\"");
        assert_eq!(t("2001-12-14"), "\"2001-12-14\"");
    }

    #[test]
    fn multi_line_strings_are_literal_blocks() {
        assert_eq!(t("a\nb"), "|-\n    a\n    b\n");
        assert_eq!(t("a\nb\n"), "|\n    a\n    b\n");
        assert_eq!(t("a\nb\n\n"), "|+\n    a\n    b\n\n");
        assert_eq!(t("  a\nb"), "|4-\n      a\n    b\n");
        assert_eq!(t("\nb"), "|4-\n\n    b\n");
        assert_eq!(t("x \ny"), "\"x \\ny\"");
    }
}
