//! The inventory (`cairn.hcl`): HCL → syntax tree with spans → validated [`model::Inventory`],
//! with diagnostics that point at file:line:col.
//!
//! [`load`] parses the file with hcl-edit (which keeps byte spans), evaluates `variable` and
//! `locals` blocks and every attribute with hcl-rs, and resolves blocks into the model. It
//! collects every problem instead of stopping at the first and returns them together in one
//! [`InventoryError`]. [`select`] turns command-line host selectors into hosts.

mod arithmetic;
mod diag;
mod eval;
mod forms;
mod health;
pub mod model;
mod resolve;
mod rings;
mod seed;
mod select;
mod syntax;
mod timeouts;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use diag::Problem;
pub use health::{CheckCommand, DEFAULT_HEALTH_CHECKS};
pub use model::*;
pub use rings::*;
pub use select::{select, SelectError};
pub use timeouts::{Budget, Limit, Timeouts, Wait};

/// The name of the inventory file.
pub const FILE_NAME: &str = "cairn.hcl";

/// What [`load`] needs: the file, `--var` flags and the environment (tests pass their own).
#[derive(Clone, Default)]
pub struct LoadOptions {
    pub path: PathBuf,
    /// Raw `name=value` strings from `--var`.
    pub cli_vars: Vec<String>,
    /// A snapshot of the process environment, for `env()` and `CAIRN_VAR_<name>`.
    pub env: BTreeMap<String, String>,
}

impl LoadOptions {
    /// Options for `path` with the current process environment and no `--var` flags.
    pub fn from_process_env(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), cli_vars: Vec::new(), env: std::env::vars().collect() }
    }
}

/// Shows variable and environment names only: their values may be credentials.
impl std::fmt::Debug for LoadOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let vars: Vec<&str> = self
            .cli_vars
            .iter()
            .map(|v| v.split_once('=').map_or(v.as_str(), |(n, _)| n))
            .collect();
        f.debug_struct("LoadOptions")
            .field("path", &self.path)
            .field("cli_vars", &vars)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum InventoryError {
    #[error("cannot read the inventory")]
    #[diagnostic(
        code(cairn::inventory::read),
        help("run cairn in the repository holding cairn.hcl, or pass `--inventory PATH`")
    )]
    Read {
        #[source]
        source: std::io::Error,
    },
    #[error("no {FILE_NAME} in {} or any parent directory", start_dir.display())]
    #[diagnostic(
        code(cairn::inventory::not_found),
        help("run `cairn init` to create one, or pass `--inventory PATH`")
    )]
    NotFound { start_dir: PathBuf },
    /// The file has one or more problems; each is a related diagnostic with its position.
    #[error("{display} has {count} problem{s}", count = problems.len(), s = if problems.len() == 1 { "" } else { "s" })]
    #[diagnostic(code(cairn::inventory::invalid))]
    Invalid {
        path: PathBuf,
        display: String,
        #[related]
        problems: Vec<Problem>,
    },
}

impl InventoryError {
    /// Every problem found (empty for a read error).
    pub fn problems(&self) -> &[Problem] {
        match self {
            Self::Invalid { problems, .. } => problems,
            Self::Read { .. } | Self::NotFound { .. } => &[],
        }
    }
}

/// The `cairn.hcl` in `start_dir` or its nearest parent that has one.
pub fn discover(start_dir: &Path) -> Option<PathBuf> {
    start_dir.ancestors().map(|d| d.join(FILE_NAME)).find(|p| p.is_file())
}

/// The inventory to use: `explicit` (`--inventory`, relative to `cwd`) if given, else the
/// one [`discover`] finds from `cwd`.
pub fn locate(cwd: &Path, explicit: Option<&Path>) -> Result<PathBuf, InventoryError> {
    match explicit {
        Some(p) => Ok(cwd.join(p)),
        None => {
            discover(cwd).ok_or_else(|| InventoryError::NotFound { start_dir: cwd.to_path_buf() })
        }
    }
}

/// Reads, evaluates and validates an inventory file.
pub fn load(opts: &LoadOptions) -> Result<Inventory, InventoryError> {
    let text =
        fs_err::read_to_string(&opts.path).map_err(|source| InventoryError::Read { source })?;
    load_str(opts, text)
}

fn display_name(path: &Path) -> String {
    // Show paths below the current directory relative to it, as the user typed them.
    if path.is_absolute() {
        if let Ok(cwd) = std::env::current_dir() {
            if let Ok(rel) = path.strip_prefix(&cwd) {
                return rel.display().to_string();
            }
        }
    }
    path.display().to_string()
}

/// [`load`] for text already in memory (`opts.path` names it in diagnostics).
pub fn load_str(opts: &LoadOptions, text: String) -> Result<Inventory, InventoryError> {
    let path = opts.path.clone();
    let root = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let display = display_name(&path);
    let source = diag::Source::new(path.clone(), display.clone(), text);
    let mut diags = diag::Diagnostics::new(source.clone());

    if let Some(found) = syntax::scan_nesting(&source.text, syntax::MAX_NESTING) {
        let span = |offset: usize| {
            let offset = offset.min(source.text.len());
            Some(offset..offset + source.text[offset..].chars().next().map_or(0, char::len_utf8))
        };
        let problem = match found {
            syntax::Nesting::TooDeep(offset) => diag::ProblemBuilder::new(format!(
                "the inventory nests more than {} levels deep",
                syntax::MAX_NESTING
            ))
            .at(span(offset), "too deep here")
            .help("flatten this expression: use `locals` to name the inner parts"),
            syntax::Nesting::Unclosed { offset, closer } => {
                let (opener, what) = match closer {
                    ']' => ('[', "list"),
                    ')' => ('(', "call or parenthesis"),
                    _ => ('{', "block, object or interpolation"),
                };
                diag::ProblemBuilder::new(format!("a bracket is never closed: `{closer}` missing"))
                    .at(span(offset), format!("this `{opener}` is never closed"))
                    .help(format!("add the missing `{closer}` at the end of this {what}"))
            }
        };
        diags.push(problem);
        return Err(InventoryError::Invalid { path, display, problems: diags.into_problems() });
    }
    let body = match hcl_edit::parser::parse_body(&source.text) {
        Ok(body) => body,
        Err(e) => {
            let loc = e.location();
            let mut offset = loc.offset().min(source.text.len());
            while !source.text.is_char_boundary(offset) {
                offset -= 1;
            }
            let end =
                source.text[offset..].chars().next().map_or(offset, |c| offset + c.len_utf8());
            let hint = syntax::explain(&source.text, offset, e.message());
            let mut p = diag::ProblemBuilder::new(format!("syntax error: {}", e.message()))
                .at(Some(offset..end), "here")
                .help(hint.help);
            if let Some((span, label)) = hint.also {
                p = p.also(Some(span), label);
            }
            diags.push(p);
            return Err(InventoryError::Invalid { path, display, problems: diags.into_problems() });
        }
    };

    let _scope = eval::enter_scope(opts.env.clone(), root.clone());
    let ev = eval::Evaluator::new(&mut diags, &body, &opts.cli_vars, &opts.env);
    let mut inventory = resolve::Resolver::new(&mut diags, &ev).resolve(&body, path.clone(), root);
    let mut sensitive = eval::env_values();
    sensitive.extend(ev.sensitive.iter().cloned());
    inventory.sensitive_values = crate::util::redact::Values(sensitive);
    if diags.is_empty() {
        tracing::debug!(path = %path.display(), hosts = inventory.hosts.len(), "inventory loaded");
        Ok(inventory)
    } else {
        tracing::debug!(path = %path.display(), problems = diags.count(), "inventory has problems");
        Err(InventoryError::Invalid { path, display, problems: diags.into_problems() })
    }
}
