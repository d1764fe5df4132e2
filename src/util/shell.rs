//! Shell words and command lines built as data, quoted for POSIX `sh` (and busybox `ash`).

use std::fmt;

/// Quotes `s` as one POSIX shell word. Words made only of characters no shell treats
/// specially stay bare (so rendered scripts stay readable); anything else is single-quoted,
/// with embedded single quotes written as `'\''`.
pub fn quote(s: &str) -> String {
    let safe =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_./:@%+=,-".contains(&b));
    if safe {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// One command line: a program (a shell function or command name fixed by cairn's own code)
/// and arguments, each quoted when rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellCommand {
    program: String,
    args: Vec<String>,
}

impl ShellCommand {
    /// `program` must be a plain command name (letters, digits, `_`, `-`, `.`, `/`): it comes
    /// from cairn's code, never from user input.
    ///
    /// # Panics
    /// When `program` is not such a name; that is a bug in the caller.
    pub fn new(program: &str) -> Self {
        assert!(
            !program.is_empty()
                && program.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-./".contains(&b)),
            "not a plain command name: {program:?}"
        );
        Self { program: program.to_owned(), args: Vec::new() }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn program(&self) -> &str {
        &self.program
    }

    pub fn arguments(&self) -> &[String] {
        &self.args
    }
}

impl fmt::Display for ShellCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.program)?;
        for a in &self.args {
            write!(f, " {}", quote(a))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_words_stay_bare() {
        assert_eq!(quote("/dev/vda"), "/dev/vda");
        assert_eq!(quote("1:0:+512M"), "1:0:+512M");
        assert_eq!(quote("ef00"), "ef00");
    }

    #[test]
    fn specials_are_single_quoted() {
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("$(reboot)"), "'$(reboot)'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote("a\nb"), "'a\nb'");
        assert_eq!(quote("*"), "'*'");
        assert_eq!(quote("~root"), "'~root'");
    }

    #[test]
    fn quoted_words_survive_a_real_shell() {
        let nasty = ["", "a b", "it's", "$(echo pwned)", "`id`", "\\", "\"", "a\nb", "*", "-n"];
        for word in nasty {
            let script = format!("printf '%s' {}", quote(word));
            let out = std::process::Command::new("sh").arg("-c").arg(&script).output().unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), word, "script: {script}");
        }
    }

    #[test]
    fn commands_render_with_quoted_arguments() {
        let c = ShellCommand::new("make_part").arg("1").arg("EFI system").arg("");
        assert_eq!(c.to_string(), "make_part 1 'EFI system' ''");
    }
}
