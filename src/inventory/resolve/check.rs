//! `check { skip = [...], nixpkgs_max_age = "90d" }`: how `cairn check` runs here.

use hcl_edit::structure::Body;
use hcl_edit::Span;

use super::Resolver;
use crate::inventory::diag::ProblemBuilder;
use crate::inventory::eval::check_attributes;
use crate::inventory::model::*;

impl Resolver<'_> {
    /// `check { skip = [...], nixpkgs_max_age = "90d" }`, the rule ids checked.
    pub(super) fn check_settings(&mut self, body: &Body) -> CheckSettings {
        let mut settings = CheckSettings::default();
        let mut blocks = body.get_blocks("check");
        let Some(block) = blocks.next() else { return settings };
        for extra in blocks {
            self.diags.push(
                ProblemBuilder::new("there is more than one `check` block")
                    .at(extra.ident.span(), "a second `check`")
                    .also(block.ident.span(), "the first one")
                    .help("keep one `check { ... }` block"),
            );
        }
        check_attributes(self.diags, &block.body, "check", &["skip", "nixpkgs_max_age"], &[]);
        if let Some(attr) = block.body.get_attribute("skip") {
            for (id, span) in self.strings(attr).unwrap_or_default() {
                match id.parse::<crate::check::rule::RuleId>() {
                    Ok(rule) => settings.skip.push(rule),
                    Err(message) => self.diags.push(
                        ProblemBuilder::new(format!("`{id}` is not a check rule"))
                            .at(span, "unknown rule")
                            .help(message),
                    ),
                }
            }
        }
        if let Some(attr) = block.body.get_attribute("nixpkgs_max_age") {
            if let Some(text) = self.string(attr) {
                match parse_age(&text) {
                    Some(d) => settings.nixpkgs_max_age = Some(d),
                    None => self.diags.push(
                        ProblemBuilder::new(format!("`{text}` is not an age"))
                            .at(attr.value.span(), "an age")
                            .help("write days or weeks (`90d`, `12w`), or a duration (`720h`)"),
                    ),
                }
            }
        }
        settings
    }
}

/// `90d`, `12w`, or a duration as elsewhere (`720h`).
fn parse_age(s: &str) -> Option<std::time::Duration> {
    let s = s.trim();
    let days =
        |n: &str, per: u64| n.parse::<u64>().ok().filter(|n| *n > 0).map(|n| n * per * 86_400);
    let secs = if let Some(n) = s.strip_suffix('d') {
        days(n, 1)
    } else if let Some(n) = s.strip_suffix('w') {
        days(n, 7)
    } else {
        crate::util::duration::parse(s, false).ok().map(|d| d.as_secs())
    };
    secs.map(std::time::Duration::from_secs)
}
