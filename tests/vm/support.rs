//! QEMU VMs for tests: the images of `vm-tests/build-images` (a Debian cloud-like stock image
//! and a kexec installer bundle), booted under `-accel tcg` with user-mode networking, SSH
//! forwarded from 127.0.0.1, a NoCloud seed carrying the test's keys, and the serial console in
//! a file the test can wait on. Include it with `#[path = "support/vm.rs"] mod vm;`.
//!
//! Every VM is owned by a [`Vm`] guard that kills QEMU by its pid on drop, also when the test
//! panics; QEMU also gets SIGKILL if the thread that started it dies (`setpriv --pdeathsig`), so
//! keep a VM in the test that started it. Only one VM runs at a time on the machine: [`Vm::start`]
//! waits for a machine-wide slot (`flock` on `$TMPDIR/cairn-vm.lock`).
#![allow(dead_code)]

use fs_err as fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Printed on the console by the stock image's seed service and by the installer's /init
/// (the markers cloud-init uses), with one `type base64` line per host key between them.
pub const HOST_KEYS_BEGIN: &str = "-----BEGIN SSH HOST KEY KEYS-----";
pub const HOST_KEYS_END: &str = "-----END SSH HOST KEY KEYS-----";
/// Printed by the installer's /init once sshd runs.
pub const INSTALLER_READY: &str = "cairn-installer: ready";

fn crate_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether VM tests must run: on CI (`CI=true`) always; locally unless `CAIRN_SKIP_VM_TESTS`
/// is set. Returns the reason to skip, if any.
pub fn skip_reason() -> Option<String> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let skip = std::env::var("CAIRN_SKIP_VM_TESTS").is_ok_and(|v| !v.is_empty() && v != "0");
    if skip && !ci {
        return Some("CAIRN_SKIP_VM_TESTS is set".into());
    }
    let missing = missing_prerequisites();
    if missing.is_empty() {
        return None;
    }
    let reason = format!("missing: {} (run .ci/install as root)", missing.join(", "));
    assert!(!ci, "VM tests cannot run on CI: {reason}");
    Some(reason)
}

fn missing_prerequisites() -> Vec<String> {
    let mut missing: Vec<String> = [
        "qemu-system-x86_64",
        "qemu-img",
        "mkfs.vfat",
        "mcopy",
        "ssh",
        "ssh-keygen",
        "ssh-keyscan",
        "setpriv",
        "flock",
    ]
    .into_iter()
    .filter(|tool| !on_path(tool))
    .map(String::from)
    .collect();
    // Building the images needs root (debootstrap, chroot); a complete cache does not.
    let is_root = fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
    if !is_root && !Images::cached_dir().join("complete").exists() {
        missing.push("root, to build the VM images (or a complete cache)".into());
    }
    missing
}

fn on_path(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|dir| dir.join(tool).is_file())
}

/// The cached outputs of `vm-tests/build-images`.
#[derive(Debug, Clone)]
pub struct Images {
    pub dir: PathBuf,
}

impl Images {
    /// Builds the images, or finds them in the cache (`CAIRN_VM_CACHE`, default `.cache/vm`).
    /// A cold build takes a few minutes; concurrent callers wait on the cache lock.
    pub fn build() -> Images {
        let script = crate_root().join("vm-tests/build-images");
        let out = Command::new(&script)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} failed ({}); its log is above",
            script.display(),
            out.status
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let dir = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
        assert!(
            dir.join("complete").is_file(),
            "{} printed {:?}, which is not a complete image cache",
            script.display(),
            dir
        );
        Images { dir }
    }

    /// Where the current recipe's images are (or would be) cached.
    pub fn cached_dir() -> PathBuf {
        let script = crate_root().join("vm-tests/build-images");
        Command::new(&script)
            .arg("--print")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
            .unwrap_or_default()
    }

    pub fn stock(&self) -> PathBuf {
        self.dir.join("stock.qcow2")
    }

    /// The kexec bundle (`kexec/run`, `kexec/bzImage`, `kexec/initrd`, ...) as a .tar.gz.
    pub fn installer_bundle(&self) -> PathBuf {
        self.dir.join("installer.tar.gz")
    }
}

/// A NoCloud seed (`meta-data` + `user-data` on a vfat filesystem labelled CIDATA), as a real
/// Debian cloud image with cloud-init also reads it.
#[derive(Debug, Clone)]
pub struct Seed {
    pub instance_id: String,
    pub hostname: String,
    pub authorized_keys: Vec<String>,
}

impl Seed {
    pub fn meta_data(&self) -> String {
        let mut s = format!(
            "instance-id: {}\nlocal-hostname: {}\npublic-keys:\n",
            self.instance_id, self.hostname
        );
        for key in &self.authorized_keys {
            s.push_str(&format!("  - \"{}\"\n", key.trim()));
        }
        s
    }

    pub fn user_data(&self) -> String {
        let mut s = String::from("#cloud-config\nssh_authorized_keys:\n");
        for key in &self.authorized_keys {
            s.push_str(&format!("  - \"{}\"\n", key.trim()));
        }
        s
    }

    /// Writes the seed as a 1 MiB vfat image with mkfs.vfat and mcopy (no mounting).
    pub fn write_image(&self, path: &Path) {
        let dir = path.parent().expect("seed image path has a parent");
        let meta = dir.join("meta-data");
        let user = dir.join("user-data");
        fs::write(&meta, self.meta_data()).unwrap();
        fs::write(&user, self.user_data()).unwrap();
        let _ = fs::remove_file(path);
        run_ok(Command::new("mkfs.vfat").args(["-n", "CIDATA", "-C"]).arg(path).arg("1024"));
        run_ok(Command::new("mcopy").arg("-i").arg(path).arg(&meta).arg(&user).arg("::/"));
    }
}

#[derive(Debug, Clone)]
pub struct VmOptions {
    pub memory_mib: u32,
    /// Size of the per-VM overlay disk (the guest sees this much).
    pub disk_gib: u32,
    /// `tcg` by default: KVM does not work on the CI machines (see vm-tests/README.md).
    pub accel: String,
    pub boot: Boot,
}

impl Default for VmOptions {
    fn default() -> Self {
        VmOptions {
            memory_mib: 1024,
            disk_gib: 8,
            accel: std::env::var("CAIRN_VM_ACCEL").unwrap_or_else(|_| "tcg".into()),
            boot: Boot::Disk,
        }
    }
}

/// What the VM boots.
#[derive(Debug, Clone)]
pub enum Boot {
    /// The disk, through the BIOS.
    Disk,
    /// A kernel and initrd handed over by QEMU, once, as a provider's network boot into its
    /// rescue system: the guest's reboot ends QEMU (`-no-reboot`), and [`Vm::boot_from_disk`]
    /// starts the machine again from its disk, as the next boot after a rescue boot does.
    Kernel { kernel: PathBuf, initrd: PathBuf, append: String },
}

/// One running QEMU VM; killed (by pid) when dropped.
pub struct Vm {
    dir: tempfile::TempDir,
    child: Option<Child>,
    pub ssh_port: u16,
    pub started: Instant,
    opts: VmOptions,
    _slot: VmSlot,
}

impl Vm {
    /// Starts the stock image with `seed` as its second drive, on a fresh qcow2 overlay.
    pub fn start(images: &Images, seed: &Seed, opts: &VmOptions) -> Vm {
        let slot = VmSlot::acquire();
        let dir = tempfile::Builder::new().prefix("cairn-vm-").tempdir().unwrap();
        let p = |name: &str| dir.path().join(name);
        run_ok(
            Command::new("qemu-img")
                .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
                .arg(images.stock())
                .arg(p("disk.qcow2"))
                .arg(format!("{}G", opts.disk_gib)),
        );
        seed.write_image(&p("seed.img"));

        // The port is free when chosen; if something takes it before QEMU binds it, QEMU
        // exits at once and we try another.
        for _attempt in 0..5 {
            let ssh_port = free_port();
            if let Some(child) = spawn_qemu(dir.path(), opts, ssh_port) {
                let started = Instant::now();
                let opts = opts.clone();
                return Vm { dir, child: Some(child), ssh_port, started, opts, _slot: slot };
            }
        }
        panic!("QEMU could not bind a free port on 127.0.0.1 for SSH in 5 attempts");
    }

    /// After a [`Boot::Kernel`] guest rebooted (QEMU ended, within `timeout`): the same
    /// machine (disk, seed, forwarded port, console log) started again from its disk.
    pub fn boot_from_disk(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.is_running() {
            assert!(Instant::now() < deadline, "the VM did not stop within {timeout:?}");
            std::thread::sleep(Duration::from_millis(250));
        }
        self.opts.boot = Boot::Disk;
        let child = spawn_qemu(self.dir.path(), &self.opts, self.ssh_port).unwrap_or_else(|| {
            panic!("QEMU could not start again on port {}\n{}", self.ssh_port, self.diagnostics())
        });
        self.child = Some(child);
    }

    /// The VM's private directory (disk overlay, seed, console.log, qmp.sock, qemu.pid).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Everything the guest wrote to its serial console so far.
    pub fn console(&self) -> String {
        let bytes = fs::read(self.path("console.log")).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    pub fn console_len(&self) -> usize {
        fs::metadata(self.path("console.log")).map(|m| m.len() as usize).unwrap_or(0)
    }

    /// Waits until the console, from byte `from` on, contains `marker`; returns the offset
    /// just past it. Panics with the console's tail on timeout or if QEMU exits.
    pub fn wait_for_console(&mut self, from: usize, marker: &str, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let bytes = fs::read(self.path("console.log")).unwrap_or_default();
            if let Some(pos) = find(&bytes[from.min(bytes.len())..], marker.as_bytes()) {
                return from + pos + marker.len();
            }
            if !self.is_running() {
                panic!(
                    "QEMU exited while waiting for {marker:?} on the console\n{}",
                    self.diagnostics()
                );
            }
            if Instant::now() > deadline {
                panic!("no {marker:?} on the console after {timeout:?}\n{}", self.diagnostics());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The host keys (`type base64`) of the first key block on the console after `from`.
    pub fn console_host_keys(&self, from: usize) -> Vec<String> {
        let console = self.console();
        let tail = &console[from.min(console.len())..];
        let Some(start) = tail.find(HOST_KEYS_BEGIN) else {
            return Vec::new();
        };
        let block = &tail[start + HOST_KEYS_BEGIN.len()..];
        let block = &block[..block.find(HOST_KEYS_END).unwrap_or(block.len())];
        block
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("ssh-") || l.starts_with("ecdsa-"))
            .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
            .collect()
    }

    /// One QMP command (`{"execute": ...}`); returns QEMU's reply line.
    pub fn qmp(&self, command: &str) -> String {
        let stream = UnixStream::connect(self.path("qmp.sock")).expect("connect to QMP");
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        let mut line = String::new();
        reader.read_line(&mut line).unwrap(); // greeting
        writer.write_all(b"{\"execute\":\"qmp_capabilities\"}\n").unwrap();
        line.clear();
        reader.read_line(&mut line).unwrap();
        writeln!(writer, "{{\"execute\":\"{command}\"}}").unwrap();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || !line.contains("\"event\"") {
                return line;
            }
        }
    }

    /// The last console lines and QEMU's own log, for failure messages.
    pub fn diagnostics(&self) -> String {
        let console = self.console();
        let lines: Vec<&str> = console.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        let qemu = fs::read_to_string(self.path("qemu.log")).unwrap_or_default();
        format!("--- console (last 40 lines) ---\n{tail}\n--- qemu.log ---\n{qemu}")
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Our own child, by its pid: SIGKILL, then reap it.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts QEMU on the VM directory `dir` (disk.qcow2, seed.img) with SSH forwarded from
/// 127.0.0.1:`ssh_port`; `None` if it exited at once because the port was taken. The
/// console log is appended to, so a restarted machine keeps its earlier boots' output.
fn spawn_qemu(dir: &Path, opts: &VmOptions, ssh_port: u16) -> Option<Child> {
    let p = |name: &str| dir.join(name);
    let log = fs::File::create(p("qemu.log")).unwrap().into_parts().0;
    let mut cmd = Command::new("setpriv");
    cmd.args(["--pdeathsig", "KILL", "--", "qemu-system-x86_64"])
        .args(["-name", "cairn-test", "-machine", "pc", "-nodefaults"])
        .args(["-accel", &opts.accel])
        .args(["-m", &opts.memory_mib.to_string(), "-smp", "1"])
        .args(["-display", "none"])
        .arg("-chardev")
        .arg(format!("file,id=console,path={},append=on", p("console.log").display()))
        .args(["-serial", "chardev:console"])
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", p("qmp.sock").display()))
        .arg("-pidfile")
        .arg(p("qemu.pid"))
        .arg("-drive")
        .arg(format!("file={},if=virtio,format=qcow2", p("disk.qcow2").display()))
        .arg("-drive")
        .arg(format!("file={},if=virtio,format=raw,readonly=on", p("seed.img").display()))
        .arg("-nic")
        .arg(format!("user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:{ssh_port}-:22"))
        .args(["-device", "virtio-rng-pci"]);
    if let Boot::Kernel { kernel, initrd, append } = &opts.boot {
        cmd.arg("-kernel").arg(kernel).arg("-initrd").arg(initrd).args(["-append", append]);
        cmd.arg("-no-reboot");
    }
    cmd.stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log);
    let mut child = cmd.spawn().expect("cannot start qemu-system-x86_64 (via setpriv)");
    std::thread::sleep(Duration::from_millis(500));
    if matches!(child.try_wait(), Ok(None)) {
        return Some(child);
    }
    let _ = child.wait();
    let log = fs::read_to_string(p("qemu.log")).unwrap_or_default();
    assert!(
        log.contains("hostfwd") || log.contains("host forwarding"),
        "QEMU exited at start:\n{log}"
    );
    None
}

/// The machine-wide VM slot: `flock` holds `$TMPDIR/cairn-vm.lock` for as long as our pipe to
/// its child stays open, so the slot is released even if the test process is killed.
struct VmSlot {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl VmSlot {
    fn acquire() -> VmSlot {
        let lock = std::env::temp_dir().join("cairn-vm.lock");
        let mut child = Command::new("flock")
            .arg(&lock)
            .args(["sh", "-c", "echo locked; exec cat >/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("cannot run flock");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "locked", "flock {} failed", lock.display());
        let stdin = child.stdin.take();
        VmSlot { child, stdin }
    }
}

impl Drop for VmSlot {
    fn drop(&mut self) {
        drop(self.stdin.take()); // EOF: cat exits, flock releases the lock
        let _ = self.child.wait();
    }
}

/// The system OpenSSH client against a VM's forwarded port, pinned to the host keys in
/// `known_hosts` (StrictHostKeyChecking=yes), with keepalives so a connection the guest
/// dropped (e.g. by kexec) fails instead of hanging.
#[derive(Debug, Clone)]
pub struct SystemSsh {
    pub port: u16,
    pub identity: PathBuf,
    pub known_hosts: PathBuf,
}

/// What a command run over SSH returned.
#[derive(Debug)]
pub struct Outcome {
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
}

impl SystemSsh {
    /// Pins `host_keys` (`type base64` lines) for 127.0.0.1:port in a new known_hosts file.
    pub fn new(port: u16, identity: &Path, host_keys: &[String], dir: &Path) -> SystemSsh {
        let known_hosts = dir.join(format!("known_hosts-{port}"));
        let lines: String = host_keys.iter().map(|k| format!("[127.0.0.1]:{port} {k}\n")).collect();
        fs::write(&known_hosts, lines).unwrap();
        SystemSsh { port, identity: identity.to_path_buf(), known_hosts }
    }

    pub fn command(&self, user: &str, remote: &str) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(["-F", "/dev/null", "-p", &self.port.to_string(), "-i"])
            .arg(&self.identity)
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=5",
                "-o",
                "ServerAliveInterval=2",
                "-o",
                "ServerAliveCountMax=3",
                "-o",
                "LogLevel=ERROR",
            ])
            .arg(format!("{user}@127.0.0.1"))
            .arg(remote);
        cmd
    }

    /// Runs `remote` as `user`, with `stdin` fed from a file if given; gives up (killing the
    /// client) after `timeout`.
    pub fn run(
        &self,
        user: &str,
        remote: &str,
        stdin: Option<&Path>,
        timeout: Duration,
    ) -> Outcome {
        let mut cmd = self.command(user, remote);
        cmd.stdin(match stdin {
            Some(path) => Stdio::from(fs::File::open(path).unwrap().into_parts().0),
            None => Stdio::null(),
        });
        run_with_timeout(&mut cmd, timeout)
    }

    /// Retries `remote` until it succeeds and `accept` likes its stdout; returns that stdout.
    pub fn wait_until(
        &self,
        user: &str,
        remote: &str,
        timeout: Duration,
        accept: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        while Instant::now() < deadline {
            let out = self.run(user, remote, None, Duration::from_secs(20));
            if out.success() && accept(&out.stdout) {
                return out.stdout;
            }
            last = Some(out);
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!("`{remote}` as {user} did not succeed within {timeout:?}; last attempt: {last:?}");
    }
}

/// Runs `cmd`, collecting stdout and stderr; kills it after `timeout` (status None).
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Outcome {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let pipe = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = pipe(Box::new(child.stdout.take().unwrap()));
    let err = pipe(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait().unwrap() {
            Some(status) => break Some(status),
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    Outcome { status, stdout: out.join().unwrap(), stderr: err.join().unwrap() }
}

/// A new passphrase-less ed25519 key at `path` (and `path.pub`); returns the public line.
pub fn keygen(path: &Path) -> String {
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "cairn-vm-test", "-f"])
            .arg(path),
    );
    fs::read_to_string(path.with_extension("pub")).unwrap().trim().to_string()
}

/// A free TCP port on 127.0.0.1 (nothing listens on it when this returns).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn run_ok(cmd: &mut Command) {
    let out =
        cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
