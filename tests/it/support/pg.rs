//! A real PostgreSQL server per test: a data directory copied from a template made once by
//! initdb, a postmaster listening on a unix socket inside the test's temp dir and on a free
//! port of 127.0.0.1, and
//! stopped (SIGQUIT to the postmaster, which stops its backends) when dropped, also when the
//! test fails. initdb and postgres refuse to run as root: as root they run as `cairn-pg`
//! (created here, and by .ci/install).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::Duration;

/// The unprivileged user the server runs as when the tests run as root.
const PG_USER: &str = "cairn-pg";
/// The database superuser initdb creates (trust auth: no password on the socket).
pub const DB_USER: &str = "cairn";

pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    postmaster: Option<Child>,
    tls: Option<TestCa>,
}

/// The certificates of a server started with [`start_tls`], made by the openssl CLI.
pub struct TestCa {
    /// The CA that signed the server's certificate (PEM).
    pub ca: PathBuf,
    /// Another CA, which signed nothing the server shows.
    pub other_ca: PathBuf,
}

/// The names the server's certificate is valid for.
pub const TLS_NAMES: &str = "DNS:localhost,IP:127.0.0.1";
/// A role that logs in with a password (SCRAM) over TCP; `cairn` keeps trust auth.
pub const PASSWORD_USER: &str = "fleet";
pub const PASSWORD: &str = "hunter2-fleet";

/// The directory holding initdb, postgres and psql, newest version first.
fn bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs_err::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path().join("bin"))
        .filter(|d| d.join("initdb").is_file() && d.join("postgres").is_file())
        .collect();
    dirs.sort_by_key(|d| {
        let version =
            d.parent().and_then(|v| v.file_name()).map(|v| v.to_string_lossy().into_owned());
        std::cmp::Reverse(version.and_then(|v| v.parse::<u32>().ok()).unwrap_or(0))
    });
    dirs.into_iter().next()
}

/// A running server, or `None` (with a message) where PostgreSQL is not installed and this
/// is not CI.
#[allow(clippy::print_stderr)]
pub fn start() -> Option<Postgres> {
    let Some(bin) = bin_dir() else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "PostgreSQL is not installed (/usr/lib/postgresql/*/bin/initdb): run .ci/install"
            );
        }
        eprintln!("SKIPPED: PostgreSQL is not installed (run .ci/install); the pg state backend is untested");
        return None;
    };
    Some(Postgres::start(bin, false))
}

/// Like [`start`], with `ssl = on`: a certificate for [`TLS_NAMES`] signed by a CA made
/// for this server, and a role [`PASSWORD_USER`] that must give its password over TCP.
pub fn start_tls() -> Option<Postgres> {
    match bin_dir() {
        Some(bin) => Some(Postgres::start(bin, true)),
        None => start(),
    }
}

/// A CA and a server certificate signed by it (and a second, unrelated CA) in `dir`.
fn make_certs(dir: &Path) -> TestCa {
    let openssl = |args: &[&str]| run(Command::new("openssl").current_dir(dir).args(args));
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    for ca in ["ca", "other-ca"] {
        openssl(
            &[
                &["req", "-x509"][..],
                &ec[..],
                &[
                    "-keyout",
                    &format!("{ca}.key"),
                    "-out",
                    &format!("{ca}.pem"),
                    "-days",
                    "2",
                    "-subj",
                    &format!("/CN=cairn test {ca}"),
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ][..],
            ]
            .concat(),
        );
    }
    openssl(
        &[
            &["req"][..],
            &ec[..],
            &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"][..],
        ]
        .concat(),
    );
    fs_err::write(
        dir.join("server.ext"),
        format!("subjectAltName={TLS_NAMES}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"),
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    // The server refuses a key others can read, and must own it.
    let key = dir.join("server.key");
    fs_err::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    if let Some((uid, _)) = server_user() {
        run(Command::new("chown").arg(uid.to_string()).arg(&key).arg(dir.join("server.crt")));
    }
    TestCa { ca: dir.join("ca.pem"), other_ca: dir.join("other-ca.pem") }
}

impl Postgres {
    fn start(bin: PathBuf, with_tls: bool) -> Self {
        let dir = tempfile::Builder::new().prefix("cairn-pg").tempdir().unwrap();
        let data = dir.path().join("data");
        let template = template(&bin);
        run(Command::new("cp").arg("-a").arg(&template).arg(&data));
        if let Some((uid, _)) = server_user() {
            run(Command::new("chown").arg(uid.to_string()).arg(dir.path()));
        }
        let tls = with_tls.then(|| {
            let hba = data.join("pg_hba.conf");
            let rest = fs_err::read_to_string(&hba).unwrap();
            // First match wins: the password role logs in with SCRAM over TCP.
            fs_err::write(&hba, format!("host all {PASSWORD_USER} all scram-sha-256\n{rest}"))
                .unwrap();
            make_certs(dir.path())
        });
        // One port for both: TCP on 127.0.0.1, and the socket's name (`.s.PGSQL.<port>`).
        // It was free a moment ago; another server taking it meanwhile fails this start.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut cmd = as_server_user(&bin.join("postgres"));
        cmd.arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(dir.path())
            .args(["-p", &port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "shared_buffers=16MB"])
            .args(["-c", "max_connections=40"])
            .args(if with_tls {
                vec![
                    "-c".to_owned(),
                    "ssl=on".to_owned(),
                    "-c".to_owned(),
                    "log_connections=on".to_owned(),
                    "-c".to_owned(),
                    format!("ssl_cert_file={}", dir.path().join("server.crt").display()),
                    "-c".to_owned(),
                    format!("ssl_key_file={}", dir.path().join("server.key").display()),
                ]
            } else {
                vec![]
            })
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs_err::File::create(dir.path().join("server.log")).unwrap().into_parts().0);
        let postmaster = cmd.spawn().unwrap();
        let mut pg = Self { dir, bin, port, postmaster: Some(postmaster), tls };
        pg.wait_ready();
        if pg.tls.is_some() {
            pg.psql(&format!("CREATE ROLE {PASSWORD_USER} LOGIN SUPERUSER PASSWORD '{PASSWORD}'"));
        }
        pg
    }

    fn wait_ready(&mut self) {
        for _ in 0..600 {
            if let Some(status) = self.postmaster.as_mut().unwrap().try_wait().unwrap() {
                panic!("postgres exited ({status}) before accepting connections:\n{}", self.log());
            }
            let ok = self
                .psql_command("SELECT 1")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap()
                .success();
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("postgres did not accept connections:\n{}", self.log());
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        fs_err::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// A libpq connection string for the `postgres` database, over the unix socket.
    pub fn conn(&self) -> String {
        format!(
            "host={} port={} user={DB_USER} dbname=postgres",
            self.dir.path().display(),
            self.port
        )
    }

    /// The same database over TCP on 127.0.0.1, as a URL.
    pub fn tcp_url(&self) -> String {
        format!("postgresql://{DB_USER}@127.0.0.1:{}/postgres", self.port)
    }

    /// The port, for TCP on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The test CA of a server started by [`start_tls`].
    pub fn tls(&self) -> &TestCa {
        self.tls.as_ref().expect("a server started by start_tls")
    }

    /// The socket directory (also the host part of `conn`).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    fn psql_command(&self, sql: &str) -> Command {
        let mut cmd = Command::new(self.bin.join("psql"));
        cmd.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.dir.path())
            .args(["-p", &self.port.to_string(), "-U", DB_USER, "-d", "postgres", "-c", sql]);
        cmd
    }

    /// Runs `sql` with psql; its output, trimmed.
    pub fn psql(&self, sql: &str) -> String {
        let out = self.psql_command(sql).output().unwrap();
        assert!(
            out.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut postmaster) = self.postmaster.take() {
            // SIGQUIT: immediate shutdown; the postmaster stops every backend before it exits.
            let _ = Command::new("kill")
                .args(["-QUIT", &postmaster.id().to_string()])
                .stderr(Stdio::null())
                .status();
            let _ = postmaster.wait();
        }
    }
}

/// A data directory made by initdb once per build (in cargo's temp dir for tests), copied
/// for every server.
fn template(bin: &Path) -> PathBuf {
    let version = bin.parent().and_then(|v| v.file_name()).unwrap().to_string_lossy().into_owned();
    let template = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("pg-template-{version}"));
    if template.join("PG_VERSION").is_file() {
        return template;
    }
    // Made in /tmp (the server user may not reach the build directory), then copied under a
    // name of its own and renamed, so concurrent tests never copy a half-made one.
    let work = tempfile::Builder::new().prefix("cairn-pg-initdb").tempdir().unwrap();
    if let Some((uid, _)) = server_user() {
        run(Command::new("chown").arg(uid.to_string()).arg(work.path()));
    }
    let made = work.path().join("data");
    let mut initdb = as_server_user(&bin.join("initdb"));
    initdb.arg("-D").arg(&made).args([
        "-U",
        DB_USER,
        "--auth=trust",
        "-E",
        "UTF8",
        "--locale=C",
        "--no-sync",
    ]);
    run(&mut initdb);
    let scratch = tempfile::Builder::new()
        .prefix("pg-template")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let data = scratch.path().join("data");
    run(Command::new("cp").arg("-a").arg(&made).arg(&data));
    match fs_err::rename(&data, &template) {
        Ok(()) => {}
        // Another test made it first.
        Err(_) if template.join("PG_VERSION").is_file() => {}
        Err(e) => panic!("cannot move the template to {}: {e}", template.display()),
    }
    template
}

/// `(uid, gid)` of the user the server runs as, when the tests run as root.
fn server_user() -> Option<(u32, u32)> {
    static ONCE: Once = Once::new();
    let uid = String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout).unwrap();
    if uid.trim() != "0" {
        return None;
    }
    ONCE.call_once(|| {
        let exists = Command::new("id")
            .arg(PG_USER)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        if !exists.success() {
            // Tests in other binaries may race to create the same user.
            let _ = Command::new("useradd")
                .args(["--system", "--no-create-home", "-s", "/usr/sbin/nologin", PG_USER])
                .status();
        }
    });
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").args([flag, PG_USER]).output().unwrap();
        assert!(out.status.success(), "no user {PG_USER}");
        String::from_utf8(out.stdout).unwrap().trim().parse().unwrap()
    };
    Some((id("-u"), id("-g")))
}

/// A command for `program`, run as the server user when we are root (setpriv execs, so the
/// child's pid is the program's).
fn as_server_user(program: &Path) -> Command {
    match server_user() {
        Some((uid, gid)) => {
            let mut cmd = Command::new("setpriv");
            cmd.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--clear-groups")
                .arg("--")
                .arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
