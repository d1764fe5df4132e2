//! Pinned downloads (`installer = "https://..."` + `installer_sha256`, the qemu provider's
//! `image` + `image_sha256`) against a small HTTP server on 127.0.0.1 started by each test:
//! a good sum lands in the cache under its checksum, a second run uses the cache, a bad sum
//! is an error naming the URL and both sums and leaves nothing in the cache, and a transfer
//! cut off half-way is resumed with a Range request. No test reaches the internet.

#![allow(clippy::print_stderr)] // tests say why they skip

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use cairn::download::{self, Checksum, DownloadError, Pinned};
use sha2::Digest;

/// What the server saw: one entry per request, the `Range` header if any.
type Seen = Arc<Mutex<Vec<Option<String>>>>;

/// Serves `body` at every path; honours `Range: bytes=N-`. With `cut_first_after`, the
/// first response announces the whole length but the connection closes after that many
/// bytes, as a dropped download does.
struct Server {
    port: u16,
    seen: Seen,
}

impl Server {
    fn start(body: Vec<u8>, cut_first_after: Option<usize>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen: Seen = Arc::default();
        let log = seen.clone();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { break };
                let cut = if n == 0 { cut_first_after } else { None };
                serve(stream, &body, cut, &log);
            }
        });
        Server { port, seen }
    }

    fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }

    fn requests(&self) -> Vec<Option<String>> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(mut stream: TcpStream, body: &[u8], cut: Option<usize>, seen: &Seen) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("range:") {
            range = Some(v.trim().to_string());
        }
    }
    seen.lock().unwrap().push(range.clone());
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    let head = match start {
        Some(s) if s >= body.len() => {
            let _ = write!(
                stream,
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                body.len()
            );
            return;
        }
        Some(s) => format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {s}-{}/{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len() - 1,
            body.len(),
            body.len() - s
        ),
        None => format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n",
            body.len()
        ),
    };
    let rest = &body[start.unwrap_or(0)..];
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&rest[..cut.unwrap_or(rest.len()).min(rest.len())]);
    let _ = stream.flush();
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// A few MiB of bytes that do not compress to nothing.
fn bundle() -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..3 * 1024 * 1024 + 17)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(b))
}

fn pinned(url: &str, sum: &str) -> Pinned {
    Pinned { url: url.parse().unwrap(), checksum: Checksum::sha256(sum).unwrap() }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Every file under `dir`, relative.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = fs_err::read_dir(dir) else { return out };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p).into_iter().map(|f| Path::new(&e.file_name()).join(f)));
        } else {
            out.push(PathBuf::from(e.file_name()));
        }
    }
    out
}

#[test]
fn a_good_sum_lands_in_the_cache_and_the_next_run_uses_it() {
    let body = bundle();
    let sum = sha256_hex(&body);
    let server = Server::start(body.clone(), None);
    let cache = tempfile::tempdir().unwrap();
    let pin = pinned(&server.url("bundles/nixos-kexec-installer-x86_64-linux.tar.gz"), &sum);

    let path = runtime().block_on(download::fetch(&pin, cache.path())).unwrap();
    assert_eq!(
        path,
        cache.path().join(format!("sha256-{sum}/nixos-kexec-installer-x86_64-linux.tar.gz"))
    );
    assert_eq!(fs_err::read(&path).unwrap(), body);
    assert_eq!(server.requests(), vec![None]);

    // Cache hit: checked again, not fetched again.
    let again = runtime().block_on(download::fetch(&pin, cache.path())).unwrap();
    assert_eq!(again, path);
    assert_eq!(server.requests().len(), 1, "the cached file was downloaded again");
    let mut left = files(cache.path());
    left.sort();
    let folder = PathBuf::from(format!("sha256-{sum}"));
    assert_eq!(
        left,
        vec![folder.join(".lock"), folder.join("nixos-kexec-installer-x86_64-linux.tar.gz")]
    );
}

#[test]
fn two_runs_wanting_the_same_file_download_it_once() {
    let body = bundle();
    let sum = sha256_hex(&body);
    let server = Server::start(body.clone(), None);
    let cache = tempfile::tempdir().unwrap();
    let pin = pinned(&server.url("installer.tar.gz"), &sum);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
    let (a, b) = rt.unwrap().block_on(async {
        tokio::join!(download::fetch(&pin, cache.path()), download::fetch(&pin, cache.path()))
    });
    assert_eq!(a.unwrap(), b.unwrap());
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn a_bad_sum_is_an_error_naming_both_sums_and_leaves_nothing_in_the_cache() {
    let body = bundle();
    let server = Server::start(body.clone(), None);
    let cache = tempfile::tempdir().unwrap();
    let expected = "00".repeat(32);
    let url = server.url("debian-13-genericcloud-amd64.qcow2");

    let err = runtime().block_on(download::fetch(&pinned(&url, &expected), cache.path()));
    let Err(DownloadError::Mismatch { url: named, expected: e, actual }) = &err else {
        panic!("expected a checksum mismatch, got {err:?}");
    };
    assert_eq!(named, &url);
    assert_eq!(e, &format!("sha256:{expected}"));
    assert_eq!(actual, &format!("sha256:{}", sha256_hex(&body)));
    let shown = err.unwrap_err().to_string();
    assert_eq!(
        shown,
        format!(
            "{url} does not have the pinned checksum: expected sha256:{expected}, got sha256:{}",
            sha256_hex(&body)
        )
    );
    assert_eq!(files(cache.path()), Vec::<PathBuf>::new(), "the partial file is left behind");
}

#[test]
fn an_interrupted_download_resumes_where_it_stopped() {
    let body = bundle();
    let sum = sha256_hex(&body);
    let cut = 1024 * 1024 + 5;
    let server = Server::start(body.clone(), Some(cut));
    let cache = tempfile::tempdir().unwrap();
    let pin = pinned(&server.url("installer.tar.gz"), &sum);

    let first = runtime().block_on(download::fetch(&pin, cache.path()));
    let err = first.expect_err("a transfer cut off half-way is not a download").to_string();
    assert!(err.contains("run again to resume"), "{err}");
    let part = cache.path().join(format!("sha256-{sum}/installer.tar.gz.part"));
    let kept = fs_err::metadata(&part).expect("the partial download is kept").len();
    assert!(kept > 0 && kept <= cut as u64, "kept {kept} of the {cut} bytes sent");

    let path = runtime().block_on(download::fetch(&pin, cache.path())).unwrap();
    assert_eq!(fs_err::read(&path).unwrap(), body);
    assert_eq!(server.requests(), vec![None, Some(format!("bytes={kept}-"))]);
    assert!(!part.exists());
}

/// The rendered error with its line wrapping undone.
fn one_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr).replace('│', " ");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn cairn(dir: &Path, cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .current_dir(dir)
        .args(args)
        .env("NO_COLOR", "1")
        .env("XDG_CACHE_HOME", cache)
        .env_remove("CAIRN_STOCK_IMAGE")
        .output()
        .unwrap()
}

/// Through the CLI: a qemu base image whose download does not match its pin stops `apply`
/// before any VM file is made, with the URL and both sums, and nothing stays in the cache.
#[test]
fn apply_refuses_an_image_that_does_not_match_its_pin() {
    let body = bundle();
    let server = Server::start(body.clone(), None);
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let fleet = work.path().join("fleet");
    fs_err::create_dir_all(&fleet).unwrap();
    let url = server.url("debian-13-genericcloud-amd64.qcow2");
    let wrong = "ab".repeat(32);
    fs_err::write(
        fleet.join("cairn.hcl"),
        format!(
            r#"
provider "qemu" "local" {{
  image        = "{url}"
  image_sha256 = "{wrong}"
}}
host "web1" {{
  provider = "local"
  flake    = ".#web1"
}}
"#
        ),
    )
    .unwrap();
    let out = cairn(&fleet, &cache, &["apply", "--yes"]);
    let stderr = one_line(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{url} does not have the pinned checksum: expected sha256:{wrong}, got sha256:{}",
            sha256_hex(&body)
        )),
        "{stderr}"
    );
    assert!(stderr.contains("the downloaded file was deleted and nothing was used"), "{stderr}");
    assert_eq!(files(&cache), Vec::<PathBuf>::new());

    // With --json the download shows as transfer events, then the failed create.
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .current_dir(&fleet)
        .args(["apply", "--yes", "--json"])
        .env("NO_COLOR", "1")
        .env("XDG_CACHE_HOME", &cache)
        .env_remove("CAIRN_STOCK_IMAGE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let events = String::from_utf8(out.stdout).unwrap();
    let events =
        events.replace(&server.port.to_string(), "[port]").replace(&sha256_hex(&body), "[sum]");
    let events = regex::Regex::new(r#""elapsed_s":[0-9.]+"#)
        .unwrap()
        .replace_all(&events, r#""elapsed_s":"[s]""#)
        .into_owned();
    insta::assert_snapshot!("apply_download_json_events", events);
    assert!(!fleet.join(".cairn/qemu/web1/disk.qcow2").exists());

    // A URL without a pin is refused before anything is fetched.
    let hcl = fs_err::read_to_string(fleet.join("cairn.hcl")).unwrap();
    let unpinned = hcl.lines().filter(|l| !l.contains("image_sha256")).collect::<Vec<_>>();
    fs_err::write(fleet.join("cairn.hcl"), unpinned.join("\n")).unwrap();
    let requests = server.requests().len();
    let out = cairn(&fleet, &cache, &["apply", "--yes"]);
    let stderr = one_line(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("image = \"{url}\" has no pinned checksum")), "{stderr}");
    assert!(stderr.contains("set image_sha256"), "{stderr}");
    assert_eq!(server.requests().len(), requests);
}

#[test]
fn a_malformed_pin_is_refused_in_the_inventory_with_its_line() {
    let work = tempfile::tempdir().unwrap();
    fs_err::write(
        work.path().join("cairn.hcl"),
        "provider \"qemu\" \"local\" {\n  image        = \"https://example.org/a.qcow2\"\n  image_sha256 = \"1234\"\n}\n",
    )
    .unwrap();
    let out = cairn(work.path(), &work.path().join("cache"), &["plan"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("`image_sha256`: sha256 must be 64 hexadecimal digits"), "{stderr}");
    assert!(stderr.contains("cairn.hcl:3"), "{stderr}");

    let sha256 = "ab".repeat(32);
    let sha512 = "cd".repeat(64);
    fs_err::write(
        work.path().join("cairn.hcl"),
        format!("provider \"existing\" \"mine\" {{\n  installer        = \"https://example.org/k.tar.gz\"\n  installer_sha256 = \"{sha256}\"\n  installer_sha512 = \"{sha512}\"\n}}\n"),
    )
    .unwrap();
    let out = cairn(work.path(), &work.path().join("cache"), &["plan"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("both `installer_sha256` and `installer_sha512` are set"), "{stderr}");
    assert!(stderr.contains("cairn.hcl:4"), "{stderr}");
}

/// The kexec phase against a real sshd standing in for the stock system (reached as root):
/// an installer URL whose download does not match its pin, or a bundle built for another
/// architecture, stops the phase before anything is uploaded.
#[test]
fn kexec_refuses_a_bundle_that_fails_its_pin_or_the_machines_architecture() {
    use crate::support::sshd;
    if !sshd::is_root() {
        eprintln!("skipped: the stock system is reached as root here");
        return;
    }
    let body = bundle();
    let server = Server::start(body.clone(), None);
    let ssh = sshd::Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let fleet = work.path().join("fleet");
    fs_err::create_dir_all(fleet.join(".cairn")).unwrap();
    let arch = String::from_utf8(Command::new("uname").arg("-m").output().unwrap().stdout).unwrap();
    let arch = arch.trim();
    let other = if arch == "aarch64" { "x86_64" } else { "aarch64" };
    let url = server.url(&format!("nixos-kexec-installer-noninteractive-{arch}-linux.tar.gz"));
    let wrong = "cd".repeat(32);
    let write_fleet = |installer: &str| {
        fs_err::write(
            fleet.join("cairn.hcl"),
            format!(
                "provider \"existing\" \"mine\" {{}}\n\nhost \"web1\" {{\n  provider = \"mine\"\n  address  = \"127.0.0.1:{}\"\n  flake    = \".#web1\"\n  installer = \"{installer}\"\n  installer_sha256 = \"{wrong}\"\n  installer_min_memory = 1\n}}\n",
                ssh.port
            ),
        )
        .unwrap();
    };
    crate::support::flake::write_minimal(&fleet, &["web1"]);
    let state = serde_json::json!({
        "schema": 1,
        "serial": 1,
        "hosts": { "web1": {
            "provider": "mine",
            "addresses": [format!("127.0.0.1:{}", ssh.port)],
            "host_keys": { "stock": [ssh.host_public_key("ed25519")] },
        }},
    });
    fs_err::write(fleet.join(".cairn/state.json"), state.to_string()).unwrap();
    let kexec = || {
        Command::new(env!("CARGO_BIN_EXE_cairn"))
            .current_dir(&fleet)
            .args(["bootstrap", "host", "web1", "--yes", "--phases", "kexec"])
            .env("NO_COLOR", "1")
            .env("XDG_CACHE_HOME", &cache)
            .env("CAIRN_SSH_KEY", ssh.client_key())
            .env_remove("RUST_LOG")
            .env_remove("CAIRN_INSTALLER")
            .output()
            .unwrap()
    };
    let _ = fs_err::remove_dir_all("/root/cairn-kexec");

    write_fleet(&url);
    let out = kexec();
    let stderr = one_line(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("web1: kexec failed"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{url} does not have the pinned checksum: expected sha256:{wrong}, got sha256:{}",
            sha256_hex(&body)
        )),
        "{stderr}"
    );
    // cairn's download cache (nix, evaluating the flake for the check first, keeps its own
    // eval cache next to it).
    assert_eq!(files(&cache.join("cairn")), Vec::<PathBuf>::new());
    assert!(!Path::new("/root/cairn-kexec").exists(), "the bundle was uploaded");

    // A bundle for another architecture is refused before it is even downloaded.
    let requests = server.requests().len();
    write_fleet(&url.replace(&format!("-{arch}-"), &format!("-{other}-")));
    let out = kexec();
    let stderr = one_line(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("is built for {other}, but the machine runs {arch}")),
        "{stderr}"
    );
    assert_eq!(server.requests().len(), requests);
    assert!(!Path::new("/root/cairn-kexec").exists(), "the bundle was uploaded");
}
