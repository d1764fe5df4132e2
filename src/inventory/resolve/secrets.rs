//! `secrets "GLOB" { hosts = [...], tags = [...] }`: who may read which secrets files.

use std::collections::BTreeSet;
use std::ops::Range;

use hcl_edit::structure::Body;

use super::Resolver;
use crate::inventory::diag::{suggest, ProblemBuilder};
use crate::inventory::eval::{check_attributes, single_label};
use crate::inventory::model::*;

impl Resolver<'_> {
    pub(super) fn secrets_rules(&mut self, body: &Body, hosts: &[Host]) -> Vec<SecretsRule> {
        let all_tags: BTreeSet<&str> =
            hosts.iter().flat_map(|h| h.tags.iter().map(|t| t.as_str())).collect();
        let mut out: Vec<(SecretsRule, Option<Range<usize>>)> = Vec::new();
        for block in body.get_blocks("secrets") {
            let Some((glob, glob_span)) =
                single_label(self.diags, block, "secrets", "secrets/web/*.yaml")
            else {
                continue;
            };
            if let Some((_, first)) = out.iter().find(|(r, _)| r.glob == glob) {
                let first = first.clone();
                self.diags.push(
                    ProblemBuilder::new(format!("two `secrets` rules for `{glob}`"))
                        .at(glob_span, "defined again here")
                        .also(first, "first defined here")
                        .help("merge their `hosts` and `tags` into one rule"),
                );
                continue;
            }
            let mut ok = true;
            if let Err(e) = globset::Glob::new(&glob) {
                self.diags.push(
                    ProblemBuilder::new(format!("`{glob}` is not a valid glob"))
                        .at(glob_span.clone(), e.kind().to_string())
                        .help("use `*` for any name and `**` for any directories, e.g. \"secrets/web/*.yaml\""),
                );
                ok = false;
            }
            check_attributes(self.diags, &block.body, "secrets", &["hosts", "tags"], &[]);
            let mut rule_hosts = Vec::new();
            if let Some(attr) = block.body.get_attribute("hosts") {
                for (h, span) in self.strings(attr).unwrap_or_default() {
                    match hosts.iter().find(|x| x.name.as_str() == h) {
                        Some(x) => rule_hosts.push(x.name.clone()),
                        None if self.broken.contains(&format!("host:{h}")) => ok = false,
                        None => {
                            let mut help =
                                suggest(&h, hosts.iter().map(|x| x.name.as_str()), "hosts");
                            if all_tags.contains(h.as_str()) {
                                help = format!("`{h}` is a tag: move it to `tags = [\"{h}\"]`");
                            }
                            self.diags.push(
                                ProblemBuilder::new(format!(
                                    "secrets rule `{glob}` names host `{h}`, which does not exist"
                                ))
                                .at(span, "no such host")
                                .help(help),
                            );
                            ok = false;
                        }
                    }
                }
            }
            let mut rule_tags = Vec::new();
            if let Some(attr) = block.body.get_attribute("tags") {
                for (t, span) in self.strings(attr).unwrap_or_default() {
                    if all_tags.contains(t.as_str()) {
                        rule_tags.extend(Tag::new(t).ok());
                    } else {
                        let mut help = suggest(&t, all_tags.iter().copied(), "tags in use");
                        if hosts.iter().any(|x| x.name.as_str() == t) {
                            help = format!("`{t}` is a host: move it to `hosts = [\"{t}\"]`");
                        }
                        self.diags.push(
                            ProblemBuilder::new(format!(
                                "secrets rule `{glob}` names tag `{t}`, which no host has"
                            ))
                            .at(span, "no host has this tag")
                            .help(help),
                        );
                        ok = false;
                    }
                }
            }
            if ok {
                let span = self.span(glob_span.clone());
                out.push((
                    SecretsRule { glob, hosts: rule_hosts, tags: rule_tags, span },
                    glob_span,
                ));
            }
        }
        out.into_iter().map(|(r, _)| r).collect()
    }
}
