//! `state { backend = "file" | "pg" ... }`: where state lives.

use hcl_edit::structure::{Attribute, Body};
use hcl_edit::Span;

use super::Resolver;
use crate::inventory::diag::ProblemBuilder;
use crate::inventory::eval::check_attributes;
use crate::inventory::model::*;

impl Resolver<'_> {
    /// The `name` of a `pg` state: it keys the rows and the lock in a shared database.
    pub(super) fn state_name(&mut self, attr: &Attribute) -> Option<String> {
        let name = self.string(attr)?;
        let ok = !name.is_empty()
            && name.len() <= 63
            && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if ok {
            return Some(name);
        }
        self.diags.push(
            ProblemBuilder::new(format!("`{name}` is not a valid state name"))
                .at(attr.value.span(), "a state name")
                .help("use 1 to 63 letters, digits, `-`, `_` or `.` (e.g. the repository's name)"),
        );
        None
    }

    pub(super) fn state(&mut self, body: &Body) -> StateBackend {
        let mut blocks = body.get_blocks("state");
        let Some(block) = blocks.next() else {
            return StateBackend::File;
        };
        for extra in blocks {
            self.diags.push(
                ProblemBuilder::new("there is more than one `state` block")
                    .at(extra.ident.span(), "a second `state`")
                    .also(block.ident.span(), "the first one")
                    .help("keep one `state { backend = ... }` block"),
            );
        }
        check_attributes(self.diags, &block.body, "state", &["backend", "conn", "name"], &[]);
        let backend = match block.body.get_attribute("backend") {
            Some(a) => self.one_of(a, &["file", "pg"]),
            None => Some("file".to_owned()),
        };
        let conn = block.body.get_attribute("conn");
        let name_attr = block.body.get_attribute("name");
        match backend.as_deref() {
            Some("pg") => match conn {
                Some(a) => {
                    let name = match name_attr {
                        Some(n) => self.state_name(n).map(Some),
                        None => Some(None),
                    };
                    match (self.sensitive(a), name) {
                        (Some(conn), Some(name)) => StateBackend::Pg { conn, name },
                        _ => StateBackend::File,
                    }
                }
                None => {
                    self.diags.push(
                        ProblemBuilder::new("the `pg` state backend needs a connection string")
                            .at(block.body.get_attribute("backend").and_then(|a| a.value.span()), "`conn` missing for this backend")
                            .help("add `conn = env(\"CAIRN_PG_CONN\")` (a postgres:// URL; keep it out of the file)"),
                    );
                    StateBackend::File
                }
            },
            Some(_) => {
                for (key, a) in [("conn", conn), ("name", name_attr)] {
                    if let Some(a) = a {
                        self.diags.push(
                            ProblemBuilder::new(format!(
                                "`{key}` is only used by the `pg` state backend"
                            ))
                            .at(a.key.span(), "ignored with backend = \"file\"")
                            .help(format!("remove `{key}`, or set `backend = \"pg\"`")),
                        );
                    }
                }
                StateBackend::File
            }
            None => StateBackend::File,
        }
    }
}
