//! Command-line types (clap derive). No logic lives here: `commands` resolves these raw
//! flags into validated inputs.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::secrets::Format;

#[derive(Debug, Parser)]
#[command(
    name = "cairn",
    version,
    about = "Bootstrap and provision NixOS fleets from one inventory",
    long_about = "cairn reads the inventory (cairn.hcl) at the root of a Git repository, orders \
the machines it names from their providers, installs NixOS on them from the repository's flake, \
seeds each host's own keys so it can decrypt its sops secrets, and verifies the result.",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Run as if cairn was started in DIR
    #[arg(short = 'C', long = "directory", value_name = "DIR", global = true)]
    pub directory: Option<PathBuf>,
    /// The inventory file [default: cairn.hcl, looked up from the current directory upward]
    #[arg(long, value_name = "FILE", global = true, env = "CAIRN_INVENTORY")]
    pub inventory: Option<PathBuf>,
    /// Set an inventory variable (repeatable); overrides CAIRN_VAR_<name> and defaults
    #[arg(long = "var", value_name = "NAME=VALUE", global = true)]
    pub vars: Vec<String>,
    /// More detail on stderr (repeat for more)
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors on stderr
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// How long to wait for the state lock held by another run before failing with an error
    /// that names the holder (`0s`, `10m`, `1h`) [default: 30s]
    #[arg(long, value_name = "DURATION", global = true, value_parser = parse_duration)]
    pub lock_timeout: Option<std::time::Duration>,
    /// When to use colors (NO_COLOR is respected by `auto`)
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    pub color: ColorChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Scaffold a new fleet repository: cairn.hcl, flake.nix, secrets/, .gitignore
    Init(InitArgs),
    /// List hosts: the inventory joined with what state knows
    Hosts(HostsArgs),
    /// Show what apply and bootstrap would change, per host
    Plan(PlanArgs),
    /// Make the providers match the inventory: create, adopt and delete machines
    Apply(ApplyArgs),
    /// Install NixOS on hosts from their stock image and verify them, end to end
    #[command(long_about = "Install NixOS on hosts and verify them: provision the machine if \
needed, SSH to its stock image (recording its host key), kexec into an in-RAM installer, \
partition the disk, seed the host's own keys, build the flake's system, stream its closure, \
install the boot loader, reboot, and prove the installed host presents the key cairn generated \
and passes its health checks. Each phase is recorded in state: a re-run resumes where the last \
one stopped, and after success only verifies.")]
    Bootstrap(BootstrapArgs),
    /// Delete hosts' machines at their providers and forget them in state
    Destroy(DestroyArgs),
    /// Record a machine that exists at the host's provider as the host's (adopt it)
    Import(ImportArgs),
    /// Open an SSH session to a host (or run one command), pinning the host key cairn recorded
    Ssh(SshArgs),
    /// Check the repository before anything deploys: built-in rules and policies/*.rego
    #[command(long_about = "Check the fleet repository offline: secrets files that are not \
encrypted or whose recipients differ from the inventory, private keys in the files or the \
branch's history, host recipients that are not their host key's, stale hosts, flake.lock \
hygiene, disk names that change between boots, and (with nix installed) the hosts' NixOS \
configurations; then the Rego policies in policies/*.rego. Exit 0: no errors (warnings too \
with --strict); 1: errors; 2: the check could not run.")]
    Check(CheckArgs),
    /// Print a shell completion script
    Completions(CompletionsArgs),
    /// Per host: its ring, the commit comin deployed, whether it converged and is healthy
    Status(StatusArgs),
    /// Move a ring's branch forward, once every gate passes (fast-forward, soak of the ring
    /// before it), then ask its hosts to fetch
    Promote(PromoteArgs),
    /// Revert a ring's branch to the tree of its previous promotion (a new commit: comin
    /// deploys only fast-forwards)
    Rollback(RollbackArgs),
    /// Suspend comin on a ring's hosts (`comin suspend`): they keep what they run
    Hold(HoldArgs),
    /// Resume comin on a ring's hosts (`comin resume`)
    Release(HoldArgs),
    /// Day 2 files: write cairn/fleet.json (what each host's comin pulls) from the rings
    #[command(subcommand)]
    Gitops(GitopsCommand),
    /// Encrypted secrets files (sops-compatible): edit, encrypt, decrypt, rekey, keygen
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Copy a store path's closure to an SSH host exactly as bootstrap's copy phase does
    /// (hidden: for benchmarks/transfer.sh and debugging a transfer)
    #[command(hide = true)]
    CopyClosure(CopyClosureArgs),
}

/// `cairn check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Run only this rule (repeatable), e.g. `secrets.plaintext`, `policies`
    #[arg(long = "rule", value_name = "ID")]
    pub rules: Vec<crate::check::RuleId>,
    /// Do not run this rule (repeatable), in addition to cairn.hcl's `check { skip }`
    #[arg(long = "skip", value_name = "ID")]
    pub skip: Vec<crate::check::RuleId>,
    /// Print `{ "findings": [...], "skipped": [...] }` instead of diagnostics
    #[arg(long)]
    pub json: bool,
    /// Also write the findings as SARIF 2.1.0 to FILE (for code-scanning UIs)
    #[arg(long, value_name = "FILE")]
    pub sarif: Option<PathBuf>,
    /// Fail (exit 1) on warnings too
    #[arg(long)]
    pub strict: bool,
}

/// `cairn copy-closure`: bootstrap's copy phase on its own, against any SSH host.
#[derive(Debug, Args)]
pub struct CopyClosureArgs {
    /// Where to copy: USER@HOST:PORT
    #[arg(long, value_name = "USER@HOST:PORT")]
    pub to: String,
    /// The host's public key (an OpenSSH .pub file): the only key accepted
    #[arg(long, value_name = "FILE")]
    pub host_key: PathBuf,
    /// Private key to log in with
    #[arg(short = 'i', long, value_name = "FILE")]
    pub identity: PathBuf,
    /// The directory on the target holding nix/store
    #[arg(long, default_value = "/mnt", value_name = "DIR")]
    pub root: String,
    /// `stream` (tar + zstd over one SSH channel, then registration) or `nix-copy`
    #[arg(long, default_value = "stream", value_name = "STRATEGY")]
    pub strategy: String,
    /// The store path whose closure is copied (a system's toplevel)
    #[arg(value_name = "STORE_PATH")]
    pub path: String,
}

/// How cairn logs into hosts (as `cairn ssh` does).
#[derive(Debug, Args, Clone)]
pub struct LoginArgs {
    /// Private key file (OpenSSH format) [default: the repository's operator key, then the SSH agent, ~/.ssh/id_ed25519, ~/.ssh/id_rsa]
    #[arg(short = 'i', long, value_name = "FILE", env = "CAIRN_SSH_KEY")]
    pub identity: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "A host is converged when comin deployed its ring branch's head, /run/current-system is that generation and its health checks pass. The exit code is 0 when every host shown converged, 1 otherwise."
)]
pub struct StatusArgs {
    /// Hosts (names, globs, @tags) or rings (@RING); default: every host in a ring
    #[arg(value_name = "HOSTS|@RING")]
    pub selectors: Vec<String>,
    /// Print a JSON array, one object per host
    #[arg(long)]
    pub json: bool,
    /// Probe again every 10 seconds until every host shown converged (or --timeout)
    #[arg(long)]
    pub watch: bool,
    /// How long --watch waits
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = parse_duration)]
    pub timeout: std::time::Duration,
    #[command(flatten)]
    pub login: LoginArgs,
}

#[derive(Debug, Args)]
#[command(after_help = "The ring takes --commit, else what the ring before it runs (its branch \
head, on which its hosts must have converged and soaked), else for a first ring the head of the \
gitops branch. Every gate is reported before anything is pushed; the promotion is recorded as an \
annotated tag cairn/promote/RING/N.")]
pub struct PromoteArgs {
    /// The ring to move forward
    pub ring: String,
    /// Promote this commit instead
    #[arg(long, value_name = "SHA")]
    pub commit: Option<String>,
    /// Push without asking
    #[arg(long)]
    pub yes: bool,
    /// Then follow the ring's hosts until they converge (or --timeout)
    #[arg(long)]
    pub watch: bool,
    /// How long --watch waits
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = parse_duration)]
    pub timeout: std::time::Duration,
    /// Promote even if `cairn check` finds errors concerning the ring's hosts
    #[arg(long)]
    pub skip_check: bool,
    #[command(flatten)]
    pub login: LoginArgs,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The ring to roll back
    pub ring: String,
    /// Return to this commit's tree instead of the previous promotion's
    #[arg(long, value_name = "SHA")]
    pub to: Option<String>,
    /// Push without asking
    #[arg(long)]
    pub yes: bool,
    /// Then follow the ring's hosts until they converge (or --timeout)
    #[arg(long)]
    pub watch: bool,
    /// How long --watch waits
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = parse_duration)]
    pub timeout: std::time::Duration,
    #[command(flatten)]
    pub login: LoginArgs,
}

#[derive(Debug, Args)]
pub struct HoldArgs {
    /// The ring whose hosts to suspend or resume
    pub ring: String,
    #[command(flatten)]
    pub login: LoginArgs,
}

/// `cairn gitops ...`
#[derive(Debug, Subcommand)]
pub enum GitopsCommand {
    /// Write cairn/fleet.json from the inventory's gitops and ring blocks (commit it: the
    /// flake reads it to configure comin)
    Sync(GitopsSyncArgs),
}

#[derive(Debug, Args)]
pub struct GitopsSyncArgs {
    /// Write nothing; exit 1 if cairn/fleet.json is not what the inventory implies
    #[arg(long)]
    pub check: bool,
}

/// `cairn secrets ...`
#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Decrypt a sops file to stdout (or --output)
    Decrypt(SecretsDecryptArgs),
    /// Encrypt a plaintext file for the recipients of its creation rule (or --age)
    Encrypt(SecretsEncryptArgs),
    /// Decrypt into a private temp dir, run $EDITOR, re-encrypt (a new file is created)
    Edit(SecretsEditArgs),
    /// Make secrets files' recipients match their creation rules (sops updatekeys)
    Rekey(SecretsRekeyArgs),
    /// Generate an admin age key (private key file 0600; prints the public key)
    Keygen(SecretsKeygenArgs),
}

/// File format options shared by the secrets commands.
#[derive(Debug, Args, Clone, Default)]
pub struct SecretsFormatArgs {
    /// Read the file as this format instead of guessing from its extension
    #[arg(long, value_name = "FORMAT")]
    pub input_type: Option<Format>,
    /// Write this format instead of the input format
    #[arg(long, value_name = "FORMAT")]
    pub output_type: Option<Format>,
}

#[derive(Debug, Args)]
pub struct SecretsDecryptArgs {
    /// The encrypted file
    pub file: PathBuf,
    /// Write the plaintext to this file (mode 0600) instead of stdout
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Print only this part of the document, e.g. '["db"]["password"]'
    #[arg(long, value_name = "PATH")]
    pub extract: Option<String>,
    /// Decrypt even if the MAC does not match (the file was changed outside sops/cairn)
    #[arg(long)]
    pub ignore_mac: bool,
    #[command(flatten)]
    pub format: SecretsFormatArgs,
}

#[derive(Debug, Args)]
pub struct SecretsEncryptArgs {
    /// The plaintext file
    pub file: PathBuf,
    /// Replace the file with its encrypted form instead of printing it
    #[arg(short, long)]
    pub in_place: bool,
    /// Write the encrypted file here instead of stdout
    #[arg(short, long, value_name = "FILE", conflicts_with = "in_place")]
    pub output: Option<PathBuf>,
    /// Encrypt to these age recipients (comma-separated) instead of the creation rule's
    #[arg(long, value_name = "RECIPIENTS")]
    pub age: Option<String>,
    #[command(flatten)]
    pub format: SecretsFormatArgs,
}

#[derive(Debug, Args)]
pub struct SecretsEditArgs {
    /// The file to edit (created if it does not exist)
    pub file: PathBuf,
    /// Edit even if the MAC does not match
    #[arg(long)]
    pub ignore_mac: bool,
    /// Read the file as this format instead of guessing from its extension
    #[arg(long, value_name = "FORMAT")]
    pub input_type: Option<Format>,
    /// Put the plaintext in the system temp dir (on disk) when no RAM-backed directory
    /// (/dev/shm, $XDG_RUNTIME_DIR) is usable; without it, cairn refuses
    #[arg(long)]
    pub allow_disk_temp: bool,
}

#[derive(Debug, Args)]
pub struct SecretsRekeyArgs {
    /// Files to rekey [default: every sops file under the repository that a creation rule matches]
    pub files: Vec<PathBuf>,
    /// Also replace each file's data key and re-encrypt every value (use after removing a
    /// recipient: the old key can still decrypt copies in git history)
    #[arg(long)]
    pub rotate: bool,
    /// Show what would change without writing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct SecretsKeygenArgs {
    /// Where to write the private key [default: $SOPS_AGE_KEY_FILE, else ~/.config/sops/age/keys.txt]
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Make a hybrid post-quantum key (`AGE-SECRET-KEY-PQ-1...`, public `age1pq1...`: ML-KEM-768
    /// with X25519, as `age-keygen -pq` of age 1.3 does). sops 3.11 and age 1.3 read it; older
    /// age and sops-nix releases may not
    #[arg(long)]
    pub pq: bool,
}

#[derive(Debug, Args)]
pub struct BootstrapArgs {
    /// `host NAME...`, `all`, names, globs (web*) or tags (@prod)
    #[arg(value_name = "HOSTS", required = true)]
    pub hosts: Vec<String>,
    /// Run only these phases, e.g. `kexec,disk` (provision, reach, kexec, disk, keys, build,
    /// copy, install, reboot, verify)
    #[arg(long, value_name = "LIST")]
    pub phases: Option<String>,
    /// How many hosts to bootstrap at once
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub parallel: usize,
    /// The kexec installer bundle (a nixos-images style tarball) for every selected host
    #[arg(long, value_name = "FILE")]
    pub installer: Option<PathBuf>,
    /// Wipe and reinstall a host that looks installed already (it presents its own host
    /// key, or carries cairn's install marker) although state does not record it: without
    /// this, bootstrap refuses such a machine
    #[arg(long)]
    pub reinstall: bool,
    /// A deadline for one wait, or a budget for one phase's remote commands, of every
    /// selected host, over cairn.hcl's `timeouts`. Waits: `reach` (SSH answers), `kexec` (the
    /// installer answers), `reboot` (the installed system answers), `verify` (health checks
    /// pass); budgets (each remote command of the phase): `disk`, `copy`, `install`,
    /// `command` (every other); e.g. `--timeout kexec=10m`. Repeatable [defaults: reach=5m,
    /// kexec=5m, reboot=10m, verify=5m, disk=10m, copy=10m + 1m per 100 MiB of closure,
    /// install=20m, command=2m]
    #[arg(long = "timeout", value_name = "NAME=DURATION", value_parser = parse_timeout)]
    pub timeouts: Vec<(crate::inventory::Limit, std::time::Duration)>,
    /// Bootstrap even if `cairn check` finds errors concerning the selected hosts
    #[arg(long)]
    pub skip_check: bool,
    /// Erase the machines without asking: before the kexec phase (which leads to the disk
    /// wipe) cairn otherwise asks on the terminal, and without one it refuses
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// The fingerprint (`SHA256:...`, as `ssh-keygen -l` prints it) of the host key a machine
    /// without a pinned key (an `existing` one) presents on first contact; without it cairn
    /// shows the fingerprint and asks on the terminal, and refuses without one
    #[arg(long, value_name = "SHA256:...")]
    pub trust_host_key: Option<String>,
    /// Write the run's events to stdout as JSON, one object per line (phases, transfers, a
    /// final summary; see docs/json-events.md); the human output goes to stderr
    #[arg(long)]
    pub json: bool,
    /// Commit the re-keyed secrets files, .sops.yaml and the hosts' key files afterwards
    /// (only those), so the hosts' agent can pull them once pushed
    #[arg(long)]
    pub commit: bool,
    /// Show each phase's time for every host at the end (always shown for one host)
    #[arg(long)]
    pub timings: bool,
}

impl Command {
    /// Whether the run streams JSON events on stdout (`--json` of bootstrap, apply, destroy).
    pub fn json_events(&self) -> bool {
        match self {
            Command::Bootstrap(a) => a.json,
            Command::Apply(a) => a.json,
            Command::Destroy(a) => a.json,
            _ => false,
        }
    }
}

impl BootstrapArgs {
    /// `host web1` and `web1` mean the same; `all` means every host.
    pub fn selectors(&self) -> Vec<String> {
        selectors_from_words(&self.hosts)
    }
}

/// Reads `host NAME...`, `all` or plain selectors as host selectors (none = all hosts).
pub fn selectors_from_words(words: &[String]) -> Vec<String> {
    let words: Vec<String> = match words.first().map(String::as_str) {
        Some("host" | "hosts") => words[1..].to_vec(),
        _ => words.to_vec(),
    };
    if words.len() == 1 && words[0] == "all" {
        Vec::new()
    } else {
        words
    }
}

#[derive(Debug, Args)]
#[command(
    after_help = "Without a plan file, apply plans first (asking the providers), shows the plan \
and asks for confirmation. A plan file made with `cairn plan --out FILE` is applied as it is, \
unless the inventory or state changed since it was made. Apply only orders, adopts and deletes \
machines: `cairn bootstrap` installs them (and records the stock image's host key on first \
contact)."
)]
pub struct ApplyArgs {
    /// A plan file from `cairn plan --out FILE`, or hosts: names, globs (web*) or tags (@prod)
    /// [default: all hosts]
    #[arg(value_name = "PLAN|HOSTS")]
    pub targets: Vec<String>,
    /// Do not ask for confirmation
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Allow these hosts' machines to be destroyed and created anew where the inventory asks
    /// for what cannot change in place (their disks are lost)
    #[arg(long, value_name = "HOSTS", value_delimiter = ',')]
    pub replace: Vec<String>,
    /// How many hosts to act on at once
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub parallel: usize,
    /// Write the run's events to stdout as JSON, one object per line (phases, transfers, a
    /// final summary; see docs/json-events.md); the human output goes to stderr
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// `host NAME...`, names, globs or tags (`all` must be said explicitly)
    #[arg(value_name = "HOSTS", required = true)]
    pub hosts: Vec<String>,
    /// Do not ask for confirmation
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// How many hosts to act on at once
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub parallel: usize,
    /// Write the run's events to stdout as JSON, one object per line (phases, transfers, a
    /// final summary; see docs/json-events.md); the human output goes to stderr
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The host in cairn.hcl the machine is for
    pub host: String,
    /// The machine's id at the host's provider (hcloud: the server's number)
    pub id: String,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to create the repository
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}

/// Host selectors: names, globs (`web*`) and tags (`@prod`). None means all hosts.
#[derive(Debug, Args, Clone, Default)]
pub struct HostSelectors {
    /// Hosts to act on: names, globs (web*) or tags (@prod) [default: all]
    #[arg(value_name = "HOSTS")]
    pub selectors: Vec<String>,
}

#[derive(Debug, Args)]
pub struct HostsArgs {
    #[command(flatten)]
    pub hosts: HostSelectors,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub hosts: HostSelectors,
    /// Exit 0 when there is nothing to do, 2 when there are changes, 1 on error
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Print the plan as JSON
    #[arg(long)]
    pub json: bool,
    /// Ask the providers what they have (`--refresh=false`: compare with state only)
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub refresh: bool,
    /// Save the plan to FILE for `cairn apply FILE` (also `-out FILE`)
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Plan to rebuild these hosts where the inventory asks for what cannot change in place
    #[arg(long, value_name = "HOSTS", value_delimiter = ',')]
    pub replace: Vec<String>,
    /// How many hosts to look up at once
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub parallel: usize,
}

#[derive(Debug, Args)]
#[command(after_help = "The exit code is the remote command's (128 + n when a signal ended it). \
cairn never trusts a host key it has not recorded: bootstrap the host first.")]
pub struct SshArgs {
    /// The host, by its inventory name
    pub host: String,
    /// Private key file (OpenSSH format) [default: the SSH agent, then ~/.ssh/id_ed25519, ~/.ssh/id_rsa]
    #[arg(short = 'i', long, value_name = "FILE", env = "CAIRN_SSH_KEY")]
    pub identity: Option<PathBuf>,
    /// Log in as this user instead of the inventory's `ssh.user`
    #[arg(short = 'l', long, value_name = "USER")]
    pub user: Option<String>,
    /// Pin the host key recorded for this phase [default: the newest recorded]
    #[arg(long, value_enum)]
    pub phase: Option<KeyPhaseArg>,
    /// Allocate a pseudo-terminal even for a command
    #[arg(short = 't', conflicts_with = "no_tty")]
    pub tty: bool,
    /// Never allocate a pseudo-terminal
    #[arg(short = 'T')]
    pub no_tty: bool,
    /// Run this instead of a login shell; its words are joined by spaces for the remote
    /// shell, as ssh does
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// A phase of a host's life whose host key cairn records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyPhaseArg {
    /// The provider's stock image
    Stock,
    /// The kexec installer
    Installer,
    /// The installed NixOS system
    Installed,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to generate completions for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// The process's arguments with OpenTofu's single-dash `-out FILE` / `-out=FILE` read as
/// `--out` (clap would take `-out` for `-o ut`).
pub fn normalize_args(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Vec<std::ffi::OsString> {
    args.into_iter()
        .map(|a| match a.to_str() {
            Some("-out") => "--out".into(),
            Some(s) if s.starts_with("-out=") => format!("-{s}").into(),
            _ => a,
        })
        .collect()
}

/// `90`, `90s`, `10m`, `1h`, `1h30m`.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    // `0`: do not wait at all.
    if s.trim().trim_end_matches('s') == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    crate::util::duration::parse(s, true).map_err(|e| e.0)
}

/// `kexec=10m`.
fn parse_timeout(s: &str) -> Result<(crate::inventory::Limit, std::time::Duration), String> {
    let (name, duration) =
        s.split_once('=').ok_or_else(|| format!("`{s}`: write NAME=DURATION, e.g. `kexec=10m`"))?;
    let limit = name.trim().parse()?;
    let duration = crate::util::duration::parse(duration, false).map_err(|e| e.0)?;
    Ok((limit, duration))
}
