//! The VM harness end to end, with real QEMU and the system OpenSSH client: boot the stock
//! image with a NoCloud seed carrying a fresh key, log in as `debian`, use sudo, upload the
//! installer bundle, run `kexec/run`, and reach the in-RAM installer over SSH with the same
//! host key. Runs on CI (`CI=true`, where a missing prerequisite fails the test); set
//! `CAIRN_SKIP_VM_TESTS=1` to skip it locally. Prints the timings it measured.

use crate::support as vm;

use std::time::{Duration, Instant};
use vm::{Images, Seed, SystemSsh, Vm, VmOptions, HOST_KEYS_END, INSTALLER_READY};

/// Generous: a boot takes ~20-60 s under TCG, much more while other jobs load both cores.
const BOOT_TIMEOUT: Duration = Duration::from_secs(600);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

#[test]
#[allow(clippy::print_stderr)] // the timings are part of what this test reports
fn stock_image_kexecs_into_installer_with_same_host_key() {
    if let Some(reason) = vm::skip_reason() {
        eprintln!("vm_smoke: skipped: {reason}");
        return;
    }
    let build_started = Instant::now();
    let images = Images::build();
    let build_time = build_started.elapsed();

    let work = tempfile::tempdir().unwrap();
    let identity = work.path().join("id_ed25519");
    let public_key = vm::keygen(&identity);
    let seed = Seed {
        instance_id: "cairn-smoke-1".into(),
        hostname: "smoke-stock".into(),
        authorized_keys: vec![public_key],
    };

    // Stock image: host keys from the console (as cloud-init prints them), then SSH pinned to them.
    let mut guest = Vm::start(&images, &seed, &VmOptions::default());
    guest.wait_for_console(0, HOST_KEYS_END, BOOT_TIMEOUT);
    let stock_keys = guest.console_host_keys(0);
    assert!(
        stock_keys.iter().any(|k| k.starts_with("ssh-ed25519 ")),
        "no ed25519 host key on the console: {stock_keys:?}\n{}",
        guest.diagnostics()
    );
    let ssh = SystemSsh::new(guest.ssh_port, &identity, &stock_keys, work.path());
    let stock = ssh.wait_until(
        "debian",
        "cat /proc/sys/kernel/random/boot_id; hostname; . /etc/os-release; echo $ID",
        BOOT_TIMEOUT,
        |_| true,
    );
    let boot_to_ssh = guest.started.elapsed();
    let stock: Vec<&str> = stock.lines().collect();
    assert_eq!(stock[1..], ["smoke-stock", "debian"], "hostname from the seed, Debian");
    let stock_boot_id = stock[0].to_string();

    let sudo = ssh.run("debian", "sudo -n true", None, COMMAND_TIMEOUT);
    assert!(sudo.success(), "passwordless sudo for debian: {sudo:?}");

    let upload = ssh.run(
        "debian",
        "sudo tar -xz -C /root",
        Some(&images.installer_bundle()),
        COMMAND_TIMEOUT * 3,
    );
    assert!(upload.success(), "upload of the installer bundle: {upload:?}");

    // kexec: the command returns before the jump; the installer then answers as root.
    let console_before = guest.console_len();
    let kexec_started = Instant::now();
    let run = ssh.run("debian", "sudo /root/kexec/run", None, COMMAND_TIMEOUT);
    assert!(run.success(), "kexec/run: {run:?}\n{}", guest.diagnostics());
    let ready = guest.wait_for_console(console_before, INSTALLER_READY, BOOT_TIMEOUT);
    let installer = ssh.wait_until(
        "root",
        "cat /proc/sys/kernel/random/boot_id; . /etc/os-release; echo $ID $VARIANT_ID; \
         test -f /etc/cairn-installer && echo marker",
        BOOT_TIMEOUT,
        |out| out.contains("cairn-installer"),
    );
    let kexec_to_ssh = kexec_started.elapsed();
    let installer: Vec<&str> = installer.lines().collect();
    assert_ne!(installer[0], stock_boot_id, "the boot id changed: a new kernel runs");
    assert_eq!(installer[1..], ["cairn-installer installer", "marker"]);

    // Same host key: the pinned known_hosts above only holds the stock keys (so the login
    // itself proves it); the installer's console and ssh-keyscan say so too.
    let installer_keys = guest.console_host_keys(console_before);
    let stock_ed25519 = stock_keys.iter().find(|k| k.starts_with("ssh-ed25519 "));
    assert_eq!(
        installer_keys.iter().find(|k| k.starts_with("ssh-ed25519 ")),
        stock_ed25519,
        "installer console keys {installer_keys:?} (console offset {ready})"
    );
    let scan = vm::run_with_timeout(
        std::process::Command::new("ssh-keyscan").args([
            "-t",
            "ed25519",
            "-p",
            &guest.ssh_port.to_string(),
            "127.0.0.1",
        ]),
        COMMAND_TIMEOUT,
    );
    assert!(
        scan.stdout.contains(stock_ed25519.unwrap().as_str()),
        "ssh-keyscan of the installer: {scan:?}"
    );

    // The tools the install phases use, and GNU tar rather than busybox's.
    let tools = ssh.run(
        "root",
        "for t in sgdisk sfdisk wipefs blkid mkfs.ext4 mkfs.fat zstd tar extlinux kexec; do \
           command -v $t >/dev/null || { echo missing $t; exit 1; }; done; \
         tar --version | head -n1; ls /usr/lib/syslinux/mbr/gptmbr.bin; \
         free -m | awk '/^Mem:/ {print \"used_mib=\" $3}'",
        None,
        COMMAND_TIMEOUT,
    );
    assert!(tools.success(), "installer tools: {tools:?}");
    assert!(tools.stdout.contains("(GNU tar)"), "{}", tools.stdout);

    eprintln!(
        "vm_smoke timings: images {:.1}s (cached when ~0), boot to ssh {:.1}s, \
         kexec to installer ssh {:.1}s; installer {}",
        build_time.as_secs_f64(),
        boot_to_ssh.as_secs_f64(),
        kexec_to_ssh.as_secs_f64(),
        tools.stdout.lines().last().unwrap_or_default()
    );
}
