//! The `existing` provider end to end on QEMU VMs the test starts itself (cairn orders and
//! deletes nothing): cairn only knows the host's `address`, 127.0.0.1 and the forwarded port,
//! and meets the machine's host key on first contact (`--trust-host-key`, as read from the
//! machine's console). Two machines a user may have:
//! - a running Debian (the stock image): cairn jumps into its installer with kexec;
//! - a server booted into its provider's rescue system (the stand-in installer booted with
//!   `cairn.rescue`: no installer marker, host name `rescue`, as Hetzner's rescue): cairn
//!   recognises it and installs from it without kexec; the next boot is the disk's.
//!
//! Runs on CI (`CI=true`: a missing prerequisite fails). Set `CAIRN_SKIP_VM_TESTS=1` to skip
//! it locally.

use crate::bootstrap_vm::{cairn_command, text, Fleet};
use crate::support::{self as vm, Boot, Images, Seed, Vm, VmOptions};

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BOOT_TIMEOUT: Duration = Duration::from_secs(600);
/// A whole bootstrap under software emulation takes minutes.
const BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(2400);

/// The fleet of `vm-tests/make-fleet` with web1 as an existing machine at
/// 127.0.0.1:`port`, logged in to as `user`: no provider settings, no VM resources.
fn as_existing(dir: &Path, port: u16, user: &str) {
    let hcl = fs_err::read_to_string(dir.join("cairn.hcl")).unwrap();
    let mut out = String::new();
    for line in hcl.lines() {
        let t = line.trim_start();
        if t.starts_with("accel ")
            || t.starts_with("image ")
            || t.starts_with("memory ")
            || t.starts_with("disk_size ")
        {
            continue;
        }
        let line = line.replace("provider \"qemu\" \"local\"", "provider \"existing\" \"local\"");
        let line = line.replace("user = \"debian\"", &format!("user = \"{user}\""));
        out.push_str(&line);
        out.push('\n');
        if t.starts_with("disk_layout = ") {
            out.push_str(&format!("  address     = \"127.0.0.1:{port}\"\n"));
        }
    }
    assert!(out.contains("provider \"existing\" \"local\""), "{out}");
    assert!(out.contains(&format!("address     = \"127.0.0.1:{port}\"")), "{out}");
    assert!(out.contains(&format!("user = \"{user}\"")), "{out}");
    fs_err::write(dir.join("cairn.hcl"), out).unwrap();
}

/// `SHA256:...` of the ed25519 host key the machine printed on its console, as a user reads
/// it off a provider's console to pass `--trust-host-key`.
fn console_fingerprint(guest: &Vm, from: usize, dir: &Path) -> String {
    let keys = guest.console_host_keys(from);
    let key = keys.iter().find(|k| k.starts_with("ssh-ed25519 ")).unwrap_or_else(|| {
        panic!("no ed25519 host key on the console: {keys:?}\n{}", guest.diagnostics())
    });
    let file = dir.join("console-host-key.pub");
    fs_err::write(&file, format!("{key}\n")).unwrap();
    let out = Command::new("ssh-keygen").args(["-l", "-E", "sha256", "-f"]).arg(&file).output();
    let out = String::from_utf8_lossy(&out.unwrap().stdout).to_string();
    out.split_whitespace().nth(1).expect("a fingerprint").to_owned()
}

/// `cairn bootstrap host web1 --yes --trust-host-key FP`, its output in files under .cairn/;
/// `on_stop` is called whenever QEMU is not running (the rescue machine rebooting).
fn bootstrap(
    dir: &Path,
    fingerprint: &str,
    guest: &mut Vm,
    mut on_stop: impl FnMut(&mut Vm),
) -> Output {
    let out = dir.join(".cairn/bootstrap.stdout");
    let err = dir.join(".cairn/bootstrap.stderr");
    let args = ["bootstrap", "host", "web1", "--yes", "--trust-host-key", fingerprint];
    let mut child = cairn_command(dir, &args)
        .stdout(fs_err::File::create(&out).unwrap().into_parts().0)
        .stderr(fs_err::File::create(&err).unwrap().into_parts().0)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + BOOTSTRAP_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "bootstrap did not end within {BOOTSTRAP_TIMEOUT:?}:\n{}\n{}",
                fs_err::read_to_string(&err).unwrap_or_default(),
                guest.diagnostics()
            );
        }
        if !guest.is_running() {
            on_stop(guest);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    Output {
        status,
        stdout: fs_err::read(&out).unwrap_or_default(),
        stderr: fs_err::read(&err).unwrap_or_default(),
    }
}

/// What a user checks after a bootstrap: verified, the installed system decrypted its secret
/// and started its agent, and `cairn ssh` reaches it with the key cairn generated.
fn assert_verified(dir: &Path, run: &Output, guest: &Vm) {
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "bootstrap failed: {}\n--- console\n{}",
        text(run),
        guest.diagnostics()
    );
    assert!(out.contains("\nweb1  verified  "), "{out}");
    assert!(out.contains("from /dev/vda2"), "booted from its own disk:\n{out}");
    let console = guest.console();
    assert!(
        console.contains("cairn-test-system: secret web1 decrypted to /run/secrets/web1"),
        "{}",
        guest.diagnostics()
    );
    assert!(console.contains("cairn-test-agent: running"), "{}", guest.diagnostics());
    let secret =
        cairn_command(dir, &["ssh", "web1", "--", "cat", "/run/secrets/web1"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&secret.stdout).contains("greeting: hello from cairn"),
        "{}",
        text(&secret)
    );
}

fn operator_key(dir: &Path) -> String {
    fs_err::read_to_string(dir.join(".cairn/ssh/operator_ed25519.pub")).unwrap()
}

/// A Debian machine the user already runs, known by address only: reach meets its key on
/// first contact (the one named with `--trust-host-key`), kexec jumps into the installer
/// (as the sudo user `debian`), and the host ends verified on the same forwarded port.
/// Before that, an attempt whose kexec the kernel refuses (`kexec_load_disabled`, as under
/// lockdown) fails after the upload; the machine is rebooted, and the next attempt finds the
/// bundle it unpacked whole and does not upload it again.
#[test]
fn bootstrap_an_existing_machine_by_its_address() {
    let Some(fleet) = Fleet::start() else { return };
    let dir = fleet.dir.clone();
    let images = Images::build();
    let seed = Seed {
        instance_id: "existing-web1".into(),
        hostname: "web1".into(),
        authorized_keys: vec![operator_key(&dir)],
    };
    let mut guest = Vm::start(&images, &seed, &VmOptions::default());
    guest.wait_for_console(0, vm::HOST_KEYS_END, BOOT_TIMEOUT);
    let fingerprint = console_fingerprint(&guest, 0, &dir);
    as_existing(&dir, guest.ssh_port, "debian");

    // The first attempt: the kernel refuses kexec (until the next boot).
    let ssh = vm::SystemSsh::new(
        guest.ssh_port,
        &dir.join(".cairn/ssh/operator_ed25519"),
        &guest.console_host_keys(0),
        &dir.join(".cairn"),
    );
    // (sshd may still be starting when the keys are on the console)
    let disabled = "sudo sysctl -w kernel.kexec_load_disabled=1";
    ssh.wait_until("debian", disabled, BOOT_TIMEOUT, |out| out.contains("= 1"));
    let stopped = |g: &mut Vm| panic!("the existing machine stopped:\n{}", g.diagnostics());
    let refused = bootstrap(&dir, &fingerprint, &mut guest, stopped);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(err.contains("recorded the stock image's host key"), "{err}");
    assert!(err.contains("uploading the installer"), "{err}");
    assert!(err.contains("web1: kexec failed"), "{err}");
    assert!(err.contains("kexec --load failed"), "the installer's own words: {err}");
    // The user reboots it; the same system boots again from its disk, the bundle still in
    // /root. (The session ends with the reboot: its outcome does not matter.)
    let boot_id = "cat /proc/sys/kernel/random/boot_id";
    let first_boot = ssh.wait_until("debian", boot_id, BOOT_TIMEOUT, |_| true);
    ssh.run("debian", "sudo systemctl reboot", None, Duration::from_secs(30));
    ssh.wait_until("debian", boot_id, BOOT_TIMEOUT, |id| id != first_boot);

    let run = bootstrap(&dir, &fingerprint, &mut guest, stopped);
    assert_verified(&dir, &run, &guest);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("the installer bundle is on the target already (an earlier attempt's): not uploading it again"),
        "{err}"
    );
    assert!(!err.contains("uploading the installer"), "{err}");
    assert!(err.contains("running the installer"), "{err}");
    // Nothing was ordered: state knows the machine by its address only.
    let state = fs_err::read_to_string(dir.join(".cairn/state.json")).unwrap();
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(
        state["hosts"]["web1"]["provider_id"],
        serde_json::json!("existing:127.0.0.1"),
        "{state:#}"
    );
    drop(guest);
    drop(fleet);
}

/// The installer bundle's kernel and initrd, booted directly as a rescue system: the initrd
/// gets root's authorized_keys in front, the way kexec/run carries them.
fn rescue_boot(images: &Images, work: &Path, authorized_key: &str) -> Boot {
    let unpacked = work.join("bundle");
    fs_err::create_dir_all(&unpacked).unwrap();
    let tar = Command::new("tar")
        .arg("-xzf")
        .arg(images.installer_bundle())
        .arg("-C")
        .arg(&unpacked)
        .args(["kexec/bzImage", "kexec/initrd"])
        .output()
        .unwrap();
    assert!(tar.status.success(), "{}", String::from_utf8_lossy(&tar.stderr));
    let carry = work.join("carry");
    fs_err::create_dir_all(carry.join("cairn-carry/ssh")).unwrap();
    fs_err::write(carry.join("cairn-carry/ssh/authorized_keys"), authorized_key).unwrap();
    let cpio = Command::new("sh")
        .arg("-c")
        .arg("find cairn-carry | cpio --quiet -o -H newc -R 0:0")
        .current_dir(&carry)
        .output()
        .unwrap();
    assert!(cpio.status.success(), "{}", String::from_utf8_lossy(&cpio.stderr));
    // An uncompressed archive first, padded to 512 bytes, then the compressed one.
    let mut initrd = cpio.stdout;
    initrd.resize(initrd.len().div_ceil(512) * 512, 0);
    initrd.extend(fs_err::read(unpacked.join("kexec/initrd")).unwrap());
    let initrd_path = work.join("rescue-initrd");
    fs_err::write(&initrd_path, initrd).unwrap();
    Boot::Kernel {
        kernel: unpacked.join("kexec/bzImage"),
        initrd: initrd_path,
        append: "console=ttyS0,115200 panic=30 cairn.rescue".into(),
    }
}

/// A server booted into its provider's rescue system (Debian in RAM, host name `rescue`, no
/// installer marker, root logins with the user's key): cairn recognises it, asks (here
/// `--yes`) before erasing as before a kexec, installs from it without kexec, and reboots;
/// the machine's next boot is its disk's (the rescue boot was for once), and the host ends
/// verified.
#[test]
fn bootstrap_an_existing_machine_from_its_rescue_system() {
    let Some(fleet) = Fleet::start() else { return };
    let dir = fleet.dir.clone();
    let images = Images::build();
    let work = tempfile::tempdir().unwrap();
    let seed = Seed {
        instance_id: "rescue-web1".into(),
        hostname: "web1".into(),
        authorized_keys: vec![operator_key(&dir)],
    };
    let opts = VmOptions {
        boot: rescue_boot(&images, work.path(), &operator_key(&dir)),
        ..Default::default()
    };
    let mut guest = Vm::start(&images, &seed, &opts);
    guest.wait_for_console(0, vm::INSTALLER_READY, BOOT_TIMEOUT);
    assert!(guest.console().contains("booted as a rescue system"), "{}", guest.diagnostics());
    let fingerprint = console_fingerprint(&guest, 0, &dir);
    as_existing(&dir, guest.ssh_port, "root");

    let mut rebooted = 0;
    let run = bootstrap(&dir, &fingerprint, &mut guest, |g| {
        rebooted += 1;
        assert_eq!(rebooted, 1, "the machine stopped again:\n{}", g.diagnostics());
        g.boot_from_disk(Duration::from_secs(30));
    });
    assert_verified(&dir, &run, &guest);
    assert_eq!(rebooted, 1, "the rescue system rebooted into the disk once");
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains(
            "a rescue system (host name rescue, root on rootfs): installing from it without kexec"
        ),
        "{err}"
    );
    assert!(!err.contains("uploading the installer"), "{err}");
    drop(guest);
    drop(fleet);
}
