//! A real OpenSSH server for tests: `sshd -D -e` on 127.0.0.1 at a free port, with its own
//! host keys, its own authorized_keys and a config in a temp dir. Killed by pid on drop
//! (also when the test panics). Include it with `#[path = "support/sshd.rs"] mod sshd;`.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

/// A login user with passwordless sudo (created when the tests run as root).
pub const SUDO_USER: &str = "cairn-test";
/// A login user without sudo rights.
pub const PLAIN_USER: &str = "cairn-nosudo";

pub fn sshd_binary() -> PathBuf {
    std::env::var_os("CAIRN_TEST_SSHD")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/sbin/sshd".into())
}

/// A free TCP port on 127.0.0.1 (nothing listens on it when this returns).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct Sshd {
    dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

impl Sshd {
    /// Generates keys and config for a server on `port`, without starting it.
    pub fn prepare(port: u16) -> Self {
        let dir = tempfile::Builder::new().prefix("cairn-sshd-").tempdir().unwrap();
        // Other users read authorized_keys from here (sshd reads it as the login user).
        set_mode(dir.path(), 0o755);
        for alg in ["ed25519", "ecdsa"] {
            keygen(&dir.path().join(format!("ssh_host_{alg}_key")), alg, "");
        }
        keygen(&dir.path().join("client_key"), "ed25519", "");
        let client_pub = fs_err::read_to_string(dir.path().join("client_key.pub")).unwrap();
        fs_err::write(dir.path().join("authorized_keys"), client_pub).unwrap();
        set_mode(&dir.path().join("authorized_keys"), 0o644);
        let d = dir.path().display();
        let config = format!(
            "Port {port}\n\
             ListenAddress 127.0.0.1\n\
             HostKey {d}/ssh_host_ed25519_key\n\
             HostKey {d}/ssh_host_ecdsa_key\n\
             PidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\n\
             StrictModes no\n\
             UsePAM no\n\
             UseDNS no\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\n\
             MaxStartups 100\n\
             MaxSessions 100\n\
             LogLevel VERBOSE\n"
        );
        fs_err::write(dir.path().join("sshd_config"), config).unwrap();
        Self { dir, port, child: None }
    }

    /// Prepares and starts a server on a free port, and waits until it accepts connections.
    pub fn start() -> Self {
        let mut s = Self::prepare(free_port());
        s.launch();
        s
    }

    /// Starts the prepared server and waits until its port accepts connections.
    pub fn launch(&mut self) {
        self.launch_via(&[]);
    }

    /// [`Sshd::launch`] with the sshd command line appended to `wrapper` (a program and its
    /// arguments that ends by exec'ing it, e.g. in a mount namespace of its own); the pid
    /// killed on drop is the wrapper's, so it must exec, not fork.
    pub fn launch_via(&mut self, wrapper: &[String]) {
        assert!(self.child.is_none(), "sshd already running");
        // Debian's sshd refuses to start without its privilege separation directory.
        fs_err::create_dir_all("/run/sshd").ok();
        let log = fs_err::File::create(self.dir.path().join("sshd.log")).unwrap().into_parts().0;
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(sshd_binary());
                c
            }
            None => Command::new(sshd_binary()),
        };
        let child = command
            .args(["-D", "-e", "-f"])
            .arg(self.dir.path().join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start sshd");
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("sshd exited with {status}; log:\n{}", self.log());
            }
            assert!(
                Instant::now() < until,
                "sshd did not listen on {}; log:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The private key whose public half is in authorized_keys.
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_key")
    }

    /// The server's host public key of `alg` (`ed25519`, `ecdsa`) as an OpenSSH line.
    pub fn host_public_key(&self, alg: &str) -> String {
        fs_err::read_to_string(self.dir.path().join(format!("ssh_host_{alg}_key.pub")))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// The SHA256 fingerprint of the server's host key of `alg`, as `ssh-keygen -l` prints it
    /// (`SHA256:...`): what a user passes to `--trust-host-key` after comparing it.
    pub fn host_fingerprint(&self, alg: &str) -> String {
        let key = self.dir.path().join(format!("ssh_host_{alg}_key.pub"));
        let out = Command::new("ssh-keygen").arg("-lf").arg(&key).output().unwrap();
        assert!(out.status.success(), "ssh-keygen -lf {}", key.display());
        String::from_utf8_lossy(&out.stdout).split_whitespace().nth(1).unwrap().to_owned()
    }

    /// Adds a public key (file contents) to the server's authorized_keys.
    pub fn authorize(&self, public_key: &str) {
        use std::io::Write;
        let mut f = fs_err::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("authorized_keys"))
            .unwrap();
        writeln!(f, "{}", public_key.trim()).unwrap();
    }

    pub fn log(&self) -> String {
        fs_err::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// Kills (SIGKILL) the sshd processes serving connections, leaving the listener and the
    /// remote commands alive: what a dropped connection looks like to both ends.
    pub fn kill_sessions(&self) {
        let Some(pid) = self.pid() else { return };
        for p in descendants(pid) {
            if comm(p).is_some_and(|c| c.starts_with("sshd")) {
                kill(p);
            }
        }
    }

    /// Stops the server and the sshd processes serving its connections. Commands they ran
    /// get end-of-file or SIGHUP as after any dropped connection; they are not SIGKILLed,
    /// which would skip their cleanup (the login user's shell rc files may hold locks).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let sessions = descendants(child.id());
            let _ = child.kill();
            let _ = child.wait();
            for p in sessions {
                if comm(p).is_some_and(|c| c.starts_with("sshd")) {
                    kill(p);
                }
            }
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Creates the test users once per process (needs root; returns false otherwise):
/// `cairn-test` with passwordless sudo, `cairn-nosudo` without. `.ci/install` does the same.
pub fn ensure_test_users() -> bool {
    static ONCE: Once = Once::new();
    if !is_root() {
        return false;
    }
    ONCE.call_once(|| {
        for user in [SUDO_USER, PLAIN_USER] {
            let exists = Command::new("id")
                .arg(user)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            if !exists.success() {
                // Tests in other binaries may race to create the same user.
                let _ = Command::new("useradd").args(["-m", "-s", "/bin/sh", user]).status();
            }
            // `*` (no password, not locked): sshd without PAM refuses locked (`!`) accounts.
            run(Command::new("usermod").args(["-p", "*", user]));
        }
        let sudoers = Path::new("/etc/sudoers.d").join(SUDO_USER);
        fs_err::create_dir_all("/etc/sudoers.d").unwrap();
        fs_err::write(&sudoers, format!("{SUDO_USER} ALL=(ALL) NOPASSWD: ALL\n")).unwrap();
        set_mode(&sudoers, 0o440);
    });
    true
}

pub fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// `ssh-keygen` a key of `alg` at `path`, with a passphrase if not empty.
pub fn keygen(path: &Path, alg: &str, passphrase: &str) {
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", alg, "-N", passphrase, "-C", "cairn-test", "-f"])
        .arg(path));
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn kill(pid: u32) {
    let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).stderr(Stdio::null()).status();
}

fn comm(pid: u32) -> Option<String> {
    fs_err::read_to_string(format!("/proc/{pid}/comm")).ok().map(|s| s.trim().to_owned())
}

/// Every process below `root` in the process tree (from /proc).
fn descendants(root: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in fs_err::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = fs_err::read_to_string(entry.path().join("stat")) else { continue };
        // The command name is in parentheses and may contain spaces; fields follow the last ')'.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else { continue };
        let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        parents.push((pid, ppid));
    }
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(child, parent) in &parents {
            if parent == p && !out.contains(&child) {
                out.push(child);
                frontier.push(child);
            }
        }
    }
    out
}
