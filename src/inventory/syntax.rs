//! Hints for HCL syntax errors. The parser says what it expected where it stopped; the
//! mistake is often elsewhere (a string left open a line earlier, a block never closed), so
//! look for the usual causes and point at them.

use std::ops::Range;

pub(crate) struct Hint {
    /// A second place to point at: where the mistake probably is.
    pub also: Option<(Range<usize>, String)>,
    pub help: String,
}

const GENERIC: &str =
    "blocks are `type \"label\" { ... }`, attributes `name = value`, strings in double quotes";

pub(crate) fn explain(text: &str, offset: usize, message: &str) -> Hint {
    if let Some(q) = unclosed_quote(text, offset) {
        return Hint {
            also: Some((q..q + 1, "this string is not closed".into())),
            help: "close the string with `\"` on the same line".into(),
        };
    }
    let at = text[offset..].chars().next();
    if at == Some('\'') {
        return hint("HCL strings use double quotes: \"like this\"");
    }
    if at.is_none() || text[offset..].trim().is_empty() {
        if let Some(open) = unclosed_brace(text) {
            return Hint {
                also: Some((open..open + 1, "this `{` is never closed".into())),
                help: "add the missing `}` at the end of this block".into(),
            };
        }
    }
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = &text[line_start..line_end];
    if message.contains("expected `{`") && !line.contains('{') && !line.contains('=') {
        return hint(
            "an attribute needs `=` (`size = \"cx22\"`); a block needs a body (`ssh { ... }`)",
        );
    }
    if message.contains("expected `]`") {
        return hint("separate list elements with commas: `[\"a\", \"b\"]`");
    }
    if message.contains("expected `}`") && line.contains(',') && !line.contains('"') {
        return hint("attributes in a block go on separate lines, without commas");
    }
    hint(GENERIC)
}

fn hint(help: &str) -> Hint {
    Hint { also: None, help: help.into() }
}

/// The offset of an opening `"` left unclosed on the line of a syntax error or the line
/// before it: the usual cause of "expected newline" errors a line too late.
fn unclosed_quote(text: &str, error_offset: usize) -> Option<usize> {
    let line_start = |at: usize| text[..at].rfind('\n').map_or(0, |i| i + 1);
    let this_line = line_start(error_offset);
    let prev_line = if this_line == 0 { 0 } else { line_start(this_line - 1) };
    let mut start = prev_line;
    for line in text[prev_line..].split_inclusive('\n').take(2) {
        let mut open: Option<usize> = None;
        let mut escaped = false;
        for (i, c) in line.char_indices() {
            match c {
                '\\' if !escaped => {
                    escaped = true;
                    continue;
                }
                '"' if !escaped => open = if open.is_some() { None } else { Some(start + i) },
                '#' if open.is_none() => break,
                _ => {}
            }
            escaped = false;
        }
        if open.is_some() {
            return open;
        }
        start += line.len();
    }
    None
}

/// The outermost `{` never closed, skipping strings and comments.
fn unclosed_brace(text: &str) -> Option<usize> {
    let mut stack = Vec::new();
    let mut chars = text.char_indices().peekable();
    let mut in_string = false;
    while let Some((i, c)) = chars.next() {
        if in_string {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' | '\n' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '#' => while chars.next_if(|(_, c)| *c != '\n').is_some() {},
            '/' if chars.peek().is_some_and(|(_, c)| *c == '/') => {
                while chars.next_if(|(_, c)| *c != '\n').is_some() {}
            }
            '{' => stack.push(i),
            '}' => {
                stack.pop();
            }
            _ => {}
        }
    }
    stack.first().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_unclosed_braces_outside_strings_and_comments() {
        assert_eq!(unclosed_brace("a {\n b = \"}\" # }\n c {}\n"), Some(2));
        assert_eq!(unclosed_brace("a {}\nb {\n}\n"), None);
        assert_eq!(unclosed_brace("x {\n y {\n"), Some(2));
    }

    #[test]
    fn finds_unclosed_quotes_on_the_error_line_or_the_one_before() {
        let text = "a {\n  b = \"x\n  c = 1\n}\n";
        let err = text.find("c =").unwrap() + 4;
        assert_eq!(unclosed_quote(text, err), text.find("\"x"));
        assert_eq!(unclosed_quote("a = \"x\" # \"\n", 3), None);
    }
}

/// Deepest nesting of brackets, braces, parentheses and template interpolations an
/// inventory may have. Real inventories are a handful of levels deep; the limit keeps
/// hcl-edit's recursive parser and every later walk within the stack, whatever the input.
pub(crate) const MAX_NESTING: usize = 64;

/// The byte offset where `text` first nests deeper than `max` levels, if it does. A lexical
/// scan: strings, comments and heredocs are skipped except for their `${`/`%{`
/// interpolations, which nest like brackets.
pub(crate) fn too_deep(text: &str, max: usize) -> Option<usize> {
    enum Mode<'t> {
        Code,
        Str,
        Heredoc(&'t str),
    }
    let b = text.as_bytes();
    let at_line_start = |i: usize| i == 0 || b[i - 1] == b'\n';
    let line_end = |i: usize| b[i..].iter().position(|&c| c == b'\n').map_or(b.len(), |n| i + n);
    let mut stack: Vec<Mode> = vec![Mode::Code];
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        match stack.last().unwrap_or(&Mode::Code) {
            Mode::Code => match c {
                b'"' => stack.push(Mode::Str),
                b'{' | b'[' | b'(' => stack.push(Mode::Code),
                b'}' | b']' | b')' if stack.len() > 1 => {
                    stack.pop();
                }
                b'#' => i = line_end(i),
                b'/' if next == Some(b'/') => i = line_end(i),
                b'/' if next == Some(b'*') => {
                    i = text[i + 2..].find("*/").map_or(b.len(), |n| i + 2 + n + 1);
                }
                b'<' if next == Some(b'<') => {
                    // `<<EOF` or `<<-EOF`, then the body up to a line holding only `EOF`.
                    let start = i + 2 + usize::from(b.get(i + 2) == Some(&b'-'));
                    let end = line_end(start);
                    let ident = text[start..end].trim_end();
                    if !ident.is_empty()
                        && ident.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
                    {
                        stack.push(Mode::Heredoc(ident));
                        i = end;
                    }
                }
                _ => {}
            },
            Mode::Str => match c {
                b'\\' => i += 1,
                b'"' | b'\n' => {
                    stack.pop();
                }
                b'$' | b'%' if next == Some(c) => i += 1,
                b'$' | b'%' if next == Some(b'{') => {
                    stack.push(Mode::Code);
                    i += 1;
                }
                _ => {}
            },
            Mode::Heredoc(ident) => {
                if at_line_start(i) && text[i..line_end(i)].trim() == *ident {
                    stack.pop();
                    i = line_end(i);
                } else {
                    match c {
                        b'$' | b'%' if next == Some(c) => i += 1,
                        b'$' | b'%' if next == Some(b'{') => {
                            stack.push(Mode::Code);
                            i += 1;
                        }
                        _ => {}
                    }
                }
            }
        }
        if stack.len() > max + 1 {
            return Some(i);
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod nesting_tests {
    use super::*;

    #[test]
    fn nesting_counts_brackets_interpolations_and_heredocs() {
        assert_eq!(too_deep("a = [[[1]]]\n", 3), None);
        assert_eq!(too_deep("a = [[[[1]]]]\n", 3), Some(7));
        // Brackets inside strings, comments and heredoc text do not count.
        assert_eq!(too_deep("a = \"[[[[[\" # {{{{{\n// ((((\n/* [[[[ */\n", 1), None);
        assert_eq!(too_deep("a = <<EOF\n[[[[[[\nEOF\nb = 1\n", 1), None);
        // Interpolations do.
        assert_eq!(too_deep("a = \"${[[1]]}\"\n", 4), None);
        assert_eq!(too_deep("a = \"${[[[1]]]}\"\n", 4), Some(9));
        assert_eq!(too_deep("a = <<EOF\n${[[1]]}\nEOF\n", 4), None);
        assert_eq!(too_deep("a = <<EOF\n${[[[1]]]}\nEOF\n", 4), Some(14));
        // Escaped interpolations are text.
        assert_eq!(too_deep("a = \"$${[[[[[\"\n", 1), None);
    }
}
