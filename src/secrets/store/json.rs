//! JSON as sops 3.11 reads and writes it: key order kept, every number a float, Go's string
//! escaping (`<>&` and U+2028/9 escaped), tab indentation.

use crate::secrets::cipher::format_float;
use crate::secrets::tree::{Documents, ListItem, Map, MapItem, Scalar, Value};

/// Parses a JSON document whose top level is an object.
pub fn parse(text: &str) -> Result<Documents, String> {
    let mut p = Parser { s: text.as_bytes(), pos: 0, depth: 0 };
    p.ws();
    if p.peek() != Some(b'{') {
        return Err(p.error("the top level must be an object"));
    }
    let Value::Map(map) = p.value()? else { unreachable!() };
    p.ws();
    if p.pos != p.s.len() {
        return Err(p.error("unexpected data after the top-level object"));
    }
    Ok(vec![map])
}

/// Deepest nesting of objects and arrays accepted (real sops files are shallow; the limit
/// keeps this recursive parser and every walk of the tree within the stack).
pub const MAX_DEPTH: usize = 128;

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn error(&self, what: &str) -> String {
        let before = &self.s[..self.pos.min(self.s.len())];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let col = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
        format!("line {line}, column {col}: {what}")
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        self.ws();
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected `{}`", c as char)))
        }
    }

    fn value(&mut self) -> Result<Value, String> {
        self.ws();
        if matches!(self.peek(), Some(b'{' | b'[')) {
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(self.error(&format!(
                    "objects and arrays are nested more than {MAX_DEPTH} levels deep"
                )));
            }
            let v = self.value_inner();
            self.depth -= 1;
            return v;
        }
        self.value_inner()
    }

    fn value_inner(&mut self) -> Result<Value, String> {
        match self.peek() {
            Some(b'{') => {
                self.pos += 1;
                let mut map = Map::new();
                self.items(b'}', |p| {
                    p.ws();
                    if p.peek() != Some(b'"') {
                        return Err(p.error("expected a string key"));
                    }
                    let key = p.string()?;
                    p.expect(b':')?;
                    let value = p.value()?;
                    map.push(MapItem::Entry { key, value });
                    Ok(())
                })?;
                Ok(Value::Map(map))
            }
            Some(b'[') => {
                self.pos += 1;
                let mut list = Vec::new();
                self.items(b']', |p| {
                    list.push(ListItem::Value(p.value()?));
                    Ok(())
                })?;
                Ok(Value::List(list))
            }
            Some(b'"') => Ok(Value::str(self.string()?)),
            Some(b't') => self.literal("true", Scalar::Bool(true)),
            Some(b'f') => self.literal("false", Scalar::Bool(false)),
            Some(b'n') => self.literal("null", Scalar::Null),
            Some(b'-' | b'0'..=b'9') => {
                let start = self.pos;
                while matches!(self.peek(), Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')) {
                    self.pos += 1;
                }
                let text = std::str::from_utf8(&self.s[start..self.pos]).expect("ASCII");
                if !valid_number(text) {
                    return Err(self.error(&format!("invalid number `{text}`")));
                }
                // sops 3.11 decodes every JSON number into a float64.
                let f: f64 =
                    text.parse().map_err(|_| self.error(&format!("invalid number `{text}`")))?;
                Ok(Value::Scalar(Scalar::Float(f)))
            }
            Some(_) => Err(self.error("unexpected character")),
            None => Err(self.error("unexpected end of input")),
        }
    }

    /// The comma-separated items of an object or array after its opening byte, through
    /// `close`.
    fn items(
        &mut self,
        close: u8,
        mut item: impl FnMut(&mut Self) -> Result<(), String>,
    ) -> Result<(), String> {
        self.ws();
        if self.peek() == Some(close) {
            self.pos += 1;
            return Ok(());
        }
        loop {
            item(self)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(c) if c == close => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.error(&format!("expected `,` or `{}`", close as char))),
            }
        }
    }

    fn literal(&mut self, word: &str, s: Scalar) -> Result<Value, String> {
        if self.s[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(Value::Scalar(s))
        } else {
            Err(self.error("unexpected word"))
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let h =
            self.s.get(self.pos..self.pos + 4).ok_or_else(|| self.error("truncated \\u escape"))?;
        let h = std::str::from_utf8(h).map_err(|_| self.error("invalid \\u escape"))?;
        let v = u32::from_str_radix(h, 16).map_err(|_| self.error("invalid \\u escape"))?;
        self.pos += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String, String> {
        self.pos += 1; // opening quote
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(c) = self.peek() else { return Err(self.error("unterminated string")) };
            self.pos += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(e) = self.peek() else {
                        return Err(self.error("unterminated string"));
                    };
                    self.pos += 1;
                    match e {
                        b'"' => out.push(b'"'),
                        b'\\' => out.push(b'\\'),
                        b'/' => out.push(b'/'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let mut cp = self.hex4()?;
                            if (0xD800..0xDC00).contains(&cp)
                                && self.s[self.pos..].starts_with(b"\\u")
                            {
                                let save = self.pos;
                                self.pos += 2;
                                let lo = self.hex4()?;
                                if (0xDC00..0xE000).contains(&lo) {
                                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                                } else {
                                    self.pos = save;
                                }
                            }
                            let ch = char::from_u32(cp).unwrap_or('\u{FFFD}');
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return Err(self.error("invalid escape")),
                    }
                }
                c if c < 0x20 => return Err(self.error("control character in string")),
                c => out.push(c),
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

fn valid_number(t: &str) -> bool {
    let b = t.as_bytes();
    let mut i = 0;
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            while matches!(b.get(i), Some(b'0'..=b'9')) {
                i += 1;
            }
        }
        _ => return false,
    }
    // At least one digit after `.` and after the exponent's sign.
    let digits = |i: &mut usize| {
        let start = *i;
        while matches!(b.get(*i), Some(b'0'..=b'9')) {
            *i += 1;
        }
        *i > start
    };
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == b.len()
}

/// Go's `encoding/json` string encoding (HTML-safe).
pub fn quote(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Go's `encoding/json` float64 encoding.
pub fn go_json_float(f: f64) -> String {
    let abs = f.abs();
    if !f.is_finite() {
        // Not representable in JSON; Go refuses. Keep the text sops would encrypt.
        let mut s = String::new();
        quote(&format_float(f), &mut s);
        return s;
    }
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let e = format!("{f:e}");
        let (mant, exp) = e.split_once('e').expect("exponent form");
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d.to_owned()),
            None => ('+', format!("{exp:0>2}")),
        };
        format!("{mant}e{sign}{digits}")
    } else {
        format!("{f}")
    }
}

/// Emits one document as sops does: `json.Indent` with the given indent (tab by default),
/// then a newline.
pub fn emit(map: &Map, indent: &str) -> String {
    let mut out = String::new();
    emit_map(map, indent, 0, &mut out);
    out.push('\n');
    out
}

fn newline(out: &mut String, indent: &str, depth: usize) {
    out.push('\n');
    for _ in 0..depth {
        out.push_str(indent);
    }
}

fn emit_map(map: &Map, indent: &str, depth: usize, out: &mut String) {
    let entries: Vec<(&String, &Value)> = map
        .iter()
        .filter_map(|i| match i {
            MapItem::Entry { key, value } => Some((key, value)),
            MapItem::Comment(_) => None,
        })
        .collect();
    emit_block(&entries, ['{', '}'], indent, depth, out, |(k, v), out| {
        quote(k, out);
        out.push_str(": ");
        emit_value(v, indent, depth + 1, out);
    });
}

/// `open`, the items one level deeper, each on its own line, `close`; `{}`/`[]` when empty.
fn emit_block<T>(
    items: &[T],
    [open, close]: [char; 2],
    indent: &str,
    depth: usize,
    out: &mut String,
    mut item: impl FnMut(&T, &mut String),
) {
    out.push(open);
    if !items.is_empty() {
        for (i, it) in items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            newline(out, indent, depth + 1);
            item(it, out);
        }
        newline(out, indent, depth);
    }
    out.push(close);
}

fn emit_value(v: &Value, indent: &str, depth: usize, out: &mut String) {
    match v {
        Value::Map(m) => emit_map(m, indent, depth, out),
        Value::List(l) => {
            let items: Vec<&Value> = l
                .iter()
                .filter_map(|i| match i {
                    ListItem::Value(v) => Some(v),
                    ListItem::Comment(_) => None,
                })
                .collect();
            emit_block(&items, ['[', ']'], indent, depth, out, |item, out| {
                emit_value(item, indent, depth + 1, out)
            });
        }
        Value::Scalar(s) => match s {
            Scalar::Null => out.push_str("null"),
            Scalar::Str(s) | Scalar::Time(s) => quote(s, out),
            Scalar::Bytes(b) => quote(&String::from_utf8_lossy(b), out),
            Scalar::Int(i) => out.push_str(&i.to_string()),
            Scalar::Float(f) => out.push_str(&go_json_float(*f)),
            Scalar::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_float_encoding() {
        assert_eq!(go_json_float(42.0), "42");
        assert_eq!(go_json_float(1e21), "1e+21");
        assert_eq!(go_json_float(1.5e-7), "1.5e-7");
        assert_eq!(go_json_float(1e-10), "1e-10");
        assert_eq!(go_json_float(1e20), "100000000000000000000");
        assert_eq!(go_json_float(0.000001), "0.000001");
    }

    #[test]
    fn go_string_escaping() {
        let mut s = String::new();
        quote("x<&>y\u{2028}\u{1}\u{8}\u{c}\té", &mut s);
        assert_eq!(s, r#""x\u003c\u0026\u003ey\u2028\u0001\b\f\té""#);
    }

    #[test]
    fn roundtrip_keeps_order_and_duplicates() {
        let text = "{\"b\": 1, \"a\": [true, null, \"x\"], \"b\": {}}";
        let docs = parse(text).unwrap();
        assert_eq!(
            emit(&docs[0], "\t"),
            "{\n\t\"b\": 1,\n\t\"a\": [\n\t\ttrue,\n\t\tnull,\n\t\t\"x\"\n\t],\n\t\"b\": {}\n}\n"
        );
    }
}
