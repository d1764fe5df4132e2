//! cloudalone, a third-party emulator of the Hetzner Cloud API (PyPI `cloudalone` 0.2.0, stub
//! backend), started by a test on 127.0.0.1 and killed (by its pid) when dropped.
//!
//! cloudalone is found via `CAIRN_TEST_CLOUDALONE`, `.ci/venv-cloud/bin/cloudalone` under the
//! crate root (`.ci/install` puts it there). Without it the
//! tests are skipped with a message, unless `CI=true`, where they fail.
#![allow(dead_code, clippy::print_stderr)]

use std::io::Read;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The token cloudalone accepts.
pub const TOKEN: &str = "cairn-test-token-5ecr3t";
fn cloudalone_binary() -> Option<PathBuf> {
    super::tools::cloudalone()
}

/// A running cloudalone; killed (by its pid) when dropped.
pub struct Cloudalone {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Cloudalone {
    /// Starts one, or returns `None` (test skipped) when it is not installed outside CI.
    pub fn start() -> Option<Self> {
        let Some(bin) = cloudalone_binary() else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("cloudalone is not installed: run .ci/install (it makes .ci/venv-cloud)");
            }
            eprintln!(
                "skipped: cloudalone not found (run .ci/install or set CAIRN_TEST_CLOUDALONE)"
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = fs_err::File::create(dir.path().join("cloudalone.log")).unwrap().into_parts().0;
        let child = Command::new(&bin)
            .args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()])
            .env("CLOUDALONE_BACKEND", "stub")
            .env("CLOUDALONE_TOKEN", TOKEN)
            .env("CLOUDALONE_DB", dir.path().join("ca.sqlite"))
            .env("CLOUDALONE_HOME", dir.path().join("home"))
            .env("CLOUDALONE_CONFIG", dir.path().join("none.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut ca = Self { child, port, _dir: dir };
        ca.wait_ready();
        Some(ca)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut log = String::new();
                fs_err::File::open(self._dir.path().join("cloudalone.log"))
                    .and_then(|mut f| f.read_to_string(&mut log))
                    .ok();
                panic!("cloudalone exited with {status}:\n{log}");
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "cloudalone did not listen on port {}", self.port);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The requests cloudalone answered so far, from its access log, as `GET /v1/servers?page=2`.
    pub fn requests(&self) -> Vec<String> {
        let mut log = String::new();
        fs_err::File::open(self._dir.path().join("cloudalone.log"))
            .and_then(|mut f| f.read_to_string(&mut log))
            .unwrap();
        log.lines()
            .filter_map(|l| l.split_once(" - \"")?.1.split_once(" HTTP/"))
            .map(|(r, _)| r.to_owned())
            .collect()
    }

    /// A raw request with the test token: to see the emulator's side of things, or to change
    /// it behind cairn's back.
    async fn request(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Value {
        let mut req = reqwest::Client::new()
            .request(method.clone(), format!("{}{path}", self.endpoint()))
            .bearer_auth(TOKEN);
        if let Some(body) = body {
            req = req.json(body);
        }
        let response = req.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(
            status.is_success() || method == reqwest::Method::GET,
            "{method} {path}: {status} {text}"
        );
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    pub async fn get(&self, path: &str) -> Value {
        self.request(reqwest::Method::GET, path, None).await
    }

    pub async fn delete(&self, path: &str) {
        self.request(reqwest::Method::DELETE, path, None).await;
    }

    pub async fn post(&self, path: &str, body: &Value) -> Value {
        self.request(reqwest::Method::POST, path, Some(body)).await
    }

    /// The user data server `id` was created with, as cloudalone stored it (the API does not
    /// show it, as Hetzner's does not): read from its database with the python it runs on.
    pub fn user_data(&self, id: &str) -> Option<String> {
        let bin = cloudalone_binary()?;
        let python = bin.parent()?.join("python3");
        let out = Command::new(python)
            .args([
                "-c",
                "import sqlite3, sys\n\
                 row = sqlite3.connect(sys.argv[1]).execute(\n\
                   'select user_data from server where id = ?', (int(sys.argv[2]),)).fetchone()\n\
                 sys.stdout.write(row[0] if row and row[0] is not None else '')",
            ])
            .arg(self._dir.path().join("ca.sqlite"))
            .arg(id)
            .output()
            .ok()?;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        Some(String::from_utf8(out.stdout).unwrap()).filter(|s| !s.is_empty())
    }
}

impl Drop for Cloudalone {
    fn drop(&mut self) {
        // Only the process this test started, by its pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
