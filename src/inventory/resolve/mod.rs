//! The boundary: the hcl-edit syntax tree (with spans) becomes the validated [`Inventory`].
//! Every check reports into [`Diagnostics`] and carries on, so one run shows every mistake.
//! One file per kind of block; `values` reads attribute values, `settings` holds what hosts,
//! `defaults` and providers share.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::PathBuf;

use hcl_edit::structure::Body;
use hcl_edit::Span;

use super::diag::{closest, suggest, Diagnostics, ProblemBuilder};
use super::eval::Evaluator;
use super::model::*;

mod admin;
mod check;
mod disk_layout;
mod gitops;
mod health_check;
mod host;
mod provider;
mod secrets;
mod seed;
mod settings;
mod state;
mod values;

const TOP_BLOCKS: &[&str] = &[
    "provider",
    "defaults",
    "host",
    "disk_layout",
    "admin",
    "secrets",
    "state",
    "check",
    "variable",
    "locals",
    "gitops",
    "ring",
];

pub(crate) struct Resolver<'a> {
    diags: &'a mut Diagnostics,
    ev: &'a Evaluator,
    /// Things declared with a valid name whose definition has problems (already reported),
    /// as "kind:name": references to them are not reported again as "not declared".
    broken: BTreeSet<String>,
}

impl<'a> Resolver<'a> {
    pub fn new(diags: &'a mut Diagnostics, ev: &'a Evaluator) -> Self {
        Self { diags, ev, broken: BTreeSet::new() }
    }

    fn span(&self, range: Option<Range<usize>>) -> SourceSpan {
        self.diags.source().model_span(&range.unwrap_or(0..0))
    }

    fn duplicate(
        &mut self,
        what: &str,
        name: &str,
        again: Option<Range<usize>>,
        first: Option<Range<usize>>,
    ) {
        self.diags.push(
            ProblemBuilder::new(format!("{what} `{name}` is defined twice"))
                .at(again, "defined again here")
                .also(first, "first defined here")
                .help(format!("{what} names must be unique: rename or remove one of them")),
        );
    }

    fn name<T>(
        &mut self,
        make: fn(String) -> Result<T, InvalidName>,
        value: &str,
        span: Option<Range<usize>>,
        what: &str,
    ) -> Option<T> {
        match make(value.to_owned()) {
            Ok(n) => Some(n),
            Err(_) => {
                self.diags.push(
                    ProblemBuilder::new(format!("`{value}` is not a valid {what}"))
                        .at(span, "invalid name")
                        .help("use letters, digits, `-` and `_` (at most 63), starting with a letter or digit"),
                );
                None
            }
        }
    }

    pub fn resolve(&mut self, body: &Body, path: PathBuf, root: PathBuf) -> Inventory {
        for attr in body.attributes() {
            let key = attr.key.as_str();
            let help = match closest(key, TOP_BLOCKS.iter().copied()) {
                Some(c) => {
                    format!("top-level settings live in blocks: did you mean `{c} {{ ... }}`?")
                }
                None => "put it inside a block (`defaults`, `host`, `locals`...)".to_owned(),
            };
            self.diags.push(
                ProblemBuilder::new(format!("unexpected attribute `{key}` at the top level"))
                    .at(attr.key.span(), "not allowed here")
                    .help(help),
            );
        }
        for block in body.blocks() {
            let ident = block.ident.as_str();
            if !TOP_BLOCKS.contains(&ident) {
                self.diags.push(
                    ProblemBuilder::new(format!("unknown block `{ident}`"))
                        .at(block.ident.span(), "not a cairn block")
                        .help(suggest(ident, TOP_BLOCKS.iter().copied(), "blocks")),
                );
            }
        }

        let providers = self.providers(body);
        let disk_layouts = self.disk_layouts(body);
        let admins = self.admins(body);
        let hosts = self.hosts(body, &providers, &disk_layouts);
        let secrets = self.secrets_rules(body, &hosts);
        let state = self.state(body);
        let check = self.check_settings(body);
        let (gitops, token_site) = self.gitops(body, &root);
        let gitops_declared = body.get_blocks("gitops").next().is_some();
        let rings = self.rings(body, &hosts, gitops.as_ref(), gitops_declared);
        let inventory = Inventory {
            path,
            root,
            providers: providers.into_iter().map(|(k, (p, _))| (k, p)).collect(),
            hosts,
            disk_layouts: disk_layouts.into_iter().map(|(k, (d, _))| (k, d)).collect(),
            admins,
            secrets,
            state,
            gitops,
            rings,
            sensitive_values: Default::default(),
            check,
        };
        if let Some(site) = token_site {
            self.check_token_readers(&inventory, &site);
        }
        inventory
    }
}

/// Puts `value` into `slot` if there is one (else the problem was reported); says which.
fn keep<T>(slot: &mut Option<T>, value: Option<T>) -> bool {
    let ok = value.is_some();
    if ok {
        *slot = value;
    }
    ok
}
