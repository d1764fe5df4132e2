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

#[cfg(test)]
mod tests {
    use super::*;

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

/// What a lexical scan of the brackets finds wrong before the parser runs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Nesting {
    /// The byte offset where the text first nests deeper than the limit.
    TooDeep(usize),
    /// The outermost bracket (`{`, `[`, `(`, or a `${`/`%{` interpolation, given by the offset
    /// of its `{`) that is never closed.
    Unclosed { offset: usize, closer: char },
}

/// Scans the brackets of `text` the way the parser will see them: strings, comments and
/// heredocs are skipped except for their `${`/`%{` interpolations, which nest like brackets.
/// Both findings are answered here rather than by hcl-edit: its recursive parser needs stack
/// for every level, and on brackets left open it backtracks level by level, which fuzzing
/// showed takes seconds for a few dozen (fuzz/findings/inventory/slow_*).
pub(crate) fn scan_nesting(text: &str, max: usize) -> Option<Nesting> {
    enum Mode<'t> {
        /// Code inside the bracket at this offset (`None`: the top level).
        Code(Option<usize>),
        Str,
        Heredoc(&'t str),
    }
    let b = text.as_bytes();
    let at_line_start = |i: usize| i == 0 || b[i - 1] == b'\n';
    let line_end = |i: usize| b[i..].iter().position(|&c| c == b'\n').map_or(b.len(), |n| i + n);
    let mut stack: Vec<Mode> = vec![Mode::Code(None)];
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        match stack.last().unwrap_or(&Mode::Code(None)) {
            Mode::Code(_) => match c {
                b'"' => stack.push(Mode::Str),
                b'{' | b'[' | b'(' => stack.push(Mode::Code(Some(i))),
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
                    stack.push(Mode::Code(Some(i + 1)));
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
                            stack.push(Mode::Code(Some(i + 1)));
                            i += 1;
                        }
                        _ => {}
                    }
                }
            }
        }
        if stack.len() > max + 1 {
            return Some(Nesting::TooDeep(i));
        }
        i += 1;
    }
    // The outermost bracket still open: inner ones are usually closed by the `}` meant for it.
    stack.iter().find_map(|m| match m {
        Mode::Code(Some(offset)) => Some(Nesting::Unclosed {
            offset: *offset,
            closer: match b[*offset] {
                b'[' => ']',
                b'(' => ')',
                _ => '}',
            },
        }),
        _ => None,
    })
}

#[cfg(test)]
mod nesting_tests {
    use super::*;

    fn too_deep(text: &str, max: usize) -> Option<usize> {
        match scan_nesting(text, max) {
            Some(Nesting::TooDeep(at)) => Some(at),
            _ => None,
        }
    }

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

    #[test]
    fn the_outermost_bracket_left_open_is_found_outside_strings_comments_and_heredocs() {
        let open = |text: &str| match scan_nesting(text, 64) {
            Some(Nesting::Unclosed { offset, closer }) => Some((offset, closer)),
            _ => None,
        };
        // A block whose `}` went missing: the `}` of the next block closes it, so the
        // outermost open one is the block to fix.
        assert_eq!(open("host \"a\" {\n  x = 1\n\nhost \"b\" {\n  y = 2\n}\n"), Some((9, '}')));
        assert_eq!(open("a = [1, 2\n"), Some((4, ']')));
        assert_eq!(open("a = max(1, 2\n"), Some((7, ')')));
        assert_eq!(open("a = \"${b\"\n"), Some((6, '}')));
        assert_eq!(open("a {\n b = \"}\" # }\n c {}\n"), Some((2, '}')));
        // Balanced, whatever strings, comments and heredocs hold.
        for text in [
            "a {}\nb {\n}\n",
            "a = \"{[(\" # {\n// [\n/* ( */\nb = <<EOF\n{ [\nEOF\n",
            "a = \"%{ if x }y%{ endif }\"\nb = \"$${\"\n",
            "a = <<-EOT\n  ${ {k = 1} }\n  EOT\n",
        ] {
            assert_eq!(scan_nesting(text, 64), None, "{text:?}");
        }
    }
}
