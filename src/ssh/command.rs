//! Remote commands built as data: a program with arguments, or a script fed to `sh -s`,
//! rendered into one POSIX shell command line with every argument quoted.

use std::ffi::OsStr;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The default cap on captured stdout (callers that stream more use `Session::open_stream`).
pub const DEFAULT_STDOUT_CAP: usize = 16 * 1024 * 1024;

/// A command to run on a remote host, built as data so every argument is quoted exactly once.
///
/// ```
/// use cairn::ssh::RemoteCommand;
/// let cmd = RemoteCommand::new("mkdir").arg("-p").arg("/mnt/etc/my dir");
/// assert_eq!(cmd.command_line().unwrap(), "mkdir -p '/mnt/etc/my dir'");
/// ```
#[derive(Clone)]
pub struct RemoteCommand {
    body: Body,
    env: Vec<(String, String)>,
    stdin: Option<Arc<[u8]>>,
    privileged: bool,
    sensitive: bool,
    allowed_exit_codes: Vec<u32>,
    stdout_cap: usize,
    limit: Option<TimeLimit>,
    /// The caller reads stdout while the command runs ([`super::RemoteStream::stdout_until`]).
    early_stdout: bool,
    /// The first invalid argument, reported when the command line is rendered.
    invalid: Option<String>,
}

#[derive(Clone)]
enum Body {
    Program(ShellCommand),
    /// A script fed on stdin to `sh -s`; `name` identifies it in logs and errors.
    Script {
        name: String,
        text: Arc<str>,
    },
    /// A script passed to `sh -c`, leaving stdin free for data.
    InlineScript {
        name: String,
        text: String,
    },
}

impl RemoteCommand {
    /// A program (looked up in the remote PATH) with no arguments yet.
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        let mut cmd = Self::with_body(Body::Program(ShellCommand::new(String::new())));
        let program = cmd.checked(program.as_ref(), "program");
        cmd.body = Body::Program(ShellCommand::new(program));
        cmd
    }

    /// A shell script (a rendered template) fed on stdin to `sh -s`. Its named arguments
    /// are passed with [`RemoteCommand::env`]. A script command has no other stdin.
    pub fn script(name: impl Into<String>, text: impl Into<String>) -> Self {
        let text: String = text.into();
        Self::with_body(Body::Script { name: name.into(), text: Arc::from(text) })
    }

    /// A shell script passed on the command line to `sh -c`, so stdin stays free for data
    /// (an upload, a tar stream). Keep such scripts short: they travel in the exec request.
    pub fn inline_script(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self::with_body(Body::InlineScript { name: name.into(), text: text.into() })
    }

    fn with_body(body: Body) -> Self {
        Self {
            body,
            env: Vec::new(),
            stdin: None,
            privileged: true,
            sensitive: false,
            allowed_exit_codes: vec![0],
            stdout_cap: DEFAULT_STDOUT_CAP,
            early_stdout: false,
            limit: None,
            invalid: None,
        }
    }

    /// Appends one argument (a program command only; scripts take named arguments).
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        let arg = self.checked(arg.as_ref(), "argument");
        match &mut self.body {
            Body::Program(command) => command.push(arg),
            Body::Script { name, .. } | Body::InlineScript { name, .. } => {
                let msg = format!("script {name} takes named arguments (env), not positional ones");
                self.invalid.get_or_insert(msg);
            }
        }
        self
    }

    /// Appends several arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for a in args {
            self = self.arg(a);
        }
        self
    }

    /// Sets a named argument, passed as an environment variable (`env NAME=VALUE ...`).
    /// Names are upper-case shell identifiers (`[A-Z_][A-Z0-9_]*`).
    pub fn env(mut self, name: &str, value: impl AsRef<OsStr>) -> Self {
        let valid_name = name.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
            && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !valid_name {
            let msg = format!("invalid variable name {name:?}: use [A-Z_][A-Z0-9_]*");
            self.invalid.get_or_insert(msg);
            return self;
        }
        let value = self.checked(value.as_ref(), name);
        self.env.retain(|(n, _)| n != name);
        self.env.push((name.to_owned(), value));
        self
    }

    /// Bytes written to the command's stdin, followed by end of file.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        if let Body::Script { name, .. } = &self.body {
            let msg = format!("script {name} is read from stdin; use inline_script to pass data");
            self.invalid.get_or_insert(msg);
        }
        self.stdin = Some(Arc::from(bytes.into()));
        self
    }

    /// Runs the command as the login user even when it is not root (no sudo/doas).
    pub fn unprivileged(mut self) -> Self {
        self.privileged = false;
        self
    }

    /// Hides the arguments and named-argument values in logs and errors.
    pub fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }

    /// Exit codes that count as success besides 0 (e.g. `test` answering 1).
    pub fn allow_exit_codes(mut self, codes: impl IntoIterator<Item = u32>) -> Self {
        self.allowed_exit_codes.extend(codes);
        self
    }

    /// The maximum number of stdout bytes kept; more is an error.
    pub fn stdout_cap(mut self, bytes: usize) -> Self {
        self.stdout_cap = bytes;
        self
    }

    /// Lets the caller read stdout while the command runs, before it ends
    /// ([`super::RemoteStream::stdout_until`]): a command that answers, then reads more input.
    pub fn early_stdout(mut self) -> Self {
        self.early_stdout = true;
        self
    }

    /// Fails the command if it has not finished after `timeout` (default: the session's
    /// command limit, see [`crate::ssh::ConnectOptions::command_limit`]).
    pub fn timeout(self, timeout: Duration) -> Self {
        self.time_limit(TimeLimit::new(timeout))
    }

    /// Like [`RemoteCommand::timeout`], with the limit's name and how to raise it, for the
    /// error.
    pub fn time_limit(mut self, limit: TimeLimit) -> Self {
        self.limit = Some(limit);
        self
    }

    pub(crate) fn is_privileged(&self) -> bool {
        self.privileged
    }
    pub(crate) fn exit_code_allowed(&self, code: u32) -> bool {
        self.allowed_exit_codes.contains(&code)
    }
    pub(crate) fn wants_early_stdout(&self) -> bool {
        self.early_stdout
    }
    pub(crate) fn cap(&self) -> usize {
        self.stdout_cap
    }
    pub(crate) fn limit(&self) -> Option<&TimeLimit> {
        self.limit.as_ref()
    }

    /// What is written to the remote stdin before end of file: the script for a script
    /// command, the given bytes otherwise.
    pub(crate) fn stdin_bytes(&self) -> Option<Arc<[u8]>> {
        match &self.body {
            Body::Script { text, .. } => Some(Arc::from(text.as_bytes())),
            _ => self.stdin.clone(),
        }
    }

    /// The command line as the remote shell receives it (without privilege escalation).
    pub fn command_line(&self) -> Result<String, InvalidCommand> {
        if let Some(reason) = &self.invalid {
            return Err(InvalidCommand { command: self.to_string(), reason: reason.clone() });
        }
        let mut words: Vec<String> = Vec::new();
        if !self.env.is_empty() {
            words.push("env".into());
            words.extend(self.env.iter().map(|(n, v)| format!("{n}={}", quote(v))));
        }
        match &self.body {
            Body::Program(command) => {
                if command.program().is_empty() {
                    return Err(InvalidCommand {
                        command: self.to_string(),
                        reason: "the program name is empty".into(),
                    });
                }
                words.push(command.to_string());
            }
            Body::Script { .. } => words.extend(["sh".into(), "-s".into()]),
            Body::InlineScript { text, .. } => {
                words.extend(["sh".into(), "-c".into(), quote(text)]);
            }
        }
        Ok(words.join(" "))
    }

    fn checked(&mut self, s: &OsStr, what: &str) -> String {
        match s.to_str() {
            Some(s) if s.contains('\0') => {
                self.invalid.get_or_insert_with(|| format!("the {what} contains a NUL byte"));
                String::new()
            }
            Some(s) => s.to_owned(),
            None => {
                let shown = s.to_string_lossy();
                self.invalid
                    .get_or_insert_with(|| format!("the {what} {shown:?} is not valid UTF-8"));
                String::new()
            }
        }
    }
}

/// For logs and errors: the command line, or with [`RemoteCommand::sensitive`] only the
/// program; a script shows as `sh -s <name>` (its body is not repeated).
impl fmt::Display for RemoteCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut words: Vec<String> = Vec::new();
        for (n, v) in &self.env {
            words.push(if self.sensitive {
                format!("{n}=…")
            } else {
                format!("{n}={}", quote(v))
            });
        }
        match &self.body {
            Body::Program(command) if self.sensitive => {
                words.push(quote_program(command.program()));
                if !command.arguments().is_empty() {
                    words.push("…".into());
                }
            }
            Body::Program(command) => words.push(command.to_string()),
            Body::Script { name, .. } => words.push(format!("sh -s <{name}>")),
            Body::InlineScript { name, .. } => words.push(format!("sh -c <{name}>")),
        }
        f.write_str(&words.join(" "))
    }
}

impl fmt::Debug for RemoteCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RemoteCommand").field(&self.to_string()).finish()
    }
}

/// How long a remote command may run, and for the error when it does not finish in time,
/// what the limit is and how to raise it. Every command runs under one: its own, else its
/// session's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeLimit {
    /// How long this command may run.
    pub after: Duration,
    /// What the limit is, for the error: `the `reach` timeout, 20s`.
    pub name: String,
    /// How to give the command more time, for the error's help (may be empty).
    pub raise: String,
}

impl TimeLimit {
    /// A limit of `after` with no setting behind it.
    pub fn new(after: Duration) -> Self {
        Self { after, name: String::new(), raise: String::new() }
    }

    /// The same limit with only `left` remaining (a command inside a wait).
    pub fn with_remaining(&self, left: Duration) -> Self {
        Self { after: left, ..self.clone() }
    }
}

impl Default for TimeLimit {
    /// cairn's limit for a command nobody gave one (status probes, `cairn ssh` commands).
    fn default() -> Self {
        Self {
            after: Duration::from_secs(120),
            name: "cairn's limit for a remote command, 2m".into(),
            raise: String::new(),
        }
    }
}

/// A command that cannot be rendered into a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidCommand {
    pub command: String,
    pub reason: String,
}

/// One word for a POSIX shell (the same quoting the rendered templates use).
pub use crate::util::shell::quote;
use crate::util::shell::{quote_program, ShellCommand};

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn empty_argument_is_kept_as_an_empty_word() {
        let cmd = RemoteCommand::new("printf").arg("%s|").arg("").arg("x");
        assert_eq!(cmd.command_line().unwrap(), "printf '%s|' '' x");
    }

    #[test]
    fn quoting_survives_a_real_shell() {
        let tricky = ["", "a b", "it's", "line1\nline2", "$HOME", "`id`", "\\", "\"", "-n", "é ü"];
        let cmd = RemoteCommand::new("printf").arg("[%s]").args(tricky);
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd.command_line().unwrap())
            .output()
            .unwrap();
        let expected: String = tricky.iter().map(|a| format!("[{a}]")).collect();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), expected);
    }

    #[test]
    fn non_utf8_arguments_are_rejected() {
        let bad = OsStr::from_bytes(b"/tmp/\xff\xfe");
        let err = RemoteCommand::new("cat").arg(bad).command_line().unwrap_err();
        assert!(err.reason.contains("not valid UTF-8"), "{}", err.reason);
    }

    #[test]
    fn nul_bytes_are_rejected() {
        let err = RemoteCommand::new("echo").arg("a\0b").command_line().unwrap_err();
        assert_eq!(err.reason, "the argument contains a NUL byte");
    }

    #[test]
    fn scripts_run_under_sh_s_with_named_arguments() {
        let cmd = RemoteCommand::script("partition", "wipefs -a \"$DISK\"\n")
            .env("DISK", "/dev/vda")
            .env("LABEL", "my root");
        assert_eq!(cmd.command_line().unwrap(), "env DISK=/dev/vda LABEL='my root' sh -s");
        assert_eq!(&*cmd.stdin_bytes().unwrap(), b"wipefs -a \"$DISK\"\n");
        assert_eq!(cmd.to_string(), "DISK=/dev/vda LABEL='my root' sh -s <partition>");
    }

    #[test]
    fn scripts_reject_positional_arguments_and_bad_names() {
        let err = RemoteCommand::script("s", "true").arg("x").command_line().unwrap_err();
        assert!(err.reason.contains("named arguments"));
        let err = RemoteCommand::script("s", "true").env("lower", "x").command_line().unwrap_err();
        assert!(err.reason.contains("invalid variable name"));
        let err = RemoteCommand::script("s", "true").stdin(b"x".to_vec()).command_line();
        assert!(err.unwrap_err().reason.contains("inline_script"));
    }

    #[test]
    fn inline_scripts_keep_stdin_free() {
        let cmd = RemoteCommand::inline_script("store", "cat > \"$F\"")
            .env("F", "/tmp/x")
            .stdin(b"hi".to_vec());
        assert_eq!(cmd.command_line().unwrap(), "env F=/tmp/x sh -c 'cat > \"$F\"'");
        assert_eq!(&*cmd.stdin_bytes().unwrap(), b"hi");
    }

    #[test]
    fn sensitive_commands_hide_their_arguments() {
        let cmd =
            RemoteCommand::new("chpasswd").arg("root:hunter2").env("TOKEN", "s3cret").sensitive();
        let shown = format!("{cmd} {cmd:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("s3cret"), "{shown}");
    }
}
