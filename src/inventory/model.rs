//! The validated inventory: what `cairn.hcl` means once parsed and resolved.
//! Past this boundary, names are newtypes and every cross-reference has been checked.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// A position in an inventory file, for diagnostics that point back at the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceSpan {
    pub file: PathBuf,
    /// Byte offset and length inside the file.
    pub offset: usize,
    pub len: usize,
    /// 1-based line and column of `offset`.
    pub line: usize,
    pub column: usize,
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Accepts names made of ASCII letters, digits, `-` and `_`, starting with a
            /// letter or digit (they become file names, DNS labels and HCL labels).
            pub fn new(s: impl Into<String>) -> Result<Self, InvalidName> {
                let s = s.into();
                if is_valid_name(&s) {
                    Ok(Self(s))
                } else {
                    Err(InvalidName { kind: stringify!($name), value: s })
                }
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

name_type!(
    /// The name of a host, unique in the inventory (`host "web1" {}`).
    HostName
);
name_type!(
    /// The name of a provider block (`provider "qemu" "local" {}` is named `local`).
    ProviderName
);
name_type!(
    /// The name of a disk layout block.
    DiskLayoutName
);
name_type!(
    /// A tag, selected on the command line as `@tag`.
    Tag
);
name_type!(
    /// The name of an admin (a person holding an age key).
    AdminName
);

fn is_valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && s.len() <= 63
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a valid {kind}: use letters, digits, `-` and `_` (at most 63), starting with a letter or digit")]
pub struct InvalidName {
    pub kind: &'static str,
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Qemu,
    Hcloud,
    Aws,
    Existing,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 4] = [Self::Qemu, Self::Hcloud, Self::Aws, Self::Existing];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Qemu => "qemu",
            Self::Hcloud => "hcloud",
            Self::Aws => "aws",
            Self::Existing => "existing",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value from the inventory that may be secret (a token); never printed in full.
#[derive(Clone, PartialEq, Eq)]
pub struct Sensitive(pub String);

impl fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Sensitive {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

/// A provider block. Settings are kept as evaluated attributes; each provider
/// implementation validates its own (unknown keys were already rejected by the resolver).
#[derive(Debug, Clone, Serialize)]
pub struct Provider {
    pub name: ProviderName,
    pub kind: ProviderKind,
    /// Evaluated attributes other than secrets (`endpoint`, `accel`, `cache_dir`, `location`...);
    /// qemu's `memory` and `disk_size` are whole MiB, as for hosts.
    pub settings: BTreeMap<String, serde_json::Value>,
    /// Attributes that hold credentials (`token`, `secret_access_key`...).
    pub secrets: BTreeMap<String, Sensitive>,
    /// `timeouts { ... }` for the machines of this provider.
    pub timeouts: Timeouts,
    /// For attributes written as `env("NAME")`: the variable's name, so messages about a
    /// refused credential can say which variable to fix.
    pub env_sources: BTreeMap<String, String>,
    pub span: SourceSpan,
}

/// A flake reference plus attribute, as in `.#web1` or `github:org/fleet#web1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlakeRef {
    /// The flake (`.` or a URL); relative paths are relative to the inventory's directory.
    pub flake: String,
    /// The `nixosConfigurations` attribute.
    pub attr: String,
}

impl fmt::Display for FlakeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.flake, self.attr)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SshSettings {
    pub user: String,
    pub port: u16,
}

impl Default for SshSettings {
    fn default() -> Self {
        Self { user: "root".into(), port: 22 }
    }
}

/// A wait of the bootstrap pipeline that has a deadline, set in `timeouts { ... }` blocks and
/// with `--timeout WAIT=DURATION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Wait {
    /// For the machine (stock image or installer) to answer SSH.
    Reach,
    /// From `kexec/run` to the installer answering SSH.
    Kexec,
    /// From `reboot` to the installed system answering SSH with its own key.
    Reboot,
    /// For the installed system's health checks to pass.
    Verify,
}

impl Wait {
    pub const ALL: [Wait; 4] = [Wait::Reach, Wait::Kexec, Wait::Reboot, Wait::Verify];
    pub fn as_str(self) -> &'static str {
        match self {
            Wait::Reach => "reach",
            Wait::Kexec => "kexec",
            Wait::Reboot => "reboot",
            Wait::Verify => "verify",
        }
    }
}

impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Wait {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Wait::ALL.into_iter().find(|w| w.as_str() == s).ok_or_else(|| {
            format!(
                "`{s}` is not a wait with a deadline; the waits are {}",
                Wait::ALL.map(Wait::as_str).join(", ")
            )
        })
    }
}

/// Deadlines from `timeouts { reach = "5m" ... }`; a wait not listed uses the next level
/// (host, then its provider, then `defaults`, then cairn's default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Timeouts(pub BTreeMap<Wait, std::time::Duration>);

impl Timeouts {
    pub fn get(&self, wait: Wait) -> Option<std::time::Duration> {
        self.0.get(&wait).copied()
    }
    /// These timeouts, with `fallback`'s for the waits these leave unset.
    pub fn or(&self, fallback: &Timeouts) -> Timeouts {
        let mut merged = fallback.0.clone();
        merged.extend(self.0.iter().map(|(k, v)| (*k, *v)));
        Timeouts(merged)
    }
}

/// A health check run on the installed host during verify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HealthCheck {
    /// `systemctl is-active UNIT` must print `active`.
    SystemdUnit { unit: String },
    /// A shell command that must exit 0.
    Command { command: String },
    /// A file that must exist (e.g. a decrypted secret under /run/secrets).
    FileExists { path: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct Host {
    pub name: HostName,
    pub provider: ProviderName,
    pub flake: Option<FlakeRef>,
    /// Provider-specific machine size (`server_type` for hcloud, `instance_type` for aws).
    pub size: Option<String>,
    pub image: Option<String>,
    pub location: Option<String>,
    pub tags: Vec<Tag>,
    pub disk_layout: Option<DiskLayoutName>,
    /// Globs of secrets files this host may read, in addition to `secrets` blocks naming it.
    pub secrets: Vec<String>,
    pub ssh: SshSettings,
    /// For `existing` machines: the address to reach.
    pub address: Option<String>,
    pub health_checks: Vec<HealthCheck>,
    /// Deadlines of the bootstrap waits: the host's own, else its provider's, else the
    /// defaults' (unset: cairn's defaults).
    pub timeouts: Timeouts,
    /// Provider-specific per-host attributes: `memory` and `disk_size` (whole MiB, from
    /// `"4G"`-style sizes), `cpus` (a number) for qemu; `installer` (path or URL of a kexec
    /// bundle overriding the default).
    pub extra: BTreeMap<String, serde_json::Value>,
    pub span: SourceSpan,
}

impl Host {
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t.as_str() == tag)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PartitionKind {
    /// EFI system partition (vfat, mounted at /boot).
    Esp,
    /// A 1 MiB BIOS boot partition for GRUB on GPT with legacy boot.
    BiosBoot,
    /// A boot partition (vfat by default, mounted at /boot) with the GPT "legacy BIOS
    /// bootable" attribute, which syslinux's `gptmbr.bin` boots: extlinux on legacy BIOS.
    LegacyBoot,
    /// A Linux filesystem (root or data).
    Filesystem,
    Swap,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Filesystem {
    Ext4,
    Btrfs,
    Xfs,
    Vfat,
}

/// A partition size: a fixed number of MiB, or the rest of the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PartitionSize {
    Mib(u64),
    Rest,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Partition {
    pub name: String,
    pub kind: PartitionKind,
    pub size: PartitionSize,
    pub filesystem: Option<Filesystem>,
    pub label: Option<String>,
    pub mountpoint: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DiskLayout {
    pub name: DiskLayoutName,
    /// The target device (`/dev/vda`, `/dev/disk/by-id/...`).
    pub device: String,
    pub partitions: Vec<Partition>,
    pub span: SourceSpan,
}

#[derive(Debug, Clone, Serialize)]
pub struct Admin {
    pub name: AdminName,
    /// An age recipient (`age1...`) or an SSH public key line.
    pub age: String,
    pub span: SourceSpan,
}

/// `secrets "<glob>" { hosts = [...], tags = [...] }`: who may read which secrets files.
#[derive(Debug, Clone, Serialize)]
pub struct SecretsRule {
    /// A glob relative to the repository root (`secrets/web/*.yaml`).
    pub glob: String,
    pub hosts: Vec<HostName>,
    pub tags: Vec<Tag>,
    pub span: SourceSpan,
}

/// Where state lives (`state { backend = "file" }` by default).
#[derive(Debug, Clone, Serialize, Default)]
#[serde(tag = "backend", rename_all = "lowercase")]
pub enum StateBackend {
    #[default]
    File,
    Pg {
        /// A libpq connection string (`host=... dbname=...` or `postgresql://...`).
        conn: Sensitive,
        /// Which state in that database is this fleet's (`name`, default
        /// [`DEFAULT_STATE_NAME`]): several fleets can share one database.
        name: String,
    },
}

/// The `name` of a `pg` state when the `state` block gives none.
pub const DEFAULT_STATE_NAME: &str = "default";

/// The whole validated inventory.
#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    /// The inventory file (`.../cairn.hcl`).
    pub path: PathBuf,
    /// The directory holding it: the repository root for relative paths.
    pub root: PathBuf,
    pub providers: BTreeMap<ProviderName, Provider>,
    /// Hosts in the order they appear in the file.
    pub hosts: Vec<Host>,
    pub disk_layouts: BTreeMap<DiskLayoutName, DiskLayout>,
    pub admins: Vec<Admin>,
    pub secrets: Vec<SecretsRule>,
    pub state: StateBackend,
}

impl Inventory {
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name.as_str() == name)
    }
    pub fn provider_of(&self, host: &Host) -> &Provider {
        // The resolver guarantees every host names an existing provider.
        &self.providers[&host.provider]
    }
}
