//! The harness's git forge for day-2 tests: a static HTTP server on 127.0.0.1 serving a
//! directory of bare repositories read-only, which is all git's "dumb HTTP" protocol needs
//! (`info/refs` kept current by `git update-server-info` in the repository's post-update
//! hook). The VMs reach it through QEMU's user network at 10.0.2.2. Stopped on drop.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub(crate) struct StaticHttp {
    pub(crate) port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StaticHttp {
    /// Serves the files under `root` (which may not exist yet) on a free loopback port.
    pub(crate) fn serve(root: PathBuf) -> StaticHttp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    // One request at a time: comin's polls are small and rare.
                    let _ = answer(&root, stream);
                }
            }
        });
        StaticHttp { port, stop, thread: Some(thread) }
    }
}

impl Drop for StaticHttp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The file a request path names under `root`, refusing `..` and absolute tricks.
fn file_for(root: &Path, path: &str) -> Option<PathBuf> {
    let path = path.split('?').next().unwrap_or_default();
    let mut file = root.to_path_buf();
    for c in Path::new(path.trim_start_matches('/')).components() {
        match c {
            Component::Normal(part) => file.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    file.is_file().then_some(file)
}

fn answer(root: &Path, stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // The headers are not needed; read them so the client sees its request consumed.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut parts = request.split_whitespace();
    let (method, path) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let mut stream = stream;
    match (method, file_for(root, path)) {
        ("GET", Some(file)) => {
            let body = fs_err::read(&file)?;
            write!(
                stream,
                "HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            stream.write_all(&body)?;
        }
        _ => {
            let body = b"not found\n";
            write!(
                stream,
                "HTTP/1.0 404 Not Found\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            stream.write_all(body)?;
        }
    }
    stream.flush()
}

#[test]
fn the_forge_serves_files_under_its_root_only() {
    let dir = tempfile::tempdir().unwrap();
    fs_err::create_dir_all(dir.path().join("fleet.git/info")).unwrap();
    fs_err::write(dir.path().join("fleet.git/info/refs"), "abc\trefs/heads/main\n").unwrap();
    let server = StaticHttp::serve(dir.path().to_path_buf());
    let get = |path: &str| {
        let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut s, &mut out).unwrap();
        out
    };
    let ok = get("/fleet.git/info/refs");
    assert!(ok.starts_with("HTTP/1.0 200 OK\r\n"), "{ok}");
    assert!(ok.ends_with("\r\n\r\nabc\trefs/heads/main\n"), "{ok}");
    assert!(get("/fleet.git/../../etc/passwd").starts_with("HTTP/1.0 404"));
    assert!(get("/fleet.git/missing").starts_with("HTTP/1.0 404"));
}
