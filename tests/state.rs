//! The file state backend, exercised across real processes: this test binary re-executes
//! itself (`child_process_role` with `CAIRN_STATE_TEST_ROLE` set) to hold the lock, or to write
//! in a loop until it is killed with SIGKILL.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn::state::{
    FileState, HostState, LockHolder, LockWait, SharedStateLock, State, StateData, StateError,
    SCHEMA_VERSION,
};
use miette::Diagnostic;

const ROLE: &str = "CAIRN_STATE_TEST_ROLE";
const DIR: &str = "CAIRN_STATE_TEST_DIR";
const HOLDER_COMMAND: &str = "cairn bootstrap all";
const BIG_STATE_HOSTS: usize = 2000;

/// Not a test of its own: the entry point of the child processes the tests start, which
/// report to their parent on stdout.
#[test]
#[allow(clippy::print_stdout)]
fn child_process_role() {
    let Ok(role) = std::env::var(ROLE) else { return };
    let state = FileState::new(std::env::var(DIR).unwrap());
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
    fn start(role: &str, dir: &Path) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_process_role", "--nocapture", "--test-threads=1"])
            .env(ROLE, role)
            .env(DIR, dir)
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

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn parse_file(path: &Path) -> StateData {
    serde_json::from_slice(&std::fs::read(path).unwrap())
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
    serde_json::from_str(&std::fs::read_to_string(dir.join(".cairn/state.lock")).unwrap()).unwrap()
}

#[test]
fn reading_without_state_is_empty_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = FileState::new(dir.path()).read().unwrap();
    assert_eq!(data, StateData::default());
    assert!(!dir.path().join(".cairn").exists());
}

#[test]
fn commit_increments_serial_and_keeps_the_previous_version() {
    let dir = tempfile::tempdir().unwrap();
    let state = FileState::new(dir.path());
    let mut lock = state.lock(me("cairn test"), LockWait::Fail).unwrap();
    lock.data_mut().host_mut("web1").provider_id = Some("1".into());
    lock.commit().unwrap();
    assert!(!state.backup_path().exists(), "nothing to back up on the first write");
    lock.data_mut().host_mut("web1").provider_id = Some("2".into());
    lock.commit().unwrap();
    drop(lock);

    let now = state.read().unwrap();
    assert_eq!(now.serial, 2);
    assert_eq!(now.host("web1").unwrap().provider_id.as_deref(), Some("2"));
    let before = parse_file(state.backup_path());
    assert_eq!(before.serial, 1);
    assert_eq!(before.host("web1").unwrap().provider_id.as_deref(), Some("1"));

    // Pretty, schema first, hosts in name order, ending in a newline.
    let text = std::fs::read_to_string(state.state_path()).unwrap();
    assert_eq!(
        text,
        format!(
            "{{\n  \"schema\": {SCHEMA_VERSION},\n  \"serial\": 2,\n  \"hosts\": {{\n    \"web1\": {{\n      \"provider_id\": \"2\"\n    }}\n  }}\n}}\n"
        )
    );
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

#[test]
fn lock_is_released_on_drop_and_its_record_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let state = FileState::new(dir.path());
    let lock = state.lock(me("cairn first"), LockWait::Fail).unwrap();
    assert_eq!(holder_record(dir.path()).command, "cairn first");
    assert_eq!(holder_record(dir.path()).pid, std::process::id());
    drop(lock);
    assert_eq!(std::fs::read_to_string(state.lock_path()).unwrap(), "");
    // Taken again without any warning: a clean release is not a dead run.
    let (lock, logs) = capture_logs(|| state.lock(me("cairn second"), LockWait::Fail));
    lock.unwrap();
    assert_eq!(logs, "");
}

#[test]
fn second_run_fails_at_once_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let mut holder = ChildProcess::start("hold", dir.path());
    holder.wait_for("LOCKED");
    let record = holder_record(dir.path());
    assert_eq!(record.pid, holder.pid());

    let state = FileState::new(dir.path());
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
    assert!(help.contains(&state.lock_path().display().to_string()), "{help}");

    // Reading needs no lock and sees the holder's commit.
    assert!(state.read().unwrap().host("from-child").is_some());
    holder.release();
}

#[test]
fn waiting_gives_up_after_the_timeout_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let mut holder = ChildProcess::start("hold", dir.path());
    holder.wait_for("LOCKED");
    let state = FileState::new(dir.path());
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

#[test]
fn second_run_waits_for_the_holder_and_sees_its_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut holder = ChildProcess::start("hold", dir.path());
    holder.wait_for("LOCKED");

    let path = dir.path().to_owned();
    let waiter = std::thread::spawn(move || {
        let state = FileState::new(&path);
        let lock = state.lock(me("cairn waiter"), LockWait::Timeout(Duration::from_secs(120)))?;
        Ok::<_, StateError>(lock.data().clone())
    });
    // The holder keeps the lock until told: the waiter cannot have it yet.
    std::thread::sleep(Duration::from_millis(300));
    assert!(!waiter.is_finished(), "the waiter got the lock while the child held it");
    holder.release();

    let data = waiter.join().unwrap().unwrap();
    assert_eq!(data.host("from-child").unwrap().provider_id.as_deref(), Some("42"));
}

#[test]
fn killed_writer_leaves_old_or_new_state_and_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let state = FileState::new(dir.path());
    let mut last_serial = 0;
    for delay_ms in [0, 3, 11, 23, 47, 5] {
        let mut writer = ChildProcess::start("write-loop", dir.path());
        writer.wait_for("WRITING");
        std::thread::sleep(Duration::from_millis(delay_ms));
        writer.kill();

        let now = state.read().unwrap_or_else(|e| panic!("state after SIGKILL: {e}"));
        assert_eq!(now.hosts.len(), BIG_STATE_HOSTS);
        assert!(now.serial >= last_serial + 2, "{} after {last_serial}", now.serial);
        let before = parse_file(state.backup_path());
        assert_eq!(before.hosts.len(), BIG_STATE_HOSTS);
        assert!(
            before.serial + 1 == now.serial || before.serial == now.serial,
            "backup serial {} next to state serial {}",
            before.serial,
            now.serial
        );
        last_serial = now.serial;
    }

    // The next run cleans up temp files a killed write left behind.
    let mut lock = state.lock(me("cairn after"), LockWait::Fail).unwrap();
    lock.commit().unwrap();
    drop(lock);
    let mut names: Vec<String> = std::fs::read_dir(dir.path().join(".cairn"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["state.json", "state.json.bak", "state.lock"]);
}

#[test]
fn lock_of_a_killed_run_is_taken_over_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let mut holder = ChildProcess::start("hold", dir.path());
    holder.wait_for("LOCKED");
    let record = holder_record(dir.path());
    holder.kill();
    // The record survives the holder; the kernel released its flock.
    assert_eq!(holder_record(dir.path()), record);

    let state = FileState::new(dir.path());
    let (lock, logs) = capture_logs(|| state.lock(me("cairn next"), LockWait::Fail));
    let lock = lock.unwrap();
    assert_eq!(
        logs.trim(),
        format!(
            "WARN the previous cairn run ({record}) died without releasing the state lock; taking \
             the lock over"
        )
    );
    assert_eq!(lock.data().host("from-child").unwrap().provider_id.as_deref(), Some("42"));
    assert_eq!(holder_record(dir.path()).command, "cairn next");
}

#[test]
fn lock_left_by_another_host_is_not_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let state = FileState::new(dir.path());
    std::fs::create_dir(dir.path().join(".cairn")).unwrap();
    let record = LockHolder {
        pid: std::process::id(), // alive here, which must not matter: it is another host's pid
        hostname: "ci-7".into(),
        user: "alice".into(),
        command: "cairn bootstrap all".into(),
        since: time::macros::datetime!(2026-11-22 06:01:03 UTC),
    };
    std::fs::write(state.lock_path(), serde_json::to_vec(&record).unwrap()).unwrap();

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

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = FileState::new(dir.path());
    std::fs::create_dir(dir.path().join(".cairn")).unwrap();
    std::fs::write(state.state_path(), r#"{"schema": 7, "serial": 3, "hosts": {}, "new": 1}"#)
        .unwrap();
    let err = state.read().unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{} was written by a newer cairn (state schema 7; this cairn understands schema 1 \
             and older)",
            state.state_path().display()
        )
    );
    // Nor does taking the lock get around it.
    assert!(matches!(
        state.lock(me("cairn x"), LockWait::Fail).unwrap_err(),
        StateError::SchemaTooNew { found: 7, .. }
    ));
}

#[test]
fn corrupt_state_is_refused_naming_file_line_column_and_backup() {
    let dir = tempfile::tempdir().unwrap();
    let state = FileState::new(dir.path());
    std::fs::create_dir(dir.path().join(".cairn")).unwrap();
    std::fs::write(state.state_path(), "{\n  \"schema\": 1,\n  \"serial\": 4,\n  \"hosts\": {\n    \"web1\": {\"provider_id\": \"1\"")
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
    std::fs::write(state.state_path(), "{\"schema\": 1, \"serial\": \"four\"}").unwrap();
    let err = state.read().unwrap_err();
    assert!(
        err.to_string()
            .ends_with("invalid type: string \"four\", expected u64 at line 1, column 30"),
        "{err}"
    );
}

#[test]
fn shared_lock_commits_updates_from_many_tokio_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let state = FileState::new(dir.path());
    let shared =
        SharedStateLock::new(state.lock(me("cairn bootstrap all"), LockWait::Fail).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    rt.block_on(async {
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
    });
    assert_eq!(shared.snapshot().serial, 20);
    drop(shared);
    let data = state.read().unwrap();
    assert_eq!(data.serial, 20);
    assert_eq!(data.hosts.len(), 20);
    assert_eq!(data.host("web7").unwrap().addresses, ["127.0.0.1:2207"]);
}
