use super::*;

#[test]
fn command_lines() {
    let o = TransferOptions::default();
    assert_eq!(
        tar_args(&o).join(" "),
        "--create --file=- --directory=/ --owner=0 --group=0 --numeric-owner --null --files-from=-"
    );
    assert_eq!(zstd_args(3).join(" "), "-T0 -3 -q -c");
    assert_eq!(
        unpack_command("/mnt"),
        "mkdir -p /mnt/nix/store && if [ -x /usr/bin/tar ]; then t=/usr/bin/tar; else t=tar; fi && zstd -d -c | \"$t\" -C /mnt -x -f -"
    );
}

/// Streams a fake store (a temp dir laid out as `nix/store/...`) through the real tar and
/// zstd, unpacks it with them, and checks the skipped path stayed out.
#[tokio::test]
async fn round_trip_through_real_tar_and_zstd() {
    let src = tempfile::tempdir().unwrap();
    let store = src.path().join("nix/store");
    let a = StorePath::new("/nix/store/gcqiw58q9c8ka0xdlbb4gl1f1852jf6i-dep").unwrap();
    let b = StorePath::new("/nix/store/wgqb4b5brcyb0y5ggx8yjykdi84rs7xw-top").unwrap();
    fs_err::create_dir_all(store.join(a.relative().trim_start_matches("nix/store/")).join("bin"))
        .unwrap();
    fs_err::write(src.path().join(a.relative()).join("bin/hello"), "hello\n").unwrap();
    fs_err::create_dir_all(src.path().join(b.relative())).unwrap();
    fs_err::write(src.path().join(b.relative()).join("ref"), a.as_str()).unwrap();

    let opts = TransferOptions { store_root: src.path().to_owned(), ..Default::default() };
    let skip = BTreeSet::from([a.clone()]);
    let mut stream = TarStream::spawn(&[b.clone(), a.clone()], &skip, &opts).unwrap();
    assert_eq!(stream.paths, vec![b.clone()]);
    let bytes = stream.read_all().await;
    stream.finish().await.unwrap();
    assert_eq!(&bytes[..4], &[0x28, 0xb5, 0x2f, 0xfd], "zstd magic");

    let dst = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(unpack_command(&dst.path().display().to_string()))
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), &bytes).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    assert_eq!(
        fs_err::read_to_string(dst.path().join(b.relative()).join("ref")).unwrap(),
        a.as_str()
    );
    assert!(!dst.path().join(a.relative()).exists());
}

/// An operator whose store belongs to uid 1000 (single-user Nix) sends paths owned by
/// root: what the installed host's store must be.
#[tokio::test]
async fn store_paths_are_sent_owned_by_root_whoever_owns_them_here() {
    let src = tempfile::tempdir().unwrap();
    let p = StorePath::new("/nix/store/gcqiw58q9c8ka0xdlbb4gl1f1852jf6i-mine").unwrap();
    let dir = src.path().join(p.relative());
    fs_err::create_dir_all(&dir).unwrap();
    fs_err::write(dir.join("file"), "x").unwrap();
    if std::os::unix::fs::chown(&dir, Some(1000), Some(100)).is_err()
        || std::os::unix::fs::chown(dir.join("file"), Some(1000), Some(100)).is_err()
    {
        return; // not root: the files are this user's, which proves as much
    }
    let opts = TransferOptions { store_root: src.path().to_owned(), ..Default::default() };
    let mut stream = TarStream::spawn(&[p], &BTreeSet::new(), &opts).unwrap();
    let bytes = stream.read_all().await;
    stream.finish().await.unwrap();
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg("zstd -d -c | tar -t -v --numeric-owner -f -")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), &bytes).unwrap();
    drop(child.stdin.take());
    let listing = child.wait_with_output().unwrap();
    let listing = String::from_utf8(listing.stdout).unwrap();
    let owners: Vec<&str> = listing.lines().filter_map(|l| l.split_whitespace().nth(1)).collect();
    assert_eq!(owners, ["0/0", "0/0"], "{listing}");
}

#[tokio::test]
async fn a_missing_path_fails_with_tars_message() {
    let src = tempfile::tempdir().unwrap();
    let p = StorePath::new("/nix/store/gcqiw58q9c8ka0xdlbb4gl1f1852jf6i-gone").unwrap();
    let opts = TransferOptions { store_root: src.path().to_owned(), ..Default::default() };
    let mut stream = TarStream::spawn(&[p], &BTreeSet::new(), &opts).unwrap();
    stream.read_all().await;
    let err = stream.finish().await.unwrap_err().to_string();
    assert!(err.starts_with("`tar (streaming the closure)` failed"), "{err}");
    assert!(err.contains("gcqiw58q9c8ka0xdlbb4gl1f1852jf6i-gone: Cannot stat"), "{err}");
}
