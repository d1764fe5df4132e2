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
    fn shell_parameter_expansion_braces_are_left_alone() {
        let s = render("t", "echo ${x} {{y}}", &Vars::new().word("y", "1")).unwrap();
        assert_eq!(s, "echo ${x} 1");
    }
}
