//! The validated inventory: what `cairn.hcl` means once parsed and resolved.
//! Past this boundary, names are newtypes and every cross-reference has been checked.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

pub use super::seed::{DiskKey, Seed, SeedFile, SeedSource};
pub use super::timeouts::Timeouts;

pub use crate::download::Checksum;

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

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
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
name_type!(
    /// The name of a ring of hosts that follow one branch (`ring "prod" {}`).
    RingName
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

/// A provider block, its settings typed by provider type.
#[derive(Debug, Clone, Serialize)]
pub struct Provider {
    pub name: ProviderName,
    pub kind: ProviderKind,
    /// The settings of this provider type (`accel`, `endpoint`, `region`...); credentials
    /// inside them are [`Sensitive`].
    pub settings: ProviderSettings,
    /// `installer`, `installer_min_memory` and `copy` for the machines of this provider
    /// (a host's own settings win).
    pub install: InstallSettings,
    /// `timeouts { ... }` for the machines of this provider.
    pub timeouts: Timeouts,
    pub span: SourceSpan,
}

impl Provider {
    pub fn qemu(&self) -> Option<&QemuSettings> {
        match &self.settings {
            ProviderSettings::Qemu(s) => Some(s),
            _ => None,
        }
    }
    pub fn hcloud(&self) -> Option<&HcloudSettings> {
        match &self.settings {
            ProviderSettings::Hcloud(s) => Some(s),
            _ => None,
        }
    }
    pub fn aws(&self) -> Option<&AwsSettings> {
        match &self.settings {
            ProviderSettings::Aws(s) => Some(s),
            _ => None,
        }
    }
}

/// The settings of one provider block, one struct per provider type; each provider
/// implementation reads its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ProviderSettings {
    Qemu(QemuSettings),
    Hcloud(HcloudSettings),
    Aws(AwsSettings),
    Existing(ExistingSettings),
}

impl ProviderSettings {
    pub fn kind(&self) -> ProviderKind {
        match self {
            Self::Qemu(_) => ProviderKind::Qemu,
            Self::Hcloud(_) => ProviderKind::Hcloud,
            Self::Aws(_) => ProviderKind::Aws,
            Self::Existing(_) => ProviderKind::Existing,
        }
    }
    /// The location the provider's machines are ordered in, where the provider has one.
    pub fn location(&self) -> Option<&str> {
        match self {
            Self::Hcloud(s) => s.location.as_deref(),
            _ => None,
        }
    }
}

/// How QEMU runs guests (`accel` of a qemu provider).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QemuAccel {
    /// KVM if a short probe shows it really boots a guest, else TCG.
    #[default]
    Auto,
    Kvm,
    /// Software emulation: slow but works everywhere.
    Tcg,
}

impl QemuAccel {
    pub const ALL: [QemuAccel; 3] = [Self::Auto, Self::Kvm, Self::Tcg];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Kvm => "kvm",
            Self::Tcg => "tcg",
        }
    }
}

/// A VM's resources (qemu): on a host, or as its provider's defaults. Unset: the next level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct VmSettings {
    /// `memory`, in whole MiB (written `"4G"` or a number of MiB).
    pub memory_mib: Option<u64>,
    pub cpus: Option<u32>,
    /// `disk_size`, in whole MiB.
    pub disk_size_mib: Option<u64>,
}

impl VmSettings {
    /// These settings, with `fallback`'s where these leave one unset.
    pub fn or(&self, fallback: &VmSettings) -> VmSettings {
        VmSettings {
            memory_mib: self.memory_mib.or(fallback.memory_mib),
            cpus: self.cpus.or(fallback.cpus),
            disk_size_mib: self.disk_size_mib.or(fallback.disk_size_mib),
        }
    }
}

/// `provider "qemu" "NAME" { ... }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QemuSettings {
    pub accel: QemuAccel,
    /// Where VM files live, relative to the repository root (default `.cairn/qemu`).
    pub cache_dir: Option<String>,
    /// The disk image hosts boot when they name none: a path relative to the repository
    /// root, or a URL.
    pub image: Option<String>,
    /// `image_sha256` / `image_sha512`: what a URL `image` must serve.
    pub image_checksum: Option<Checksum>,
    /// Defaults for the hosts' `memory`, `cpus` and `disk_size`.
    pub vm: VmSettings,
}

/// `provider "hcloud" "NAME" { ... }`. Strings are as written; the provider checks them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HcloudSettings {
    pub token: Option<Sensitive>,
    pub endpoint: Option<String>,
    pub location: Option<String>,
    pub ssh_key_name: Option<String>,
}

/// `provider "aws" "NAME" { ... }`. Strings are as written; the provider checks them and
/// falls back to the environment for unset credentials and region.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AwsSettings {
    pub region: Option<String>,
    pub access_key_id: Option<Setting<String>>,
    pub secret_access_key: Option<Setting<Sensitive>>,
    pub session_token: Option<Sensitive>,
    pub endpoint: Option<String>,
    pub ami: Option<String>,
    pub subnet_id: Option<String>,
    pub key_name: Option<String>,
    pub security_group: Option<String>,
}

/// `provider "existing" "NAME" {}`: nothing beyond the settings every provider takes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExistingSettings {}

/// A value and, when it was written as `env("NAME")`, the variable's name, so messages
/// about a refused credential can say which variable to fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Setting<T> {
    pub value: T,
    #[serde(skip)]
    pub env_var: Option<String>,
}

/// How the copy phase moves the closure (`copy`, on a host or its provider).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum CopyStrategy {
    /// One zstd tar stream over the SSH session; the target needs tar and zstd, no Nix.
    #[default]
    #[serde(rename = "stream")]
    Stream,
    /// `nix copy` over SSH with the pinned host key; the target needs Nix (an installer
    /// that has it, such as the nixos-images kexec installer), and registers the paths itself.
    #[serde(rename = "nix-copy")]
    NixCopy,
}

impl CopyStrategy {
    pub const ALL: [CopyStrategy; 2] = [Self::Stream, Self::NixCopy];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stream => "stream",
            Self::NixCopy => "nix-copy",
        }
    }
}

impl fmt::Display for CopyStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for CopyStrategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("copy = {s:?} is not a copy strategy"))
    }
}

/// How a host is installed. On a host (its own settings, else `defaults`'), the provider's
/// `installer`, `installer_min_memory` and `copy` fill what the host leaves unset; a
/// provider block sets only those three.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InstallSettings {
    /// Path (relative to the repository root) or URL of the kexec installer bundle.
    pub installer: Option<String>,
    /// `installer_sha256` / `installer_sha512`: what a URL `installer` must serve. Always
    /// from the same block as `installer`.
    pub installer_checksum: Option<Checksum>,
    /// The memory the installer needs, in whole MiB.
    pub installer_min_memory: Option<u64>,
    pub copy: Option<CopyStrategy>,
    /// `age_key = true`: a separate age key besides the SSH host key.
    pub age_key: bool,
    /// `disko = true`: partition with the flake's `diskoScript`.
    pub disko: bool,
    /// The `/dev/disk/by-id/...` name the target disk must have.
    pub disk_by_id: Option<String>,
    /// `kexec = false`: the machine already runs a system from RAM (a rescue system), and
    /// cairn installs from it without jumping into its installer; `true`: always jump.
    /// Unset: jump, unless the machine is recognisably a rescue system (see the kexec phase).
    pub kexec: Option<bool>,
}

impl InstallSettings {
    /// These settings, with the provider-level ones of `fallback` where these leave one unset.
    pub fn or(&self, fallback: &InstallSettings) -> InstallSettings {
        // The sum belongs to the `installer` written next to it.
        let (installer, installer_checksum) = match &self.installer {
            Some(_) => (self.installer.clone(), self.installer_checksum.clone()),
            None => (fallback.installer.clone(), fallback.installer_checksum.clone()),
        };
        InstallSettings {
            installer,
            installer_checksum,
            installer_min_memory: self.installer_min_memory.or(fallback.installer_min_memory),
            copy: self.copy.or(fallback.copy),
            ..self.clone()
        }
    }
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
    /// The stock image's login user (cairn's installer and installed systems take root).
    pub user: String,
    /// The stock image's SSH port.
    pub port: u16,
    /// The installer's SSH port, when set; else 22, the port nixos-images' installer
    /// listens on (see [`crate::reach::target`]).
    pub installer_port: Option<u16>,
    /// The installed system's SSH port, when set (the flake's `services.openssh.ports`);
    /// else 22, NixOS's default.
    pub installed_port: Option<u16>,
}

impl Default for SshSettings {
    fn default() -> Self {
        Self { user: "root".into(), port: 22, installer_port: None, installed_port: None }
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
    /// qemu hosts: `image_sha256` / `image_sha512` of the host's own URL `image`.
    pub image_checksum: Option<Checksum>,
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
    /// How the host is installed: its own settings, else the defaults', else its provider's.
    pub install: InstallSettings,
    /// qemu hosts only: `memory`, `cpus`, `disk_size` (unset: the provider's, else qemu's
    /// defaults).
    pub vm: VmSettings,
    /// What the bootstrap seeds besides the host's keys (`extra_files`, `extra_file`,
    /// `disk_encryption_key`).
    pub seed: Seed,
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
    /// `luks_key = "/tmp/secret.key"`: the partition is LUKS2-encrypted with that key file
    /// (on the installer, seeded by `disk_encryption_key`) and its filesystem made inside.
    pub luks_key: Option<String>,
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
    pub age: crate::keys::AgeRecipient,
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
        /// Which state in that database is this fleet's: several fleets can share one
        /// database. `None`: derived from the repository when the state is opened
        /// ([`crate::state::PgState::for_repository`]).
        name: Option<String>,
    },
}

/// `check { skip = [...], nixpkgs_max_age = "90d" }`: how `cairn check` runs here.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckSettings {
    /// Rules never run for this repository.
    pub skip: Vec<crate::check::rule::RuleId>,
    /// How old the locked nixpkgs may be before `flake.inputs` warns.
    pub nixpkgs_max_age: Option<std::time::Duration>,
}

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
    /// `gitops { ... }`: where the hosts pull from (day 2).
    pub gitops: Option<super::rings::Gitops>,
    /// `ring` blocks, in the order they appear in the file.
    pub rings: Vec<super::rings::Ring>,
    /// Values that must not be shown: what `env()` returned and the values of variables
    /// declared `sensitive = true` (see [`crate::util::redact`]).
    #[serde(skip)]
    pub sensitive_values: crate::util::redact::Values,
    pub check: CheckSettings,
}

impl Inventory {
    /// The host named `name` (a scan: for many lookups, use [`Inventory::hosts_by_name`]).
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name.as_str() == name)
    }

    /// Every host by its name, for loops over many hosts (a `host` per host is quadratic).
    pub fn hosts_by_name(&self) -> std::collections::HashMap<&str, &Host> {
        self.hosts.iter().map(|h| (h.name.as_str(), h)).collect()
    }
    pub fn provider_of(&self, host: &Host) -> &Provider {
        // The resolver guarantees every host names an existing provider.
        &self.providers[&host.provider]
    }
}
