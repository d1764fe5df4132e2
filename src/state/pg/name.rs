//! The name of a pg state whose `state` block gives none: derived from the repository, so
//! two fleets sharing a database never share a state by accident. It is `repo-` and the
//! first 16 hex digits of the repository's first commit (the root of HEAD's first-parent
//! history): the same in every clone, on every branch and in any directory, and different
//! for every repository started on its own. Before, that name was `"default"`.

use std::path::Path;

use super::PgError;

/// The name cairn gave a pg state without `name` before names were derived.
pub const LEGACY_DEFAULT_NAME: &str = "default";

/// The derived name of the state of the repository holding `root`.
pub fn derive(root: &Path) -> Result<String, PgError> {
    let fail = |why: String| PgError::NoStateName { root: root.to_owned(), why };
    let git = |args: &[&str]| {
        crate::check::git::git(root, args)
            .map(|out| String::from_utf8_lossy(&out).trim().to_owned())
            .map_err(|e| fail(format!("{e}")))
    };
    if git(&["rev-parse", "--is-shallow-repository"])? == "true" {
        return Err(fail(
            "it is a shallow clone, whose oldest commit is not the repository's first \
             (`git fetch --unshallow` makes it whole)"
                .into(),
        ));
    }
    let first = git(&["rev-list", "--first-parent", "--max-parents=0", "HEAD"])?;
    name_of_first_commit(first.lines().next().unwrap_or_default())
        .ok_or_else(|| fail(format!("`git rev-list` named no first commit ({first:?})")))
}

/// `repo-<16 hex digits>` for a first commit's id.
fn name_of_first_commit(id: &str) -> Option<String> {
    let short = id.get(..16)?;
    short.bytes().all(|b| b.is_ascii_hexdigit()).then(|| format!("repo-{short}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_is_the_first_commits_prefix_and_nothing_else_is_one() {
        assert_eq!(
            name_of_first_commit("0123456789abcdef0123456789abcdef01234567").as_deref(),
            Some("repo-0123456789abcdef")
        );
        assert_eq!(name_of_first_commit("0123"), None);
        assert_eq!(name_of_first_commit("fatal: bad revision 'HEAD' and more"), None);
        assert_eq!(name_of_first_commit("é123456789abcdef0123"), None);
    }
}
