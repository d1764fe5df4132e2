//! `gitops` and `ring` blocks: where hosts pull from, which ring each host is in, the order
//! of rings, and whether the hosts that pull may read the token.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use hcl_edit::structure::Body;
use hcl_edit::Span;

use super::super::diag::{suggest, ProblemBuilder};
use super::super::eval::{check_attributes, single_label};
use super::super::model::*;
use super::super::rings::{default_ring_branch, valid_branch_name, Gitops, Ring};
use super::Resolver;

const GITOPS_ATTRS: &[&str] = &["remote", "branch", "token", "token_key", "push_remote"];
const RING_ATTRS: &[&str] = &["hosts", "after", "soak", "branch"];

/// Where the token attribute is, for the readers check made once the inventory is whole.
pub(crate) struct TokenSite {
    pub span: Option<Range<usize>>,
}

impl Resolver<'_> {
    pub(super) fn gitops(
        &mut self,
        body: &Body,
        root: &Path,
    ) -> (Option<Gitops>, Option<TokenSite>) {
        let mut blocks = body.get_blocks("gitops");
        let Some(block) = blocks.next() else { return (None, None) };
        for extra in blocks {
            self.diags.push(
                ProblemBuilder::new("the `gitops` block is given twice")
                    .at(extra.ident.span(), "again here")
                    .also(block.ident.span(), "first here")
                    .help("a fleet pulls from one repository: merge the two blocks"),
            );
        }
        if let Some(label) = block.labels.first() {
            self.diags.push(
                ProblemBuilder::new("the `gitops` block takes no label")
                    .at(label.span(), "unexpected label")
                    .help("write `gitops { remote = \"https://...\" }`"),
            );
        }
        check_attributes(self.diags, &block.body, "gitops", GITOPS_ATTRS, &[]);
        let span = self.span(block.ident.span());
        let remote = match block.body.get_attribute("remote") {
            Some(attr) => self.string(attr),
            None => {
                self.diags.push(
                    ProblemBuilder::new("the `gitops` block needs a `remote`")
                        .at(block.ident.span(), "no `remote` here")
                        .help("set `remote = \"https://forge.example/infra.git\"`: the URL the hosts' comin pulls"),
                );
                None
            }
        };
        let branch = match block.body.get_attribute("branch") {
            Some(attr) => self.branch_name(attr),
            None => Some("main".to_owned()),
        };
        let push_remote = match block.body.get_attribute("push_remote") {
            Some(attr) => self.string(attr).filter(|s| {
                let ok = !s.is_empty() && !s.starts_with('-') && !s.contains(char::is_whitespace);
                if !ok {
                    self.diags.push(
                        ProblemBuilder::new(format!("`{s}` is not a git remote name"))
                            .at(attr.value.span(), "not a remote name")
                            .help("name a remote of this repository, as `git remote` lists them (e.g. \"origin\")"),
                    );
                }
                ok
            }),
            None => Some("origin".to_owned()),
        };
        let mut token = None;
        let mut token_site = None;
        if let Some(attr) = block.body.get_attribute("token") {
            if let Some(t) = self.string(attr) {
                let rel = PathBuf::from(&t);
                if rel.is_absolute()
                    || t.contains('\\')
                    || rel.components().any(|c| c.as_os_str() == "..")
                {
                    self.diags.push(
                        ProblemBuilder::new(format!("the token file `{t}` is not inside the repository"))
                            .at(attr.value.span(), "outside the repository")
                            .help("give a path relative to the repository root, e.g. \"secrets/comin-token.yaml\": the hosts' flake reads it from there"),
                    );
                } else if !root.join(&rel).is_file() {
                    self.diags.push(
                        ProblemBuilder::new(format!("the token file `{t}` does not exist"))
                            .at(attr.value.span(), "no such file")
                            .help(format!("create it with `cairn secrets edit {t}` (the forge's read token under `token_key`, \"token\" by default)")),
                    );
                } else {
                    token = Some(rel);
                    token_site = Some(TokenSite { span: attr.value.span() });
                }
            }
        }
        let token_key = match block.body.get_attribute("token_key") {
            Some(attr) => self.string(attr).filter(|k| {
                let ok = !k.is_empty() && !k.starts_with('/') && !k.ends_with('/');
                if !ok {
                    self.diags.push(
                        ProblemBuilder::new(format!("`{k}` is not a key of a sops file"))
                            .at(attr.value.span(), "not a key")
                            .help("name the token's key as sops-nix does: \"token\", or \"comin/token\" for a nested one"),
                    );
                }
                ok
            }),
            None => Some("token".to_owned()),
        };
        let gitops = match (remote, branch, push_remote, token_key) {
            (Some(remote), Some(branch), Some(push_remote), Some(token_key)) => {
                Some(Gitops { remote, branch, token, token_key, push_remote, span })
            }
            _ => None,
        };
        (gitops, token_site)
    }

    fn branch_name(&mut self, attr: &hcl_edit::structure::Attribute) -> Option<String> {
        let b = self.string(attr)?;
        match valid_branch_name(&b) {
            Ok(()) => Some(b),
            Err(why) => {
                self.diags.push(
                    ProblemBuilder::new(format!("`{b}` is not a valid branch name"))
                        .at(attr.value.span(), why)
                        .help("use a name like \"main\" or \"ring/prod\""),
                );
                None
            }
        }
    }

    pub(super) fn rings(
        &mut self,
        body: &Body,
        hosts: &[Host],
        gitops: Option<&Gitops>,
        gitops_declared: bool,
    ) -> Vec<Ring> {
        struct Parsed {
            ring: Ring,
            label: Option<Range<usize>>,
            after_span: Option<Range<usize>>,
            branch_span: Option<Range<usize>>,
            /// Each host with the span of the entry that selected it.
            host_spans: Vec<Option<Range<usize>>>,
        }
        let mut parsed: Vec<Parsed> = Vec::new();
        // Every ring label, also of rings with problems (already reported): `after` naming
        // one of those is not reported again as unknown.
        let declared: BTreeSet<String> = body
            .get_blocks("ring")
            .filter_map(|b| b.labels.first().map(|l| l.as_str().to_owned()))
            .collect();
        for block in body.get_blocks("ring") {
            let Some((name_s, label)) = single_label(self.diags, block, "ring", "prod") else {
                continue;
            };
            check_attributes(self.diags, &block.body, "ring", RING_ATTRS, &[]);
            let Some(name) = self.name(RingName::new, &name_s, label.clone(), "ring name") else {
                continue;
            };
            if let Some(first) = parsed.iter().find(|p| p.ring.name == name) {
                let first = first.label.clone();
                self.duplicate("ring", &name_s, label, first);
                continue;
            }
            if !gitops_declared {
                self.diags.push(
                    ProblemBuilder::new(format!("ring `{name}` needs a `gitops` block"))
                        .at(label.clone(), "a ring without a repository to pull")
                        .help("add `gitops { remote = \"https://...\" }`: the URL the ring's hosts pull their branch from"),
                );
            }
            let mut ok = true;
            let mut ring_hosts: Vec<HostName> = Vec::new();
            let mut host_spans = Vec::new();
            match block.body.get_attribute("hosts") {
                Some(attr) => {
                    for (selector, span) in self.strings(attr).unwrap_or_default() {
                        match crate::inventory::select::select_from(
                            hosts,
                            std::slice::from_ref(&selector),
                        ) {
                            Ok(found) => {
                                for h in found {
                                    if !ring_hosts.contains(&h.name) {
                                        ring_hosts.push(h.name.clone());
                                        host_spans.push(span.clone());
                                    }
                                }
                            }
                            Err(e) => {
                                ok = false;
                                let help = miette::Diagnostic::help(&e)
                                    .map(|h| h.to_string())
                                    .unwrap_or_else(|| "select hosts by name (`web1`), glob (`web*`) or tag (`@web`)".into());
                                self.diags.push(
                                    ProblemBuilder::new(format!("ring `{name}`: {e}"))
                                        .at(span, "no host here")
                                        .help(help),
                                );
                            }
                        }
                    }
                }
                None => {
                    ok = false;
                    self.diags.push(
                        ProblemBuilder::new(format!("ring `{name}` has no `hosts`"))
                            .at(label.clone(), "which hosts?")
                            .help("list them: `hosts = [\"web1\", \"web*\", \"@canary\"]`"),
                    );
                }
            }
            let mut after = None;
            let mut after_span = None;
            if let Some(attr) = block.body.get_attribute("after") {
                after_span = attr.value.span();
                if let Some(a) = self.string(attr) {
                    after = self.name(RingName::new, &a, after_span.clone(), "ring name");
                    ok &= after.is_some();
                }
            }
            let soak = match block.body.get_attribute("soak") {
                Some(attr) => {
                    match self.string(attr).map(|s| crate::util::duration::parse(&s, false)) {
                        Some(Ok(d)) => d,
                        Some(Err(e)) => {
                            self.diags.push(
                                ProblemBuilder::new(format!("`soak` of ring `{name}`: {e}"))
                                    .at(attr.value.span(), "not a duration")
                                    .help("write how long, like \"30m\" or \"2h\""),
                            );
                            ok = false;
                            std::time::Duration::ZERO
                        }
                        None => {
                            ok = false;
                            std::time::Duration::ZERO
                        }
                    }
                }
                None => std::time::Duration::ZERO,
            };
            let mut branch_span = label.clone();
            let branch = match block.body.get_attribute("branch") {
                Some(attr) => {
                    branch_span = attr.value.span();
                    self.branch_name(attr)
                }
                None => Some(default_ring_branch(&name)),
            };
            let Some(branch) = branch else { continue };
            if !ok {
                continue;
            }
            let span = self.span(label.clone());
            parsed.push(Parsed {
                ring: Ring { name, hosts: ring_hosts, after, soak, branch, span },
                label,
                after_span,
                branch_span,
                host_spans,
            });
        }

        // A host in two rings would follow two branches.
        let mut first_ring: BTreeMap<HostName, (RingName, Option<Range<usize>>)> = BTreeMap::new();
        for p in &parsed {
            for (h, span) in p.ring.hosts.iter().zip(&p.host_spans) {
                match first_ring.get(h) {
                    Some((other, other_span)) => {
                        let (other, other_span) = (other.clone(), other_span.clone());
                        self.diags.push(
                            ProblemBuilder::new(format!(
                                "host `{h}` is in two rings, `{other}` and `{}`",
                                p.ring.name
                            ))
                            .at(span.clone(), format!("`{h}` selected for `{}` here", p.ring.name))
                            .also(other_span, format!("and for `{other}` here"))
                            .help("a host follows one branch: take it out of one of the rings"),
                        );
                    }
                    None => {
                        first_ring.insert(h.clone(), (p.ring.name.clone(), span.clone()));
                    }
                }
            }
        }

        // Branches: one ring per branch, none on the branch changes land on first.
        let mut branches: BTreeMap<&str, &Parsed> = BTreeMap::new();
        let mut problems = Vec::new();
        for p in &parsed {
            if let Some(g) = gitops.filter(|g| g.branch == p.ring.branch) {
                problems.push(
                    ProblemBuilder::new(format!(
                        "ring `{}` follows `{}`, the branch changes land on first",
                        p.ring.name, g.branch
                    ))
                    .at(p.branch_span.clone(), "the gitops branch")
                    .help("a ring follows its own branch, promoted from the gitops branch: remove `branch` to use `ring/<name>`"),
                );
            }
            if let Some(first) = branches.get(p.ring.branch.as_str()) {
                problems.push(
                    ProblemBuilder::new(format!(
                        "rings `{}` and `{}` follow the same branch `{}`",
                        first.ring.name, p.ring.name, p.ring.branch
                    ))
                    .at(p.branch_span.clone(), "again here")
                    .also(first.branch_span.clone(), "first here")
                    .help("each ring needs its own branch to be promoted on its own"),
                );
            } else {
                branches.insert(&p.ring.branch, p);
            }
        }

        // `after` names a declared ring, and the order has no cycle.
        let names: BTreeSet<&RingName> = parsed.iter().map(|p| &p.ring.name).collect();
        let mut unknown = BTreeSet::new();
        for p in &parsed {
            let Some(after) = &p.ring.after else { continue };
            if after == &p.ring.name {
                problems.push(
                    ProblemBuilder::new(format!("ring `{after}` comes after itself"))
                        .at(p.after_span.clone(), "its own name")
                        .help("name the ring it follows, or remove `after` for a first ring"),
                );
                unknown.insert(p.ring.name.clone());
            } else if declared.contains(after.as_str()) && !names.contains(after) {
                // Declared with problems of its own, already reported.
                unknown.insert(p.ring.name.clone());
            } else if !names.contains(after) {
                problems.push(
                    ProblemBuilder::new(format!(
                        "ring `{}` comes after ring `{after}`, which is not declared",
                        p.ring.name
                    ))
                    .at(p.after_span.clone(), "no such ring")
                    .help(suggest(
                        after.as_str(),
                        names.iter().map(|n| n.as_str()),
                        "rings",
                    )),
                );
                unknown.insert(p.ring.name.clone());
            }
        }
        let after_of: BTreeMap<&RingName, &RingName> = parsed
            .iter()
            .filter_map(|p| p.ring.after.as_ref().map(|a| (&p.ring.name, a)))
            .collect();
        let mut reported: BTreeSet<&RingName> = BTreeSet::new();
        for p in &parsed {
            if unknown.contains(&p.ring.name) || reported.contains(&p.ring.name) {
                continue;
            }
            let mut path = vec![&p.ring.name];
            let mut cur = &p.ring.name;
            while let Some(next) = after_of.get(cur) {
                if let Some(i) = path.iter().position(|n| n == next) {
                    let cycle = &path[i..];
                    if cycle.iter().all(|n| !reported.contains(*n)) {
                        let mut shown: Vec<String> =
                            cycle.iter().map(|n| format!("`{n}`")).collect();
                        shown.push(format!("`{}`", cycle[0]));
                        let at = parsed
                            .iter()
                            .find(|q| &q.ring.name == cycle[0])
                            .and_then(|q| q.after_span.clone());
                        problems.push(
                            ProblemBuilder::new(format!("the rings' `after` form a cycle: {}", shown.join(" comes after ")))
                                .at(at, "part of the cycle")
                                .help("a change must enter some ring first: remove `after` from one of them"),
                        );
                        reported.extend(cycle.iter().copied());
                    }
                    break;
                }
                path.push(next);
                cur = next;
            }
        }
        let bad = !problems.is_empty();
        for problem in problems {
            self.diags.push(problem);
        }
        if bad {
            return Vec::new();
        }
        parsed.into_iter().map(|p| p.ring).collect()
    }

    /// Hosts that pull with the token must be allowed to read it (the `secrets` rules).
    pub(super) fn check_token_readers(&mut self, inventory: &Inventory, site: &TokenSite) {
        let Some(token) = inventory.gitops.as_ref().and_then(|g| g.token.as_ref()) else { return };
        // Without an admin there is no policy yet; the secrets commands say so.
        let Ok(policy) = crate::secrets::rules::SecretsPolicy::new(inventory, &|_| None) else {
            return;
        };
        let rel = token.to_string_lossy().replace('\\', "/");
        let readers = policy.readers(&rel);
        for ring in &inventory.rings {
            let missing: Vec<&str> =
                ring.hosts.iter().filter(|h| !readers.contains(h)).map(|h| h.as_str()).collect();
            if missing.is_empty() {
                continue;
            }
            let list = missing.iter().map(|h| format!("`{h}`")).collect::<Vec<_>>().join(", ");
            self.diags.push(
                ProblemBuilder::new(format!(
                    "the hosts of ring `{}` pull with the token `{rel}`, but {list} may not read it",
                    ring.name
                ))
                .at(site.span.clone(), "no `secrets` rule lets them read this file")
                .help(format!(
                    "add a rule: `secrets \"{rel}\" {{ hosts = [{}] }}` (or a tag they share), then run `cairn secrets rekey`",
                    missing.iter().map(|h| format!("\"{h}\"")).collect::<Vec<_>>().join(", ")
                )),
            );
        }
    }
}
