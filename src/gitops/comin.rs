//! comin's view of a host: `comin status --json` (the gRPC `State` message as protojson with
//! proto field names and every field present) and, when the daemon does not answer,
//! `/var/lib/comin/store.json` (the `Store` message it persists). Field names follow comin's
//! `pkg/protobuf/services.proto`; only what cairn uses is read, the rest is ignored.

use time::OffsetDateTime;

/// Where comin's status came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusSource {
    /// `comin status --json`: the running daemon.
    Daemon,
    /// `/var/lib/comin/store.json`: the daemon did not answer; no fetch or build state.
    StoreFile,
}

/// What cairn needs from comin about one host.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CominStatus {
    pub source: StatusSource,
    /// The last deployment comin made or is making (`deployer.deployment`), if any.
    pub deployment: Option<Deployment>,
    /// `builder.is_evaluating` / `builder.is_building`.
    pub is_evaluating: bool,
    pub is_building: bool,
    /// The generation being built, if it failed to evaluate or build: why.
    pub build_error: Option<String>,
    /// `fetcher.repository_status.remotes[]`: when each remote was last fetched.
    pub remotes: Vec<RemoteFetch>,
    pub need_to_reboot: bool,
    pub is_suspended: bool,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Deployment {
    /// `generation.selected_commit_id`.
    pub commit: String,
    pub branch: String,
    pub branch_is_testing: bool,
    /// `generation.out_path`: the system this deployment switches to.
    pub out_path: String,
    /// `init`, `running`, `done` or `failed`.
    pub status: String,
    /// `switch`, `test`, `boot`...
    pub operation: String,
    pub error_msg: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RemoteFetch {
    pub name: String,
    pub url: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub fetched_at: Option<OffsetDateTime>,
    pub fetch_error_msg: String,
}

impl CominStatus {
    /// The most recent fetch of any remote.
    pub fn fetched_at(&self) -> Option<OffsetDateTime> {
        self.remotes.iter().filter_map(|r| r.fetched_at).max()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("comin's {what} is not what cairn expects: {source}")]
pub struct ParseError {
    what: &'static str,
    #[source]
    source: serde_json::Error,
}

/// Parses what `comin status --json` prints.
pub fn parse_status(json: &[u8]) -> Result<CominStatus, ParseError> {
    let raw: raw::State = serde_json::from_slice(json)
        .map_err(|source| ParseError { what: "`status --json` output", source })?;
    let builder = raw.builder.unwrap_or_default();
    let generation = builder.generation.unwrap_or_default();
    let build_error =
        [generation.eval_err, generation.build_err].into_iter().find(|e| !e.is_empty());
    let deployer = raw.deployer.unwrap_or_default();
    let remotes = raw
        .fetcher
        .and_then(|f| f.repository_status)
        .map(|rs| {
            rs.remotes
                .into_iter()
                .map(|r| RemoteFetch {
                    name: r.name,
                    url: r.url,
                    fetched_at: r.fetched_at,
                    fetch_error_msg: r.fetch_error_msg,
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(CominStatus {
        source: StatusSource::Daemon,
        deployment: deployer.deployment.map(Deployment::from),
        is_evaluating: builder.is_evaluating.unwrap_or(false),
        is_building: builder.is_building.unwrap_or(false),
        build_error,
        remotes,
        need_to_reboot: raw.need_to_reboot.unwrap_or(false),
        // The manager's flag; the deployer's says the same once suspended by `comin suspend`.
        is_suspended: raw.is_suspended.unwrap_or(false) || deployer.is_suspended.unwrap_or(false),
    })
}

/// Parses `/var/lib/comin/store.json`: the newest deployment (by `created_at`, as comin's
/// `GetDeploymentLastest` picks it) and whether the deployer is suspended.
pub fn parse_store(json: &[u8]) -> Result<CominStatus, ParseError> {
    let raw: raw::Store =
        serde_json::from_slice(json).map_err(|source| ParseError { what: "store.json", source })?;
    let newest = raw.deployments.into_iter().max_by_key(|d| d.created_at);
    Ok(CominStatus {
        source: StatusSource::StoreFile,
        deployment: newest.map(Deployment::from),
        is_evaluating: false,
        is_building: false,
        build_error: None,
        remotes: Vec::new(),
        need_to_reboot: false,
        is_suspended: raw.deployer.is_some_and(|d| d.is_suspended),
    })
}

impl From<raw::Deployment> for Deployment {
    fn from(d: raw::Deployment) -> Self {
        let g = d.generation.unwrap_or_default();
        Deployment {
            commit: g.selected_commit_id,
            branch: g.selected_branch_name,
            branch_is_testing: g.selected_branch_is_testing.unwrap_or(false),
            out_path: g.out_path,
            status: d.status,
            operation: d.operation,
            error_msg: d.error_msg,
            ended_at: d.ended_at,
        }
    }
}

/// The protojson shapes. `Option` where protojson writes `null` (unset messages, wrappers,
/// timestamps); `default` everywhere, so older or newer comins with fewer or more fields parse.
mod raw {
    use serde::Deserialize;
    use time::OffsetDateTime;

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    pub struct State {
        pub need_to_reboot: Option<bool>,
        pub is_suspended: Option<bool>,
        pub builder: Option<Builder>,
        pub deployer: Option<Deployer>,
        pub fetcher: Option<Fetcher>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    pub struct Builder {
        pub is_evaluating: Option<bool>,
        pub is_building: Option<bool>,
        pub generation: Option<Generation>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    pub struct Deployer {
        pub deployment: Option<Deployment>,
        pub is_suspended: Option<bool>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    pub struct Fetcher {
        pub repository_status: Option<RepositoryStatus>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    pub struct RepositoryStatus {
        #[serde(deserialize_with = "null_as_default")]
        pub remotes: Vec<Remote>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    pub struct Remote {
        pub name: String,
        pub url: String,
        pub fetch_error_msg: String,
        #[serde(with = "time::serde::rfc3339::option")]
        pub fetched_at: Option<OffsetDateTime>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    pub struct Generation {
        pub selected_commit_id: String,
        pub selected_branch_name: String,
        pub selected_branch_is_testing: Option<bool>,
        pub out_path: String,
        pub eval_err: String,
        pub build_err: String,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    pub struct Deployment {
        pub generation: Option<Generation>,
        pub status: String,
        pub operation: String,
        pub error_msg: String,
        #[serde(with = "time::serde::rfc3339::option")]
        pub ended_at: Option<OffsetDateTime>,
        #[serde(with = "time::serde::rfc3339::option")]
        pub created_at: Option<OffsetDateTime>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    pub struct Store {
        #[serde(deserialize_with = "null_as_default")]
        pub deployments: Vec<Deployment>,
        pub deployer: Option<DeployerState>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    pub struct DeployerState {
        pub is_suspended: bool,
    }

    fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
    where
        D: serde::Deserializer<'de>,
        T: Default + Deserialize<'de>,
    {
        Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &[u8] = include_bytes!("../../tests/fixtures/comin/status.json");
    const STORE: &[u8] = include_bytes!("../../tests/fixtures/comin/store.json");

    #[test]
    fn reads_the_recorded_status() {
        let s = parse_status(STATUS).unwrap();
        assert_eq!(s.source, StatusSource::Daemon);
        let d = s.deployment.as_ref().unwrap();
        assert_eq!(d.commit, "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678");
        assert_eq!(d.branch, "ring/dev");
        assert!(!d.branch_is_testing);
        assert_eq!(d.status, "done");
        assert_eq!(d.operation, "switch");
        assert_eq!(d.error_msg, "");
        assert!(d.out_path.ends_with("-nixos-system-web1-25.11.20261201.abcdef0"));
        assert_eq!(d.ended_at.unwrap().to_string(), "2026-12-05 10:15:20.441907 +00:00:00");
        assert!(!s.is_building && !s.is_evaluating && !s.is_suspended && !s.need_to_reboot);
        assert_eq!(s.build_error, None);
        assert_eq!(s.remotes.len(), 1);
        assert_eq!(s.remotes[0].name, "origin");
        assert_eq!(s.fetched_at().unwrap().to_string(), "2026-12-05 10:31:07.66402 +00:00:00");
    }

    #[test]
    fn reads_the_store_file_when_the_daemon_is_down() {
        let s = parse_store(STORE).unwrap();
        assert_eq!(s.source, StatusSource::StoreFile);
        // The newest deployment, whatever the order of the list.
        assert_eq!(
            s.deployment.as_ref().unwrap().commit,
            "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
        );
        assert_eq!(s.fetched_at(), None);
        assert!(!s.is_suspended);
    }

    #[test]
    fn unset_messages_are_null_and_a_fresh_comin_has_no_deployment() {
        // What a just-started comin prints: EmitUnpopulated writes unset messages as null.
        let fresh = br#"{"need_to_reboot": false, "is_suspended": null,
            "builder": {"is_evaluating": false, "is_building": true, "generation": null},
            "deployer": {"is_deploying": false, "deployment": null, "is_suspended": false},
            "fetcher": {"is_fetching": true, "repository_status": {"remotes": null}},
            "store": null, "build_confirmer": null, "deploy_confirmer": null}"#;
        let s = parse_status(fresh).unwrap();
        assert_eq!(s.deployment, None);
        assert!(s.is_building);
        assert!(s.remotes.is_empty());
    }

    #[test]
    fn a_failed_deployment_and_a_suspended_daemon_show() {
        let text = String::from_utf8(STATUS.to_vec()).unwrap();
        let failed = text
            .replacen("\"status\": \"done\"", "\"status\": \"failed\"", 1)
            .replacen(
                "\"error_msg\": \"\"",
                "\"error_msg\": \"switch-to-configuration exited with 4\"",
                1,
            )
            .replacen("\"is_suspended\": false", "\"is_suspended\": true", 1);
        let s = parse_status(failed.as_bytes()).unwrap();
        let d = s.deployment.unwrap();
        assert_eq!(
            (d.status.as_str(), d.error_msg.as_str()),
            ("failed", "switch-to-configuration exited with 4")
        );
        assert!(s.is_suspended);
    }

    #[test]
    fn garbage_is_an_error_naming_what_was_read() {
        let e = parse_status(b"comin: command not found").unwrap_err();
        assert!(
            e.to_string().starts_with("comin's `status --json` output is not what cairn expects"),
            "{e}"
        );
    }
}
