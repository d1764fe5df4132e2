//! Reading a command's stdout while it runs: for a command that answers first, then reads
//! the input its answer decided (the copy's status, then the stream).

use super::{Error, RemoteStream, Result};

impl RemoteStream {
    /// Waits until the command has written the line `marker` to stdout, and returns what it
    /// wrote before it. The command must have been started with
    /// [`crate::ssh::RemoteCommand::early_stdout`]. Waits at most until the command's
    /// deadline; a command that ends first fails with its own error, or, if it succeeded,
    /// with one saying the line never came.
    pub async fn stdout_until(&mut self, marker: &str) -> Result<String> {
        let line = format!("{marker}\n");
        loop {
            if let Some(at) = find_line(&self.early_buf, line.as_bytes()) {
                let before = String::from_utf8_lossy(&self.early_buf[..at]).into_owned();
                self.early_buf.drain(..at + line.len());
                return Ok(before);
            }
            let Some(early) = self.early.as_mut() else {
                return Err(self.without_marker(marker, "it was not started to answer early"));
            };
            match tokio::time::timeout_at(self.deadline, early.recv()).await {
                Ok(Some(data)) => self.early_buf.extend_from_slice(&data),
                // The channel is gone: how the command ended says why.
                Ok(None) => {
                    self.early = None;
                    let outcome = self.outcome().await;
                    return Err(match self.judge(outcome) {
                        Err(e) => e,
                        Ok(_) => self.without_marker(marker, "it ended before"),
                    });
                }
                Err(_) => return Err(self.timed_out().await),
            }
        }
    }

    fn without_marker(&self, marker: &str, why: &str) -> Error {
        Error::CommandFailed {
            target: self.target.clone(),
            command: self.command.clone(),
            status: 0,
            stderr_tail: format!("cairn waited for the line `{marker}` on its output, but {why}"),
        }
    }
}

/// Where `line` (ending in a newline) starts as a whole line of `buf`.
fn find_line(buf: &[u8], line: &[u8]) -> Option<usize> {
    (0..buf.len()).filter(|&i| i == 0 || buf[i - 1] == b'\n').find(|&i| buf[i..].starts_with(line))
}

#[cfg(test)]
mod tests {
    use super::find_line;

    #[test]
    fn the_marker_counts_only_as_a_whole_line() {
        assert_eq!(find_line(b"ready\n", b"ready\n"), Some(0));
        assert_eq!(find_line(b"complete a\nready\nmore", b"ready\n"), Some(11));
        assert_eq!(find_line(b"not ready\n", b"ready\n"), None);
        assert_eq!(find_line(b"ready", b"ready\n"), None);
        assert_eq!(find_line(b"readyx\nready\n", b"ready\n"), Some(7));
    }
}
