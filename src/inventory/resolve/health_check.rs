//! `health_check "KIND" { ... }` blocks of hosts and `defaults`: what verify runs.

use hcl_edit::structure::{Block, Body};

use super::Resolver;
use crate::inventory::diag::{suggest, ProblemBuilder};
use crate::inventory::eval::{check_attributes, single_label};
use crate::inventory::model::*;

impl Resolver<'_> {
    /// `health_check` blocks: the defaults' and the host's, without repeats.
    pub(super) fn host_health_checks(
        &mut self,
        body: &Body,
        defaults: Option<&Body>,
    ) -> Option<Vec<HealthCheck>> {
        let mut ok = true;
        let mut health_checks: Vec<HealthCheck> = Vec::new();
        for b in
            [defaults, Some(body)].into_iter().flatten().flat_map(|b| b.get_blocks("health_check"))
        {
            match self.health_check(b) {
                Some(hc) if !health_checks.contains(&hc) => health_checks.push(hc),
                Some(_) => {}
                None => ok = false,
            }
        }
        ok.then_some(health_checks)
    }

    fn health_check(&mut self, block: &Block) -> Option<HealthCheck> {
        const KINDS: [(&str, &str, &str); 3] = [
            ("systemd_unit", "unit", "\"comin.service\""),
            ("command", "command", "\"curl -fsS http://localhost/\""),
            ("file_exists", "path", "\"/run/secrets/token\""),
        ];
        let (kind, kind_span) = single_label(self.diags, block, "health_check", "systemd_unit")?;
        let Some((_, key, example)) = KINDS.iter().find(|k| k.0 == kind) else {
            self.diags.push(
                ProblemBuilder::new(format!("unknown health check `{kind}`"))
                    .at(kind_span, "not a health check kind")
                    .help(suggest(&kind, KINDS.map(|k| k.0), "health check kinds")),
            );
            return None;
        };
        check_attributes(self.diags, &block.body, &format!("health_check \"{kind}\""), &[key], &[]);
        let Some(attr) = block.body.get_attribute(key) else {
            self.diags.push(
                ProblemBuilder::new(format!("this `{kind}` health check has no `{key}`"))
                    .at(kind_span, format!("missing `{key}`"))
                    .help(format!("add `{key} = {example}`")),
            );
            return None;
        };
        let v = self.string(attr)?;
        Some(match kind.as_str() {
            "systemd_unit" => HealthCheck::SystemdUnit { unit: v },
            "command" => HealthCheck::Command { command: v },
            _ => HealthCheck::FileExists { path: v },
        })
    }
}
