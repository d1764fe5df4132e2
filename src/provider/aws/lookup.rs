//! Finding a host's instance: by the id state recorded, else by cairn's tags; same-named
//! instances without them are reported, never taken (see `super::super::ownership`).

use super::*;

impl AwsProvider {
    /// The instance with this id, whatever its state; `None` if EC2 knows no such id.
    pub async fn instance(&self, host: &str, id: &str) -> Result<Option<Instance>, ProviderError> {
        match self.describe(host, &[id], &[]).await {
            Ok(found) => Ok(found.into_iter().find(|i| i.id == id)),
            Err(ProviderError::Api { source, .. })
                if matches!(
                    source.code(),
                    Some("InvalidInstanceID.NotFound" | "InvalidInstanceID.Malformed")
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The live instance cairn started for `host` (tagged `cairn-host=<host>` and
    /// `managed-by=cairn`). Instances that only carry the host's `Name` tag are reported
    /// ([`ProviderError::Unclaimed`]), never taken (see [`ownership`]).
    pub async fn find_for_host(&self, host: &Host) -> Result<Option<Instance>, ProviderError> {
        let name = host.name.as_str();
        let mut found = self
            .describe(
                name,
                &[],
                &[
                    (&format!("tag:{TAG_HOST}"), vec![name.to_owned()]),
                    (&format!("tag:{TAG_MANAGED_BY}"), vec![MANAGED_BY.to_owned()]),
                    live_filter(),
                ],
            )
            .await?;
        found.extend(
            self.describe(name, &[], &[("tag:Name", vec![name.to_owned()]), live_filter()]).await?,
        );
        self.pick_for_host(name, &found)
    }

    /// `host`'s instance among `instances` (any, in any state): of the live ones tagged for
    /// it by cairn or named like it, the one cairn tagged; instances only named like it are
    /// reported, never taken. `lookup` and `lookup_many` both decide here.
    pub(super) fn pick_for_host<'a>(
        &self,
        name: &str,
        instances: impl IntoIterator<Item = &'a Instance>,
    ) -> Result<Option<Instance>, ProviderError> {
        let mut candidates: Vec<Instance> = Vec::new();
        for i in instances {
            let same_name = i.tags.get("Name").is_some_and(|n| n == name);
            if i.is_live()
                && (i.is_tagged_for(name) || same_name)
                && !candidates.iter().any(|c| c.id == i.id)
            {
                candidates.push(i.clone());
            }
        }
        match ownership::pick(name, candidates, |i| &i.tags) {
            Pick::Ours(instance) => Ok(Some(instance)),
            Pick::Nothing => Ok(None),
            Pick::Unclaimed(instances) => Err(ownership::unclaimed(
                name,
                &format!("aws.{}", self.name),
                "instance",
                "tag",
                instances.into_iter().map(|i| i.id).collect(),
            )),
            Pick::Several(many) => {
                Err(several(name, &many, &format!("carry the tag {TAG_HOST}={name}")))
            }
        }
    }

    /// The instance id state records for the host, if it was recorded by this provider block.
    pub(super) fn recorded_id<'s>(&self, state: Option<&'s HostState>) -> Option<&'s str> {
        state
            .filter(|s| s.provider.as_deref().is_none_or(|p| p == self.name))
            .and_then(|s| s.provider_id.as_deref())
    }

    /// Every live instance that could be one of `names`' (cairn's tag, or a `Name` among
    /// them), in a few paged DescribeInstances calls, each instance once.
    pub(super) async fn list_for(&self, names: &[&str]) -> Result<Vec<Instance>, ProviderError> {
        let all = "(all hosts)";
        let mut found = self
            .describe(
                all,
                &[],
                &[(&format!("tag:{TAG_MANAGED_BY}"), vec![MANAGED_BY.to_owned()]), live_filter()],
            )
            .await?;
        // EC2 takes at most 200 values per filter.
        for chunk in names.chunks(200) {
            let names = chunk.iter().map(|n| n.to_string()).collect();
            found.extend(self.describe(all, &[], &[("tag:Name", names), live_filter()]).await?);
        }
        let mut seen = BTreeSet::new();
        found.retain(|i| seen.insert(i.id.clone()));
        Ok(found)
    }
}

/// The `instance-state-name` filter for instances that still hold a machine.
pub(super) fn live_filter() -> (&'static str, Vec<String>) {
    ("instance-state-name", LIVE_STATES.iter().map(|s| s.to_string()).collect())
}

/// The instance state recorded for `host` as `id`, if it is still the host's: alive, and
/// not tagged by cairn for another host.
pub(super) fn still_recorded(host: &str, id: &str, found: Option<Instance>) -> Option<Instance> {
    match found {
        Some(i)
            if i.is_live() && !matches!(ownership::claim(&i.tags, host), Claim::OtherHost(_)) =>
        {
            Some(i)
        }
        Some(i) if !i.is_live() => {
            tracing::debug!(host, instance_id = id, state = %i.state, "the recorded instance is gone");
            None
        }
        Some(i) => {
            tracing::warn!(
                host, instance_id = id, tags = ?i.tags,
                "the instance recorded in state belongs to something else; searching by tags"
            );
            None
        }
        None => {
            tracing::debug!(host, instance_id = id, "the recorded instance is gone");
            None
        }
    }
}

pub(super) fn several(host: &str, many: &[Instance], what: &str) -> ProviderError {
    ProviderError::Invalid {
        host: host.to_owned(),
        message: format!(
            "{} instances {what} (ids {})",
            many.len(),
            many.iter().map(|i| i.id.as_str()).collect::<Vec<_>>().join(", ")
        ),
        help: format!(
            "terminate the instances that are not this host's in the EC2 console, or remove their \
             {TAG_HOST} and Name tags"
        ),
    }
}
