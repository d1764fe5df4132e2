//! `cairn init`: the files of a new fleet repository, from `templates/init/`.
//!
//! Never overwrites: every file is created with O_EXCL, and one that exists is kept as is.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

/// The files `cairn init` writes: path relative to the target directory, contents.
pub const INIT_FILES: &[(&str, &str)] = &[
    ("cairn.hcl", include_str!("../templates/init/cairn.hcl")),
    ("flake.nix", include_str!("../templates/init/flake.nix")),
    ("secrets/.gitkeep", include_str!("../templates/init/secrets.gitkeep")),
    (".gitignore", include_str!("../templates/init/gitignore")),
];

/// What to do after `cairn init DIR`, step by step; `dir` is where the repository was
/// written, relative to where the user is (`.` for here).
pub fn next_steps(dir: &Path) -> String {
    let cd = if dir == Path::new(".") || dir.as_os_str().is_empty() {
        String::new()
    } else {
        format!(
            "  0. cd {}
",
            crate::util::shell::quote(&dir.display().to_string())
        )
    };
    include_str!("../templates/init/next-steps.txt").replace("{cd}", &cd)
}

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileOutcome {
    Created,
    /// It existed already and was left untouched.
    Kept,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScaffoldedFile {
    pub path: PathBuf,
    pub outcome: FileOutcome,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum ScaffoldError {
    #[error("{} exists and is not a directory", .0.display())]
    #[diagnostic(
        code(cairn::init::not_a_directory),
        help("pass a directory (it is created if missing): `cairn init fleet/`")
    )]
    NotADirectory(PathBuf),

    #[error(transparent)]
    #[diagnostic(code(cairn::init::io))]
    Io(#[from] io::Error),
}

/// Writes the scaffold into `dir` (created if missing), keeping every file that exists.
pub fn init(dir: &Path) -> Result<Vec<ScaffoldedFile>, ScaffoldError> {
    if dir.exists() && !dir.is_dir() {
        return Err(ScaffoldError::NotADirectory(dir.to_owned()));
    }
    let mut done = Vec::new();
    for (rel, contents) in INIT_FILES {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            if parent.exists() && !parent.is_dir() {
                return Err(ScaffoldError::NotADirectory(parent.to_owned()));
            }
            fs_err::create_dir_all(parent)?;
        }
        let outcome = match fs_err::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut file) => {
                file.write_all(contents.as_bytes())?;
                FileOutcome::Created
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => FileOutcome::Kept,
            Err(e) => return Err(e.into()),
        };
        tracing::debug!("{}: {outcome:?}", path.display());
        done.push(ScaffoldedFile { path: PathBuf::from(rel), outcome });
    }
    Ok(done)
}
