//! A tiny renderer for the shell scripts under `templates/`.
//!
//! Placeholders are `{{name}}` (`name`: lowercase letters, digits, `_`). Every value is
//! shell-quoted when it is inserted, so a template decides the code and the values can only
//! ever be data. A value is either one word ([`Value::Word`]) or a list of command lines built
//! as data ([`Value::Commands`]), each rendered on its own line at the placeholder's indent.
//! A placeholder without a value and a value without a placeholder are both errors, so a
//! template and its caller cannot drift apart silently.

use std::collections::BTreeMap;

use super::shell::{quote, ShellCommand};

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum TemplateError {
    #[error("template {template}, line {line}: `{{{{{variable}}}}}` has no value")]
    #[diagnostic(
        code(cairn::template::missing),
        help("this is a bug in cairn: the caller must provide every variable the template uses")
    )]
    Missing { template: String, variable: String, line: usize },

    #[error("template {template}: variable `{variable}` is given but never used")]
    #[diagnostic(
        code(cairn::template::unused),
        help("this is a bug in cairn: the template and its caller disagree")
    )]
    Unused { template: String, variable: String },

    #[error("template {template}, line {line}: {detail}")]
    #[diagnostic(
        code(cairn::template::syntax),
        help("placeholders look like `{{{{name}}}}` with a lowercase name")
    )]
    Syntax { template: String, line: usize, detail: String },

    #[error("template {template}: the value of `{variable}` contains a NUL byte, which no shell argument can hold")]
    #[diagnostic(code(cairn::template::nul))]
    Nul { template: String, variable: String },

    #[error("template {template}, line {line}: `{{{{{variable}}}}}` sits {context}, where a quoted value is not safe")]
    #[diagnostic(
        code(cairn::template::unsafe_context),
        help("this is a bug in cairn's template: assign the value to a shell variable with `name={{{{name}}}}` on a line of its own and use \"$name\" there")
    )]
    UnsafeContext { template: String, variable: String, line: usize, context: &'static str },
}

/// The shell context a placeholder sits in, as far as quoting is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    /// Unquoted shell code: a single-quoted word is data there.
    Code,
    SingleQuotes,
    DoubleQuotes,
    Backquotes,
    Comment,
    Heredoc,
}

impl Context {
    fn describe(self) -> &'static str {
        match self {
            Context::Code => "in code",
            Context::SingleQuotes => "inside single quotes",
            Context::DoubleQuotes => "inside double quotes",
            Context::Backquotes => "inside backquotes",
            Context::Comment => "in a comment",
            Context::Heredoc => "in a here-document",
        }
    }
}

/// Every placeholder of `text` with its line and the shell context it sits in. A lexical
/// scan of the template itself (the values are not there yet): quotes, `\` escapes,
/// comments and here-documents, which is what decides whether a single-quoted word is data.
fn placeholder_contexts(text: &str) -> Vec<(String, usize, Context)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut ctx = Context::Code;
    let mut line = 1;
    // Here-documents whose body starts after the current line: (delimiter, strip tabs).
    let mut pending: Vec<(String, bool)> = Vec::new();
    let mut heredoc: Option<(String, bool)> = None;
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"{{") {
            if let Some(end) = text[i + 2..].find("}}") {
                out.push((text[i + 2..i + 2 + end].to_owned(), line, ctx));
                i += 2 + end + 2;
                continue;
            }
        }
        let c = b[i];
        if c == b'\n' {
            line += 1;
            if ctx == Context::Comment {
                ctx = Context::Code;
            }
            if ctx == Context::Code && !pending.is_empty() {
                heredoc = Some(pending.remove(0));
                ctx = Context::Heredoc;
            }
            if ctx == Context::Heredoc {
                // Does the next line end the here-document?
                let start = i + 1;
                let end = text[start..].find('\n').map_or(text.len(), |n| start + n);
                let next = &text[start..end];
                if let Some((delim, strip)) = &heredoc {
                    let next = if *strip { next.trim_start_matches('\t') } else { next };
                    if next == delim {
                        i = end;
                        heredoc = pending.first().cloned();
                        if heredoc.is_some() {
                            pending.remove(0);
                        } else {
                            ctx = Context::Code;
                        }
                        continue;
                    }
                }
            }
            i += 1;
            continue;
        }
        match ctx {
            Context::Code => match c {
                b'\\' => i += 1,
                b'\'' => ctx = Context::SingleQuotes,
                b'"' => ctx = Context::DoubleQuotes,
                b'`' => ctx = Context::Backquotes,
                b'#' if i == 0
                    || matches!(b[i - 1], b' ' | b'\t' | b'\n' | b';' | b'&' | b'|' | b'(') =>
                {
                    ctx = Context::Comment
                }
                b'<' if b[i..].starts_with(b"<<") && !b[i..].starts_with(b"<<<") => {
                    let mut j = i + 2;
                    let strip = b.get(j) == Some(&b'-');
                    if strip {
                        j += 1;
                    }
                    while b.get(j).is_some_and(|&c| c == b' ' || c == b'\t') {
                        j += 1;
                    }
                    let word_end = text[j..]
                        .find(|c: char| {
                            c.is_whitespace() || matches!(c, ';' | '&' | '|' | ')' | '<' | '>')
                        })
                        .map_or(text.len(), |n| j + n);
                    let delim: String = text[j..word_end]
                        .chars()
                        .filter(|&c| !matches!(c, '\'' | '"' | '\\'))
                        .collect();
                    if !delim.is_empty() {
                        pending.push((delim, strip));
                    }
                    i = word_end;
                    continue;
                }
                _ => {}
            },
            Context::SingleQuotes => {
                if c == b'\'' {
                    ctx = Context::Code;
                }
            }
            Context::DoubleQuotes => match c {
                b'\\' => i += 1,
                b'"' => ctx = Context::Code,
                _ => {}
            },
            Context::Backquotes => match c {
                b'\\' => i += 1,
                b'`' => ctx = Context::Code,
                _ => {}
            },
            Context::Comment | Context::Heredoc => {}
        }
        i += 1;
    }
    out
}

/// A value for one placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// One shell word, quoted.
    Word(String),
    /// Command lines, one per line, every argument quoted. An empty list renders as `:`
    /// (the shell's no-op) so the surrounding code stays valid.
    Commands(Vec<ShellCommand>),
}

/// The named values for one rendering.
#[derive(Debug, Clone, Default)]
pub struct Vars(BTreeMap<String, Value>);

impl Vars {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn word(mut self, name: &str, value: impl Into<String>) -> Self {
        self.0.insert(name.to_owned(), Value::Word(value.into()));
        self
    }

    pub fn commands(mut self, name: &str, commands: Vec<ShellCommand>) -> Self {
        self.0.insert(name.to_owned(), Value::Commands(commands));
        self
    }
}

/// Renders `text` (the template named `template` in errors) with `vars`.
pub fn render(template: &str, text: &str, vars: &Vars) -> Result<String, TemplateError> {
    // A value is one single-quoted word: data in code, but not inside quotes (where `$(...)`
    // in it would run), a comment (a newline in it would end the comment) or a heredoc.
    if let Some((variable, line, context)) =
        placeholder_contexts(text).into_iter().find(|(_, _, c)| *c != Context::Code)
    {
        return Err(TemplateError::UnsafeContext {
            template: template.to_owned(),
            variable,
            line,
            context: context.describe(),
        });
    }
    let mut out = String::with_capacity(text.len() + 256);
    let mut used = std::collections::BTreeSet::new();
    let mut rest = text;
    let mut line = 1;
    while let Some(start) = rest.find("{{") {
        let (before, after) = rest.split_at(start);
        out.push_str(before);
        line += before.matches('\n').count();
        let after = &after[2..];
        let end = after.find("}}").ok_or_else(|| TemplateError::Syntax {
            template: template.to_owned(),
            line,
            detail: "`{{` is never closed".into(),
        })?;
        let name = &after[..end];
        if name.is_empty()
            || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(TemplateError::Syntax {
                template: template.to_owned(),
                line,
                detail: format!("`{{{{{name}}}}}` is not a placeholder name"),
            });
        }
        let value = vars.0.get(name).ok_or_else(|| TemplateError::Missing {
            template: template.to_owned(),
            variable: name.to_owned(),
            line,
        })?;
        let nul =
            || TemplateError::Nul { template: template.to_owned(), variable: name.to_owned() };
        match value {
            Value::Word(w) => {
                if w.contains('\0') {
                    return Err(nul());
                }
                out.push_str(&quote(w));
            }
            Value::Commands(cmds) if cmds.is_empty() => out.push(':'),
            Value::Commands(cmds) => {
                if cmds.iter().any(|c| c.arguments().iter().any(|a| a.contains('\0'))) {
                    return Err(nul());
                }
                // Continue lines at the placeholder's indent when it starts its line.
                let line_start = out.rfind('\n').map_or(0, |i| i + 1);
                let indent = &out[line_start..];
                let indent = if indent.bytes().all(|b| b == b' ' || b == b'\t') {
                    indent.to_owned()
                } else {
                    String::new()
                };
                for (i, c) in cmds.iter().enumerate() {
                    if i > 0 {
                        out.push('\n');
                        out.push_str(&indent);
                    }
                    out.push_str(&c.to_string());
                }
            }
        }
        used.insert(name.to_owned());
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    if let Some(unused) = vars.0.keys().find(|k| !used.contains(*k)) {
        return Err(TemplateError::Unused {
            template: template.to_owned(),
            variable: unused.clone(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted() {
        let vars = Vars::new().word("dev", "/dev/vda").word("label", "my disk");
        let s = render("t", "DEV={{dev}}\nLABEL={{label}}\n", &vars).unwrap();
        assert_eq!(s, "DEV=/dev/vda\nLABEL='my disk'\n");
    }

    #[test]
    fn a_value_cannot_inject_code() {
        let vars = Vars::new().word("x", "'; reboot; '");
        let s = render("t", "echo {{x}}", &vars).unwrap();
        assert_eq!(s, r#"echo ''\''; reboot; '\'''"#);
        let out = std::process::Command::new("sh").arg("-c").arg(&s).output().unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "'; reboot; '\n");
    }

    #[test]
    fn commands_render_one_per_line_at_the_indent() {
        let vars = Vars::new().commands(
            "steps",
            vec![ShellCommand::new("a").arg("1"), ShellCommand::new("b").arg("x y")],
        );
        let s = render("t", "f() {\n    {{steps}}\n}\n", &vars).unwrap();
        assert_eq!(s, "f() {\n    a 1\n    b 'x y'\n}\n");
    }

    #[test]
    fn empty_commands_render_as_noop() {
        let vars = Vars::new().commands("steps", vec![]);
        assert_eq!(render("t", "  {{steps}}\n", &vars).unwrap(), "  :\n");
    }

    #[test]
    fn missing_variable_is_an_error_with_its_line() {
        let err = render("disk.sh", "a\nb {{dev}}\n", &Vars::new()).unwrap_err();
        assert_eq!(err.to_string(), "template disk.sh, line 2: `{{dev}}` has no value");
    }

    #[test]
    fn unused_variable_is_an_error() {
        let err = render("t", "x", &Vars::new().word("dev", "y")).unwrap_err();
        assert_eq!(err.to_string(), "template t: variable `dev` is given but never used");
    }

    #[test]
    fn bad_placeholders_are_errors() {
        let e = render("t", "{{ dev }}", &Vars::new()).unwrap_err();
        assert!(matches!(e, TemplateError::Syntax { .. }), "{e}");
        let e = render("t", "x {{dev", &Vars::new()).unwrap_err();
        assert_eq!(e.to_string(), "template t, line 1: `{{` is never closed");
    }

    #[test]
    fn nul_bytes_are_refused() {
        let e = render("t", "{{x}}", &Vars::new().word("x", "a\0b")).unwrap_err();
        assert!(matches!(e, TemplateError::Nul { .. }));
    }

    #[test]
    fn placeholders_outside_code_are_refused() {
        for (text, context) in [
            ("# header {{x}}\n", "in a comment"),
            ("echo hi # {{x}}\n", "in a comment"),
            ("die \"layout {{x}} is bad\"\n", "inside double quotes"),
            ("echo '{{x}}'\n", "inside single quotes"),
            ("echo `echo {{x}}`\n", "inside backquotes"),
            ("cat <<EOF\nvalue {{x}}\nEOF\n", "in a here-document"),
            ("cat <<-'END' >f\n\t{{x}}\n\tEND\n", "in a here-document"),
        ] {
            let e = render("t", text, &Vars::new().word("x", "v")).unwrap_err();
            assert!(
                matches!(&e, TemplateError::UnsafeContext { context: c, .. } if *c == context),
                "{text:?}: {e}"
            );
        }
        // Code: after a here-document, after a comment line, `$#`, `${#x}`, escaped quotes.
        for text in [
            "cat <<EOF\nbody\nEOF\necho {{x}}\n",
            "# comment\nx={{x}}\n",
            "echo $# ${#y} \\\" {{x}}\n",
            "a=\"q\" b='r' c={{x}}\n",
        ] {
            render("t", text, &Vars::new().word("x", "v"))
                .unwrap_or_else(|e| panic!("{text:?}: {e}"));
        }
    }

    #[test]
    fn every_template_places_values_in_code_only() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let mut stack = vec![dir];
        let mut checked = 0;
        while let Some(d) = stack.pop() {
            for e in fs_err::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "sh") {
                    let text = fs_err::read_to_string(&p).unwrap();
                    for (name, line, ctx) in placeholder_contexts(&text) {
                        assert_eq!(ctx, Context::Code, "{}:{line}: {{{{{name}}}}}", p.display());
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked >= 5, "templates not found");
    }

    #[test]
    fn shell_parameter_expansion_braces_are_left_alone() {
        let s = render("t", "echo ${x} {{y}}", &Vars::new().word("y", "1")).unwrap();
        assert_eq!(s, "echo ${x} 1");
    }
}
