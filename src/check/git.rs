//! Local commands check runs (git, nix), each with a deadline.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::CheckError;

/// How long one git command may take (a history walk of a large repository included).
pub const GIT_DEADLINE: Duration = Duration::from_secs(600);

/// What a finished command printed.
pub struct Output {
    pub success: bool,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

/// `program args...` shown in messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion, killing it (by its pid) when `deadline` passes.
pub fn run(mut cmd: Command, deadline: Duration) -> Result<Output, CheckError> {
    let command = describe(&cmd);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| CheckError::Git {
        command: command.clone(),
        stderr: format!("cannot start it: {e}"),
    })?;
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let stdout = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let stderr = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        buf
    });
    let status = wait(&mut child, deadline, &command)?;
    let stdout = stdout.join().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).trim().to_owned();
    Ok(Output { success: status.success(), stdout, stderr })
}

/// Waits for `child`, killing it when `deadline` passes.
pub fn wait(
    child: &mut Child,
    deadline: Duration,
    command: &str,
) -> Result<std::process::ExitStatus, CheckError> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) => {}
            Err(e) => {
                return Err(CheckError::Git { command: command.to_owned(), stderr: e.to_string() })
            }
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(CheckError::Deadline { command: command.to_owned(), deadline });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// `git -C dir args...`, its stdout when it succeeds.
pub fn git(dir: &Path, args: &[&str]) -> Result<Vec<u8>, CheckError> {
    let mut cmd = Command::new("git");
    cmd.arg("-C").arg(dir).args(args);
    let command = describe(&cmd);
    let out = run(cmd, GIT_DEADLINE)?;
    if out.success {
        Ok(out.stdout)
    } else {
        Err(CheckError::Git { command, stderr: out.stderr })
    }
}

/// The git work tree `dir` is in.
#[derive(Debug, Clone)]
pub struct Repo {
    /// The top of the work tree.
    pub top: PathBuf,
    /// `dir` relative to the top, `/`-terminated (empty at the top).
    pub prefix: String,
}

impl Repo {
    /// The work tree holding `dir`; `None` when `dir` is not in one (or git is missing).
    pub fn discover(dir: &Path) -> Option<Self> {
        let out = git(dir, &["rev-parse", "--show-toplevel", "--show-prefix"]).ok()?;
        let text = String::from_utf8(out).ok()?;
        let mut lines = text.lines();
        let top = PathBuf::from(lines.next()?);
        let prefix = lines.next().unwrap_or("").to_owned();
        Some(Self { top, prefix })
    }

    /// Whether the branch has any commit.
    pub fn has_head(&self) -> bool {
        git(&self.top, &["rev-parse", "--verify", "--quiet", "HEAD"]).is_ok()
    }

    /// A path relative to the top, as the check reports it: relative to the inventory's
    /// directory when below it.
    pub fn shown(&self, top_relative: &str) -> String {
        top_relative.strip_prefix(&self.prefix).unwrap_or(top_relative).to_owned()
    }
}
