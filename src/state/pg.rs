//! The state backend for teams: a PostgreSQL database
//! (`state { backend = "pg", conn = env("CAIRN_PG_CONN"), name = "prod" }`), over TLS as
//! `conn`'s `sslmode` says (settings.rs, tls.rs).
//!
//! Tables, in the schema `cairn` (created on first use, versioned by `cairn.layout`):
//! - `cairn.state_versions`: every committed version of every named state
//!   (`name`, `serial`, `schema`, `data` as jsonb, `committed_at`, `committed_by`). The newest
//!   row of a name is its state; the ones before it are the backups, kept until deleted by hand.
//! - `cairn.locks`: who holds the lock of a name (the [`LockHolder`] and the server process of
//!   its connection), so a second run can name it.
//!
//! The lock is a session advisory lock keyed by the name, taken on a connection dedicated to
//! the lock for its whole life: when the run ends or dies, its connection closes and the server
//! releases the lock. Every commit is one transaction that first checks that this connection
//! still holds the lock and that nobody wrote a newer version.
//!
//! The [`State`] trait is synchronous but called from tokio tasks (see [`super::SharedStateLock`]),
//! so each connection is driven by a one-thread runtime of its own; callers block on a channel,
//! never on a runtime, which works inside and outside another runtime alike.

use std::fmt;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;
use tokio_postgres::Config;

use super::{LockHolder, LockWait, State, StateData, StateError, StateLock, SCHEMA_VERSION};
use crate::inventory::Sensitive;

mod error;
mod lock;
mod name;
mod session;
mod settings;
mod tls;

pub use error::PgError;
pub use lock::PgStateLock;
pub use name::LEGACY_DEFAULT_NAME;
pub use session::LAYOUT_VERSION;
use session::{newest_version, Conn, StoredVersion};
use settings::ConnSettings;
pub use settings::{SslMode, SSL_MODES};
use tls::MakeRustls;

/// The schema holding cairn's tables.
pub const DB_SCHEMA: &str = "cairn";

/// State kept in a PostgreSQL database, under one `name`.
#[derive(Clone)]
pub struct PgState {
    config: Config,
    tls: MakeRustls,
    ssl_mode: SslMode,
    name: String,
    /// The name was derived from the repository ([`PgState::for_repository`]).
    derived: bool,
    location: String,
}

impl fmt::Debug for PgState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the connection string: it may hold a password.
        f.debug_struct("PgState").field("location", &self.location).finish()
    }
}

impl PgState {
    /// The state called `name` in the database `conn` (a libpq connection string) points to.
    /// Connects only when used.
    pub fn new(conn: &Sensitive, name: &str) -> Result<Self, PgError> {
        let ConnSettings { config, ssl_mode, roots } = ConnSettings::parse(&conn.0)?;
        let tls = MakeRustls::new(ssl_mode, &roots)?;
        let location = format!("PostgreSQL state \"{name}\" ({})", describe(&config));
        Ok(Self { config, tls, ssl_mode, name: name.to_owned(), derived: false, location })
    }

    /// The state of the repository at `root` when the `state` block names none: its name is
    /// derived from the repository (see `name.rs`). Reading it refuses to start empty while
    /// the state of [`LEGACY_DEFAULT_NAME`], which such a block used to mean, has versions.
    pub fn for_repository(conn: &Sensitive, root: &std::path::Path) -> Result<Self, PgError> {
        let name = name::derive(root)?;
        Ok(Self { derived: true, ..Self::new(conn, &name)? })
    }

    /// The state's name: the key of its rows and of its lock.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn connect(&self) -> Result<Conn, PgError> {
        Conn::open(self)
    }
}

/// Where the database is, without credentials: `database cairn on db.example.org:5432, user
/// alice`.
fn describe(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let port = config.get_ports().get(i).or(config.get_ports().first()).unwrap_or(&5432);
            match h {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(dir) => format!("{}:{port}", dir.display()),
            }
        })
        .collect();
    let hosts = if hosts.is_empty() { "localhost".to_owned() } else { hosts.join(",") };
    // Without them, the client logs in as this login's user, to the database of that name.
    let login = super::this_user();
    let user = config.get_user().unwrap_or(&login);
    let db = config.get_dbname().unwrap_or(user);
    format!("database {db} on {hosts}, user {user}")
}

/// The advisory lock key of a state name: stable across builds and machines.
fn lock_key(name: &str) -> i64 {
    let digest = Sha256::digest(format!("cairn state lock\0{name}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// How pg_locks shows a bigint advisory key: high half in `classid`, low half in `objid`.
fn lock_key_halves(key: i64) -> (i64, i64) {
    let key = key as u64;
    ((key >> 32) as i64, (key & 0xffff_ffff) as i64)
}

impl PgState {
    fn parse(&self, stored: Option<StoredVersion>) -> Result<StateData, StateError> {
        let Some((serial, schema, text)) = stored else { return Ok(StateData::default()) };
        // The schema is checked first, so a newer version is refused as such rather than
        // as data with fields this binary does not know.
        if i64::from(schema) > i64::from(SCHEMA_VERSION) {
            return Err(StateError::SchemaTooNew {
                location: self.location.clone(),
                found: u64::try_from(schema).unwrap_or_default(),
                supported: SCHEMA_VERSION,
            });
        }
        let corrupt =
            |message: String| PgError::Corrupt { location: self.location.clone(), serial, message };
        let mut data: StateData = if i64::from(schema) < i64::from(SCHEMA_VERSION) {
            let from = u64::try_from(schema).unwrap_or_default();
            super::migrate::from_slice(text.as_bytes(), from).map_err(|e| corrupt(e.to_string()))?
        } else {
            serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?
        };
        // The row's serial is the one the lock and the commits go by.
        data.serial = u64::try_from(serial).map_err(|_| corrupt(format!("serial {serial}")))?;
        Ok(data)
    }

    fn read_on(&self, conn: &Conn) -> Result<StateData, StateError> {
        if conn.layout()?.is_none() {
            return Ok(StateData::default());
        }
        let name = self.name.clone();
        let stored = conn.run("reading the state", |client| async move {
            Ok(newest_version(&*client.lock().await, &name).await?)
        })?;
        if stored.is_none() && self.derived {
            self.refuse_to_hide_the_legacy_state(conn)?;
        }
        self.parse(stored)
    }

    /// A derived name with no state while `"default"` has some: that is most likely this
    /// repository's state from before names were derived. Starting empty would let `apply`
    /// create every machine again, so the user decides.
    fn refuse_to_hide_the_legacy_state(&self, conn: &Conn) -> Result<(), StateError> {
        let legacy = conn.run("reading the state", |client| async move {
            Ok(newest_version(&*client.lock().await, LEGACY_DEFAULT_NAME).await?)
        })?;
        match legacy {
            None => Ok(()),
            Some((serial, _, _)) => Err(PgError::LegacyDefaultState {
                location: self.location.clone(),
                name: self.name.clone(),
                serial,
            }
            .into()),
        }
    }

    /// The run holding the lock of this name right now, allowing it a moment to record
    /// itself if it just took the lock. A record whose connection no longer holds the lock
    /// (its run died) is not a holder.
    fn current_holder(&self, conn: &Conn) -> Option<Box<LockHolder>> {
        let (hi, lo) = lock_key_halves(lock_key(&self.name));
        for _ in 0..10 {
            let name = self.name.clone();
            let record = conn.run("reading the lock holder", |client| async move {
                let client = client.lock().await;
                let row = client
                    .query_opt(
                        "SELECT l.holder::text FROM cairn.locks l
                         WHERE l.name = $1 AND EXISTS (
                             SELECT 1 FROM pg_locks p
                             WHERE p.locktype = 'advisory' AND p.granted
                               AND p.pid = l.backend_pid
                               AND p.database = (SELECT oid FROM pg_database
                                                 WHERE datname = current_database())
                               AND p.classid::bigint = $2 AND p.objid::bigint = $3
                               AND p.objsubid = 1)",
                        &[&name, &hi, &lo],
                    )
                    .await?;
                Ok(row.map(|r| r.get::<_, String>(0)))
            });
            match record {
                Ok(Some(text)) => return serde_json::from_str(&text).ok().map(Box::new),
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => {
                    tracing::debug!("cannot read the state lock holder: {e}");
                    return None;
                }
            }
        }
        None
    }

    /// Takes the advisory lock on `conn`, waiting as `wait` says.
    fn acquire(&self, conn: &Conn, wait: LockWait) -> Result<(), StateError> {
        let key = lock_key(&self.name);
        let started = Instant::now();
        let taken = conn.run("taking the state lock", |client| async move {
            let client = client.lock().await;
            Ok(client.query_one("SELECT pg_try_advisory_lock($1)", &[&key]).await?.get(0))
        })?;
        if taken {
            return Ok(());
        }
        let location = self.location.clone();
        let holder = self.current_holder(conn);
        let LockWait::Timeout(limit) = wait else {
            return Err(StateError::Locked { holder, location });
        };
        match &holder {
            Some(h) => tracing::info!("state is locked by {h}; waiting for it"),
            None => tracing::info!("state is locked by another run; waiting for it"),
        }
        // The server queues the waiters; lock_timeout ends the wait.
        let remaining = limit.saturating_sub(started.elapsed());
        let timeout_ms = i64::try_from(remaining.as_millis()).unwrap_or(i64::MAX).max(1);
        let taken = conn.run("waiting for the state lock", |client| async move {
            let client = client.lock().await;
            // The wait is a statement too: its own limit must not be cut by the session's.
            client
                .batch_execute(&format!(
                    "SET lock_timeout = {timeout_ms}; SET statement_timeout = {}",
                    timeout_ms.saturating_add(5_000)
                ))
                .await?;
            let result = client.execute("SELECT pg_advisory_lock($1)", &[&key]).await;
            client.batch_execute("RESET lock_timeout; RESET statement_timeout").await?;
            match result {
                Ok(_) => Ok(true),
                Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => Ok(false),
                Err(e) => Err(e.into()),
            }
        })?;
        if taken {
            Ok(())
        } else {
            let holder = self.current_holder(conn).or(holder);
            Err(StateError::LockTimeout { holder, waited: limit, location })
        }
    }

    /// Records `holder` as the lock's holder (we hold the advisory lock); warns about a
    /// record left by a run that died holding it.
    fn record_holder(&self, conn: &Conn, holder: &LockHolder) -> Result<(), StateError> {
        let name = self.name.clone();
        let record = serde_json::to_string(holder).map_err(std::io::Error::other)?;
        let previous = conn.run("recording the lock holder", |client| async move {
            let mut client = client.lock().await;
            let tx = client.transaction().await?;
            let previous = tx
                .query_opt(
                    "SELECT holder::text FROM cairn.locks WHERE name = $1 FOR UPDATE",
                    &[&name],
                )
                .await?
                .map(|r| r.get::<_, String>(0));
            tx.execute(
                "INSERT INTO cairn.locks (name, backend_pid, holder)
                 VALUES ($1, pg_backend_pid(), ($2::text)::jsonb)
                 ON CONFLICT (name) DO UPDATE
                 SET backend_pid = excluded.backend_pid, holder = excluded.holder",
                &[&name, &record],
            )
            .await?;
            tx.commit().await?;
            Ok(previous)
        })?;
        // The server released that run's lock when its connection ended, so it is gone: no
        // pid to check, and no host boundary to worry about.
        match previous.map(|text| serde_json::from_str::<LockHolder>(&text)) {
            None => {}
            Some(Ok(prev)) => tracing::warn!(
                "the previous cairn run ({prev}) died without releasing the state lock; taking \
                 the lock over"
            ),
            Some(Err(_)) => tracing::warn!(
                "the state lock of {} held an unreadable record; taking the lock over",
                self.location
            ),
        }
        Ok(())
    }
}

impl State for PgState {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn read(&self) -> Result<StateData, StateError> {
        self.read_on(&self.connect()?)
    }

    fn lock(&self, holder: LockHolder, wait: LockWait) -> Result<Box<dyn StateLock>, StateError> {
        let conn = self.connect()?;
        conn.ensure_layout()?;
        self.acquire(&conn, wait)?;
        // From here on, dropping `lock` releases the lock (and closing `conn` would too).
        let mut lock = PgStateLock {
            state: self.clone(),
            conn,
            holder,
            data: StateData::default(),
            recorded: false,
        };
        self.record_holder(&lock.conn, &lock.holder)?;
        lock.recorded = true;
        lock.data = self.read_on(&lock.conn)?;
        tracing::debug!("took the lock of {} as {}", self.location, lock.holder);
        Ok(Box::new(lock))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_have_statement_and_lock_limits_unless_conn_sets_them() {
        let state = PgState::new(&Sensitive("host=db user=cairn".into()), "s").unwrap();
        assert_eq!(
            state.config.get_options(),
            Some("-c statement_timeout=60s -c lock_timeout=30s")
        );
        let own = Sensitive("host=db options='-c statement_timeout=5min'".into());
        let state = PgState::new(&own, "s").unwrap();
        assert_eq!(
            state.config.get_options(),
            Some("-c statement_timeout=5min -c lock_timeout=30s")
        );
    }

    #[test]
    fn location_and_debug_never_show_the_password() {
        for conn in [
            "host=db.example.org port=5433 dbname=fleet user=alice password=hunter2-secret sslmode=require",
            "postgresql://alice:hunter2-secret@db.example.org:5433/fleet?sslmode=verify-full",
        ] {
            let state = PgState::new(&Sensitive(conn.into()), "prod").unwrap();
            assert_eq!(
                state.location(),
                "PostgreSQL state \"prod\" (database fleet on db.example.org:5433, user alice)"
            );
            let debug = format!("{state:?}");
            assert!(!debug.contains("hunter2"), "{debug}");
        }
    }

    #[test]
    fn an_invalid_conn_is_refused_without_echoing_it() {
        let err =
            PgState::new(&Sensitive("host=x password=hunter2 bogus=1".into()), "p").unwrap_err();
        let text = format!("{err} {err:?} {}", std::error::Error::source(&err).unwrap());
        assert!(!text.contains("hunter2"), "{text}");
        assert!(err.to_string().contains("not a valid connection string"));
    }

    #[test]
    fn lock_keys_are_stable_and_split_as_pg_locks_shows_them() {
        // Changing the key would let an old and a new cairn lock the same state at once.
        assert_eq!(lock_key("default"), lock_key("default"));
        assert_ne!(lock_key("default"), lock_key("prod"));
        let (hi, lo) = lock_key_halves(-1);
        assert_eq!((hi, lo), (0xffff_ffff, 0xffff_ffff));
        let (hi, lo) = lock_key_halves(0x0000_0001_0000_0002);
        assert_eq!((hi, lo), (1, 2));
    }
}
