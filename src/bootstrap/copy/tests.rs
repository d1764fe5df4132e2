use super::*;
use std::io::Write;
use std::process::{Command, Stdio};

fn script(template: &str, text: &str, root: &std::path::Path) -> String {
    let vars = Vars::new().word("root", root.display().to_string());
    template::render(template, text, &vars).unwrap()
}

/// Runs `script` with the real sh, tar and zstd, feeding `input`.
fn sh(script: &str, input: &[u8]) -> std::process::Output {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The unpacker may stop reading early (a truncated stream): ignore a broken pipe.
    let _ = child.stdin.take().unwrap().write_all(input);
    child.wait_with_output().unwrap()
}

/// The compressed stream of `paths` from the store under `root`.
async fn stream(root: &std::path::Path, paths: &[StorePath]) -> Vec<u8> {
    let opts = TransferOptions { store_root: root.to_owned(), ..Default::default() };
    let mut s = TarStream::spawn(paths, &BTreeSet::new(), &opts).unwrap();
    let bytes = s.read_all().await;
    s.finish().await.unwrap();
    bytes
}

const NAMES: [&str; 4] = [
    "0a9y8hl9bwc5v1vm2b8g8mq2r0qp3cpd-first",
    "1s2abrc2z2wvfwbiw0s7gbd9ny6l52cf-second",
    "2x7c0jyhrr6pm4hw1ndq5k3lqiw6jpjd-third",
    "3q0ll5xg4hwpnibzhxc8hk8zpmiblj9p-fourth",
];

fn store_paths(names: &[&str]) -> Vec<StorePath> {
    names.iter().map(|n| StorePath::new(format!("/nix/store/{n}")).unwrap()).collect()
}

/// `bytes` of incompressible data, different for each `seed` (so a cut in a stream falls
/// where its size says).
fn noise(bytes: usize, seed: u32) -> Vec<u8> {
    let mut data = vec![0u8; bytes];
    let mut x = 0x9e37_79b9_u32.wrapping_mul(seed + 1);
    for b in &mut data {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    data
}

/// A copy cut off in the middle of a path, as when cairn is killed: the paths unpacked
/// before it count as complete, the cut one is removed and sent again, and the resumed
/// copy leaves the same files as an uninterrupted one. Real tar, zstd and sh.
#[tokio::test]
async fn an_interrupted_copy_resumes_without_the_half_written_path() {
    let src = tempfile::tempdir().unwrap();
    let names = &NAMES[..3];
    let paths = store_paths(names);
    for (i, p) in paths.iter().enumerate() {
        let dir = src.path().join(p.relative());
        fs_err::create_dir_all(dir.join("bin")).unwrap();
        // Incompressible, so a cut in the stream's middle falls in the middle path.
        fs_err::write(dir.join("bin/program"), noise(400 * 1024, i as u32)).unwrap();
        fs_err::write(dir.join("zz-last-file"), "written last\n").unwrap();
    }
    let whole = stream(src.path(), &paths).await;

    let dst = tempfile::tempdir().unwrap();
    let status = script("copy-status.sh", COPY_STATUS_SH, dst.path());
    let unpack = script("copy-unpack.sh", COPY_UNPACK_SH, dst.path());
    let cut = sh(&unpack, &whole[..whole.len() / 2]);
    assert!(!cut.status.success(), "a truncated stream must fail");
    assert!(dst.path().join(paths[1].relative()).exists(), "the middle path was begun");

    let found = sh(&status, b"");
    assert!(found.status.success(), "{}", String::from_utf8_lossy(&found.stderr));
    let found = TargetStore::parse(&String::from_utf8_lossy(&found.stdout));
    assert_eq!(found.complete, BTreeSet::from([names[0].to_string()]));
    assert_eq!(found.removed, vec![names[1].to_string()]);
    assert!(!dst.path().join(paths[1].relative()).exists(), "the cut path is gone");

    let rest: Vec<StorePath> = paths[1..].to_vec();
    let resumed = sh(&unpack, &stream(src.path(), &rest).await);
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    let found = TargetStore::parse(&String::from_utf8_lossy(&sh(&status, b"").stdout));
    assert_eq!(found.complete, names.iter().map(|n| n.to_string()).collect());
    assert!(found.removed.is_empty());
    for p in &paths {
        for file in ["bin/program", "zz-last-file"] {
            assert_eq!(
                fs_err::read(dst.path().join(p.relative()).join(file)).unwrap(),
                fs_err::read(src.path().join(p.relative()).join(file)).unwrap(),
                "{p} {file}"
            );
        }
    }
}

/// Cairn killed in the middle of a copy: the unpacker dies by SIGKILL (no chance to finish
/// anything), as on the target when the connection drops and copy-status stops it. Every
/// path recorded as complete is whole: its symlinks between store paths are links (GNU tar
/// otherwise leaves empty mode-000 placeholders until the end of the archive) and its
/// directories have their final modes. Real sh, tar and zstd.
#[tokio::test]
async fn paths_recorded_complete_before_a_sigkill_are_whole() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;

    let src = tempfile::tempdir().unwrap();
    let paths = store_paths(&NAMES);
    for (i, p) in paths.iter().enumerate() {
        let dir = src.path().join(p.relative());
        fs_err::create_dir_all(dir.join("bin")).unwrap();
        let target = format!("{}/bin/program", paths[(i + 1) % paths.len()].as_str());
        std::os::unix::fs::symlink(target, dir.join("bin/next")).unwrap();
        // Many members, so tar's listing leaves its output buffer while it works.
        for f in 0..400 {
            fs_err::write(dir.join(format!("bin/a-file-with-a-rather-long-name-{f:04}")), "x")
                .unwrap();
        }
        fs_err::write(dir.join("bin/program"), noise(512 * 1024, i as u32)).unwrap();
        for d in [dir.join("bin"), dir.clone()] {
            fs_err::set_permissions(&d, std::fs::Permissions::from_mode(0o555)).unwrap();
        }
    }
    let whole = stream(src.path(), &paths).await;
    let dst = tempfile::tempdir().unwrap();
    let unpack = script("copy-unpack.sh", COPY_UNPACK_SH, dst.path());
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(&unpack)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let group = child.id();
    let mut stdin = child.stdin.take().unwrap();
    // Most of the stream, and the pipe stays open: the unpacker is busy, not at an end.
    stdin.write_all(&whole[..whole.len() * 7 / 8]).unwrap();
    let list = dst.path().join("nix/.cairn-copied");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while fs_err::read_to_string(&list).unwrap_or_default().lines().count() < 2 {
        assert!(std::time::Instant::now() < until, "the unpacker recorded nothing");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let killed = Command::new("kill").args(["-KILL", "--", &format!("-{group}")]).status().unwrap();
    assert!(killed.success());
    let _ = child.wait();
    drop(stdin);

    let status = script("copy-status.sh", COPY_STATUS_SH, dst.path());
    let found = sh(&status, b"");
    assert!(found.status.success(), "{}", String::from_utf8_lossy(&found.stderr));
    let found = TargetStore::parse(&String::from_utf8_lossy(&found.stdout));
    assert!(found.complete.len() >= 2, "{found:?}");
    for name in &found.complete {
        let dir = dst.path().join("nix/store").join(name);
        let link = fs_err::symlink_metadata(dir.join("bin/next")).unwrap();
        assert!(link.file_type().is_symlink(), "{name}/bin/next is not a link: {link:?}");
        for d in [dir.join("bin"), dir.clone()] {
            let mode = fs_err::metadata(&d).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o555, "{}", d.display());
        }
    }
    // The test's own files are read-only: make them removable again.
    let _ = Command::new("chmod").args(["-R", "u+w"]).arg(dst.path()).status();
    let _ = Command::new("chmod").args(["-R", "u+w"]).arg(src.path()).status();
}

#[test]
fn status_lines_are_read() {
    let s =
        TargetStore::parse("complete aaaa-nix\nremoved bbbb-sops\ncomplete cccc-busybox\nnoise\n");
    assert_eq!(s.complete, BTreeSet::from(["aaaa-nix".to_string(), "cccc-busybox".to_string()]));
    assert_eq!(s.removed, vec!["bbbb-sops".to_string()]);
}

#[test]
fn the_plan_says_what_is_there_and_what_is_sent() {
    assert_eq!(
        plan_line(120, 37, 96 * 1024 * 1024),
        "copy: 37 of 120 paths already on the target, sending 83 (96 MiB)"
    );
    assert_eq!(
        plan_line(8, 0, 3 * 1024 * 1024 / 2),
        "copy: 0 of 8 paths already on the target, sending 8 (1.5 MiB)"
    );
    assert_eq!(plan_line(8, 8, 0), "copy: all 8 paths already on the target, sending nothing");
}

/// The whole remote side in one script (status, gate, unpack), as the copy runs it: it says
/// what the target holds up to `ready`, then takes `go BYTES stream|none`, the registration
/// (exactly BYTES: dd leaves the stream that follows alone) and the stream. Real sh, dd,
/// tar and zstd.
#[tokio::test]
async fn one_script_reports_takes_the_registration_then_unpacks_the_stream() {
    let src = tempfile::tempdir().unwrap();
    let paths = store_paths(&NAMES[..2]);
    for (i, p) in paths.iter().enumerate() {
        let dir = src.path().join(p.relative());
        fs_err::create_dir_all(&dir).unwrap();
        fs_err::write(dir.join("data"), noise(300 * 1024, i as u32)).unwrap();
    }
    let dst = tempfile::tempdir().unwrap();
    let script = copy_script(&dst.path().display().to_string(), None).unwrap();
    // Bigger than a pipe's buffer, so an over-reading dd would take part of the stream.
    let registration = "x".repeat(200 * 1024);
    let mut input = format!("go {} stream\n{registration}", registration.len()).into_bytes();
    input.extend(stream(src.path(), &paths).await);
    let out = sh(&script, &input);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ready\n", "a fresh target holds nothing");
    let kept = fs_err::read_to_string(dst.path().join("tmp/.cairn-registration")).unwrap();
    assert!(kept == registration, "the registration arrived whole, and nothing more");
    for p in &paths {
        assert_eq!(
            fs_err::read(dst.path().join(p.relative()).join("data")).unwrap(),
            fs_err::read(src.path().join(p.relative()).join("data")).unwrap(),
        );
    }

    // Run again with nothing to send: the status lists both paths, and `none` unpacks nothing.
    let again = sh(&script, b"go 0 none\n");
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    let text = String::from_utf8_lossy(&again.stdout);
    let found = TargetStore::parse(&text);
    assert_eq!(found.complete, NAMES[..2].iter().map(|n| n.to_string()).collect());
    assert!(text.ends_with("ready\n"), "{text}");
    assert!(!dst.path().join("tmp/.cairn-registration").exists(), "no registration this time");
}

/// Input that does not start with the `go` line is refused before anything is unpacked;
/// input that ends at the gate (cairn gave up) fails without touching the store.
#[test]
fn the_gate_refuses_anything_but_go() {
    let dst = tempfile::tempdir().unwrap();
    let script = copy_script(&dst.path().display().to_string(), None).unwrap();
    let wrong = sh(&script, b"go lots stream\n");
    assert_eq!(wrong.status.code(), Some(2), "{}", String::from_utf8_lossy(&wrong.stderr));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("expected 'go BYTES stream|none'"));
    let ended = sh(&script, b"");
    assert_eq!(ended.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&ended.stderr).contains("cairn ended the copy"));
    let store: Vec<_> = fs_err::read_dir(dst.path().join("nix/store")).unwrap().collect();
    assert!(store.is_empty(), "nothing was unpacked");
}

/// With a registration, the script ends by registering behind the chroot lock: it renders
/// with the closure's nix-store, and sh parses it.
#[test]
fn the_script_with_registration_parses() {
    let script = copy_script("/mnt", Some("/nix/store/aaaa-nix-2.18/bin/nix-store")).unwrap();
    assert!(script.contains("cairn_enter \"$root\""), "{script}");
    let parsed = Command::new("sh").arg("-n").arg("-c").arg(&script).output().unwrap();
    assert!(parsed.status.success(), "{}", String::from_utf8_lossy(&parsed.stderr));
}
