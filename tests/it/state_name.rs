//! The name of a pg state whose `state` block gives none: derived from the repository's
//! first commit (the same in every clone), and never a silent fresh start while the state
//! such a block used to mean ("default") exists. Real git, real PostgreSQL.

use std::path::Path;
use std::process::{Command, Stdio};

use cairn::inventory::Sensitive;
use cairn::state::{LockHolder, LockWait, PgState, State};

use crate::support::pg;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.org",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A repository with a `cairn.hcl` whose pg state block has no `name`, committed.
fn fleet_repo(parent: &Path, conn_name: Option<&str>) -> (std::path::PathBuf, String) {
    let repo = parent.join("fleet");
    fs_err::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q"]);
    let name = conn_name.map(|n| format!("  name    = \"{n}\"\n")).unwrap_or_default();
    fs_err::write(
        repo.join("cairn.hcl"),
        format!(
            "state {{\n  backend = \"pg\"\n  conn    = env(\"CAIRN_PG_CONN\")\n{name}}}\n\n\
             provider \"existing\" \"mine\" {{}}\n\n\
             host \"web1\" {{\n  provider = \"mine\"\n  address  = \"127.0.0.1:9\"\n  flake    = \".#web1\"\n}}\n"
        ),
    )
    .unwrap();
    crate::support::flake::write_minimal(&repo, &["web1"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    let first = git(&repo, &["rev-parse", "HEAD"]);
    (repo, first)
}

#[test]
fn pg_state_without_name_is_named_after_the_first_commit_in_every_clone() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, first) = fleet_repo(dir.path(), None);
    let conn = Sensitive("host=/nonexistent user=cairn".into());
    let expected = format!("repo-{}", &first[..16]);
    assert_eq!(PgState::for_repository(&conn, &repo).unwrap().name(), expected);

    // Later commits, another history merged in, a clone under another directory name: the
    // same name.
    fs_err::write(repo.join("motd"), "hi\n").unwrap();
    git(&repo, &["add", "motd"]);
    git(&repo, &["commit", "-q", "-m", "second"]);
    git(&repo, &["checkout", "-q", "--orphan", "other"]);
    git(&repo, &["commit", "-q", "-m", "unrelated root"]);
    git(&repo, &["checkout", "-q", "main"]);
    git(&repo, &["merge", "-q", "--allow-unrelated-histories", "-m", "merge", "other"]);
    assert_eq!(PgState::for_repository(&conn, &repo).unwrap().name(), expected);
    let clone = dir.path().join("my-checkout");
    git(dir.path(), &["clone", "-q", repo.to_str().unwrap(), clone.to_str().unwrap()]);
    assert_eq!(PgState::for_repository(&conn, &clone).unwrap().name(), expected);

    // A shallow clone's oldest commit is not the first one: no guessing.
    let shallow = dir.path().join("shallow");
    let url = format!("file://{}", repo.display());
    git(dir.path(), &["clone", "-q", "--depth", "1", &url, shallow.to_str().unwrap()]);
    let err = PgState::for_repository(&conn, &shallow).unwrap_err().to_string();
    assert!(err.contains("it is a shallow clone"), "{err}");
    assert!(err.contains("git fetch --unshallow"), "{err}");

    // Not a repository at all.
    let plain = tempfile::tempdir().unwrap();
    let err = PgState::for_repository(&conn, plain.path()).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "cannot derive the name of the pg state from the repository at {}",
            plain.path().display()
        )),
        "{err}"
    );
}

fn cairn_plan(repo: &Path, conn: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .current_dir(repo)
        .arg("plan")
        .env("CAIRN_PG_CONN", conn)
        .env("NO_COLOR", "1")
        .env("COLUMNS", "400")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn flatten(text: &str) -> String {
    text.split_whitespace().filter(|w| *w != "│").collect::<Vec<_>>().join(" ")
}

#[test]
fn pg_derived_name_refuses_to_start_empty_while_default_has_state() {
    let Some(server) = pg::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (repo, first) = fleet_repo(dir.path(), None);
    let derived = format!("repo-{}", &first[..16]);
    let conn = Sensitive(server.conn());

    // Without any state, the derived name starts empty.
    let state = PgState::for_repository(&conn, &repo).unwrap();
    assert!(state.read().unwrap().hosts.is_empty());

    // State stored by an older cairn under "default".
    let legacy = PgState::new(&conn, "default").unwrap();
    let mut lock = legacy.lock(LockHolder::current("cairn apply"), LockWait::Fail).unwrap();
    lock.data_mut().host_mut("web1").provider_id = Some("42".into());
    lock.commit().unwrap();
    drop(lock);

    let err = state.read().unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "PostgreSQL state \"{derived}\" (database postgres on {}:{}, user cairn) is empty, \
             but the state \"default\" in the same database has 1 version(s)",
            server.socket_dir().display(),
            server.port()
        )
    );
    assert!(state.lock(LockHolder::current("cairn apply"), LockWait::Fail).is_err());

    // What the user sees, with the fix.
    let out = cairn_plan(&repo, &server.conn());
    let stderr = flatten(&String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is empty, but the state \"default\" in the same database"),
        "{stderr}"
    );
    assert!(stderr.contains("set `name = \"default\"` in the state block"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "UPDATE cairn.state_versions SET name = '{derived}' WHERE name = 'default'"
        )),
        "{stderr}"
    );

    // The first fix: name it.
    let other = dir.path().join("named");
    fs_err::create_dir(&other).unwrap();
    let (named, _) = fleet_repo(&other, Some("default"));
    let out = cairn_plan(&named, &server.conn());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // The second: move it; then the derived name reads that state.
    server.psql(&format!(
        "UPDATE cairn.state_versions SET name = '{derived}' WHERE name = 'default'"
    ));
    let read = state.read().unwrap();
    assert_eq!(read.hosts["web1"].provider_id.as_deref(), Some("42"));
    let out = cairn_plan(&repo, &server.conn());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
