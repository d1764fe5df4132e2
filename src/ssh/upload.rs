//! Uploads over an exec channel (no SFTP: busybox and dropbear installers lack it): the data
//! lands in a private temp file next to the target, its size is checked on the remote side,
//! and only then is it renamed over the target. A reader sees the old file or the new one.

use std::path::Path;

use rand::Rng;
use tokio::io::AsyncRead;

use super::error::{Error, Result};
use super::{RemoteCommand, Session};

const UPLOAD_SH: &str = include_str!("../../templates/ssh/upload.sh");
const COMMIT_SH: &str = include_str!("../../templates/ssh/commit.sh");

/// Where the uploaded bytes come from.
pub enum UploadSource<'a> {
    Bytes(&'a [u8]),
    /// A local file, streamed (never read into memory whole).
    File(&'a Path),
    /// Any stream; with `size` the remote side checks it before committing, without it the
    /// number of bytes sent is checked in a second step.
    Reader {
        reader: Box<dyn AsyncRead + Send + Unpin + 'a>,
        size: Option<u64>,
    },
}

impl<'a> UploadSource<'a> {
    pub fn reader(reader: impl AsyncRead + Send + Unpin + 'a, size: Option<u64>) -> Self {
        Self::Reader { reader: Box::new(reader), size }
    }
}

impl std::fmt::Debug for UploadSource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            Self::File(p) => write!(f, "File({})", p.display()),
            Self::Reader { size, .. } => write!(f, "Reader(size: {size:?})"),
        }
    }
}

/// Splits an absolute remote path into its directory and file name.
pub(crate) fn split_remote_path(path: &str) -> Result<(&str, &str)> {
    let bad = |reason| Error::RemotePath { path: path.to_owned(), reason };
    if !path.starts_with('/') {
        return Err(bad("it must be absolute"));
    }
    if path.ends_with('/') {
        return Err(bad("it names a directory"));
    }
    if path.contains('\0') || path.contains('\n') {
        return Err(bad("it contains a NUL byte or a newline"));
    }
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    if name == "." || name == ".." {
        return Err(bad("it names a directory"));
    }
    Ok((if dir.is_empty() { "/" } else { dir }, name))
}

impl Session {
    /// Uploads `source` to `remote_path` with `mode` (e.g. `0o600`) and returns the number
    /// of bytes sent. The mode is set on the empty temp file before the first byte arrives;
    /// the size is verified remotely, the file fsync'ed and renamed over the target. If
    /// anything fails (including a dropped connection), the target is left untouched.
    pub async fn upload(
        &self,
        source: UploadSource<'_>,
        remote_path: &str,
        mode: u32,
    ) -> Result<u64> {
        self.upload_owned(source, remote_path, mode, None).await
    }

    /// [`Session::upload`], the file owned by `owner` (numeric uid and gid): the empty temp
    /// file gets its owner, then its mode, and only then the first byte.
    pub async fn upload_owned(
        &self,
        source: UploadSource<'_>,
        remote_path: &str,
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<u64> {
        let (dir, name) = split_remote_path(remote_path)?;
        if mode > 0o7777 {
            return Err(Error::RemotePath {
                path: remote_path.to_owned(),
                reason: "the mode is not a file mode",
            });
        }
        let suffix: u64 = rand::thread_rng().gen();
        let dir_prefix = if dir == "/" { "" } else { dir };
        let tmp = format!("{dir_prefix}/.{name}.cairn-{suffix:016x}.tmp");
        let what = format!("the upload to {remote_path}");

        let (size, mut reader): (Option<u64>, Box<dyn AsyncRead + Send + Unpin + '_>) = match source
        {
            UploadSource::Bytes(b) => (Some(b.len() as u64), Box::new(b)),
            UploadSource::File(path) => {
                let file = tokio::fs::File::open(path)
                    .await
                    .map_err(|e| Error::UploadSource { path: path.to_owned(), source: e })?;
                let len = file
                    .metadata()
                    .await
                    .map_err(|e| Error::UploadSource { path: path.to_owned(), source: e })?
                    .len();
                (Some(len), Box::new(file))
            }
            UploadSource::Reader { reader, size } => (size, reader),
        };

        let cmd = RemoteCommand::inline_script("upload", UPLOAD_SH)
            .env("CAIRN_DEST", remote_path)
            .env("CAIRN_TMP", &tmp)
            .env("CAIRN_MODE", format!("{mode:o}"))
            .env("CAIRN_OWNER", owner.map(|(u, g)| format!("{u}:{g}")).unwrap_or_default())
            .env("CAIRN_SIZE", size.map(|s| s.to_string()).unwrap_or_default())
            .allow_exit_codes([3]);
        tracing::debug!(path = remote_path, mode = format!("{mode:o}"), ?size, "upload");
        let mut stream = self.open_stream_for(&cmd, what).await?;
        let sent = stream.copy_from(&mut reader).await?;
        let out = stream.finish().await?;
        self.check_size(remote_path, sent, &out)?;

        if size.is_none() {
            let commit = RemoteCommand::inline_script("commit-upload", COMMIT_SH)
                .env("CAIRN_DEST", remote_path)
                .env("CAIRN_TMP", &tmp)
                .env("CAIRN_SIZE", sent.to_string())
                .allow_exit_codes([3]);
            let out = self.exec(&commit).await?;
            self.check_size(remote_path, sent, &out)?;
        }
        tracing::debug!(path = remote_path, bytes = sent, "uploaded");
        Ok(sent)
    }

    fn check_size(&self, remote_path: &str, sent: u64, out: &super::ExecOutput) -> Result<()> {
        let received =
            out.stdout_trimmed().parse::<u64>().map_err(|_| Error::UnexpectedOutput {
                target: self.target.clone(),
                what: "upload size",
                output: out.stdout_trimmed(),
            })?;
        if out.exit_code == 3 || received != sent {
            return Err(Error::UploadSize {
                target: self.target.clone(),
                path: remote_path.to_owned(),
                sent,
                received,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_paths_must_be_absolute_files() {
        assert_eq!(split_remote_path("/etc/ssh/key").unwrap(), ("/etc/ssh", "key"));
        assert_eq!(split_remote_path("/key").unwrap(), ("/", "key"));
        assert!(split_remote_path("etc/key").is_err());
        assert!(split_remote_path("/etc/").is_err());
        assert!(split_remote_path("/etc/..").is_err());
        assert!(split_remote_path("/a\nb").is_err());
    }

    #[test]
    fn owner_and_mode_are_set_before_the_first_byte() {
        let at = |needle: &str| UPLOAD_SH.find(needle).unwrap_or_else(|| panic!("{needle}"));
        assert!(at("umask 077") < at(": > \"$t\""));
        assert!(at(": > \"$t\"") < at("chown \"$CAIRN_OWNER\""));
        assert!(at("chown \"$CAIRN_OWNER\"") < at("chmod \"$CAIRN_MODE\""));
        assert!(at("chmod \"$CAIRN_MODE\"") < at("cat > \"$t\""));
    }

    #[test]
    fn upload_script_is_valid_sh() {
        for script in [UPLOAD_SH, COMMIT_SH] {
            let status =
                std::process::Command::new("sh").arg("-n").arg("-c").arg(script).status().unwrap();
            assert!(status.success());
        }
    }
}
