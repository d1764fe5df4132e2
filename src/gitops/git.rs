//! The local repository, through the `git` command: ring branch heads on the push remote,
//! ancestry, fast-forward pushes, revert commits, promotion tags and soak notes. Every call
//! has a deadline.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long one git command may take (a push or fetch over the network included).
pub const GIT_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum GitError {
    #[error("cannot run git in {}", dir.display())]
    #[diagnostic(
        code(cairn::git::spawn),
        help("install git, and run cairn inside the fleet's repository")
    )]
    Spawn {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`git {args}` did not finish within {}s", GIT_TIMEOUT.as_secs())]
    #[diagnostic(
        code(cairn::git::timeout),
        help("check that the remote answers (`git ls-remote`)")
    )]
    Timeout { args: String },
    #[error("`git {args}` failed: {stderr}")]
    #[diagnostic(code(cairn::git::failed))]
    Failed { args: String, stderr: String },
}

/// The repository at `dir`.
#[derive(Debug, Clone)]
pub struct Repo {
    dir: PathBuf,
}

impl Repo {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs git; `Ok(None)` when it exits non-zero and `allow_failure` is set.
    async fn run_full(
        &self,
        args: &[&str],
        stdin: Option<&[u8]>,
        allow_failure: bool,
    ) -> Result<Option<String>, GitError> {
        use tokio::io::AsyncWriteExt;
        let shown = args.join(" ");
        let mut cmd = tokio::process::Command::new("git");
        cmd.arg("-C")
            .arg(&self.dir)
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(if stdin.is_some() {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            })
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child =
            cmd.spawn().map_err(|source| GitError::Spawn { dir: self.dir.clone(), source })?;
        if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(bytes)
                .await
                .map_err(|source| GitError::Spawn { dir: self.dir.clone(), source })?;
        }
        let out = tokio::time::timeout(GIT_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| GitError::Timeout { args: shown.clone() })?
            .map_err(|source| GitError::Spawn { dir: self.dir.clone(), source })?;
        tracing::debug!(args = %shown, status = %out.status, "git");
        if out.status.success() {
            return Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()));
        }
        if allow_failure {
            return Ok(None);
        }
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        Err(GitError::Failed { args: shown, stderr })
    }

    async fn run(&self, args: &[&str]) -> Result<String, GitError> {
        Ok(self.run_full(args, None, false).await?.unwrap_or_default())
    }

    /// The heads of `branches` on `remote` (`None` for a branch that does not exist there),
    /// fetched into `refs/remotes/<remote>/` so their commits are here to compare.
    pub async fn remote_heads(
        &self,
        remote: &str,
        branches: &[String],
    ) -> Result<Vec<Option<String>>, GitError> {
        let listed = self.run(&["ls-remote", "--heads", remote]).await?;
        let heads: Vec<Option<String>> = branches
            .iter()
            .map(|b| {
                let want = format!("refs/heads/{b}");
                listed.lines().find_map(|l| {
                    let (sha, name) = l.split_once('\t')?;
                    (name == want).then(|| sha.to_owned())
                })
            })
            .collect();
        let specs: Vec<String> = branches
            .iter()
            .zip(&heads)
            .filter(|(_, h)| h.is_some())
            .map(|(b, _)| format!("+refs/heads/{b}:refs/remotes/{remote}/{b}"))
            .collect();
        if !specs.is_empty() {
            let mut args = vec!["fetch", "--quiet", "--no-tags", remote];
            args.extend(specs.iter().map(String::as_str));
            self.run(&args).await?;
        }
        Ok(heads)
    }

    /// Whether `dir` is inside a git work tree.
    pub async fn is_work_tree(&self) -> bool {
        matches!(
            self.run_full(&["rev-parse", "--is-inside-work-tree"], None, true).await,
            Ok(Some(out)) if out.trim() == "true"
        )
    }

    /// Which of `paths` (relative to `dir`, files or directories) have changes that are not
    /// committed, untracked files included, as paths relative to `dir`.
    pub async fn uncommitted(&self, paths: &[String]) -> Result<Vec<String>, GitError> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        let mut args = vec!["status", "--porcelain=v1", "-z", "--untracked-files=all", "--"];
        args.extend(paths.iter().map(String::as_str));
        let out = self.run(&args).await?;
        let mut changed = Vec::new();
        let mut entries = out.split('\0');
        while let Some(entry) = entries.next() {
            if entry.len() < 4 {
                continue;
            }
            let (status, path) = entry.split_at(3);
            // A rename is followed by its old name.
            if status.starts_with('R') || status.starts_with('C') {
                entries.next();
            }
            changed.push(path.to_owned());
        }
        changed.sort();
        changed.dedup();
        Ok(changed)
    }

    /// Commits exactly `paths` (whatever else is staged stays staged) and returns the commit.
    pub async fn commit_paths(&self, paths: &[String], message: &str) -> Result<String, GitError> {
        let mut add = vec!["add", "--all", "--"];
        add.extend(paths.iter().map(String::as_str));
        self.run(&add).await?;
        let mut commit = vec!["commit", "--quiet", "--only", "-m", message, "--"];
        commit.extend(paths.iter().map(String::as_str));
        self.run(&commit).await?;
        Ok(self.run(&["rev-parse", "HEAD"]).await?.trim().to_owned())
    }

    /// The last commit of HEAD that touched any of `paths`.
    pub async fn last_commit_touching(&self, paths: &[String]) -> Result<Option<String>, GitError> {
        let mut args = vec!["log", "-1", "--format=%H", "--"];
        args.extend(paths.iter().map(String::as_str));
        let out = self.run_full(&args, None, true).await?.unwrap_or_default();
        Ok(Some(out.trim().to_owned()).filter(|s| !s.is_empty()))
    }

    /// The full commit id `rev` names here, if any.
    pub async fn resolve(&self, rev: &str) -> Result<Option<String>, GitError> {
        let spec = format!("{rev}^{{commit}}");
        Ok(self
            .run_full(&["rev-parse", "--verify", "--quiet", &spec], None, true)
            .await?
            .map(|s| s.trim().to_owned()))
    }

    /// Whether `ancestor` is `descendant` or one of its ancestors.
    pub async fn is_ancestor(&self, ancestor: &str, descendant: &str) -> Result<bool, GitError> {
        Ok(self
            .run_full(&["merge-base", "--is-ancestor", ancestor, descendant], None, true)
            .await?
            .is_some())
    }

    /// Pushes `commit` to `branch` on `remote`; git refuses anything but a fast-forward.
    pub async fn push_fast_forward(
        &self,
        remote: &str,
        commit: &str,
        branch: &str,
    ) -> Result<(), GitError> {
        let spec = format!("{commit}:refs/heads/{branch}");
        self.run(&["push", "--quiet", remote, &spec]).await?;
        Ok(())
    }

    pub async fn push_ref(&self, remote: &str, reference: &str) -> Result<(), GitError> {
        let spec = format!("{reference}:{reference}");
        self.run(&["push", "--quiet", remote, &spec]).await?;
        Ok(())
    }

    /// The tree of `commit`.
    pub async fn tree_of(&self, commit: &str) -> Result<String, GitError> {
        let spec = format!("{commit}^{{tree}}");
        Ok(self.run(&["rev-parse", &spec]).await?.trim().to_owned())
    }

    /// A new commit with `tree` on top of `parent` (the working tree is not touched).
    pub async fn commit_tree(
        &self,
        tree: &str,
        parent: &str,
        message: &str,
    ) -> Result<String, GitError> {
        let out = self
            .run_full(
                &["commit-tree", tree, "-p", parent, "-F", "-"],
                Some(message.as_bytes()),
                false,
            )
            .await?;
        Ok(out.unwrap_or_default().trim().to_owned())
    }

    /// Tags matching `pattern` (e.g. `cairn/promote/prod/*`).
    pub async fn tags(&self, pattern: &str) -> Result<Vec<String>, GitError> {
        let out = self.run(&["tag", "--list", pattern]).await?;
        Ok(out.lines().map(str::to_owned).collect())
    }

    /// An annotated tag `name` on `commit` with `message`.
    pub async fn tag(&self, name: &str, commit: &str, message: &str) -> Result<(), GitError> {
        self.run_full(
            &["tag", "--annotate", "--file", "-", name, commit],
            Some(message.as_bytes()),
            false,
        )
        .await?;
        Ok(())
    }

    /// The commit a tag points at.
    pub async fn tag_commit(&self, name: &str) -> Result<Option<String>, GitError> {
        self.resolve(&format!("refs/tags/{name}")).await
    }

    /// The note on `commit` under `notes_ref`, if any.
    pub async fn note(&self, notes_ref: &str, commit: &str) -> Result<Option<String>, GitError> {
        self.run_full(&["notes", "--ref", notes_ref, "show", commit], None, true).await
    }

    /// Replaces the note on `commit` under `notes_ref`.
    pub async fn set_note(
        &self,
        notes_ref: &str,
        commit: &str,
        text: &str,
    ) -> Result<(), GitError> {
        self.run_full(
            &["notes", "--ref", notes_ref, "add", "--force", "--file", "-", commit],
            Some(text.as_bytes()),
            false,
        )
        .await?;
        Ok(())
    }
}
