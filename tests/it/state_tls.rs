//! The pg state backend over TLS, against a real PostgreSQL with `ssl = on` and a CA made
//! for the test (tests/it/support/pg.rs): libpq's `sslmode` meanings, and the refusal of a
//! password that could cross a network in cleartext.

use std::process::{Command, Stdio};

use cairn::inventory::Sensitive;
use cairn::state::{LockHolder, LockWait, PgState, State};
use miette::Diagnostic;

use crate::support::pg::{self, Postgres, PASSWORD, PASSWORD_USER};

const NAME: &str = "tls-fleet";

/// Everything a user could see of `err`: message, help and every cause.
fn shown(err: &(dyn Diagnostic + Send + Sync + 'static)) -> String {
    let mut text =
        format!("{err}\nhelp: {}", err.help().map(|h| h.to_string()).unwrap_or_default());
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(&format!("\ncause: {s}"));
        source = s.source();
    }
    text
}

/// Takes the lock, commits a host, and returns whether the server saw this connection
/// encrypted (pg_stat_ssl, asked over the test's own socket while the lock is held).
fn commit_over(server: &Postgres, conn: &str) -> Result<bool, String> {
    let state = PgState::new(&Sensitive(conn.to_owned()), NAME).map_err(|e| shown(&e))?;
    let mut lock =
        state.lock(LockHolder::current("cairn apply"), LockWait::Fail).map_err(|e| shown(&e))?;
    lock.data_mut().host_mut("web1").provider_id = Some("42".into());
    lock.commit().map_err(|e| shown(&e))?;
    let ssl = server.psql(&format!(
        "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN cairn.locks l ON l.backend_pid = s.pid \
         WHERE l.name = '{NAME}'"
    ));
    drop(lock);
    let read = state.read().map_err(|e| shown(&e))?;
    assert_eq!(read.hosts["web1"].provider_id.as_deref(), Some("42"));
    Ok(ssl == "t")
}

fn key_value(server: &Postgres, host: &str, tail: &str) -> String {
    format!("host={host} port={} user=cairn dbname=postgres {tail}", server.port())
}

#[test]
fn pg_verify_full_passes_with_the_right_ca_by_name_and_by_address() {
    let Some(server) = pg::start_tls() else { return };
    let ca = server.tls().ca.display().to_string();
    for host in ["localhost", "127.0.0.1"] {
        let conn = key_value(&server, host, &format!("sslmode=verify-full sslrootcert={ca}"));
        assert_eq!(commit_over(&server, &conn), Ok(true), "{conn}");
    }
    // A password goes to the server inside TLS (SCRAM, as pg_hba asks of this role).
    let url = format!(
        "postgresql://{PASSWORD_USER}:{PASSWORD}@localhost:{}/postgres?sslmode=verify-full&sslrootcert={ca}",
        server.port()
    );
    assert_eq!(commit_over(&server, &url), Ok(true));
}

#[test]
fn pg_verify_full_fails_naming_the_host_the_certificate_is_not_for() {
    let Some(server) = pg::start_tls() else { return };
    let ca = server.tls().ca.display().to_string();
    // The right server at 127.0.0.1, but `host` says another name: that name is checked.
    let tail = format!("hostaddr=127.0.0.1 sslmode=verify-full sslrootcert={ca}");
    let err = commit_over(&server, &key_value(&server, "db.cairn.invalid", &tail)).unwrap_err();
    assert!(err.contains("(sslmode=verify-full)"), "{err}");
    assert!(err.contains("certificate not valid for name \"db.cairn.invalid\""), "{err}");
    // verify-ca checks the chain only: the same connection is accepted.
    let tail = format!("hostaddr=127.0.0.1 sslmode=verify-ca sslrootcert={ca}");
    assert_eq!(commit_over(&server, &key_value(&server, "db.cairn.invalid", &tail)), Ok(true));
}

#[test]
fn pg_verify_full_and_verify_ca_fail_with_another_ca_or_the_builtin_roots() {
    let Some(server) = pg::start_tls() else { return };
    let other = server.tls().other_ca.display().to_string();
    for tail in [
        format!("sslmode=verify-full sslrootcert={other}"),
        format!("sslmode=verify-ca sslrootcert={other}"),
        // Without sslrootcert: the Mozilla roots, which did not sign the test CA.
        "sslmode=verify-full".to_owned(),
    ] {
        let err = commit_over(&server, &key_value(&server, "localhost", &tail)).unwrap_err();
        assert!(err.contains("invalid peer certificate: UnknownIssuer"), "{tail}: {err}");
    }
}

#[test]
fn pg_require_encrypts_without_a_ca_and_prefer_uses_tls_when_offered() {
    let Some(server) = pg::start_tls() else { return };
    for mode in ["require", "prefer"] {
        let conn = key_value(&server, "127.0.0.1", &format!("sslmode={mode}"));
        assert_eq!(commit_over(&server, &conn), Ok(true), "{mode}");
    }
    // Written on purpose, disable means cleartext, password included (loopback here).
    let url = format!(
        "postgresql://{PASSWORD_USER}:{PASSWORD}@127.0.0.1:{}/postgres?sslmode=disable",
        server.port()
    );
    assert_eq!(commit_over(&server, &url), Ok(false));
    // Unix sockets never use TLS (as in libpq), whatever sslmode says.
    let socket = format!("{} sslmode=require", server.conn());
    assert_eq!(commit_over(&server, &socket), Ok(false));
}

#[test]
fn pg_require_against_a_server_without_tls_fails_and_says_so() {
    let Some(server) = pg::start() else { return };
    let err =
        commit_over(&server, &key_value(&server, "127.0.0.1", "sslmode=require")).unwrap_err();
    assert!(err.contains("server does not support TLS"), "{err}");
}

#[test]
fn pg_a_server_that_never_answers_the_handshake_ends_the_connect_at_its_deadline() {
    // Accepts TCP connections and reads nothing: the TLS request is never answered.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let conn = format!("host=127.0.0.1 port={port} user=cairn connect_timeout=1 sslmode=require");
    let err = commit_over_nothing(&conn);
    assert!(
        err.starts_with(&format!(
            "PostgreSQL state \"{NAME}\" (database cairn on 127.0.0.1:{port}, user cairn) did \
             not complete the connection (TLS handshake and login) within 3s"
        )),
        "{err}"
    );
    drop(listener);
}

fn commit_over_nothing(conn: &str) -> String {
    let state = PgState::new(&Sensitive(conn.to_owned()), NAME).unwrap();
    shown(&state.read().unwrap_err())
}

#[test]
fn pg_cleartext_password_to_a_remote_address_is_refused_before_connecting() {
    // 192.0.2.1 is TEST-NET-1: nothing answers there. The refusal comes from parsing `conn`,
    // before any socket exists.
    for conn in [
        "host=192.0.2.1 user=alice password=hunter2-secret dbname=fleet".to_owned(),
        "postgresql://alice:hunter2-secret@192.0.2.1/fleet?sslmode=prefer".to_owned(),
    ] {
        let err = PgState::new(&Sensitive(conn.clone()), NAME).unwrap_err();
        let text = shown(&err);
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            text.starts_with("refusing to send the password in `conn` to 192.0.2.1 without TLS"),
            "{text}"
        );
        assert!(text.contains("`sslmode=verify-full`"), "{text}");
        assert!(
            text.contains("write `sslmode=disable` to send it in cleartext on purpose"),
            "{text}"
        );
    }
    // Written on purpose, it is allowed (PgState::new connects to nothing).
    let conn = "host=192.0.2.1 user=alice password=hunter2-secret sslmode=disable";
    let state = PgState::new(&Sensitive(conn.into()), NAME).unwrap();
    assert!(!format!("{state:?} {}", state.location()).contains("hunter2"));
}

#[test]
fn pg_a_bad_sslmode_or_sslrootcert_is_named() {
    let err = PgState::new(&Sensitive("host=db sslmode=verify".into()), NAME).unwrap_err();
    assert_eq!(
        err.to_string(),
        "`sslmode=verify` in the `conn` of the pg state backend is not one of: disable, prefer, \
         require, verify-ca, verify-full"
    );
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("ca.pem");
    let conn = format!("host=db sslmode=verify-full sslrootcert={}", missing.display());
    let err = PgState::new(&Sensitive(conn.clone()), NAME).unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "cannot read the certificates of `sslrootcert` {}",
            missing.display()
        )),
        "{err}"
    );
    fs_err::write(&missing, "not a certificate\n").unwrap();
    let err = PgState::new(&Sensitive(conn), NAME).unwrap_err();
    assert!(err.to_string().contains("it holds no certificate"), "{err}");
}

/// `cairn plan` on a fleet whose state block reads `conn` from CAIRN_PG_CONN.
fn plan(conn: &str) -> std::process::Output {
    let repo = tempfile::tempdir().unwrap();
    fs_err::write(
        repo.path().join("cairn.hcl"),
        format!(
            "state {{\n  backend = \"pg\"\n  conn    = env(\"CAIRN_PG_CONN\")\n  name    = \"{NAME}\"\n}}\n\n\
             provider \"existing\" \"mine\" {{}}\n\n\
             host \"web1\" {{\n  provider = \"mine\"\n  address  = \"127.0.0.1:9\"\n  flake    = \".#web1\"\n}}\n"
        ),
    )
    .unwrap();
    crate::support::flake::write_minimal(repo.path(), &["web1"]);
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .current_dir(repo.path())
        .arg("plan")
        .env("CAIRN_PG_CONN", conn)
        .env("NO_COLOR", "1")
        .env("COLUMNS", "400")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn cairn_plan_reads_pg_state_over_verify_full_and_names_a_wrong_host() {
    let Some(server) = pg::start_tls() else { return };
    let ca = server.tls().ca.display().to_string();
    let conn = format!(
        "postgresql://{PASSWORD_USER}:{PASSWORD}@localhost:{}/postgres?sslmode=verify-full&sslrootcert={ca}",
        server.port()
    );
    let out = plan(&conn);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}\n{stderr}", String::from_utf8_lossy(&out.stdout));
    // The server logged the run's connection as encrypted.
    let log = server.log();
    assert!(
        log.lines().any(|l| l.contains(&format!("connection authorized: user={PASSWORD_USER}"))
            && l.contains("application_name=cairn")
            && l.contains("SSL enabled")),
        "{log}"
    );

    let conn = format!(
        "host=db.cairn.invalid hostaddr=127.0.0.1 port={} user=cairn dbname=postgres \
         sslmode=verify-full sslrootcert={ca}",
        server.port()
    );
    let out = plan(&conn);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("(sslmode=verify-full)"), "{stderr}");
    assert!(stderr.contains("certificate not valid for name \"db.cairn.invalid\""), "{stderr}");
}
