//! Local virtual machines under QEMU: cairn's built-in default for trying it out, for tests,
//! and for users' own test fleets.
//!
//! `provider "qemu" "local" { accel = "auto", memory = 1024, cpus = 1, disk_size = "8G" }`.
//! Each host gets a directory `.cairn/qemu/<host>/` holding a qcow2 overlay on the base
//! image, a NoCloud seed (vfat labelled `cidata`) carrying the operator's SSH key, a pidfile,
//! a QMP socket for power control and the serial console log. SSH is forwarded from a free
//! port on 127.0.0.1 (user-mode networking: no root, no bridge).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::{CreateRequest, Machine, MachineStatus, PowerAction, Provider, ProviderError};
use crate::download::{self, Source};
use crate::inventory::{self, Host, ProviderKind};
use crate::state::HostState;
use crate::util::process;

pub use crate::inventory::QemuAccel as Accel;

/// Per-VM resources, from the host, then the provider block, then these defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmShape {
    pub memory_mib: u64,
    pub cpus: u32,
    pub disk_size_mib: u64,
}

const DEFAULT_MEMORY_MIB: u64 = 1024;
const DEFAULT_DISK_MIB: u64 = 8 * 1024;
/// How long a KVM guest may stay silent on its serial console before `auto` gives up on KVM.
const KVM_PROOF_SECONDS: u64 = 15;

pub struct QemuProvider {
    name: String,
    /// `.cairn/qemu` under the repository root.
    vms_dir: PathBuf,
    /// Relative image paths are relative to the repository root.
    root: PathBuf,
    accel: Accel,
    /// What `auto` turned out to mean on this machine, once known. Held across the first
    /// KVM trial, so concurrent starts wait for it and the fallback is logged once.
    resolved_accel: tokio::sync::Mutex<Option<Accel>>,
    /// The provider block's defaults for its hosts' `image` (with its pinned sum), `memory`,
    /// `cpus`, `disk_size`.
    image: Option<String>,
    image_checksum: Option<inventory::Checksum>,
    vm: inventory::VmSettings,
    qemu: PathBuf,
}

impl QemuProvider {
    pub fn new(
        inv: &inventory::Inventory,
        provider: &inventory::Provider,
    ) -> Result<Self, ProviderError> {
        let settings = provider.qemu().ok_or_else(|| ProviderError::Invalid {
            host: provider.name.to_string(),
            message: format!(
                "provider `{}` is a {} provider, not qemu",
                provider.name, provider.kind
            ),
            help: "name a `provider \"qemu\"` block".into(),
        })?;
        let vms_dir = match &settings.cache_dir {
            Some(d) => inv.root.join(d),
            None => crate::repo::Repo::new(&inv.root).qemu_dir(),
        };
        Ok(Self {
            name: provider.name.to_string(),
            vms_dir,
            root: inv.root.clone(),
            accel: settings.accel,
            resolved_accel: tokio::sync::Mutex::new(None),
            image: settings.image.clone(),
            image_checksum: settings.image_checksum.clone(),
            vm: settings.vm,
            qemu: PathBuf::from(
                std::env::var_os("CAIRN_QEMU").unwrap_or_else(|| "qemu-system-x86_64".into()),
            ),
        })
    }

    /// The directory holding one host's VM files.
    pub fn vm_dir(&self, host: &Host) -> PathBuf {
        self.vms_dir.join(host.name.as_str())
    }

    /// Memory, CPUs and disk size for `host`.
    pub fn shape(&self, host: &Host) -> VmShape {
        let vm = host.vm.or(&self.vm);
        VmShape {
            memory_mib: vm.memory_mib.unwrap_or(DEFAULT_MEMORY_MIB),
            cpus: vm.cpus.unwrap_or(1),
            disk_size_mib: vm.disk_size_mib.unwrap_or(DEFAULT_DISK_MIB),
        }
    }

    /// The base image setting: the host's `image` with the host's `image_sha256` /
    /// `image_sha512`, else the provider's, with the provider's.
    fn image_source(&self, host: &Host) -> Result<Option<Source>, ProviderError> {
        let (value, checksum) = match (&host.image, &self.image) {
            (Some(image), _) => (image, host.image_checksum.as_ref()),
            (None, Some(image)) => (image, self.image_checksum.as_ref()),
            (None, None) => return Ok(None),
        };
        Source::from_setting("image", value, checksum, &self.root).map(Some).map_err(|e| {
            ProviderError::Invalid {
                host: host.name.to_string(),
                message: e.to_string(),
                help: e.help(),
            }
        })
    }

    /// Starts the VM. With `accel = "auto"` the first start on this machine is a KVM trial:
    /// QEMU must start, keep running, and the guest must print on its console within
    /// [`KVM_PROOF_SECONDS`]; on any failure the VM is started under TCG instead and every
    /// later start of this run uses TCG too. (On some hosts /dev/kvm opens and the firmware
    /// runs, yet QEMU aborts on an MSR with `-cpu host`, or the guest never gets going.)
    async fn launch(
        &self,
        host: &Host,
        dir: &Path,
        shape: &VmShape,
    ) -> Result<(u32, u16), ProviderError> {
        let mut resolved = self.resolved_accel.lock().await;
        let accel = match (*resolved, self.accel) {
            (Some(accel), _) => accel,
            (None, Accel::Auto) => {
                let evidence = self.kvm_trial(host, dir, shape).await?;
                let accel = match decide_accel(Accel::Auto, &evidence) {
                    AccelStep::Use(accel) => accel,
                    AccelStep::FallBack { reason } => {
                        tracing::warn!(
                            "KVM does not work here ({reason}); using software emulation (TCG). \
                             Set accel = \"tcg\" on provider \"{}\" to skip the KVM trial.",
                            self.name
                        );
                        Accel::Tcg
                    }
                };
                *resolved = Some(accel);
                if let Some(started) = evidence.started() {
                    return Ok(started);
                }
                accel
            }
            (None, other) => other,
        };
        drop(resolved);
        self.launch_with(host, dir, shape, accel).await
    }

    /// Starts the VM under KVM and watches it: it must keep running and print on its
    /// console. A VM that failed the trial is stopped again.
    async fn kvm_trial(
        &self,
        host: &Host,
        dir: &Path,
        shape: &VmShape,
    ) -> Result<KvmEvidence, ProviderError> {
        if !Path::new("/dev/kvm").exists() {
            return Ok(KvmEvidence::NoDevice);
        }
        if !probe_kvm(&self.qemu).await {
            return Ok(KvmEvidence::ProbeFailed);
        }
        let console = dir.join("console.log");
        let (pid, port) = match self.launch_with(host, dir, shape, Accel::Kvm).await {
            Ok(started) => started,
            Err(ProviderError::CommandFailed { stderr_tail, .. }) => {
                return Ok(KvmEvidence::StartFailed { stderr: stderr_tail });
            }
            Err(e) => return Err(e),
        };
        let polls = KVM_PROOF_SECONDS * 4;
        for _ in 0..polls {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if fs_err::metadata(&console).is_ok_and(|m| m.len() > 0) {
                return Ok(KvmEvidence::GuestPrinted { pid, port });
            }
            if !owns_vm(pid, dir) {
                let _ = fs_err::remove_file(&console);
                return Ok(KvmEvidence::Exited);
            }
        }
        process::terminate(pid, Duration::from_secs(5))
            .await
            .map_err(|e| cmd_err(host, "stopping QEMU", e))?;
        let _ = fs_err::remove_file(&console);
        Ok(KvmEvidence::Silent { seconds: KVM_PROOF_SECONDS })
    }

    /// Starts QEMU daemonized on the VM's files, on a free loopback port; returns (pid, port).
    async fn launch_with(
        &self,
        host: &Host,
        dir: &Path,
        shape: &VmShape,
        accel: Accel,
    ) -> Result<(u32, u16), ProviderError> {
        let mut last_err = String::new();
        for _ in 0..5 {
            let port =
                free_port().map_err(|e| cmd_err(host, "finding a free port on 127.0.0.1", e))?;
            let pidfile = dir.join("qemu.pid");
            let _ = fs_err::remove_file(&pidfile);
            let args = qemu_args(host, dir, shape, accel, port);
            tracing::debug!(host = %host.name, accel = accel.as_str(), port, "starting QEMU");
            let out = tokio::process::Command::new(&self.qemu)
                .args(&args)
                .stdin(Stdio::null())
                .output()
                .await
                .map_err(|e| ProviderError::Command {
                    host: host.name.to_string(),
                    what: format!("starting {}", self.qemu.display()),
                    help:
                        "install QEMU (Debian: apt-get install qemu-system-x86) or set CAIRN_QEMU"
                            .into(),
                    source: e,
                })?;
            if out.status.success() {
                let pid = read_pid(&pidfile).ok_or_else(|| ProviderError::Invalid {
                    host: host.name.to_string(),
                    message: format!("QEMU started but wrote no pid to {}", pidfile.display()),
                    help: "see the serial log in the VM directory".into(),
                })?;
                return Ok((pid, port));
            }
            last_err = String::from_utf8_lossy(&out.stderr).trim().to_string();
            // Another process took the port between our probe and QEMU's bind: try another.
            if !last_err.contains("hostfwd")
                && !last_err.contains("Could not set up host forwarding")
            {
                break;
            }
        }
        Err(ProviderError::CommandFailed {
            host: host.name.to_string(),
            program: self.qemu.display().to_string(),
            status: "failure".into(),
            stderr_tail: tail(&last_err, 800),
            help: "check the QEMU error above; `accel = \"tcg\"` avoids KVM problems".into(),
        })
    }

    fn machine(
        &self,
        host: &Host,
        dir: &Path,
        pid: Option<u32>,
        port: u16,
        shape: &VmShape,
    ) -> Machine {
        let running = pid.is_some_and(|p| owns_vm(p, dir));
        let mut provider_data = BTreeMap::new();
        provider_data.insert("dir".into(), dir.display().to_string().into());
        provider_data.insert("ssh_port".into(), port.into());
        if let Some(pid) = pid.filter(|_| running) {
            provider_data.insert("pid".into(), pid.into());
        }
        let mut attributes = BTreeMap::new();
        attributes.insert("memory".into(), format!("{} MiB", shape.memory_mib));
        attributes.insert("cpus".into(), shape.cpus.to_string());
        attributes.insert("status".into(), if running { "running" } else { "stopped" }.into());
        Machine {
            id: format!("qemu:{}", host.name),
            status: if running { MachineStatus::Running } else { MachineStatus::Stopped },
            ssh_address: "127.0.0.1".into(),
            ssh_port: port,
            network: Default::default(),
            attributes,
            provider_data,
        }
    }

    /// The base image: the host's or provider's `image` (downloaded into the cache and
    /// checked against its pinned sum when it is a URL), else the stock image built by
    /// cairn's VM recipe (see vm-tests/), found through `CAIRN_STOCK_IMAGE`.
    /// Stops the VM's QEMU (if it runs and is the VM's) and removes its directory, only if
    /// this provider made it for this host: never whatever else sits at <cache_dir>/<host>.
    async fn remove_vm(&self, host: &Host, dir: &Path) -> Result<(), ProviderError> {
        if let Some(pid) = read_pid(&dir.join("qemu.pid")).filter(|p| owns_vm(*p, dir)) {
            process::terminate(pid, Duration::from_secs(5))
                .await
                .map_err(|e| cmd_err(host, "stopping QEMU", e))?;
        }
        if dir.exists() {
            check_made_by_cairn(host, dir)?;
            fs_err::remove_dir_all(dir)
                .map_err(|e| cmd_err(host, "removing the VM directory", e))?;
        }
        Ok(())
    }

    async fn base_image(&self, host: &Host) -> Result<PathBuf, ProviderError> {
        let source = self
            .image_source(host)?
            .or_else(|| std::env::var_os("CAIRN_STOCK_IMAGE").map(|p| Source::Local(p.into())))
            .ok_or_else(|| ProviderError::Invalid {
                host: host.name.to_string(),
                message: "no base image for this VM".into(),
                help: "set `image` on the host or the qemu provider to a Debian/Ubuntu cloud \
                       image: a local file, or a URL with its published checksum, e.g. \
                       `image = \"https://cloud.debian.org/images/cloud/trixie/<serial>/debian-13-genericcloud-amd64-<serial>.qcow2\"` \
                       and `image_sha512 = \"<its line in SHA512SUMS there>\"`; or build cairn's \
                       stock image with vm-tests/build-images and set CAIRN_STOCK_IMAGE"
                    .into(),
            })?;
        let image = match &source {
            Source::Local(path) => path.clone(),
            Source::Url(_) => {
                let download =
                    |source| ProviderError::Download { host: host.name.to_string(), source };
                let cache = download::cache_dir().map_err(download)?;
                download::resolve(&source, &cache).await.map_err(download)?
            }
        };
        if !image.is_file() {
            return Err(ProviderError::Invalid {
                host: host.name.to_string(),
                message: format!("the base image {} does not exist", image.display()),
                help: "check the `image` path (relative paths are relative to cairn.hcl)".into(),
            });
        }
        std::path::absolute(&image).map_err(|e| cmd_err(host, "resolving the image path", e))
    }
}

#[async_trait::async_trait]
impl Provider for QemuProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Qemu
    }

    fn console_hint(&self, host: &Host) -> String {
        format!(
            "the VM's serial console log may say why: {}",
            self.vm_dir(host).join("console.log").display()
        )
    }

    async fn lookup(
        &self,
        host: &Host,
        state: Option<&HostState>,
    ) -> Result<Option<Machine>, ProviderError> {
        let dir = self.vm_dir(host);
        if !dir.join("disk.qcow2").exists() {
            return Ok(None);
        }
        check_made_by_cairn(host, &dir)?;
        // `create` writes the SSH port last: without it, a run was killed while making this
        // VM (no seed yet, or QEMU not started). Nothing was recorded of it: start over.
        if !dir.join(SSH_PORT_FILE).exists() {
            tracing::warn!(host = %host.name, dir = %dir.display(), "removing a VM an interrupted run left half made");
            self.remove_vm(host, &dir).await?;
            return Ok(None);
        }
        let shape = self.shape(host);
        let pid = read_pid(&dir.join("qemu.pid"));
        let port = state
            .and_then(|s| s.provider_data.get("ssh_port"))
            .and_then(|v| v.as_u64())
            .and_then(|p| u16::try_from(p).ok())
            .or_else(|| read_port(&dir))
            .unwrap_or(0);
        Ok(Some(self.machine(host, &dir, pid, port, &shape)))
    }

    async fn create(&self, host: &Host, req: &CreateRequest) -> Result<Machine, ProviderError> {
        let shape = self.shape(host);
        let base = self.base_image(host).await?;
        let dir = self.vm_dir(host);
        let empty = fs_err::read_dir(&dir).map(|mut d| d.next().is_none()).unwrap_or(true);
        if !empty {
            check_made_by_cairn(host, &dir)?;
        }
        crate::repo::create_private_dir(&dir)
            .map_err(|e| cmd_err(host, "creating the VM directory", e))?;
        fs_err::write(dir.join(VM_MARKER), host.name.as_str())
            .map_err(|e| cmd_err(host, "marking the VM directory as cairn's", e))?;
        let dir = std::path::absolute(&dir)
            .map_err(|e| cmd_err(host, "resolving the VM directory", e))?;

        let format = image_format(host, &base).await?;
        run(
            host,
            "qemu-img",
            &[
                "create".into(),
                "-q".into(),
                "-f".into(),
                "qcow2".into(),
                "-F".into(),
                format,
                "-b".into(),
                base.display().to_string(),
                dir.join("disk.qcow2").display().to_string(),
                format!("{}M", shape.disk_size_mib),
            ],
        )
        .await?;
        write_seed(host, &dir, req).await?;
        let (pid, port) = self.launch(host, &dir, &shape).await?;
        // Last: its presence says the VM was made whole (see `lookup`).
        fs_err::write(dir.join(SSH_PORT_FILE), port.to_string())
            .map_err(|e| cmd_err(host, "recording the SSH port", e))?;
        tracing::info!(host = %host.name, provider = %self.name, pid, port, "VM started");
        Ok(self.machine(host, &dir, Some(pid), port, &shape))
    }

    async fn destroy(&self, host: &Host, _machine: &Machine) -> Result<(), ProviderError> {
        let dir = self.vm_dir(host);
        self.remove_vm(host, &dir).await?;
        tracing::info!(host = %host.name, "VM destroyed");
        Ok(())
    }

    async fn power(
        &self,
        host: &Host,
        machine: &Machine,
        action: PowerAction,
    ) -> Result<(), ProviderError> {
        let dir = self.vm_dir(host);
        let pid = read_pid(&dir.join("qemu.pid")).filter(|p| owns_vm(*p, &dir));
        match (action, pid) {
            (PowerAction::On, Some(_)) => Ok(()),
            (PowerAction::On, None) => {
                let shape = self.shape(host);
                let (_, port) = self.launch(host, &dir, &shape).await?;
                if port != machine.ssh_port {
                    fs_err::write(dir.join(SSH_PORT_FILE), port.to_string())
                        .map_err(|e| cmd_err(host, "recording the SSH port", e))?;
                }
                Ok(())
            }
            (PowerAction::Off, None) => Ok(()),
            (PowerAction::Off, Some(pid)) => {
                qmp(&dir.join("qmp.sock"), "quit").await.ok();
                process::terminate(pid, Duration::from_secs(5))
                    .await
                    .map_err(|e| cmd_err(host, "stopping QEMU", e))
            }
            (PowerAction::Reset, None) => Err(ProviderError::Invalid {
                host: host.name.to_string(),
                message: "the VM is not running".into(),
                help: "power it on first".into(),
            }),
            (PowerAction::Reset, Some(_)) => qmp(&dir.join("qmp.sock"), "system_reset")
                .await
                .map(drop)
                .map_err(|e| cmd_err(host, "resetting the VM over QMP", e)),
        }
    }
}

/// The QEMU command line for one VM. Every path is absolute (required with -daemonize).
fn qemu_args(host: &Host, dir: &Path, shape: &VmShape, accel: Accel, port: u16) -> Vec<String> {
    let p = |name: &str| dir.join(name).display().to_string();
    let mut args = vec![
        "-name".to_string(),
        format!("cairn-{},process=cairn-{}", host.name, host.name),
        "-machine".into(),
        "pc".into(),
        "-accel".into(),
        accel.as_str().into(),
        "-m".into(),
        shape.memory_mib.to_string(),
        "-smp".into(),
        shape.cpus.to_string(),
        "-drive".into(),
        format!("file={},if=virtio,format=qcow2,cache=unsafe", p("disk.qcow2")),
        "-drive".into(),
        format!("file={},if=virtio,format=raw,readonly=on", p("seed.img")),
        "-nic".into(),
        format!("user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:{port}-:22"),
        "-display".into(),
        "none".into(),
        "-serial".into(),
        format!("file:{}", p("console.log")),
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", p("qmp.sock")),
        "-pidfile".into(),
        p("qemu.pid"),
        "-daemonize".into(),
    ];
    if accel == Accel::Kvm {
        args.extend(["-cpu".into(), "host".into()]);
    }
    args
}

/// The NoCloud seed, as cloud images expect it: a small vfat labelled `cidata` with
/// `meta-data` and `user-data` carrying the operator's SSH key and the stock host key.
async fn write_seed(host: &Host, dir: &Path, req: &CreateRequest) -> Result<(), ProviderError> {
    let key = req.operator_ssh_key.trim();
    if key.contains('\n') || key.is_empty() {
        return Err(ProviderError::Invalid {
            host: host.name.to_string(),
            message: "the operator SSH key must be one public key line".into(),
            help: "pass an OpenSSH public key such as `ssh-ed25519 AAAA... you@laptop`".into(),
        });
    }
    let meta = format!(
        "instance-id: cairn-{name}\nlocal-hostname: {name}\npublic-keys:\n  - {key}\n",
        name = host.name
    );
    let mut user =
        format!("#cloud-config\nhostname: {}\nssh_authorized_keys:\n  - {key}\n", host.name);
    if let Some(stock) = &req.stock_host_key {
        user.push_str(&stock.cloud_config_lines());
    }
    fs_err::write(dir.join("meta-data"), meta).map_err(|e| cmd_err(host, "writing the seed", e))?;
    // The user data holds the stock image's private host key.
    crate::util::atomic::write(&dir.join("user-data"), user.as_bytes(), 0o600)
        .map_err(|e| cmd_err(host, "writing the seed", e))?;
    let seed = dir.join("seed.img");
    let _ = fs_err::remove_file(&seed);
    let s = |p: &Path| p.display().to_string();
    run(host, "mkfs.vfat", &["-n".into(), "CIDATA".into(), "-C".into(), s(&seed), "1024".into()])
        .await?;
    run(
        host,
        "mcopy",
        &["-i".into(), s(&seed), s(&dir.join("meta-data")), s(&dir.join("user-data")), "::".into()],
    )
    .await
}

async fn image_format(host: &Host, image: &Path) -> Result<String, ProviderError> {
    let out = run_output(
        host,
        "qemu-img",
        &["info".into(), "--output=json".into(), image.display().to_string()],
    )
    .await?;
    let info: serde_json::Value = serde_json::from_slice(&out).unwrap_or_default();
    Ok(info.get("format").and_then(|f| f.as_str()).unwrap_or("raw").to_string())
}

async fn run(host: &Host, program: &str, args: &[String]) -> Result<(), ProviderError> {
    run_output(host, program, args).await.map(drop)
}

async fn run_output(host: &Host, program: &str, args: &[String]) -> Result<Vec<u8>, ProviderError> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| ProviderError::Command {
            host: host.name.to_string(),
            what: format!("running {program}"),
            help: format!("install {program} (Debian: qemu-utils, dosfstools, mtools)"),
            source: e,
        })?;
    if !out.status.success() {
        return Err(ProviderError::CommandFailed {
            host: host.name.to_string(),
            program: program.into(),
            status: out.status.to_string(),
            stderr_tail: tail(String::from_utf8_lossy(&out.stderr).trim(), 800),
            help: "see the error above".into(),
        });
    }
    Ok(out.stdout)
}

/// Sends one QMP command and waits for its answer.
async fn qmp(socket: &Path, command: &str) -> std::io::Result<serde_json::Value> {
    let stream = tokio::net::UnixStream::connect(socket).await?;
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    qmp_reply(&mut lines).await?; // greeting
    write.write_all(b"{\"execute\":\"qmp_capabilities\"}\n").await?;
    qmp_reply(&mut lines).await?;
    write.write_all(format!("{{\"execute\":\"{command}\"}}\n").as_bytes()).await?;
    match tokio::time::timeout(Duration::from_secs(5), qmp_reply(&mut lines)).await {
        Ok(reply) => reply,
        // `quit` may close the socket before answering.
        Err(_) => Ok(serde_json::Value::Null),
    }
}

/// The next reply (or greeting) on a QMP connection, skipping asynchronous events.
async fn qmp_reply<R: tokio::io::AsyncBufRead + Unpin>(
    lines: &mut tokio::io::Lines<R>,
) -> std::io::Result<serde_json::Value> {
    loop {
        let line = lines.next_line().await?.ok_or_else(|| std::io::Error::other("QMP closed"))?;
        let v: serde_json::Value = serde_json::from_str(&line).map_err(std::io::Error::other)?;
        if v.get("return").is_some() || v.get("error").is_some() || v.get("QMP").is_some() {
            return Ok(v);
        }
    }
}

/// Whether `pid` is the QEMU running this VM directory (not a recycled pid).
fn owns_vm(pid: u32, dir: &Path) -> bool {
    let needle = dir.join("qemu.pid").display().to_string();
    process::cmdline(pid).is_some_and(|c| c.split(|b| *b == 0).any(|arg| arg == needle.as_bytes()))
}

fn read_pid(pidfile: &Path) -> Option<u32> {
    fs_err::read_to_string(pidfile).ok()?.trim().parse().ok()
}

fn read_port(dir: &Path) -> Option<u16> {
    fs_err::read_to_string(dir.join(SSH_PORT_FILE)).ok()?.trim().parse().ok()
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// KVM is used only if it really boots: `/dev/kvm` can exist and open while guests spin
/// forever (seen on nested setups). SeaBIOS prints its banner on the debug console within
/// a fraction of a second when KVM works.
async fn probe_kvm(qemu: &Path) -> bool {
    if !Path::new("/dev/kvm").exists() {
        return false;
    }
    let Ok(dir) = tempfile::tempdir() else { return false };
    let log = dir.path().join("debugcon.log");
    let child = tokio::process::Command::new(qemu)
        .args([
            "-accel",
            "kvm",
            "-machine",
            "pc",
            "-m",
            "32",
            "-display",
            "none",
            "-no-reboot",
            "-nodefaults",
            "-debugcon",
            &format!("file:{}", log.display()),
            "-global",
            "isa-debugcon.iobase=0x402",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let Ok(mut child) = child else { return false };
    let mut works = false;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if fs_err::read(&log).is_ok_and(|b| b.windows(7).any(|w| w == b"SeaBIOS")) {
            works = true;
            break;
        }
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
    }
    let _ = child.kill().await;
    tracing::debug!(works, "KVM probe");
    works
}

/// What trying KVM showed, for [`decide_accel`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum KvmEvidence {
    /// There is no /dev/kvm: nothing to try.
    NoDevice,
    /// /dev/kvm exists, but a firmware-only guest printed nothing.
    ProbeFailed,
    /// QEMU refused to start, or aborted while starting, under KVM (its stderr).
    StartFailed { stderr: String },
    /// QEMU started under KVM, then was gone before the guest printed anything.
    Exited,
    /// QEMU ran under KVM, but the guest printed nothing on its console in time.
    Silent { seconds: u64 },
    /// The guest printed on its console under KVM: the VM runs (pid, SSH port).
    GuestPrinted { pid: u32, port: u16 },
}

impl KvmEvidence {
    /// The VM the trial left running, if any.
    fn started(&self) -> Option<(u32, u16)> {
        match self {
            KvmEvidence::GuestPrinted { pid, port } => Some((*pid, *port)),
            _ => None,
        }
    }
}

/// What to do after a KVM trial.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AccelStep {
    /// Use this accelerator; nothing to tell the user.
    Use(Accel),
    /// KVM failed: use TCG, and say why once.
    FallBack { reason: String },
}

/// Whether `requested` acceleration, given what trying KVM showed, runs under KVM or falls
/// back to TCG (and why). Only `auto` is ever tried: `kvm` and `tcg` are used as asked.
fn decide_accel(requested: Accel, evidence: &KvmEvidence) -> AccelStep {
    if requested != Accel::Auto {
        return AccelStep::Use(requested);
    }
    let reason = match evidence {
        KvmEvidence::NoDevice => return AccelStep::Use(Accel::Tcg),
        KvmEvidence::GuestPrinted { .. } => return AccelStep::Use(Accel::Kvm),
        KvmEvidence::ProbeFailed => {
            "/dev/kvm exists, but a test guest printed nothing under KVM".to_string()
        }
        KvmEvidence::StartFailed { stderr } => {
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
            if last.is_empty() {
                "QEMU failed to start under KVM".to_string()
            } else {
                format!("QEMU failed to start under KVM: {}", last.trim())
            }
        }
        KvmEvidence::Exited => {
            "QEMU exited under KVM before the guest printed anything".to_string()
        }
        KvmEvidence::Silent { seconds } => {
            format!("the guest printed nothing on its console in {seconds} s under KVM")
        }
    };
    AccelStep::FallBack { reason }
}

/// The file that marks a VM directory as made by this provider for the host it names.
const VM_MARKER: &str = ".cairn-vm";
/// The SSH port forwarded to the VM, written last by `create`.
const SSH_PORT_FILE: &str = "ssh_port";

/// Refuses a VM directory that this provider did not make for `host` (no marker, or the
/// marker of another host): cairn neither adopts nor deletes it.
fn check_made_by_cairn(host: &Host, dir: &Path) -> Result<(), ProviderError> {
    match fs_err::read_to_string(dir.join(VM_MARKER)) {
        Ok(owner) if owner.trim() == host.name.as_str() => Ok(()),
        Ok(owner) => Err(ProviderError::Invalid {
            host: host.name.to_string(),
            message: format!(
                "the VM directory {} belongs to host \"{}\", not to this host",
                dir.display(),
                owner.trim()
            ),
            help: "two hosts share a VM directory: give one of them another name or cache_dir"
                .into(),
        }),
        Err(_) => Err(ProviderError::Invalid {
            host: host.name.to_string(),
            message: format!(
                "{} exists but cairn did not make it (it has no {VM_MARKER} marker), so cairn \
                 will neither use nor delete it",
                dir.display()
            ),
            help: "move it away, or set cache_dir on the qemu provider to another directory".into(),
        }),
    }
}

fn cmd_err(host: &Host, what: &str, source: std::io::Error) -> ProviderError {
    ProviderError::Command {
        host: host.name.to_string(),
        what: what.into(),
        help: "check permissions and free space in the VM directory".into(),
        source,
    }
}

fn tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &s[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_falls_back_to_tcg_whenever_kvm_fails() {
        let fallback = |e: KvmEvidence| match decide_accel(Accel::Auto, &e) {
            AccelStep::FallBack { reason } => reason,
            other => panic!("{e:?} gave {other:?}"),
        };
        let aborted = KvmEvidence::StartFailed {
            stderr: "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69\n\
                     qemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: \
                     Assertion `ret == cpu->kvm_msr_buf->nmsrs' failed.\n"
                .into(),
        };
        assert_eq!(
            fallback(aborted),
            "QEMU failed to start under KVM: qemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: \
             kvm_buf_set_msrs: Assertion `ret == cpu->kvm_msr_buf->nmsrs' failed."
        );
        assert_eq!(
            fallback(KvmEvidence::StartFailed { stderr: String::new() }),
            "QEMU failed to start under KVM"
        );
        assert_eq!(
            fallback(KvmEvidence::Exited),
            "QEMU exited under KVM before the guest printed anything"
        );
        assert_eq!(
            fallback(KvmEvidence::Silent { seconds: 15 }),
            "the guest printed nothing on its console in 15 s under KVM"
        );
        assert!(fallback(KvmEvidence::ProbeFailed).contains("/dev/kvm exists"));
    }

    #[test]
    fn auto_uses_kvm_when_the_guest_prints_and_tcg_quietly_without_dev_kvm() {
        let printed = KvmEvidence::GuestPrinted { pid: 1, port: 2222 };
        assert_eq!(decide_accel(Accel::Auto, &printed), AccelStep::Use(Accel::Kvm));
        assert_eq!(printed.started(), Some((1, 2222)));
        assert_eq!(decide_accel(Accel::Auto, &KvmEvidence::NoDevice), AccelStep::Use(Accel::Tcg));
        assert_eq!(KvmEvidence::Exited.started(), None);
    }

    #[test]
    fn explicit_accel_is_used_as_asked() {
        for accel in [Accel::Kvm, Accel::Tcg] {
            assert_eq!(decide_accel(accel, &KvmEvidence::Exited), AccelStep::Use(accel));
        }
    }

    #[test]
    fn tail_keeps_the_end_on_a_char_boundary() {
        assert_eq!(tail("abc", 10), "abc");
        assert_eq!(tail("ééé", 3), "…é");
    }
}
