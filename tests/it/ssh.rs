//! The SSH layer against a real OpenSSH server on 127.0.0.1 (tests/support/sshd.rs).
#![allow(clippy::print_stderr)]

use crate::support::sshd;

use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use cairn::ssh::{
    wait_reachable, Auth, ConnectOptions, Error, HostKeyPolicy, RemoteCommand, Session, Target,
    UploadSource,
};
use russh::keys::PublicKey;
use sha2::{Digest, Sha256};
use sshd::Sshd;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::Instant;

fn target(sshd: &Sshd, user: &str) -> Target {
    Target::new("127.0.0.1", sshd.port, user)
}

fn pinned(sshd: &Sshd) -> HostKeyPolicy {
    HostKeyPolicy::pinned_openssh([sshd.host_public_key("ed25519")]).unwrap()
}

async fn connect_as(sshd: &Sshd, user: &str) -> Session {
    let auth = Auth::KeyFile(sshd.client_key());
    Session::connect(&target(sshd, user), &auth, &pinned(sshd), &ConnectOptions::default())
        .await
        .unwrap_or_else(|e| panic!("connect failed: {}\nsshd log:\n{}", render(&e), sshd.log()))
}

async fn connect(sshd: &Sshd) -> Session {
    connect_as(sshd, "root").await
}

/// The error as a user sees it (miette, no colors), with run-specific values filtered.
fn render(e: &Error) -> String {
    cairn::ui::render_plain(e)
}

fn snapshot_filters() -> Vec<(&'static str, &'static str)> {
    vec![
        (r"SHA256:[A-Za-z0-9+/]{43}", "SHA256:[fingerprint]"),
        (r"127\.0\.0\.1:\d+", "127.0.0.1:[port]"),
        (r"port \d+", "port [port]"),
        (r"\d+(\.\d)?s \(\d+ attempts\)", "[duration] ([n] attempts)"),
    ]
}

#[tokio::test]
async fn exec_captures_stdout_stderr_and_exit_status() {
    let sshd = Sshd::start();
    let s = connect(&sshd).await;

    let out =
        s.exec(&RemoteCommand::new("sh").arg("-c").arg("echo out; echo err >&2")).await.unwrap();
    assert_eq!(out.exit_code, 0);
    assert_eq!(out.stdout, b"out\n");
    // The login shell's rc files may print before the command does: check the end.
    assert!(out.stderr_tail.ends_with("err\n"), "{}", out.stderr_tail);

    // Arguments arrive exactly as given, whatever they contain.
    let tricky = ["", "a b", "it's", "two\nlines", "$HOME", "`id`"];
    let out = s.exec(&RemoteCommand::new("printf").arg("[%s]").args(tricky)).await.unwrap();
    let expected: String = tricky.iter().map(|a| format!("[{a}]")).collect();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), expected);

    // A non-zero status is an error with the command, the status and the stderr tail.
    let err = s
        .exec(&RemoteCommand::new("sh").arg("-c").arg("echo 'disk /dev/vdz not found' >&2; exit 3"))
        .await
        .unwrap_err();
    match &err {
        Error::CommandFailed { status, stderr_tail, .. } => {
            assert_eq!(*status, 3);
            assert!(stderr_tail.ends_with("disk /dev/vdz not found\n"), "{stderr_tail}");
        }
        other => panic!("unexpected error {other:?}"),
    }
    // Lines joined: where the renderer wraps depends on the port's number of digits.
    insta::with_settings!({ filters => snapshot_filters() }, {
        insta::assert_snapshot!("command_failed", render(&err).replace("\n  │ ", " "));
    });

    // Unless the caller allows that status.
    let out = s
        .exec(&RemoteCommand::new("test").arg("-e").arg("/nonexistent").allow_exit_codes([1]))
        .await
        .unwrap();
    assert_eq!(out.exit_code, 1);
}

#[tokio::test]
async fn exec_feeds_stdin_and_scripts_with_named_arguments() {
    let sshd = Sshd::start();
    let s = connect(&sshd).await;

    let out = s.exec(&RemoteCommand::new("cat").stdin(b"from stdin\n".to_vec())).await.unwrap();
    assert_eq!(out.stdout, b"from stdin\n");

    let script = "set -eu\nprintf 'hello %s, disk %s\\n' \"$WHO\" \"$DISK\"\n";
    let cmd = RemoteCommand::script("greet", script).env("WHO", "it's me").env("DISK", "/dev/vd a");
    let out = s.exec(&cmd).await.unwrap();
    assert_eq!(out.stdout_trimmed(), "hello it's me, disk /dev/vd a");

    let out = s.exec_with_input(&RemoteCommand::new("wc").arg("-c"), &b"12345"[..]).await.unwrap();
    assert_eq!(out.stdout_trimmed(), "5");
}

#[tokio::test]
async fn a_command_killed_by_a_signal_is_an_error_naming_the_signal() {
    let sshd = Sshd::start();
    let s = connect(&sshd).await;
    let err = s
        .exec(&RemoteCommand::new("sh").arg("-c").arg("echo dying >&2; kill -KILL $$"))
        .await
        .unwrap_err();
    match &err {
        Error::CommandKilled { signal, stderr_tail, .. } => {
            assert_eq!(signal, "KILL");
            assert!(stderr_tail.ends_with("dying\n"), "{stderr_tail}");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(render(&err).contains("was killed by signal KILL"), "{}", render(&err));
}

#[tokio::test]
async fn boot_id_is_the_kernels() {
    let sshd = Sshd::start();
    let s = connect(&sshd).await;
    let id = s.boot_id().await.unwrap();
    // The server runs on this machine, so it shares our kernel's boot id.
    let local = fs_err::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    assert_eq!(id.as_str(), local.trim());
}

#[tokio::test]
async fn a_wrong_host_key_is_refused_with_both_fingerprints() {
    let sshd = Sshd::start();
    let other = tempfile::tempdir().unwrap();
    sshd::keygen(&other.path().join("k"), "ed25519", "");
    let wrong = fs_err::read_to_string(other.path().join("k.pub")).unwrap();
    let policy = HostKeyPolicy::pinned_openssh([wrong.trim()]).unwrap();
    let auth = Auth::KeyFile(sshd.client_key());
    let err = Session::connect(&target(&sshd, "root"), &auth, &policy, &ConnectOptions::default())
        .await
        .unwrap_err();
    match &err {
        Error::HostKeyMismatch { expected, presented, .. } => {
            let wrong_key = PublicKey::from_openssh(wrong.trim()).unwrap();
            let real = PublicKey::from_openssh(&sshd.host_public_key("ed25519")).unwrap();
            assert_eq!(expected, &vec![cairn::ssh::fingerprint(&wrong_key)]);
            assert_eq!(presented, &cairn::ssh::fingerprint(&real));
        }
        other => panic!("unexpected error {other:?}"),
    }
    insta::with_settings!({ filters => snapshot_filters() }, {
        insta::assert_snapshot!("host_key_mismatch", render(&err));
    });

    // wait_reachable does not retry a refused key: it fails at once, not at the deadline.
    let deadline = Instant::now() + Duration::from_secs(3600);
    let err = wait_reachable(
        &target(&sshd, "root"),
        &auth,
        &policy,
        &ConnectOptions::default(),
        deadline,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::HostKeyMismatch { .. }), "{err:?}");
}

#[tokio::test]
async fn record_on_first_contact_returns_the_presented_key_and_pinning_any_type_works() {
    let sshd = Sshd::start();
    let auth = Auth::KeyFile(sshd.client_key());
    let s = Session::connect(
        &target(&sshd, "root"),
        &auth,
        &HostKeyPolicy::RecordOnFirstContact,
        &ConnectOptions::default(),
    )
    .await
    .unwrap();
    let recorded = s.host_key().clone();
    let ed25519 = PublicKey::from_openssh(&sshd.host_public_key("ed25519")).unwrap();
    assert_eq!(recorded.key_data(), ed25519.key_data());

    // From then on the caller pins what it recorded, in OpenSSH form (as state stores it).
    let line = recorded.to_openssh().unwrap();
    let policy = HostKeyPolicy::pinned_openssh([line]).unwrap();
    let s = Session::connect(&target(&sshd, "root"), &auth, &policy, &ConnectOptions::default())
        .await
        .unwrap();
    assert_eq!(s.host_key().key_data(), ed25519.key_data());

    // A pinned key of another type than the client's first choice: the server presents it.
    let ecdsa = PublicKey::from_openssh(&sshd.host_public_key("ecdsa")).unwrap();
    let policy = HostKeyPolicy::Pinned(vec![ecdsa.clone()]);
    let s = Session::connect(&target(&sshd, "root"), &auth, &policy, &ConnectOptions::default())
        .await
        .unwrap();
    assert_eq!(s.host_key().key_data(), ecdsa.key_data());
}

#[tokio::test]
async fn a_non_root_user_with_passwordless_sudo_runs_commands_as_root() {
    if !sshd::ensure_test_users() {
        eprintln!("skipped: creating test users needs root");
        return;
    }
    let sshd = Sshd::start();
    let s = connect_as(&sshd, sshd::SUDO_USER).await;
    let out = s.exec(&RemoteCommand::new("whoami")).await.unwrap();
    assert_eq!(out.stdout_trimmed(), "root");
    let out = s.exec(&RemoteCommand::new("whoami").unprivileged()).await.unwrap();
    assert_eq!(out.stdout_trimmed(), sshd::SUDO_USER);
    // Uploads go through sudo too: the file belongs to root.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("owned-by-root");
    s.upload(UploadSource::Bytes(b"x"), path.to_str().unwrap(), 0o600).await.unwrap();
    let out = s.exec(&RemoteCommand::new("stat").arg("-c").arg("%U %a").arg(&path)).await.unwrap();
    assert_eq!(out.stdout_trimmed(), "root 600");
}

#[tokio::test]
async fn a_non_root_user_without_sudo_gets_a_clear_error() {
    if !sshd::ensure_test_users() {
        eprintln!("skipped: creating test users needs root");
        return;
    }
    let sshd = Sshd::start();
    let s = connect_as(&sshd, sshd::PLAIN_USER).await;
    let err = s.exec(&RemoteCommand::new("whoami")).await.unwrap_err();
    assert!(matches!(err, Error::PasswordRequired { tool: "sudo", .. }), "{err:?}");
    insta::with_settings!({ filters => snapshot_filters() }, {
        insta::assert_snapshot!("sudo_password_required", render(&err));
    });
    // Commands that do not need root still run.
    let out = s.exec(&RemoteCommand::new("whoami").unprivileged()).await.unwrap();
    assert_eq!(out.stdout_trimmed(), sshd::PLAIN_USER);
}

/// A deterministic pseudo-random stream (xorshift), so no 200 MB buffer is needed.
struct Noise {
    state: u64,
    left: u64,
}

impl Noise {
    fn new(len: u64) -> Self {
        Self { state: 0x9E37_79B9_7F4A_7C15, left: len }
    }
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            let bytes = self.state.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

impl AsyncRead for Noise {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = (buf.remaining() as u64).min(self.left) as usize;
        let mut tmp = vec![0u8; n];
        self.fill(&mut tmp);
        self.left -= n as u64;
        buf.put_slice(&tmp);
        Poll::Ready(Ok(()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mb_upload_arrives_intact_private_and_without_temp_files() {
    const SIZE: u64 = 200 * 1024 * 1024;
    let sshd = Sshd::start();
    let s = connect(&sshd).await;

    // The local file and its digest.
    let local = tempfile::NamedTempFile::new().unwrap();
    let mut hasher = Sha256::new();
    {
        let mut noise = Noise::new(SIZE);
        let mut w = std::io::BufWriter::new(local.as_file());
        let mut buf = vec![0u8; 1 << 20];
        for _ in 0..SIZE / (1 << 20) {
            noise.fill(&mut buf);
            hasher.update(&buf);
            w.write_all(&buf).unwrap();
        }
        w.flush().unwrap();
    }
    let local_digest = hex::encode(hasher.finalize());

    let remote_dir = tempfile::tempdir().unwrap();
    let dest = remote_dir.path().join("closure.bin");
    let dest = dest.to_str().unwrap();
    // A previous version is replaced, not appended to.
    fs_err::write(dest, b"old").unwrap();
    let sent = s.upload(UploadSource::File(local.path()), dest, 0o600).await.unwrap();
    assert_eq!(sent, SIZE);

    let out = s.exec(&RemoteCommand::new("sha256sum").arg(dest)).await.unwrap();
    let remote_digest = out.stdout_trimmed().split_whitespace().next().unwrap().to_owned();
    assert_eq!(remote_digest, local_digest);
    let out = s.exec(&RemoteCommand::new("stat").arg("-c").arg("%a %s").arg(dest)).await.unwrap();
    assert_eq!(out.stdout_trimmed(), format!("600 {SIZE}"));
    let out = s.exec(&RemoteCommand::new("ls").arg("-A").arg(remote_dir.path())).await.unwrap();
    assert_eq!(out.stdout_trimmed(), "closure.bin");

    // The same from a stream of unknown size (two-step commit), with another mode.
    let dest2 = remote_dir.path().join("stream.bin");
    let sent = s
        .upload(
            UploadSource::reader(Noise::new(3 * 1024 * 1024 + 17), None),
            dest2.to_str().unwrap(),
            0o644,
        )
        .await
        .unwrap();
    assert_eq!(sent, 3 * 1024 * 1024 + 17);
    let out = s.exec(&RemoteCommand::new("stat").arg("-c").arg("%a %s").arg(&dest2)).await.unwrap();
    assert_eq!(out.stdout_trimmed(), format!("644 {}", 3 * 1024 * 1024 + 17));
    let out = s.exec(&RemoteCommand::new("ls").arg("-A").arg(remote_dir.path())).await.unwrap();
    assert_eq!(out.stdout_trimmed(), "closure.bin\nstream.bin");
}

#[tokio::test]
async fn an_upload_that_comes_up_short_leaves_the_target_untouched() {
    let sshd = Sshd::start();
    let s = connect(&sshd).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("key");
    fs_err::write(&dest, b"old content").unwrap();
    // The stream ends before the announced size: the remote side refuses to commit.
    let err = s
        .upload(UploadSource::reader(&b"short"[..], Some(100)), dest.to_str().unwrap(), 0o600)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UploadSize { sent: 5, received: 5, .. }), "{err:?}");
    assert_eq!(fs_err::read(&dest).unwrap(), b"old content");
    assert_eq!(fs_err::read_dir(dir.path()).unwrap().count(), 1, "temp file left behind");
}

/// Yields `len` bytes of noise and runs `at_half` once, when half of them were read.
struct Tripwire<F: FnMut() + Unpin> {
    noise: Noise,
    len: u64,
    at_half: Option<F>,
}

impl<F: FnMut() + Unpin> AsyncRead for Tripwire<F> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.noise.left <= self.len / 2 {
            if let Some(mut f) = self.at_half.take() {
                f();
            }
        }
        Pin::new(&mut self.noise).poll_read(cx, buf)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_mid_upload_is_an_error_and_the_target_is_untouched() {
    const SIZE: u64 = 64 * 1024 * 1024;
    let sshd = Arc::new(Sshd::start());
    let s = connect(&sshd).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("system.tar");
    fs_err::write(&dest, b"old content").unwrap();

    let killer = sshd.clone();
    let source = Tripwire {
        noise: Noise::new(SIZE),
        len: SIZE,
        at_half: Some(move || killer.kill_sessions()),
    };
    let err = s
        .upload(UploadSource::reader(source, Some(SIZE)), dest.to_str().unwrap(), 0o600)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ConnectionLost { .. }), "{err:?}");
    assert_eq!(fs_err::read(&dest).unwrap(), b"old content");

    // The server still accepts new connections, and the file is still the old one.
    let s = connect(&sshd).await;
    let out = s.exec(&RemoteCommand::new("cat").arg(&dest)).await.unwrap();
    assert_eq!(out.stdout, b"old content");
}

#[tokio::test]
async fn open_stream_pipes_data_through_a_remote_command() {
    let sshd = Sshd::start();
    let s = connect(&sshd).await;
    let mut stream = s.open_stream(&RemoteCommand::new("sha256sum")).await.unwrap();
    let mut hasher = Sha256::new();
    for i in 0..64u8 {
        let chunk = vec![i; 100_000];
        hasher.update(&chunk);
        stream.write(chunk).await.unwrap();
    }
    assert_eq!(stream.bytes_sent(), 6_400_000);
    let out = stream.finish().await.unwrap();
    assert_eq!(
        out.stdout_trimmed().split_whitespace().next().unwrap(),
        hex::encode(hasher.finalize())
    );

    // A command that fails while we write reports its own error, not a write error.
    let mut stream = s
        .open_stream(&RemoteCommand::new("sh").arg("-c").arg("echo 'no space left' >&2; exit 1"))
        .await
        .unwrap();
    let mut err = None;
    for _ in 0..1000 {
        if let Err(e) = stream.write(vec![0u8; 1 << 20]).await {
            err = Some(e);
            break;
        }
    }
    let err = match err {
        Some(e) => e,
        None => stream.finish().await.unwrap_err(),
    };
    assert!(
        matches!(&err, Error::CommandFailed { status: 1, stderr_tail, .. } if stderr_tail.ends_with("no space left\n")),
        "{err:?}"
    );
}

#[tokio::test]
async fn wait_reachable_succeeds_once_the_port_opens() {
    let mut sshd = Sshd::prepare(sshd::free_port());
    let policy = pinned(&sshd);
    let target = target(&sshd, "root");
    let auth = Auth::KeyFile(sshd.client_key());
    let (tx, rx) = std::sync::mpsc::channel();
    let starter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        sshd.launch();
        tx.send(()).unwrap();
        sshd
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let s = wait_reachable(&target, &auth, &policy, &ConnectOptions::default(), deadline).await;
    rx.recv().unwrap();
    let sshd = starter.join().unwrap();
    let s = s.unwrap_or_else(|e| panic!("{}\n{}", render(&e), sshd.log()));
    assert_eq!(s.exec(&RemoteCommand::new("echo").arg("up")).await.unwrap().stdout, b"up\n");
}

#[tokio::test]
async fn wait_reachable_gives_up_at_the_deadline_with_the_last_error() {
    let port = sshd::free_port();
    let target = Target::new("127.0.0.1", port, "root");
    let key = tempfile::tempdir().unwrap();
    sshd::keygen(&key.path().join("k"), "ed25519", "");
    let auth = Auth::KeyFile(key.path().join("k"));
    let policy = HostKeyPolicy::RecordOnFirstContact;
    let deadline = Instant::now() + Duration::from_secs(2);
    let err = wait_reachable(&target, &auth, &policy, &ConnectOptions::default(), deadline)
        .await
        .unwrap_err();
    match &err {
        Error::Unreachable { attempts, last_error, .. } => {
            assert!(*attempts >= 1);
            assert!(last_error.contains("Connection refused"), "{last_error}");
        }
        other => panic!("unexpected error {other:?}"),
    }
    insta::with_settings!({ filters => snapshot_filters() }, {
        insta::assert_snapshot!("unreachable", render(&err));
    });
}

#[tokio::test]
async fn key_problems_are_reported_before_and_after_connecting() {
    let sshd = Sshd::start();
    let keys = tempfile::tempdir().unwrap();
    // A key the server does not know.
    sshd::keygen(&keys.path().join("stranger"), "ed25519", "");
    let err = Session::connect(
        &target(&sshd, "root"),
        &Auth::KeyFile(keys.path().join("stranger")),
        &pinned(&sshd),
        &ConnectOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::AuthRejected { .. }), "{err:?}");
    assert!(err.to_string().contains("refused every key offered (ssh-ed25519 SHA256:"), "{err}");

    // An encrypted key: use the agent instead.
    sshd::keygen(&keys.path().join("locked"), "ed25519", "passphrase");
    let err = Session::connect(
        &target(&sshd, "root"),
        &Auth::KeyFile(keys.path().join("locked")),
        &pinned(&sshd),
        &ConnectOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::KeyEncrypted { .. }), "{err:?}");
    assert!(render(&err).contains("ssh-add"), "{}", render(&err));
}

#[tokio::test]
async fn authenticates_with_a_key_held_by_ssh_agent() {
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let mut agent = std::process::Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&socket)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(agent.try_wait().unwrap().is_none(), "ssh-agent exited");
        assert!(std::time::Instant::now() < until, "ssh-agent did not create its socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _agent = Kill(agent);
    let added = std::process::Command::new("ssh-add")
        .arg(sshd.client_key())
        .env("SSH_AUTH_SOCK", &socket)
        .output()
        .unwrap();
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));

    let auth = Auth::Agent { socket: Some(socket.clone()) };
    let s =
        Session::connect(&target(&sshd, "root"), &auth, &pinned(&sshd), &ConnectOptions::default())
            .await
            .unwrap();
    assert_eq!(
        s.exec(&RemoteCommand::new("id").arg("-un")).await.unwrap().stdout_trimmed(),
        "root"
    );
}

#[tokio::test]
async fn a_transfer_that_makes_no_progress_fails_after_the_io_timeout() {
    let sshd = Sshd::start();
    let auth = Auth::KeyFile(sshd.client_key());
    let options =
        ConnectOptions { io_timeout: Duration::from_secs(1), ..ConnectOptions::default() };
    let s =
        Session::connect(&target(&sshd, "root"), &auth, &pinned(&sshd), &options).await.unwrap();
    // The remote command never reads its stdin, so the SSH window fills and stays full.
    let pid_file = tempfile::NamedTempFile::new().unwrap();
    let script = format!("echo $$ > {}; exec sleep 60", pid_file.path().display());
    let mut stream = s.open_stream(&RemoteCommand::new("sh").arg("-c").arg(script)).await.unwrap();
    let mut result = Ok(());
    for _ in 0..256 {
        result = stream.write(vec![0u8; 1 << 20]).await;
        if result.is_err() {
            break;
        }
    }
    let err = result.unwrap_err();
    assert!(matches!(err, Error::Stalled { .. }), "{err:?}");
    assert!(err.to_string().contains("stalled: no progress for 1.0s"), "{err}");
    // The sleeper runs on this machine: stop it by its pid.
    let pid = fs_err::read_to_string(pid_file.path()).unwrap();
    let _ = std::process::Command::new("kill").arg(pid.trim()).status();
}

#[tokio::test]
async fn the_openssh_client_accepts_exactly_the_pinned_keys_from_known_hosts() {
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let run_ssh = |known_hosts: &str| {
        let file = dir.path().join("known_hosts");
        fs_err::write(&file, known_hosts).unwrap();
        std::process::Command::new("ssh")
            .args(["-F", "/dev/null", "-o", "BatchMode=yes", "-i"])
            .arg(sshd.client_key())
            .args(["-p", &sshd.port.to_string()])
            .args(cairn::ssh::openssh_options(&file))
            .args(["root@127.0.0.1", "echo", "pinned"])
            .output()
            .unwrap()
    };
    let t = target(&sshd, "root");
    let real = PublicKey::from_openssh(&sshd.host_public_key("ed25519")).unwrap();
    let out = run_ssh(&cairn::ssh::known_hosts(&t, &[real]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"pinned\n");

    sshd::keygen(&dir.path().join("other"), "ed25519", "");
    let other = PublicKey::read_openssh_file(dir.path().join("other.pub")).unwrap();
    let out = run_ssh(&cairn::ssh::known_hosts(&t, &[other]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Host key verification failed"));
}

#[tokio::test]
async fn interactive_sessions_get_a_pty_follow_resizes_and_return_the_exit_code() {
    use cairn::ssh::{Interactive, PtyRequest, TerminalSize};
    let sshd = Sshd::start();
    let s = connect(&sshd).await;

    // One command on a pty of the requested size; its exit status comes back.
    let spec = Interactive {
        command: Some("stty size; exit 7".into()),
        pty: Some(PtyRequest { term: "xterm".into(), size: TerminalSize { cols: 100, rows: 40 } }),
    };
    let (_tx, rx) = tokio::sync::mpsc::channel(1);
    let mut out = Vec::new();
    let code =
        s.interactive(&spec, tokio::io::empty(), &mut out, tokio::io::sink(), rx).await.unwrap();
    assert_eq!(code, 7);
    assert_eq!(String::from_utf8_lossy(&out).trim(), "40 100");

    // A login shell: a resize reaches the remote pty before the next line is read.
    let spec = Interactive {
        command: None,
        pty: Some(PtyRequest { term: "dumb".into(), size: TerminalSize { cols: 80, rows: 24 } }),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(TerminalSize { cols: 132, rows: 50 }).await.unwrap();
    let (mut keyboard, stdin) = tokio::io::duplex(1024);
    let typing = async move {
        use tokio::io::AsyncWriteExt;
        keyboard.write_all(b"stty size; exit 3\n").await.unwrap();
        // Keep the keyboard open until the shell exits, as a terminal would.
        keyboard
    };
    let mut out = Vec::new();
    let (code, _keyboard) =
        tokio::join!(s.interactive(&spec, stdin, &mut out, tokio::io::sink(), rx), typing);
    assert_eq!(code.unwrap(), 3);
    assert!(String::from_utf8_lossy(&out).contains("50 132"), "{}", String::from_utf8_lossy(&out));

    // Without a pty, a command killed by a signal exits with 128 + n, as in a shell.
    let spec = Interactive { command: Some("kill -TERM $$".into()), pty: None };
    let (_tx, rx) = tokio::sync::mpsc::channel(1);
    let code = s
        .interactive(&spec, tokio::io::empty(), tokio::io::sink(), tokio::io::sink(), rx)
        .await
        .unwrap();
    assert_eq!(code, 128 + 15);
}

/// Not a test: measures upload throughput against OpenSSH's `ssh host 'cat > file'` on the
/// same file. Run once with `cargo test --test ssh measure -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_upload_throughput() {
    const SIZE: u64 = 200 * 1024 * 1024;
    let sshd = Sshd::start();
    let s = connect(&sshd).await;
    let local = tempfile::NamedTempFile::new().unwrap();
    {
        let mut noise = Noise::new(SIZE);
        let mut w = std::io::BufWriter::new(local.as_file());
        let mut buf = vec![0u8; 1 << 20];
        for _ in 0..SIZE / (1 << 20) {
            noise.fill(&mut buf);
            w.write_all(&buf).unwrap();
        }
        w.flush().unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let dest = dir.path().join("cairn.bin");
        let started = std::time::Instant::now();
        s.upload(UploadSource::File(local.path()), dest.to_str().unwrap(), 0o600).await.unwrap();
        let cairn = started.elapsed();

        let dest = dir.path().join("openssh.bin");
        let started = std::time::Instant::now();
        let status = std::process::Command::new("ssh")
            .args([
                "-F",
                "/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-i",
            ])
            .arg(sshd.client_key())
            .args(["-p", &sshd.port.to_string(), "root@127.0.0.1"])
            .arg(format!("cat > {} && sync {}", dest.display(), dest.display()))
            .stdin(fs_err::File::open(local.path()).unwrap().into_parts().0)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let openssh = started.elapsed();
        let mbps = |d: Duration| SIZE as f64 / (1024.0 * 1024.0) / d.as_secs_f64();
        eprintln!(
            "round {round}: cairn upload {:.0} MiB/s ({:.2}s), OpenSSH ssh+cat {:.0} MiB/s ({:.2}s)",
            mbps(cairn),
            cairn.as_secs_f64(),
            mbps(openssh),
            openssh.as_secs_f64()
        );
    }
}

/// Formatted tracing output of this test binary, from a global subscriber set once: a
/// scoped one races with other tests' threads over tracing's per-callsite interest cache.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn captured_log() -> &'static Captured {
    static LOG: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("cairn::ssh=debug")
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .without_time()
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        captured
    })
}

#[tokio::test]
async fn remote_output_is_streamed_as_tracing_events_with_the_host() {
    let captured = captured_log();

    let sshd = Sshd::start();
    let s = connect(&sshd).await;
    s.exec(
        &RemoteCommand::new("sh")
            .arg("-c")
            .arg("echo formatting /dev/vda1; echo 'mke2fs 1.47' >&2"),
    )
    .await
    .unwrap();
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let host = format!("host=root@127.0.0.1:{}", sshd.port);
    let line = |needle: &str| {
        let found = log.lines().find(|l| l.contains("cairn::ssh::remote") && l.contains(needle));
        found.unwrap_or_else(|| panic!("no remote line {needle:?} in\n{log}")).to_owned()
    };
    let out = line("formatting /dev/vda1");
    assert!(out.contains("stream=\"stdout\"") && out.contains(&host), "{out}");
    let err = line("mke2fs 1.47");
    assert!(err.contains("stream=\"stderr\"") && err.contains(&host), "{err}");
    // The private key never shows up in the log.
    let key = fs_err::read_to_string(sshd.client_key()).unwrap();
    let body: String = key.lines().nth(1).unwrap().chars().take(40).collect();
    assert!(!log.contains(&body));
}

#[tokio::test]
async fn a_command_over_its_time_limit_is_stopped_and_reported() {
    let sshd = Sshd::start();
    let s = connect(&sshd).await;
    let pid_file = tempfile::NamedTempFile::new().unwrap();
    let script = format!("echo $$ > {}; exec sleep 60", pid_file.path().display());
    let cmd = RemoteCommand::new("sh").arg("-c").arg(script).timeout(Duration::from_secs(1));
    let err = s.exec(&cmd).await.unwrap_err();
    assert!(matches!(err, Error::CommandTimeout { .. }), "{err:?}");
    assert!(err.to_string().ends_with("did not finish within 1.0s"), "{err}");
    assert!(render(&err).contains("cairn stopped the command and closed its channel"));
    // The session stays usable.
    assert_eq!(
        s.exec(&RemoteCommand::new("echo").arg("still here")).await.unwrap().stdout,
        b"still here\n"
    );
    let pid = fs_err::read_to_string(pid_file.path()).unwrap();
    let _ = std::process::Command::new("kill").arg(pid.trim()).status();
}

#[tokio::test]
async fn authenticates_with_an_rsa_key_using_sha2_signatures() {
    // OpenSSH 8.8+ refuses SHA-1 `ssh-rsa` signatures: this needs rsa-sha2-256/512.
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    sshd::keygen(&dir.path().join("rsa"), "rsa", "");
    sshd.authorize(&fs_err::read_to_string(dir.path().join("rsa.pub")).unwrap());
    let auth = Auth::KeyFile(dir.path().join("rsa"));
    let s =
        Session::connect(&target(&sshd, "root"), &auth, &pinned(&sshd), &ConnectOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{}\n{}", render(&e), sshd.log()));
    assert_eq!(s.exec(&RemoteCommand::new("echo").arg("rsa")).await.unwrap().stdout, b"rsa\n");
}

/// A fleet repository whose inventory names the test sshd as host `box`, with `keys`
/// recorded as its stock-image host keys in state.
fn repo_for(sshd: &Sshd, keys: &[String]) -> tempfile::TempDir {
    let repo = tempfile::tempdir().unwrap();
    let inventory = format!(
        "provider \"existing\" \"owned\" {{}}\n\n\
         host \"box\" {{\n  provider = \"owned\"\n  address  = \"127.0.0.1\"\n\n  ssh {{\n    port = {}\n  }}\n}}\n",
        sshd.port
    );
    fs_err::write(repo.path().join("cairn.hcl"), inventory).unwrap();
    let mut state = cairn::state::StateData::default();
    let host = state.hosts.entry("box".into()).or_default();
    host.host_keys.insert(cairn::state::KeyPhase::Stock, keys.to_vec());
    fs_err::create_dir_all(repo.path().join(".cairn")).unwrap();
    fs_err::write(
        repo.path().join(".cairn/state.json"),
        serde_json::to_vec_pretty(&state).unwrap(),
    )
    .unwrap();
    repo
}

fn cairn_ssh(repo: &std::path::Path, sshd: &Sshd, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("-C")
        .arg(repo)
        .args(["--color", "never", "ssh", "box", "-i"])
        .arg(sshd.client_key())
        .args(args)
        .env_remove("SSH_AUTH_SOCK")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn cairn_ssh_runs_a_command_with_the_pinned_key_and_propagates_its_exit_code() {
    let sshd = Sshd::start();
    let repo = repo_for(&sshd, &[sshd.host_public_key("ed25519")]);
    let out = cairn_ssh(
        repo.path(),
        &sshd,
        &["--", "echo", "hello from", "$(hostname)", ";", "exit", "5"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(5), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    // The words reach the remote shell joined by spaces, as with ssh.
    let hostname = fs_err::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(stdout.trim(), format!("hello from {}", hostname.trim()));
}

#[test]
fn cairn_ssh_refuses_a_host_whose_key_changed() {
    let sshd = Sshd::start();
    let other = tempfile::tempdir().unwrap();
    sshd::keygen(&other.path().join("k"), "ed25519", "");
    let wrong = fs_err::read_to_string(other.path().join("k.pub")).unwrap();
    let repo = repo_for(&sshd, &[wrong.trim().to_owned()]);
    let out = cairn_ssh(repo.path(), &sshd, &["--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not match the pinned key"), "{stderr}");
    assert!(stderr.contains("hosts.box.host_keys.stock in"), "{stderr}");
    assert!(out.stdout.is_empty());
}
