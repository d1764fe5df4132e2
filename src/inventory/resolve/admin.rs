//! `admin "NAME" { age = "age1..." }`: the people who can read every secret.

use std::ops::Range;

use hcl_edit::structure::Body;
use hcl_edit::Span;

use super::Resolver;
use crate::inventory::diag::ProblemBuilder;
use crate::inventory::eval::{check_attributes, single_label};
use crate::inventory::model::*;
use crate::keys::AgeRecipient;

impl Resolver<'_> {
    pub(super) fn admins(&mut self, body: &Body) -> Vec<Admin> {
        let mut out: Vec<(Admin, Option<Range<usize>>)> = Vec::new();
        for block in body.get_blocks("admin") {
            let Some((name_s, name_span)) = single_label(self.diags, block, "admin", "alice")
            else {
                continue;
            };
            let Some(name) = self.name(AdminName::new, &name_s, name_span.clone(), "admin name")
            else {
                continue;
            };
            if let Some((_, first)) = out.iter().find(|(a, _)| a.name == name) {
                let first = first.clone();
                self.duplicate("admin", &name_s, name_span, first);
                continue;
            }
            check_attributes(self.diags, &block.body, "admin", &["age"], &[]);
            let Some(attr) = block.body.get_attribute("age") else {
                self.diags.push(
                    ProblemBuilder::new(format!("admin `{name_s}` has no `age` recipient"))
                        .at(name_span, "missing `age`")
                        .help("add `age = \"age1...\"` (from `cairn secrets keygen` or `age-keygen -y`) or an `ssh-ed25519 ...` public key"),
                );
                continue;
            };
            let Some(text) = self.string(attr) else { continue };
            let age = match check_recipient(&text) {
                Ok(age) => age,
                Err(why) => {
                    self.diags.push(
                        ProblemBuilder::new(format!("admin `{name_s}` has an invalid age recipient"))
                            .at(attr.value.span(), why)
                            .help("use an age public key (`age1...` or post-quantum `age1pq1...`, as printed by `age-keygen -y`) or an SSH public key line (`ssh-ed25519 AAAA...`)"),
                    );
                    continue;
                }
            };
            let span = self.span(name_span.clone());
            out.push((Admin { name, age, span }, name_span));
        }
        out.into_iter().map(|(a, _)| a).collect()
    }
}

/// An age X25519 recipient (`age1...`) or an SSH public key line (`ssh-ed25519 ...`,
/// `ssh-rsa ...`), as sops and age accept them; else what is wrong, in a few words.
pub(super) fn check_recipient(s: &str) -> Result<AgeRecipient, String> {
    AgeRecipient::parse(s)
        .map_err(|e| e.recipient_problem().map_or_else(|| e.to_string(), str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients() {
        // Generated with age-keygen and ssh-keygen for this test; public halves only.
        assert!(check_recipient("age1l4j587397etm0czenpy3xwkra2r5p929ztcpr3h3v89gvf3wgvmqnnlq2d")
            .is_ok());
        assert!(check_recipient(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPtRNRBdvs9DSZpJGTAQ76p6TbFNAqD9jLkaclZISGcR bob@laptop"
        )
        .is_ok());
        let bad_checksum = "age1l4j587397etm0czenpy3xwkra2r5p929ztcpr3h3v89gvf3wgvmqnnlq2e";
        assert!(check_recipient(bad_checksum).unwrap_err().contains("checksum"));
        assert!(check_recipient("AGE-SECRET-KEY-1ABC").unwrap_err().contains("private key"));
        assert!(check_recipient("ssh-ed25519 AAAA").is_err());
        assert!(check_recipient("alice@example.org").is_err());
    }
}
