//! The state backends, exercised across real processes: this test binary re-executes itself
//! (`child_process_role` with `CAIRN_STATE_TEST_ROLE` set) to hold the lock, or to write in a
//! loop until it is killed with SIGKILL.
//!
//! The backend-level tests run against both backends (`for_both_backends!`): the file backend
//! in a temp dir, and the pg backend on a real PostgreSQL server each test starts
//! (tests/support/pg.rs). Checks only one backend can have are in tests of their own.

use crate::support::pg;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn::inventory::Sensitive;
use cairn::state::{
    FileState, HostState, LockHolder, LockWait, PgState, SharedStateLock, State, StateData,
    StateError, SCHEMA_VERSION,
};
use miette::Diagnostic;

const ROLE: &str = "CAIRN_STATE_TEST_ROLE";
const DIR: &str = "CAIRN_STATE_TEST_DIR";
const PG_CONN: &str = "CAIRN_STATE_TEST_PG_CONN";
/// The state name the pg tests use (not the default, so the name is seen to matter).
const PG_NAME: &str = "test-fleet";
const HOLDER_COMMAND: &str = "cairn bootstrap all";
const BIG_STATE_HOSTS: usize = 2000;

/// Not a test of its own: the entry point of the child processes the tests start, which
/// report to their parent on stdout.
#[test]
#[allow(clippy::print_stdout)]
fn child_process_role() {
    let Ok(role) = std::env::var(ROLE) else { return };
    let state: Box<dyn State> = match std::env::var(PG_CONN) {
        Ok(conn) => Box::new(PgState::new(&Sensitive(conn), PG_NAME).unwrap()),
        Err(_) => Box::new(FileState::new(std::env::var(DIR).unwrap())),
    };
    match role.as_str() {
        // Take the lock, commit one host, say so, and keep the lock until stdin closes.
        "hold" => {
            let mut lock = state.lock(LockHolder::current(HOLDER_COMMAND), LockWait::Fail).unwrap();
            lock.data_mut().host_mut("from-child").provider_id = Some("42".into());
            lock.commit().unwrap();
            println!("LOCKED");
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            drop(lock);
            println!("RELEASED");
        }
        // Write a large state again and again until killed.
        "write-loop" => {
            let mut lock = state.lock(LockHolder::current("cairn writer"), LockWait::Fail).unwrap();
            for round in 0u64.. {
                let data = lock.data_mut();
                for i in 0..BIG_STATE_HOSTS {
                    let host = data.host_mut(&format!("host{i:05}"));
                    host.provider_id = Some(format!("srv-{i}-{round}"));
                    host.addresses = vec![format!("10.0.{}.{}", i / 250, i % 250)];
                    host.ssh_public_key =
                        Some(format!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{round:040}"));
                    host.provider_data.insert("round".into(), serde_json::json!(round));
                }
                lock.commit().unwrap();
                if round == 1 {
                    println!("WRITING");
                }
            }
        }
        other => panic!("unknown role {other}"),
    }
}

/// A child process started by a test, killed (SIGKILL) and reaped when dropped.
struct ChildProcess {
    child: std::process::Child,
    stdout: BufReader<ChildStdout>,
}

impl ChildProcess {
    fn start(role: &str, backend: &Backend) -> Self {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        match backend {
            Backend::File { dir } => cmd.env(DIR, dir.path()),
            Backend::Pg { server } => cmd.env(PG_CONN, server.conn()),
        };
        let mut child = cmd
            .args(["--exact", "state::child_process_role", "--nocapture", "--test-threads=1"])
            .env(ROLE, role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Self { child, stdout }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads the child's output up to a line saying `marker`.
    fn wait_for(&mut self, marker: &str) {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.stdout.read_line(&mut line).unwrap();
            assert!(n > 0, "child exited before printing {marker}");
            // libtest prints `test child_process_role ... ` before the test's own output.
            if line.trim_end().ends_with(marker) {
                return;
            }
        }
    }

    /// Closes the child's stdin: a holder then releases its lock and exits.
    fn release(&mut self) {
        drop(self.child.stdin.take());
        self.wait_for("RELEASED");
        assert!(self.child.wait().unwrap().success());
    }

    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn me(command: &str) -> LockHolder {
    LockHolder::current(command)
}

/// The names in `dir`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs_err::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn mode(path: &Path) -> u32 {
    fs_err::metadata(path).unwrap().permissions().mode() & 0o777
}

fn parse_file(path: &Path) -> StateData {
    serde_json::from_slice(&fs_err::read(path).unwrap())
        .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()))
}

/// Runs `f` with tracing events captured as plain text.
fn capture_logs<R>(f: impl FnOnce() -> R) -> (R, String) {
    #[derive(Clone)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf(Arc::new(Mutex::new(Vec::new())));
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .finish();
    let r = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    (r, text)
}

fn holder_record(dir: &Path) -> LockHolder {
    serde_json::from_str(&fs_err::read_to_string(dir.join(".cairn/state.lock")).unwrap()).unwrap()
}

/// One backend under test, and how to look at what it stored from outside cairn (the files
/// themselves; psql).
enum Backend {
    File { dir: tempfile::TempDir },
    Pg { server: pg::Postgres },
}

impl Backend {
    fn file() -> Self {
        Backend::File { dir: tempfile::tempdir().unwrap() }
    }

    /// `None` where PostgreSQL is not installed (and this is not CI).
    fn pg() -> Option<Self> {
        Some(Backend::Pg { server: pg::start()? })
    }

    /// A fresh handle, as a new run would open it.
    fn state(&self) -> Box<dyn State> {
        match self {
            Backend::File { dir } => Box::new(FileState::new(dir.path())),
            Backend::Pg { server } => {
                Box::new(PgState::new(&Sensitive(server.conn()), PG_NAME).unwrap())
            }
        }
    }

    /// What the lock's messages name as its location.
    fn lock_location(&self) -> String {
        match self {
            Backend::File { dir } => FileState::new(dir.path()).lock_path().display().to_string(),
            Backend::Pg { .. } => self.state().location(),
        }
    }

    /// The holder recorded for others to see; `None` after a clean release.
    fn holder_record(&self) -> Option<LockHolder> {
        let text = match self {
            Backend::File { dir } => {
                fs_err::read_to_string(dir.path().join(".cairn/state.lock")).unwrap()
            }
            Backend::Pg { server } => server
                .psql(&format!("SELECT holder::text FROM cairn.locks WHERE name = '{PG_NAME}'")),
        };
        (!text.trim().is_empty()).then(|| serde_json::from_str(&text).unwrap())
    }

    /// The version before the current one.
    fn backup(&self) -> StateData {
        match self {
            Backend::File { dir } => parse_file(FileState::new(dir.path()).backup_path()),
            Backend::Pg { server } => {
                let text = server.psql(&format!(
                    "SELECT data::text FROM cairn.state_versions WHERE name = '{PG_NAME}' \
                     ORDER BY serial DESC OFFSET 1 LIMIT 1"
                ));
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("backup {text:?}: {e}"))
            }
        }
    }

    /// Stores a version as a newer cairn would have (schema 7, a field this one lacks).
    fn write_newer_schema(&self) {
        let json = r#"{"schema": 7, "serial": 3, "hosts": {}, "new": 1}"#;
        match self {
            Backend::File { dir } => {
                fs_err::create_dir(dir.path().join(".cairn")).unwrap();
                fs_err::write(FileState::new(dir.path()).state_path(), json).unwrap();
            }
            Backend::Pg { server } => {
                drop(self.state().lock(me("cairn init"), LockWait::Fail).unwrap()); // the tables
                server.psql(&format!(
                    "INSERT INTO cairn.state_versions (name, serial, schema, data, committed_by) \
                     VALUES ('{PG_NAME}', 3, 7, '{json}', 'a newer cairn')"
                ));
            }
        }
    }

    /// How a run waits for a lock whose holder was just killed: the kernel releases a flock
    /// as the process exits; the PostgreSQL server releases an advisory lock when it notices
    /// the closed connection, moments later.
    fn wait_after_kill(&self) -> LockWait {
        match self {
            Backend::File { .. } => LockWait::Fail,
            Backend::Pg { .. } => LockWait::Timeout(Duration::from_secs(60)),
        }
    }
}

/// Runs each named `fn(&Backend)` as a test against the file backend and, in a module of its
/// own, against the pg backend.
macro_rules! for_both_backends {
    ($($name:ident),* $(,)?) => {
        mod file_backend {
            $( #[test] fn $name() { super::$name(&super::Backend::file()); } )*
        }
        mod pg_backend {
            $( #[test] fn $name() { if let Some(b) = super::Backend::pg() { super::$name(&b); } } )*
        }
    };
}

for_both_backends!(
    reading_without_state_is_empty_and_creates_nothing,
    commit_increments_serial_and_keeps_the_previous_version,
    lock_is_released_on_drop_and_its_record_cleared,
    second_run_fails_at_once_naming_the_holder,
    waiting_gives_up_after_the_timeout_naming_the_holder,
    second_run_waits_for_the_holder_and_sees_its_writes,
    killed_writer_leaves_old_or_new_state_and_a_backup,
    lock_of_a_killed_run_is_taken_over_with_a_warning,
    newer_schema_is_refused,
    shared_lock_commits_updates_from_many_tokio_tasks,
);

fn reading_without_state_is_empty_and_creates_nothing(b: &Backend) {
    let data = b.state().read().unwrap();
    assert_eq!(data, StateData::default());
    match b {
        Backend::File { dir } => assert!(!dir.path().join(".cairn").exists()),
        Backend::Pg { server } => {
            assert_eq!(server.psql("SELECT to_regnamespace('cairn') IS NULL"), "t")
        }
    }
}

fn commit_increments_serial_and_keeps_the_previous_version(b: &Backend) {
    let state = b.state();
    let mut lock = state.lock(me("cairn test"), LockWait::Fail).unwrap();
    lock.data_mut().host_mut("web1").provider_id = Some("1".into());
    lock.commit().unwrap();
    lock.data_mut().host_mut("web1").provider_id = Some("2".into());
    lock.commit().unwrap();
    drop(lock);

    let now = b.state().read().unwrap();
    assert_eq!(now.serial, 2);
    assert_eq!(now.host("web1").unwrap().provider_id.as_deref(), Some("2"));
    let before = b.backup();
    assert_eq!(before.serial, 1);
    assert_eq!(before.host("web1").unwrap().provider_id.as_deref(), Some("1"));
}

#[test]
fn file_state_is_pretty_json_with_a_backup_from_the_second_write() {
    let dir = tempfile::tempdir().unwrap();
    let state = FileState::new(dir.path());
    let mut lock = state.lock(me("cairn test"), LockWait::Fail).unwrap();
    lock.data_mut().host_mut("web1").provider_id = Some("1".into());
    lock.commit().unwrap();
    assert!(!state.backup_path().exists(), "nothing to back up on the first write");
    lock.data_mut().host_mut("web1").provider_id = Some("2".into());
    lock.commit().unwrap();
    drop(lock);
    // Pretty, schema first, hosts in name order, ending in a newline.
    let text = fs_err::read_to_string(state.state_path()).unwrap();
    assert_eq!(
        text,
        format!(
            "{{\n  \"schema\": {SCHEMA_VERSION},\n  \"serial\": 2,\n  \"hosts\": {{\n    \"web1\": {{\n      \"provider_id\": \"2\"\n    }}\n  }}\n}}\n"
        )
    );
}

/// A write killed after keeping the backup but before replacing the state leaves both names
/// on one inode; the next commit used to leave its temp link behind (renaming a link over
/// another link of the same inode does nothing).
#[test]
fn commit_after_a_kill_between_backup_and_replace_leaves_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = FileState::new(dir.path());
    let mut lock = state.lock(me("cairn test"), LockWait::Fail).unwrap();
    lock.data_mut().host_mut("web1").provider_id = Some("1".into());
    lock.commit().unwrap();
    // What the killed write left: the backup is the state file itself.
    fs_err::remove_file(state.backup_path()).ok();
    fs_err::hard_link(state.state_path(), state.backup_path()).unwrap();
    lock.data_mut().host_mut("web1").provider_id = Some("2".into());
    lock.commit().unwrap();
    drop(lock);
    assert_eq!(
        names_in(&dir.path().join(".cairn")),
        ["state.json", "state.json.bak", "state.lock"]
    );
    let backup = fs_err::read_to_string(state.backup_path()).unwrap();
    assert!(backup.contains("\"provider_id\": \"1\""), "{backup}");
}

#[test]
fn pg_state_keeps_every_version_with_who_committed_it() {
    let Some(b) = Backend::pg() else { return };
    let Backend::Pg { server } = &b else { unreachable!() };
    let mut lock = b.state().lock(me("cairn bootstrap all"), LockWait::Fail).unwrap();
    for i in 0..3 {
        lock.data_mut().host_mut("web1").provider_id = Some(i.to_string());
        lock.commit().unwrap();
    }
    drop(lock);
    let rows = server.psql(&format!(
        "SELECT serial, schema, data->'hosts'->'web1'->>'provider_id', \
         committed_by LIKE 'pid % (`cairn bootstrap all`) since %' \
         FROM cairn.state_versions WHERE name = '{PG_NAME}' ORDER BY serial"
    ));
    assert_eq!(
        rows,
        format!("1|{SCHEMA_VERSION}|0|t\n2|{SCHEMA_VERSION}|1|t\n3|{SCHEMA_VERSION}|2|t")
    );
    // Another name in the same database is another state, with a lock of its own.
    let other = PgState::new(&Sensitive(server.conn()), "other").unwrap();
    let held = b.state().lock(me("cairn a"), LockWait::Fail).unwrap();
    let other_lock = other.lock(me("cairn b"), LockWait::Fail).unwrap();
    assert_eq!(other_lock.data(), &StateData::default());
    drop((held, other_lock));
    assert_eq!(server.psql("SELECT version FROM cairn.layout"), "1");
}

#[test]
fn state_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let state = FileState::new(dir.path());
    let mut lock = state.lock(me("cairn test"), LockWait::Fail).unwrap();
    lock.commit().unwrap();
    lock.commit().unwrap();
    assert_eq!(mode(&dir.path().join(".cairn")), 0o700);
    assert_eq!(mode(state.state_path()), 0o600);
    assert_eq!(mode(state.backup_path()), 0o600);
    assert_eq!(mode(state.lock_path()), 0o600);
}

fn lock_is_released_on_drop_and_its_record_cleared(b: &Backend) {
    let state = b.state();
    let lock = state.lock(me("cairn first"), LockWait::Fail).unwrap();
    let record = b.holder_record().unwrap();
    assert_eq!(record.command, "cairn first");
    assert_eq!(record.pid, std::process::id());
    drop(lock);
    assert_eq!(b.holder_record(), None);
    // Taken again without any warning: a clean release is not a dead run.
    let (lock, logs) = capture_logs(|| state.lock(me("cairn second"), LockWait::Fail));
    lock.unwrap();
    assert_eq!(logs, "");
}

#[test]
fn file_lock_is_emptied_not_deleted_on_release() {
    let dir = tempfile::tempdir().unwrap();
    let state = FileState::new(dir.path());
    drop(state.lock(me("cairn first"), LockWait::Fail).unwrap());
    assert_eq!(fs_err::read_to_string(state.lock_path()).unwrap(), "");
}

fn second_run_fails_at_once_naming_the_holder(b: &Backend) {
    let mut holder = ChildProcess::start("hold", b);
    holder.wait_for("LOCKED");
    let record = b.holder_record().unwrap();
    assert_eq!(record.pid, holder.pid());

    let state = b.state();
    let err = state.lock(me("cairn plan"), LockWait::Fail).unwrap_err();
    assert!(matches!(err, StateError::Locked { .. }), "{err:?}");
    let since = record.since.format(&time::format_description::well_known::Rfc3339).unwrap();
    assert!(since.ends_with('Z') && !since.contains('.'), "{since}");
    assert_eq!(
        err.to_string(),
        format!(
            "state is locked by pid {} on host {} (`cairn bootstrap all`) since {since}; wait for \
             it or retry with --lock-timeout",
            holder.pid(),
            record.hostname
        )
    );
    let help = err.help().unwrap().to_string();
    assert!(help.starts_with(&format!("That run was started by user {}.", record.user)), "{help}");
    assert!(help.contains(&format!("(lock: {})", b.lock_location())), "{help}");

    // Reading needs no lock and sees the holder's commit.
    assert!(state.read().unwrap().host("from-child").is_some());
    holder.release();
}

fn waiting_gives_up_after_the_timeout_naming_the_holder(b: &Backend) {
    let mut holder = ChildProcess::start("hold", b);
    holder.wait_for("LOCKED");
    let state = b.state();
    let err =
        state.lock(me("cairn plan"), LockWait::Timeout(Duration::from_millis(300))).unwrap_err();
    assert!(matches!(err, StateError::LockTimeout { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("gave up after 0s waiting for the state lock, held by pid ")
            && msg.contains(&format!("pid {} on host", holder.pid()))
            && msg.contains("(`cairn bootstrap all`)"),
        "{msg}"
    );
    holder.release();
}

fn second_run_waits_for_the_holder_and_sees_its_writes(b: &Backend) {
    let mut holder = ChildProcess::start("hold", b);
    holder.wait_for("LOCKED");

    std::thread::scope(|scope| {
        let waiter = scope.spawn(|| {
            let lock =
                b.state().lock(me("cairn waiter"), LockWait::Timeout(Duration::from_secs(120)))?;
            Ok::<_, StateError>(lock.data().clone())
        });
        // The holder keeps the lock until told: the waiter cannot have it yet.
        std::thread::sleep(Duration::from_millis(300));
        assert!(!waiter.is_finished(), "the waiter got the lock while the child held it");
        holder.release();

        let data = waiter.join().unwrap().unwrap();
        assert_eq!(data.host("from-child").unwrap().provider_id.as_deref(), Some("42"));
    });
}

fn killed_writer_leaves_old_or_new_state_and_a_backup(b: &Backend) {
    let state = b.state();
    let mut last_serial = 0;
    for delay_ms in [0, 3, 11, 23, 47, 5] {
        let mut writer = ChildProcess::start("write-loop", b);
        writer.wait_for("WRITING");
        std::thread::sleep(Duration::from_millis(delay_ms));
        writer.kill();

        let now = state.read().unwrap_or_else(|e| panic!("state after SIGKILL: {e}"));
        assert_eq!(now.hosts.len(), BIG_STATE_HOSTS);
        assert!(now.serial >= last_serial + 2, "{} after {last_serial}", now.serial);
        let before = b.backup();
        assert_eq!(before.hosts.len(), BIG_STATE_HOSTS);
        assert!(
            before.serial + 1 == now.serial || before.serial == now.serial,
            "backup serial {} next to state serial {}",
            before.serial,
            now.serial
        );
        last_serial = now.serial;
        // The next writer must not find the dead one's lock in its way.
        drop(state.lock(me("cairn between"), b.wait_after_kill()).unwrap());
    }

    let mut lock = state.lock(me("cairn after"), LockWait::Fail).unwrap();
    lock.commit().unwrap();
    drop(lock);
    if let Backend::File { dir } = b {
        // The next run cleaned up temp files a killed write left behind.
        assert_eq!(
            names_in(&dir.path().join(".cairn")),
            ["state.json", "state.json.bak", "state.lock"]
        );
    }
}

fn lock_of_a_killed_run_is_taken_over_with_a_warning(b: &Backend) {
    let mut holder = ChildProcess::start("hold", b);
    holder.wait_for("LOCKED");
    let record = b.holder_record().unwrap();
    holder.kill();
    // The record survives the holder; the lock died with it.
    assert_eq!(b.holder_record(), Some(record.clone()));

    let state = b.state();
    let (lock, logs) = capture_logs(|| state.lock(me("cairn next"), b.wait_after_kill()));
    let lock = lock.unwrap();
    let warnings: Vec<&str> =
        logs.lines().map(str::trim).filter(|l| l.starts_with("WARN")).collect();
    assert_eq!(
        warnings,
        [format!(
            "WARN the previous cairn run ({record}) died without releasing the state lock; taking \
             the lock over"
        )]
    );
    assert_eq!(lock.data().host("from-child").unwrap().provider_id.as_deref(), Some("42"));
    assert_eq!(b.holder_record().unwrap().command, "cairn next");
}

#[test]
fn file_lock_left_by_another_host_is_not_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let state = FileState::new(dir.path());
    fs_err::create_dir(dir.path().join(".cairn")).unwrap();
    let record = LockHolder {
        pid: std::process::id(), // alive here, which must not matter: it is another host's pid
        hostname: "ci-7".into(),
        user: "alice".into(),
        command: "cairn bootstrap all".into(),
        since: time::macros::datetime!(2026-11-22 06:01:03 UTC),
    };
    fs_err::write(state.lock_path(), serde_json::to_vec(&record).unwrap()).unwrap();

    let err = state.lock(me("cairn plan"), LockWait::Fail).unwrap_err();
    let lock_path = state.lock_path().display().to_string();
    assert!(matches!(err, StateError::ForeignStaleLock { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(&format!(
            "the state lock {lock_path} names pid {} on host ci-7 (`cairn bootstrap all`) since \
             2026-11-22T06:01:03Z, which no longer holds it, and from host ",
            std::process::id()
        )),
        "{err}"
    );
    assert!(err.help().unwrap().to_string().contains(&format!("then delete {lock_path}")));
    // The record is left for the user to judge.
    assert_eq!(holder_record(dir.path()), record);
}

fn newer_schema_is_refused(b: &Backend) {
    b.write_newer_schema();
    let state = b.state();
    let err = state.read().unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{} was written by a newer cairn (state schema 7; this cairn understands schema \
             {SCHEMA_VERSION} and older)",
            state.location()
        )
    );
    // Nor does taking the lock get around it.
    assert!(matches!(
        state.lock(me("cairn x"), LockWait::Fail).unwrap_err(),
        StateError::SchemaTooNew { found: 7, .. }
    ));
}

#[test]
fn pg_tables_of_a_newer_layout_are_refused() {
    let Some(b) = Backend::pg() else { return };
    let Backend::Pg { server } = &b else { unreachable!() };
    drop(b.state().lock(me("cairn init"), LockWait::Fail).unwrap());
    server.psql("UPDATE cairn.layout SET version = 9");
    let state = b.state();
    for err in [state.read().unwrap_err(), state.lock(me("cairn x"), LockWait::Fail).unwrap_err()] {
        assert_eq!(
            err.to_string(),
            format!(
                "the cairn tables in {} have layout version 9; this cairn knows layout 1 and older",
                state.location()
            )
        );
    }
}

#[test]
fn pg_version_that_does_not_parse_is_refused_naming_it() {
    let Some(b) = Backend::pg() else { return };
    let Backend::Pg { server } = &b else { unreachable!() };
    let mut lock = b.state().lock(me("cairn init"), LockWait::Fail).unwrap();
    lock.commit().unwrap();
    drop(lock);
    server.psql(&format!(
        "INSERT INTO cairn.state_versions (name, serial, schema, data, committed_by) \
         VALUES ('{PG_NAME}', 2, 1, '{{\"schema\": 1, \"serial\": \"two\"}}', 'a hand')"
    ));
    let state = b.state();
    let err = state.read().unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            // jsonb stores the text normalised, hence the column.
            "version 2 of {} does not parse: invalid type: string \"two\", expected u64 at line 1 \
             column 29",
            state.location()
        )
    );
    assert!(err.help().unwrap().to_string().contains("cairn.state_versions"));
}

#[test]
fn pg_commit_after_the_lock_connection_was_killed_fails_and_writes_nothing() {
    let Some(b) = Backend::pg() else { return };
    let Backend::Pg { server } = &b else { unreachable!() };
    let mut lock = b.state().lock(me("cairn bootstrap all"), LockWait::Fail).unwrap();
    lock.commit().unwrap();
    // An administrator ends the session holding the lock (or the network drops it).
    server.psql(&format!(
        "SELECT pg_terminate_backend(backend_pid) FROM cairn.locks WHERE name = '{PG_NAME}'"
    ));
    lock.data_mut().host_mut("web1").provider_id = Some("late".into());
    let err = lock.commit().unwrap_err();
    assert_eq!(err.to_string(), format!("the connection to {} was lost", b.state().location()));
    assert_eq!(lock.data().serial, 1, "a failed commit keeps the serial for the next one");
    // Another run can lock at once, and sees only what was committed.
    let next =
        b.state().lock(me("cairn next"), LockWait::Timeout(Duration::from_secs(60))).unwrap();
    assert_eq!(next.data().serial, 1);
    assert!(next.data().host("web1").is_none());
}

#[test]
fn file_state_that_does_not_parse_is_refused_naming_file_line_column_and_backup() {
    let dir = tempfile::tempdir().unwrap();
    let state = FileState::new(dir.path());
    fs_err::create_dir(dir.path().join(".cairn")).unwrap();
    fs_err::write(state.state_path(), "{\n  \"schema\": 1,\n  \"serial\": 4,\n  \"hosts\": {\n    \"web1\": {\"provider_id\": \"1\"")
        .unwrap();
    let err = state.read().unwrap_err();
    let path = state.state_path().display().to_string();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot parse the state file {path}: EOF while parsing an object at line 5, column 31"
        )
    );
    assert_eq!(
        err.help().unwrap().to_string(),
        format!(
            "the previous version is kept in {}; inspect it, and if it is good copy it over {path}",
            state.backup_path().display()
        )
    );

    // A well-formed file with a wrong type is reported the same way.
    fs_err::write(state.state_path(), "{\"schema\": 1, \"serial\": \"four\"}").unwrap();
    let err = state.read().unwrap_err();
    assert!(
        err.to_string()
            .ends_with("invalid type: string \"four\", expected u64 at line 1, column 30"),
        "{err}"
    );
}

/// The lock is taken, used from many tasks and released inside a tokio runtime, as the fleet
/// runner does: the pg backend must not start or block on a runtime of its own there.
fn shared_lock_commits_updates_from_many_tokio_tasks(b: &Backend) {
    let state = b.state();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let serial = rt.block_on(async {
        let shared =
            SharedStateLock::new(state.lock(me("cairn bootstrap all"), LockWait::Fail).unwrap());
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let shared = shared.clone();
                tokio::spawn(async move {
                    shared
                        .update_host(&format!("web{i}"), |h: &mut HostState| {
                            h.addresses.push(format!("127.0.0.1:{}", 2200 + i));
                        })
                        .unwrap();
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let serial = shared.snapshot().serial;
        drop(shared);
        serial
    });
    assert_eq!(serial, 20);
    let data = state.read().unwrap();
    assert_eq!(data.serial, 20);
    assert_eq!(data.hosts.len(), 20);
    assert_eq!(data.host("web7").unwrap().addresses, ["127.0.0.1:2207"]);
    // Released inside the runtime: the next run takes the lock without waiting.
    drop(state.lock(me("cairn next"), LockWait::Fail).unwrap());
}

/// The words of a rendered diagnostic, without its line wrapping and margin.
fn flatten(text: &str) -> String {
    text.split_whitespace().filter(|w| *w != "|" && *w != "│").collect::<Vec<_>>().join(" ")
}

/// A `cairn` process started by a test, killed (SIGKILL) and reaped when dropped.
struct CairnRun(std::process::Child);

impl Drop for CairnRun {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn two_cairn_runs_on_one_pg_fleet_the_second_fails_naming_the_first_then_proceeds() {
    let Some(b) = Backend::pg() else { return };
    let Backend::Pg { server } = &b else { unreachable!() };
    let repo = tempfile::tempdir().unwrap();
    // Port 9 on loopback: nothing listens there, so the first run keeps trying to reach web1
    // (holding the lock) until its reach timeout.
    fs_err::write(
        repo.path().join("cairn.hcl"),
        format!(
            "state {{\n  backend = \"pg\"\n  conn    = env(\"CAIRN_PG_CONN\")\n  name    = \"{PG_NAME}\"\n}}\n\n\
             provider \"existing\" \"mine\" {{}}\n\n\
             host \"web1\" {{\n  provider = \"mine\"\n  address  = \"127.0.0.1:9\"\n  flake    = \".#web1\"\n}}\n"
        ),
    )
    .unwrap();
    crate::support::flake::write_minimal(repo.path(), &["web1"]);
    // Over TCP, as a team's database is reached (the other tests use the unix socket).
    let cairn = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
        cmd.current_dir(repo.path())
            .args(args)
            .env("CAIRN_PG_CONN", server.tcp_url())
            .env("NO_COLOR", "1")
            .env("COLUMNS", "400")
            .env_remove("RUST_LOG")
            .env_remove("CAIRN_SSH_KEY")
            .stdin(Stdio::null());
        cmd
    };
    let first = CairnRun(
        cairn(&["bootstrap", "host", "web1", "--yes", "--timeout", "reach=10m"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut record = None;
    for _ in 0..1200 {
        if server.psql("SELECT to_regclass('cairn.locks') IS NOT NULL") == "t" {
            record = b.holder_record();
        }
        if record.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let record = record.expect("the first run never recorded itself as the lock holder");
    let client = server
        .psql("SELECT DISTINCT client_addr FROM pg_stat_activity WHERE application_name = 'cairn'");
    assert_eq!(client, "127.0.0.1", "the run connects over TCP");
    assert_eq!(record.pid, first.0.id());
    assert_eq!(record.command, "cairn bootstrap host web1 --yes --timeout reach=10m");

    let out =
        cairn(&["destroy", "host", "web1", "--yes", "--lock-timeout", "1s"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // The rendered error wraps its lines: compare words.
    let words = flatten(&stderr);
    assert!(
        words.contains(&flatten(&format!(
            "gave up after 1s waiting for the state lock, held by {record}"
        ))),
        "{stderr}"
    );
    assert!(
        words.contains(&flatten(&format!(
            "help: That run was started by user {}. wait longer with a larger --lock-timeout, or \
             stop that run: the lock is released when it exits. (lock: {})",
            record.user,
            PgState::new(&Sensitive(server.tcp_url()), PG_NAME).unwrap().location()
        ))),
        "{stderr}"
    );

    // Reading needs no lock: `cairn hosts` works while the first run holds it.
    let out = cairn(&["hosts"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("web1"), "{stdout}");

    // The first run ends (killed: its connection closes and the server releases the lock).
    drop(first);
    let out =
        cairn(&["destroy", "host", "web1", "--yes", "--lock-timeout", "60s"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("\nweb1  destroyed  "), "{stdout}");
    assert!(
        flatten(&stderr).contains(&flatten(&format!(
            "the previous cairn run ({record}) died without releasing the state lock"
        ))),
        "{stderr}"
    );
    assert_eq!(b.holder_record(), None, "the second run released the lock when it ended");
}

#[test]
fn pg_first_runs_at_once_create_the_tables_once() {
    let Some(b) = Backend::pg() else { return };
    let Backend::Pg { server } = &b else { unreachable!() };
    std::thread::scope(|scope| {
        let runs: Vec<_> = ["fleet-a", "fleet-b", "fleet-c"]
            .into_iter()
            .map(|name| {
                scope.spawn(move || {
                    let state = PgState::new(&Sensitive(server.conn()), name).unwrap();
                    let mut lock = state.lock(me("cairn apply"), LockWait::Fail).unwrap();
                    lock.data_mut().host_mut(name).provider_id = Some(name.into());
                    lock.commit().unwrap();
                })
            })
            .collect();
        for run in runs {
            run.join().unwrap();
        }
    });
    assert_eq!(server.psql("SELECT version FROM cairn.layout"), "1");
    assert_eq!(
        server.psql(
            "SELECT string_agg(name || ':' || serial, ',' ORDER BY name) FROM cairn.state_versions"
        ),
        "fleet-a:1,fleet-b:1,fleet-c:1"
    );
}

#[test]
fn pg_connection_errors_never_show_the_password() {
    // No server needed: nothing listens in a directory that does not exist.
    let dir = tempfile::tempdir().unwrap();
    let conn = format!(
        "host={} port=5432 user=alice password=hunter2-secret dbname=fleet",
        dir.path().join("missing").display()
    );
    let state = PgState::new(&Sensitive(conn), "prod").unwrap();
    assert!(!format!("{state:?}").contains("hunter2"));
    let err = state.lock(me("cairn apply"), LockWait::Fail).unwrap_err();
    let mut shown =
        format!("{err}\n{err:?}\n{}", err.help().map(|h| h.to_string()).unwrap_or_default());
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        shown.push_str(&format!("\n{s}"));
        source = s.source();
    }
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(
        err.to_string().starts_with(&format!(
            "cannot connect to PostgreSQL state \"prod\" (database fleet on {}:5432, user alice)",
            dir.path().join("missing").display()
        )),
        "{err}"
    );
}

/// Sends SIGCONT to a process the test stopped, also when the test fails.
struct Stopped(String);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.0]).status();
    }
}

#[test]
fn pg_run_ends_even_when_the_server_stops_answering_at_release() {
    let Some(b) = Backend::pg() else { return };
    let Backend::Pg { server } = &b else { unreachable!() };
    let lock = b.state().lock(me("cairn apply"), LockWait::Fail).unwrap();
    // Freeze the server process serving the lock's connection (one the test's server runs).
    let backend_pid =
        server.psql(&format!("SELECT backend_pid FROM cairn.locks WHERE name = '{PG_NAME}'"));
    assert!(Command::new("kill").args(["-STOP", &backend_pid]).status().unwrap().success());
    let frozen = Stopped(backend_pid);
    let ((), logs) = capture_logs(|| drop(lock));
    assert!(
        logs.contains(&format!(
            "{} did not answer within 5s while releasing the state lock; closing the connection \
             instead",
            b.state().location()
        )),
        "{logs}"
    );
    drop(frozen);
    // The connection is closed: the server releases the lock once its process runs again.
    let next = b.state().lock(me("cairn next"), LockWait::Timeout(Duration::from_secs(60)));
    assert_eq!(next.unwrap().holder().command, "cairn next");
}
