//! The `nix` command line, built as data and run with stderr streamed as tracing events.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tracing::Instrument;

use super::log::{NixLog, Said, PROGRESS_TARGET};
use super::path_info::{self, PathInfo};
use super::store_path::StorePath;
use super::{NixError, STDERR_TAIL_LINES};
use crate::inventory::model::FlakeRef;
use crate::util::shell::quote;

/// The `nix` CLI with the options every call shares.
#[derive(Debug, Clone)]
pub struct Nix {
    program: PathBuf,
    options: Vec<(String, String)>,
    /// Flags of `nix build` only (`--override-input`, `--no-write-lock-file`).
    build_flags: Vec<String>,
}

impl Default for Nix {
    fn default() -> Self {
        Self { program: "nix".into(), options: Vec::new(), build_flags: Vec::new() }
    }
}

/// The installable of a NixOS system: `<flake>#nixosConfigurations.<attr>.config.system.build.toplevel`.
pub fn installable_for_toplevel(flake: &FlakeRef) -> String {
    installable_for_build(flake, "toplevel")
}

/// `<flake>#nixosConfigurations.<attr>.config.system.build.<output>` (`diskoScript`).
pub fn installable_for_build(flake: &FlakeRef, output: &str) -> String {
    let plain = !flake.attr.is_empty()
        && flake.attr.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-'".contains(&b))
        && !flake.attr.as_bytes()[0].is_ascii_digit();
    let attr = if plain { flake.attr.clone() } else { format!("\"{}\"", flake.attr) };
    format!("{}#nixosConfigurations.{attr}.config.system.build.{output}", flake.flake)
}

impl Nix {
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses another `nix` binary.
    pub fn program(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = program.into();
        self
    }

    /// `--option NAME VALUE` on every call.
    pub fn option(mut self, name: &str, value: &str) -> Self {
        self.options.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Builds with a flake input replaced (`--override-input INPUT URL`).
    pub fn override_input(mut self, input: &str, flake_url: &str) -> Self {
        self.build_flags.extend(["--override-input".into(), input.into(), flake_url.into()]);
        self
    }

    /// Leaves the flake's lock file as it is, even when inputs changed.
    pub fn no_write_lock_file(mut self) -> Self {
        self.build_flags.push("--no-write-lock-file".into());
        self
    }

    /// Adjusts to a single-user Nix run as root without build users (Debian's nix-bin with
    /// no daemon): nix refuses to build while `build-users-group` names a missing group.
    /// Anything else comes from the user's nix.conf or `NIX_CONFIG`.
    pub fn for_this_machine(self) -> Self {
        let root = fs_err::metadata("/proc/self").is_ok_and(|m| {
            use std::os::unix::fs::MetadataExt;
            m.uid() == 0
        });
        let daemon = std::path::Path::new("/nix/var/nix/daemon-socket/socket").exists();
        let group_exists = fs_err::read_to_string("/etc/group")
            .is_ok_and(|g| g.lines().any(|l| l.starts_with("nixbld:")));
        if root && !daemon && !group_exists {
            self.option("build-users-group", "")
        } else {
            self
        }
    }

    /// Builds without the network: no substituters, no global flake registry.
    pub fn offline(self) -> Self {
        self.option("substitute", "false").option("flake-registry", "")
    }

    pub(super) fn base_args(&self) -> Vec<String> {
        let mut a =
            vec!["--extra-experimental-features".to_owned(), "nix-command flakes".to_owned()];
        for (k, v) in &self.options {
            a.extend(["--option".to_owned(), k.clone(), v.clone()]);
        }
        a
    }

    /// The arguments of `nix build` for one installable. Its log comes as internal-json
    /// (nix 2.4 and later; Debian's 2.8 has it), read back by [`NixLog`]: a nix without it
    /// would stop at the unknown option, and its error would be shown as it is.
    pub fn build_args(&self, installable: &str) -> Vec<String> {
        let mut a = self.base_args();
        a.extend(
            ["build", "--no-link", "--json", "--log-format", "internal-json"].map(str::to_owned),
        );
        a.extend(self.build_flags.iter().cloned());
        a.push(installable.to_owned());
        a
    }

    /// The arguments of `nix eval --json INSTALLABLE --apply EXPR` (the lock file left as
    /// it is): what `cairn check` reads the hosts' configurations with.
    pub fn eval_args(&self, installable: &str, apply: &str) -> Vec<String> {
        let mut a = self.base_args();
        a.extend(["eval", "--json", "--no-write-lock-file"].map(str::to_owned));
        a.extend([installable.to_owned(), "--apply".to_owned(), apply.to_owned()]);
        a
    }

    /// The `nix` program this runs.
    pub fn program_path(&self) -> &std::path::Path {
        &self.program
    }

    /// The arguments of `nix path-info --recursive --json` for some paths.
    pub fn closure_args(&self, paths: &[StorePath]) -> Vec<String> {
        let mut a = self.base_args();
        a.extend(["path-info", "--recursive", "--json"].map(str::to_owned));
        a.extend(paths.iter().map(|p| p.to_string()));
        a
    }

    /// Builds the flake's NixOS system and returns its toplevel.
    pub async fn build_toplevel(&self, flake: &FlakeRef) -> Result<StorePath, NixError> {
        self.build(&installable_for_toplevel(flake)).await
    }

    /// Builds one installable with one output and returns that output's path.
    pub async fn build(&self, installable: &str) -> Result<StorePath, NixError> {
        let args = self.build_args(installable);
        let command = self.display(&["build", installable]);
        tracing::info!(installable, "building");
        let stdout = self.run(&args, &command).await?;
        parse_build_output(&stdout).map_err(|detail| NixError::Output { command, detail })
    }

    /// Every path in the closure of `paths`, sorted by path.
    pub async fn closure(&self, paths: &[StorePath]) -> Result<Vec<PathInfo>, NixError> {
        let args = self.closure_args(paths);
        let command = self.display(&["path-info", "--recursive", "--json", "…"]);
        let stdout = self.run(&args, &command).await?;
        path_info::parse(&stdout).map_err(|e| NixError::Output { command, detail: e.to_string() })
    }

    pub(super) fn display(&self, tail: &[&str]) -> String {
        let mut s = self.program.display().to_string();
        for t in tail {
            s.push(' ');
            s.push_str(&quote(t));
        }
        s
    }

    async fn run(&self, args: &[String], command: &str) -> Result<String, NixError> {
        self.run_with_env(args, &[], command).await
    }

    pub(super) async fn run_with_env(
        &self,
        args: &[String],
        env: &[(String, String)],
        command: &str,
    ) -> Result<String, NixError> {
        let mut cmd = tokio::process::Command::new(&self.program);
        // nix needs none of cairn's credentials (cloud tokens, the state connection).
        for var in crate::util::process::credential_vars() {
            cmd.env_remove(var);
        }
        let mut child = cmd
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| NixError::Spawn {
                program: self.program.display().to_string(),
                source,
            })?;
        let stderr = child.stderr.take().expect("piped");
        let tail = tokio::spawn(stream_nix_stderr(stderr).in_current_span());
        let mut stdout = String::new();
        let read = child.stdout.take().expect("piped").read_to_string(&mut stdout).await;
        let status = child.wait().await;
        let tail = tail.await.unwrap_or_default();
        let io = |source| NixError::Io { command: command.to_owned(), source };
        read.map_err(io)?;
        let status = status.map_err(io)?;
        if !status.success() {
            return Err(NixError::Failed {
                command: command.to_owned(),
                status: status.to_string(),
                stderr_tail: tail,
            });
        }
        Ok(stdout)
    }
}

/// Emits each stderr line as a tracing event and returns the last lines.
pub(super) async fn stream_stderr(stderr: impl AsyncRead + Unpin, source: &'static str) -> String {
    let mut lines = BufReader::new(stderr).lines();
    let mut tail = VecDeque::with_capacity(STDERR_TAIL_LINES);
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!(target: "cairn::nix", source, "{line}");
        if tail.len() == STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    Vec::from(tail).join("\n")
}

/// Reads nix's stderr (internal-json or text) with [`NixLog`], tells what it says with
/// [`tell`], and returns the last lines a person reads: a failed build's error with its
/// log tail.
pub(super) async fn stream_nix_stderr(stderr: impl AsyncRead + Unpin) -> String {
    let mut lines = BufReader::new(stderr).lines();
    let mut log = NixLog::new();
    let mut tail = VecDeque::with_capacity(STDERR_TAIL_LINES);
    while let Ok(Some(line)) = lines.next_line().await {
        for text in log.read(&line).into_iter().filter_map(tell) {
            if tail.len() == STDERR_TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(text);
        }
    }
    Vec::from(tail).join("\n")
}

/// Emits what nix said as tracing events: the lines a person reads as nix's lines always
/// were (`source = "nix"`, warnings at warn level), the rest for the host's log (debug),
/// progress under [`PROGRESS_TARGET`]. Returns a line a person reads.
pub fn tell(said: Said) -> Option<String> {
    match said {
        Said::Line { level, text } => {
            if level == 1 {
                tracing::warn!(target: "cairn::nix", source = "nix", "{text}");
            } else {
                tracing::info!(target: "cairn::nix", source = "nix", "{text}");
            }
            Some(text)
        }
        Said::Detail(text) => {
            tracing::debug!(target: "cairn::nix", source = "nix", "{text}");
            None
        }
        Said::Progress(p) => {
            tracing::info!(
                target: PROGRESS_TARGET,
                built = p.built,
                builds = p.builds,
                running = p.running,
                failed = p.failed,
                fetched = p.fetched,
                fetches = p.fetches,
            );
            None
        }
    }
}

/// `nix build --json`: `[{"drvPath": ..., "outputs": {"out": "/nix/store/..."}}]`.
fn parse_build_output(stdout: &str) -> Result<StorePath, String> {
    #[derive(serde::Deserialize)]
    struct Built {
        outputs: std::collections::BTreeMap<String, String>,
    }
    let built: Vec<Built> = serde_json::from_str(stdout).map_err(|e| format!("{e}"))?;
    let [one] = built.as_slice() else {
        return Err(format!("expected one built derivation, got {}", built.len()));
    };
    let out =
        one.outputs.get("out").ok_or_else(|| "the derivation has no `out` output".to_owned())?;
    StorePath::new(out.clone()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toplevel_installable() {
        let f = FlakeRef { flake: ".".into(), attr: "web1".into() };
        assert_eq!(
            installable_for_toplevel(&f),
            ".#nixosConfigurations.web1.config.system.build.toplevel"
        );
        let f = FlakeRef { flake: "github:org/fleet".into(), attr: "web.1".into() };
        assert_eq!(
            installable_for_toplevel(&f),
            "github:org/fleet#nixosConfigurations.\"web.1\".config.system.build.toplevel"
        );
    }

    #[test]
    fn offline_build_command_line() {
        let nix = Nix::new().offline().option("sandbox", "false");
        insta::assert_snapshot!(nix.build_args(".#x").join(" | "), @"--extra-experimental-features | nix-command flakes | --option | substitute | false | --option | flake-registry |  | --option | sandbox | false | build | --no-link | --json | --log-format | internal-json | .#x");
    }

    #[test]
    fn build_output_of_nix_2_8() {
        let out = r#"[{"drvPath":"/nix/store/q4hqpk0py2hmsa6xsffapfn2z3zp178l-top.drv","outputs":{"out":"/nix/store/wgqb4b5brcyb0y5ggx8yjykdi84rs7xw-top"}}]"#;
        assert_eq!(parse_build_output(out).unwrap().name(), "top");
        assert!(parse_build_output("[]").is_err());
        assert!(parse_build_output(r#"[{"outputs":{"out":"/tmp/x"}}]"#).is_err());
    }

    #[tokio::test]
    async fn a_failing_nix_reports_its_stderr_tail() {
        // `sh` stands in for a nix binary that fails; the runner must keep what it said.
        let nix = Nix::new().program("sh");
        let err = nix
            .run(
                &[
                    "-c".into(),
                    "echo building >&2; echo 'error: attribute missing' >&2; exit 1".into(),
                ],
                "nix build .#x",
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "`nix build .#x` failed (exit status: 1); its last output:\nbuilding\nerror: attribute missing"
        );
    }

    #[tokio::test]
    async fn a_missing_nix_is_a_spawn_error() {
        let nix = Nix::new().program("/nonexistent/nix");
        let err = nix.build(".#x").await.unwrap_err();
        assert!(matches!(err, NixError::Spawn { .. }), "{err}");
    }
}
