//! Runs the nix CLI: build, path-info, closure transfer.
//!
//! Works with Nix 2.8 (Debian's nix-bin) and later: builds use `--json` (2.8 has no
//! `--print-out-paths`) and `path-info --json` is read in both its array and object formats.

mod compression;
mod log;
mod path_info;
mod runner;
mod ssh_copy;
mod store_path;
mod transfer;

pub use compression::Compression;
pub use log::{NixLog, Progress as BuildProgress, Said, PROGRESS_TARGET};
pub use path_info::{load_db_registration, parse as parse_path_info, PathInfo, PathInfoParseError};
pub use runner::{installable_for_build, installable_for_toplevel, tell, Nix};
pub use ssh_copy::SshStore;
pub use store_path::{InvalidNarHash, InvalidStorePath, NarHash, StorePath, STORE_DIR};
pub use transfer::{unpack_command, Frame, TarStream, TransferOptions};

/// How many lines of a failed command's stderr an error keeps.
pub const STDERR_TAIL_LINES: usize = 25;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum NixError {
    #[error("could not run `{program}`: {source}")]
    #[diagnostic(
        code(cairn::nix::spawn),
        help("install Nix (Debian: `apt install nix-bin`) or put `{program}` on PATH")
    )]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },

    #[error("`{command}` failed ({status}); its last output:\n{stderr_tail}")]
    #[diagnostic(code(cairn::nix::failed), help("run the command yourself to see the whole log"))]
    Failed { command: String, status: String, stderr_tail: String },

    #[error("`{command}` printed something cairn does not understand: {detail}")]
    #[diagnostic(
        code(cairn::nix::output),
        help("check `nix --version`; cairn supports Nix 2.8 and later")
    )]
    Output { command: String, detail: String },

    #[error("`{path}` contains whitespace, which NIX_SSHOPTS cannot carry")]
    #[diagnostic(
        code(cairn::nix::ssh_options),
        help("nix splits NIX_SSHOPTS at whitespace: use a key file and a TMPDIR whose paths have no spaces")
    )]
    SshOptions { path: String },

    #[error("reading the output of `{command}`: {source}")]
    #[diagnostic(code(cairn::nix::io))]
    Io {
        command: String,
        #[source]
        source: std::io::Error,
    },
}
