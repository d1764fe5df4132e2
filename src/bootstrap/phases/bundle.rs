//! The installer bundle on the stock system, uploaded and unpacked once per bundle: a marker
//! holding the bundle's sha256, written only after a complete unpack, lets a later attempt
//! (a killed run, a kexec that failed) skip the upload; a cut upload leaves none.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::BUNDLE_DIR;
use crate::bootstrap::PhaseError;
use crate::ssh::{RemoteCommand, Session};
use crate::util::template::{self, Vars};

const PROBE_SH: &str = include_str!("../../../templates/bootstrap/bundle-probe.sh");
const UNPACK_SH: &str = include_str!("../../../templates/bootstrap/bundle-unpack.sh");

/// What the stock system says about its bundle directory (bundle-probe.sh).
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Probe {
    /// A complete unpack of this very bundle is there.
    pub cached: bool,
    /// Free space of the directory's file system, when `df` could say.
    pub free_kib: Option<u64>,
    /// What an earlier bundle there takes (freed before the upload).
    pub old_kib: u64,
}

impl Probe {
    fn parse(text: &str) -> Probe {
        let value = |key: &str| {
            text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('=')).map(str::trim)
        };
        Probe {
            cached: value("cached") == Some("yes"),
            free_kib: value("free_kib").and_then(|v| v.parse().ok()),
            old_kib: value("old_kib").and_then(|v| v.parse().ok()).unwrap_or(0),
        }
    }
}

/// Whether the bundle goes up.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Upload {
    /// This bundle is there, whole, from an earlier attempt.
    Skip,
    Send,
    /// Not enough room for it unpacked.
    NoRoom {
        free_mib: u64,
        need_mib: u64,
    },
}

/// The room a bundle of `bytes` needs unpacked: what it holds (a kernel and an initrd) is
/// compressed already, so about its own size; a quarter more to be safe.
fn needed_kib(bytes: u64) -> u64 {
    (bytes / 1024).saturating_mul(5) / 4 + 1
}

pub(super) fn decide(probe: &Probe, bundle_bytes: u64) -> Upload {
    if probe.cached {
        return Upload::Skip;
    }
    let need = needed_kib(bundle_bytes);
    match probe.free_kib {
        Some(free) if free.saturating_add(probe.old_kib) < need => Upload::NoRoom {
            free_mib: (free + probe.old_kib) / 1024,
            need_mib: need.div_ceil(1024),
        },
        // Unknown (no df): the unpack says so if it runs out.
        _ => Upload::Send,
    }
}

/// The bundle's sha256, hex, read off the event loop.
pub(super) async fn sha256(path: &Path) -> Result<String, PhaseError> {
    let owned = path.to_path_buf();
    let hashed = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        let mut file = fs_err::File::open(&owned)?;
        let mut hasher = Sha256::new();
        std::io::copy(&mut file, &mut hasher)?;
        Ok(hex::encode(hasher.finalize()))
    })
    .await
    .map_err(|e| PhaseError::Remote {
        what: format!("hashing the installer bundle failed: {e}"),
        help: "this is a bug in cairn".into(),
    })?;
    hashed.map_err(|source| PhaseError::Io {
        what: format!("reading the installer bundle {}", path.display()),
        help: "check the `installer` path".into(),
        source,
    })
}

pub(super) async fn probe(session: &Session, sha256: &str) -> Result<Probe, PhaseError> {
    let script = template::render(
        "templates/bootstrap/bundle-probe.sh",
        PROBE_SH,
        &Vars::new().word("dir", BUNDLE_DIR).word("sha256", sha256),
    )?;
    let out = session.exec(&RemoteCommand::script("bundle-probe", script)).await?;
    Ok(Probe::parse(&out.stdout_trimmed()))
}

/// The script that unpacks the bundle arriving on stdin with `decompress` and marks it.
pub(super) fn unpack_script(sha256: &str, decompress: &str) -> Result<String, PhaseError> {
    Ok(template::render(
        "templates/bootstrap/bundle-unpack.sh",
        UNPACK_SH,
        &Vars::new().word("dir", BUNDLE_DIR).word("sha256", sha256).word("decompress", decompress),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn a_bundle_unpacked_whole_earlier_is_not_sent_again() {
        let probe = Probe::parse("cached=yes\nfree_kib=10\n");
        assert_eq!(decide(&probe, 500 << 20), Upload::Skip, "no room needed for what is there");
        let probe = Probe::parse("cached=no\nfree_kib=4194304\nold_kib=460000\n");
        assert_eq!(probe, Probe { cached: false, free_kib: Some(4_194_304), old_kib: 460_000 });
        assert_eq!(decide(&probe, 450 << 20), Upload::Send);
    }

    #[test]
    fn a_bundle_without_room_is_refused_before_the_upload() {
        // 450 MiB, about 563 MiB with the margin; 300 MiB free and an old 100 MiB bundle.
        let probe = Probe::parse("cached=no\nfree_kib=307200\nold_kib=102400\n");
        assert_eq!(decide(&probe, 450 << 20), Upload::NoRoom { free_mib: 400, need_mib: 563 });
        // The old bundle's room counts: it goes first.
        let probe = Probe::parse("cached=no\nfree_kib=307200\nold_kib=409600\n");
        assert_eq!(decide(&probe, 450 << 20), Upload::Send);
        // No df: tried, the unpack reports a full disk itself.
        assert_eq!(decide(&Probe::parse("cached=no\n"), 450 << 20), Upload::Send);
    }

    /// The probe and the unpack as the stock system runs them (here with `dir` under a temp
    /// directory): a cut upload leaves no marker and is not taken for a cached bundle; a
    /// whole one is, for this sha256 only.
    #[test]
    fn only_a_complete_unpack_is_taken_for_a_cached_bundle() {
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("root/cairn-kexec");
        let render = |text: &str, vars: Vars| {
            let text = text.replace("dir={{dir}}", &format!("dir='{}'", dir.display()));
            template::render("bundle", &text, &vars.word("sha256", SHA)).unwrap()
        };
        let probe_sh = render(PROBE_SH, Vars::new());
        let unpack_sh = render(UNPACK_SH, Vars::new().word("decompress", "gzip -dc"));
        let probe = || {
            let out = Command::new("sh").arg("-c").arg(&probe_sh).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            Probe::parse(&String::from_utf8_lossy(&out.stdout))
        };
        // A bundle: kexec/run and a large incompressible initrd, as a .tar.gz.
        let src = work.path().join("src");
        fs_err::create_dir_all(src.join("kexec")).unwrap();
        fs_err::write(src.join("kexec/run"), "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs_err::set_permissions(src.join("kexec/run"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let noise: Vec<u8> =
            (0..2_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        fs_err::write(src.join("kexec/initrd"), noise).unwrap();
        let tarball = work.path().join("bundle.tar.gz");
        let tar = Command::new("tar")
            .arg("-czf")
            .arg(&tarball)
            .arg("-C")
            .arg(&src)
            .arg("kexec")
            .status()
            .unwrap();
        assert!(tar.success());
        let bytes = fs_err::read(&tarball).unwrap();
        let unpack = |input: &[u8]| {
            let mut child = Command::new("sh")
                .arg("-c")
                .arg(&unpack_sh)
                .stdin(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            let _ = child.stdin.take().unwrap().write_all(input);
            child.wait_with_output().unwrap().status.success()
        };

        assert!(!probe().cached, "nothing there yet");
        assert!(!unpack(&bytes[..bytes.len() / 2]), "a cut upload fails");
        assert!(!dir.join(".cairn-bundle-sha256").exists());
        assert!(!probe().cached, "a cut upload is never trusted");
        assert!(unpack(&bytes), "a whole upload unpacks");
        assert_eq!(
            fs_err::read_to_string(dir.join(".cairn-bundle-sha256")).unwrap(),
            format!("{SHA}\n")
        );
        let probed = probe();
        assert!(probed.cached && probed.free_kib.is_some() && probed.old_kib > 0, "{probed:?}");
        // Another bundle's sha256 is not this one.
        let other = probe_sh.replace(SHA, &"0".repeat(64));
        let out = Command::new("sh").arg("-c").arg(&other).output().unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("cached=no"));
    }
}
