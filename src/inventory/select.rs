//! Host selection on the command line: names, globs (`web*`) and `@tag`.

use std::collections::BTreeSet;

use super::diag::closest;
use super::model::{Host, Inventory};

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum SelectError {
    #[error("`{selector}` matches no host")]
    #[diagnostic(code(cairn::select::no_match), help("{help}"))]
    NoMatch { selector: String, help: String },
    #[error("`{selector}` is not a valid host pattern: {reason}")]
    #[diagnostic(
        code(cairn::select::invalid),
        help("select hosts by name (`web1`), glob (`web*`) or tag (`@web`)")
    )]
    Invalid { selector: String, reason: String },
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

/// The hosts the selectors name, in inventory order and without duplicates. No selectors
/// select every host. A selector that matches nothing is an error naming it.
pub fn select<'a>(inv: &'a Inventory, selectors: &[String]) -> Result<Vec<&'a Host>, SelectError> {
    select_from(&inv.hosts, selectors)
}

/// [`select`] among `hosts` (the resolver selects a ring's hosts before the inventory is
/// whole).
pub(crate) fn select_from<'a>(
    hosts: &'a [Host],
    selectors: &[String],
) -> Result<Vec<&'a Host>, SelectError> {
    if selectors.is_empty() {
        return Ok(hosts.iter().collect());
    }
    let mut chosen = BTreeSet::new();
    for selector in selectors {
        let matched: Vec<usize> = if let Some(tag) = selector.strip_prefix('@') {
            if tag.is_empty() {
                return Err(SelectError::Invalid {
                    selector: selector.clone(),
                    reason: "`@` needs a tag name after it".into(),
                });
            }
            positions(hosts, |h| h.has_tag(tag))
        } else if is_glob(selector) {
            let matcher = globset::Glob::new(selector)
                .map_err(|e| SelectError::Invalid {
                    selector: selector.clone(),
                    reason: e.kind().to_string(),
                })?
                .compile_matcher();
            positions(hosts, |h| matcher.is_match(h.name.as_str()))
        } else {
            positions(hosts, |h| h.name.as_str() == selector)
        };
        if matched.is_empty() {
            return Err(SelectError::NoMatch {
                selector: selector.clone(),
                help: no_match_help(hosts, selector),
            });
        }
        chosen.extend(matched);
    }
    Ok(chosen.into_iter().map(|i| &hosts[i]).collect())
}

fn positions(hosts: &[Host], pred: impl Fn(&Host) -> bool) -> Vec<usize> {
    hosts.iter().enumerate().filter(|(_, h)| pred(h)).map(|(i, _)| i).collect()
}

fn no_match_help(hosts: &[Host], selector: &str) -> String {
    let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
    let tags: BTreeSet<&str> =
        hosts.iter().flat_map(|h| h.tags.iter().map(|t| t.as_str())).collect();
    if hosts.is_empty() {
        return "the inventory declares no hosts yet: add a `host \"NAME\" { ... }` block".into();
    }
    if let Some(tag) = selector.strip_prefix('@') {
        if names.contains(&tag) {
            return format!("`{tag}` is a host, not a tag: write `{tag}`");
        }
        return match closest(tag, tags.iter().copied()) {
            Some(c) => format!("did you mean `@{c}`?"),
            None if tags.is_empty() => "no host has tags; give hosts `tags = [...]`".into(),
            None => format!(
                "tags: {}",
                tags.iter().map(|t| format!("`@{t}`")).collect::<Vec<_>>().join(", ")
            ),
        };
    }
    if tags.contains(selector) {
        return format!("`{selector}` is a tag: write `@{selector}`");
    }
    match closest(selector, names.iter().copied()) {
        Some(c) => format!("did you mean `{c}`?"),
        None => {
            let mut list: Vec<String> = names.iter().take(10).map(|n| format!("`{n}`")).collect();
            if names.len() > 10 {
                list.push("...".into());
            }
            format!("hosts: {}", list.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{load_str, LoadOptions};

    fn fleet() -> Inventory {
        let src = r#"
provider "existing" "owned" {}
defaults {
  address = "192.0.2.1"
}
host "web1" {
  tags = ["web", "prod"]
}
host "web2" {
  tags = ["web"]
}
host "db1" {
  tags = ["db", "prod"]
}
host "builder" {}
"#;
        let opts = LoadOptions { path: "cairn.hcl".into(), ..Default::default() };
        load_str(&opts, src.to_owned()).expect("fleet loads")
    }

    fn names(inv: &Inventory, sel: &[&str]) -> Vec<String> {
        let sel: Vec<String> = sel.iter().map(|s| (*s).to_owned()).collect();
        select(inv, &sel).unwrap().iter().map(|h| h.name.to_string()).collect()
    }

    fn error(inv: &Inventory, sel: &[&str]) -> String {
        let sel: Vec<String> = sel.iter().map(|s| (*s).to_owned()).collect();
        match select(inv, &sel) {
            Err(SelectError::NoMatch { selector, help }) => format!("{selector}: {help}"),
            Err(e) => e.to_string(),
            Ok(h) => panic!("expected an error, selected {} hosts", h.len()),
        }
    }

    #[test]
    fn empty_selects_all_in_inventory_order() {
        assert_eq!(names(&fleet(), &[]), ["web1", "web2", "db1", "builder"]);
    }

    #[test]
    fn names_globs_and_tags() {
        let inv = fleet();
        assert_eq!(names(&inv, &["db1"]), ["db1"]);
        assert_eq!(names(&inv, &["web*"]), ["web1", "web2"]);
        assert_eq!(names(&inv, &["@prod"]), ["web1", "db1"]);
        assert_eq!(names(&inv, &["*[12]"]), ["web1", "web2", "db1"]);
    }

    #[test]
    fn order_is_inventory_order_and_duplicates_are_removed() {
        let inv = fleet();
        assert_eq!(
            names(&inv, &["builder", "@prod", "web1", "web*"]),
            ["web1", "web2", "db1", "builder"]
        );
    }

    #[test]
    fn no_match_names_the_selector_and_suggests() {
        let inv = fleet();
        assert_eq!(error(&inv, &["web1", "wbe2"]), "wbe2: did you mean `web2`?");
        assert_eq!(error(&inv, &["@pord"]), "@pord: did you mean `@prod`?");
        assert_eq!(error(&inv, &["prod"]), "prod: `prod` is a tag: write `@prod`");
        assert_eq!(
            error(&inv, &["@builder"]),
            "@builder: `builder` is a host, not a tag: write `builder`"
        );
        assert_eq!(error(&inv, &["cache*"]), "cache*: hosts: `web1`, `web2`, `db1`, `builder`");
        assert_eq!(error(&inv, &["@zzz"]), "@zzz: tags: `@db`, `@prod`, `@web`");
        assert!(error(&inv, &["@"]).contains("needs a tag name"));
        assert!(error(&inv, &["web[1"]).contains("not a valid host pattern"));
    }
}
