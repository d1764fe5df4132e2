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

/// A program name: like [`quote`], but a name holding `=` is quoted too, so the shell does
/// not take it for an assignment.
pub fn quote_program(program: &str) -> String {
    if program.contains('=') {
        format!("'{}'", program.replace('\'', "'\\''"))
    } else {
        quote(program)
    }
}

/// One command line, built as data: a program and arguments, each quoted exactly once when
/// rendered. The one command builder of the crate: template lines (`make_part 1 'EFI'`) use
/// it directly, and [`crate::ssh::RemoteCommand`] wraps it with what a remote run needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellCommand {
    program: String,
    args: Vec<String>,
}

impl ShellCommand {
    /// A program with no arguments yet. Any name renders safely (see [`quote_program`]).
    pub fn new(program: impl Into<String>) -> Self {
        Self { program: program.into(), args: Vec::new() }
    }

    /// Appends one argument in place.
    pub fn push(&mut self, arg: impl Into<String>) {
        self.args.push(arg.into());
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
        f.write_str(&quote_program(&self.program))?;
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
    fn more_words_that_need_quotes() {
        assert_eq!(quote("a;b|c&d"), "'a;b|c&d'");
        assert_eq!(quote("'"), "''\\'''");
        assert_eq!(quote("a=b"), "a=b");
    }

    #[test]
    fn a_program_with_an_equals_sign_is_not_an_assignment() {
        assert_eq!(ShellCommand::new("a=b").arg("c=d").to_string(), "'a=b' c=d");
    }

    #[test]
    fn commands_render_with_quoted_arguments() {
        let c = ShellCommand::new("make_part").arg("1").arg("EFI system").arg("");
        assert_eq!(c.to_string(), "make_part 1 'EFI system' ''");
    }
}
