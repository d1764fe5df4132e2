//! The state backend for teams: a PostgreSQL database
//! (`state { backend = "pg", conn = env("CAIRN_PG_CONN"), name = "prod" }`), over TLS as
//! `conn`'s `sslmode` says (conn.rs, tls.rs).
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
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::Mutex;
use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config};

use super::{LockHolder, LockWait, State, StateData, StateError, StateLock, SCHEMA_VERSION};
use crate::inventory::Sensitive;

mod conn;
mod name;
mod tls;

use conn::ConnSettings;
pub use conn::{SslMode, SSL_MODES};
pub use name::LEGACY_DEFAULT_NAME;
use tls::MakeRustls;

/// The schema holding cairn's tables.
pub const DB_SCHEMA: &str = "cairn";

/// The table layouts, oldest first: `cairn.layout` records how many were applied. Append a
/// migration to change a table; never edit one that shipped.
const MIGRATIONS: &[&str] = &[
    // 1: versions and lock holders.
    "CREATE TABLE cairn.state_versions (
         name         text        NOT NULL,
         serial       bigint      NOT NULL CHECK (serial > 0),
         schema       integer     NOT NULL,
         data         jsonb       NOT NULL,
         committed_at timestamptz NOT NULL DEFAULT now(),
         committed_by text        NOT NULL,
         PRIMARY KEY (name, serial)
     );
     CREATE TABLE cairn.locks (
         name        text    PRIMARY KEY,
         backend_pid integer NOT NULL,
         holder      jsonb   NOT NULL
     );",
];

/// The table layout this build writes (and the newest it reads).
pub const LAYOUT_VERSION: usize = MIGRATIONS.len();

/// Serialises the creation and migration of the tables between first runs.
const SETUP_LOCK_KEY: i64 = 0x6361_6972_6e00_0001; // "cairn\0" + 1

/// How long releasing the lock may take at the end of a run.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything that can go wrong talking to the database (lock contention is reported as
/// [`StateError::Locked`] / [`StateError::LockTimeout`], like the file backend's).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum PgError {
    #[error("the `conn` of the pg state backend is not a valid connection string")]
    #[diagnostic(
        code(cairn::state::pg::conn),
        help("use libpq's form (`host=db.example.org dbname=cairn user=cairn`) or a URL (`postgresql://cairn@db.example.org/cairn`)")
    )]
    InvalidConn(#[source] tokio_postgres::Error),

    #[error("`sslmode={value}` in the `conn` of the pg state backend is not one of: {allowed}")]
    #[diagnostic(
        code(cairn::state::pg::sslmode),
        help("`verify-full` checks that the server's certificate chains to `sslrootcert` and names the host; `require` encrypts without checking it")
    )]
    InvalidSslMode { value: String, allowed: &'static str },

    #[error("refusing to send the password in `conn` to {host} without TLS")]
    #[diagnostic(
        code(cairn::state::pg::cleartext_password),
        help("with `sslmode=prefer` (the default) the password goes out in cleartext if the server does not offer TLS; add `sslmode=verify-full` (with `sslrootcert=CA.pem` for a private CA) or `sslmode=require` to `conn`, or write `sslmode=disable` to send it in cleartext on purpose")
    )]
    CleartextPassword { host: String },

    #[error("cannot read the certificates of `sslrootcert` {}: {why}", path.display())]
    #[diagnostic(
        code(cairn::state::pg::sslrootcert),
        help("`sslrootcert` names a PEM file holding the CA certificate(s) the server's certificate must chain to")
    )]
    RootCert { path: std::path::PathBuf, why: String },

    #[error("cannot set up TLS for the pg state backend: {what}")]
    #[diagnostic(code(cairn::state::pg::tls))]
    Tls { what: String },

    #[error("cannot derive the name of the pg state from the repository at {}: {why}", root.display())]
    #[diagnostic(
        code(cairn::state::pg::no_state_name),
        help("without `name`, the state block's name comes from the repository's first commit; commit first, or set `name = \"...\"` in the state block")
    )]
    NoStateName { root: std::path::PathBuf, why: String },

    #[error("{location} is empty, but the state \"default\" in the same database has {serial} version(s)")]
    #[diagnostic(
        code(cairn::state::pg::legacy_default),
        help("a state block without `name` used the name \"default\"; now the name comes from the repository (\"{name}\"). If \"default\" is this repository's state, set `name = \"default\"` in the state block, or move it, with no cairn run going: UPDATE cairn.state_versions SET name = '{name}' WHERE name = 'default'. If it is another repository's, set `name` here to a name of its own. cairn does not start an empty state while that one exists")
    )]
    LegacyDefaultState { location: String, name: String, serial: i64 },

    #[error("cannot connect to {location} (sslmode={ssl_mode})")]
    #[diagnostic(
        code(cairn::state::pg::connect),
        help("check `conn` in the state block (and the variable it reads, e.g. CAIRN_PG_CONN), that the server accepts this user, and, with TLS, that its certificate chains to `sslrootcert` and names the host in `conn`")
    )]
    Connect {
        location: String,
        ssl_mode: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },

    #[error("{what} failed on {location}")]
    #[diagnostic(
        code(cairn::state::pg::query),
        help("the user in `conn` needs to read and write the tables in schema `cairn` (and, on first use, CREATE on the database)")
    )]
    Query {
        what: &'static str,
        location: String,
        #[source]
        source: tokio_postgres::Error,
    },

    #[error("the connection to {location} was lost")]
    #[diagnostic(
        code(cairn::state::pg::connection_lost),
        help("check the database server; a run that lost its connection also lost the state lock")
    )]
    ConnectionLost {
        location: String,
        #[source]
        source: Option<tokio_postgres::Error>,
    },

    #[error("the cairn tables in {location} have layout version {found}; this cairn knows layout {supported} and older")]
    #[diagnostic(
        code(cairn::state::pg::layout_too_new),
        help("upgrade cairn to the version the rest of your team uses; this cairn will not touch that database")
    )]
    LayoutTooNew { location: String, found: i32, supported: usize },

    #[error("version {serial} of {location} does not parse: {message}")]
    #[diagnostic(
        code(cairn::state::pg::corrupt),
        help("every earlier version is kept in cairn.state_versions: inspect them, and delete the broken row (name and serial) to make the one before it current")
    )]
    Corrupt { location: String, serial: i64, message: String },

    #[error("this run no longer holds the state lock of {location}: {why}")]
    #[diagnostic(
        code(cairn::state::pg::lock_lost),
        help("nothing was written by this commit; run the command again")
    )]
    LockLost { location: String, why: String },

    #[error("cannot start the PostgreSQL client's runtime")]
    #[diagnostic(code(cairn::state::pg::runtime))]
    Runtime(#[source] std::io::Error),
}

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

/// One connection, driven by a runtime of its own.
struct Conn {
    client: Arc<Mutex<Client>>,
    runtime: Option<tokio::runtime::Runtime>,
    location: String,
}

impl Conn {
    fn open(state: &PgState) -> Result<Self, PgError> {
        let location = &state.location;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("cairn-pg")
            .enable_all()
            .build()
            .map_err(PgError::Runtime)?;
        let (config, tls) = (state.config.clone(), state.tls.clone());
        let connected = Self::wait(&runtime, async move { config.connect(tls).await });
        let lost = || PgError::ConnectionLost { location: location.to_owned(), source: None };
        let (client, connection) =
            connected.ok_or_else(lost)?.map_err(|source| PgError::Connect {
                location: location.to_owned(),
                ssl_mode: state.ssl_mode.as_str(),
                source,
            })?;
        runtime.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("PostgreSQL state connection ended: {e}");
            }
        });
        Ok(Self {
            client: Arc::new(Mutex::new(client)),
            runtime: Some(runtime),
            location: location.to_owned(),
        })
    }

    /// Runs `fut` on `runtime` and blocks this thread (which may be a task of another
    /// runtime) until it is done. `None`: the runtime dropped it.
    fn wait<R: Send + 'static>(
        runtime: &tokio::runtime::Runtime,
        fut: impl Future<Output = R> + Send + 'static,
    ) -> Option<R> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().ok()
    }

    /// Runs `op` with the client; its database errors are reported as `what` failing.
    fn run<R, F, Fut>(&self, what: &'static str, op: F) -> Result<R, PgError>
    where
        R: Send + 'static,
        F: FnOnce(Arc<Mutex<Client>>) -> Fut,
        Fut: Future<Output = Result<R, Failure>> + Send + 'static,
    {
        let runtime = self.runtime.as_ref().expect("the runtime lives as long as the connection");
        match Self::wait(runtime, op(self.client.clone())) {
            None => Err(PgError::ConnectionLost { location: self.location.clone(), source: None }),
            Some(Ok(r)) => Ok(r),
            // Closed, or closed by the server right after this error (the session was
            // terminated, the server shuts down): the session's locks are gone with it.
            Some(Err(Failure::Db(source)))
                if source.is_closed()
                    || source
                        .as_db_error()
                        .is_some_and(|d| matches!(d.severity(), "FATAL" | "PANIC")) =>
            {
                Err(PgError::ConnectionLost {
                    location: self.location.clone(),
                    source: Some(source),
                })
            }
            Some(Err(Failure::Db(source))) => {
                Err(PgError::Query { what, location: self.location.clone(), source })
            }
            Some(Err(Failure::State(e))) => Err(e),
        }
    }

    /// The layout version of the tables; `None` if they were never created.
    fn layout(&self) -> Result<Option<i32>, PgError> {
        let location = self.location.clone();
        self.run("reading the cairn table layout", |client| async move {
            let client = client.lock().await;
            read_layout(&*client, &location).await
        })
    }

    /// Creates the tables, or migrates them to this build's layout. Idempotent; concurrent
    /// first runs wait for each other.
    fn ensure_layout(&self) -> Result<(), PgError> {
        if self.layout()? == Some(LAYOUT_VERSION as i32) {
            return Ok(());
        }
        let location = self.location.clone();
        self.run("creating the cairn tables", |client| async move {
            let mut client = client.lock().await;
            // A session lock taken before the transaction begins: a transaction begun earlier
            // could miss tables another first run committed while this one waited.
            client.execute("SELECT pg_advisory_lock($1)", &[&SETUP_LOCK_KEY]).await?;
            let result = migrate(&mut client, &location).await;
            client.execute("SELECT pg_advisory_unlock($1)", &[&SETUP_LOCK_KEY]).await?;
            result
        })
    }
}

/// Creates or migrates the tables in one transaction (the caller holds the setup lock).
async fn migrate(client: &mut Client, location: &str) -> Result<(), Failure> {
    let tx = client.transaction().await?;
    let applied = match read_layout(&tx, location).await? {
        Some(v) => v,
        None => {
            tracing::info!("creating the cairn tables in {location}");
            tx.batch_execute(
                "CREATE SCHEMA IF NOT EXISTS cairn;
                 CREATE TABLE cairn.layout (version integer NOT NULL);
                 INSERT INTO cairn.layout VALUES (0);",
            )
            .await?;
            0
        }
    };
    let applied = usize::try_from(applied).unwrap_or(0);
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
        tx.batch_execute(migration).await?;
        let version = i32::try_from(i + 1).unwrap_or(i32::MAX);
        tx.execute("UPDATE cairn.layout SET version = $1", &[&version]).await?;
    }
    tx.commit().await?;
    Ok(())
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Closing the socket ends the server session, and with it every lock it held.
        // Not a blocking shutdown: this may run inside another runtime's task.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A failed database operation: an error from the server or the connection, or a finding
/// about the data.
enum Failure {
    Db(tokio_postgres::Error),
    State(PgError),
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Failure::Db(e)
    }
}

impl From<PgError> for Failure {
    fn from(e: PgError) -> Self {
        Failure::State(e)
    }
}

async fn read_layout(
    client: &impl tokio_postgres::GenericClient,
    location: &str,
) -> Result<Option<i32>, Failure> {
    let exists: bool =
        client.query_one("SELECT to_regclass('cairn.layout') IS NOT NULL", &[]).await?.get(0);
    if !exists {
        return Ok(None);
    }
    let found: i32 = client.query_one("SELECT version FROM cairn.layout", &[]).await?.get(0);
    if usize::try_from(found).is_ok_and(|v| v > LAYOUT_VERSION) {
        return Err(PgError::LayoutTooNew {
            location: location.to_owned(),
            found,
            supported: LAYOUT_VERSION,
        }
        .into());
    }
    Ok(Some(found))
}

/// The newest version of `name`, as stored: (serial, schema, JSON text).
type StoredVersion = (i64, i32, String);

async fn newest_version(
    client: &impl tokio_postgres::GenericClient,
    name: &str,
) -> Result<Option<StoredVersion>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT serial, schema, data::text FROM cairn.state_versions
             WHERE name = $1 ORDER BY serial DESC LIMIT 1",
            &[&name],
        )
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1), r.get(2))))
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

/// [`PgState`] locked by this process, on a connection of its own.
pub struct PgStateLock {
    state: PgState,
    conn: Conn,
    holder: LockHolder,
    data: StateData,
    recorded: bool,
}

impl fmt::Debug for PgStateLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStateLock")
            .field("state", &self.state)
            .field("holder", &self.holder)
            .field("serial", &self.data.serial)
            .finish_non_exhaustive()
    }
}

impl PgState {
    /// Inserts `data` (already carrying its new serial) as the next version, in one
    /// transaction on the lock's connection that proves the lock is still held there and
    /// `base` is still the newest version.
    fn write(
        &self,
        conn: &Conn,
        holder: &LockHolder,
        data: &StateData,
        base: u64,
    ) -> Result<(), StateError> {
        let text = serde_json::to_string(data).map_err(std::io::Error::other)?;
        let name = self.name.clone();
        let (hi, lo) = lock_key_halves(lock_key(&name));
        let serial = i64::try_from(data.serial).map_err(std::io::Error::other)?;
        let base = i64::try_from(base).map_err(std::io::Error::other)?;
        let schema = i32::try_from(data.schema).map_err(std::io::Error::other)?;
        let committed_by = holder.to_string();
        let location = self.location.clone();
        conn.run("committing the state", |client| async move {
            let mut client = client.lock().await;
            let tx = client.transaction().await?;
            let held: bool = tx
                .query_one(
                    "SELECT EXISTS (
                         SELECT 1 FROM pg_locks
                         WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid()
                           AND database = (SELECT oid FROM pg_database
                                           WHERE datname = current_database())
                           AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1)",
                    &[&hi, &lo],
                )
                .await?
                .get(0);
            if !held {
                let why = "its connection no longer holds the advisory lock".to_owned();
                return Err(PgError::LockLost { location, why }.into());
            }
            let newest: Option<i64> = tx
                .query_one("SELECT max(serial) FROM cairn.state_versions WHERE name = $1", &[&name])
                .await?
                .get(0);
            if newest.unwrap_or(0) != base {
                let why = format!(
                    "version {} was written meanwhile, while this run built on version {base}",
                    newest.unwrap_or(0)
                );
                return Err(PgError::LockLost { location, why }.into());
            }
            tx.execute(
                "INSERT INTO cairn.state_versions (name, serial, schema, data, committed_by)
                 VALUES ($1, $2, $3, ($4::text)::jsonb, $5)",
                &[&name, &serial, &schema, &text, &committed_by],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })?;
        Ok(())
    }
}

impl StateLock for PgStateLock {
    fn data(&self) -> &StateData {
        &self.data
    }

    fn data_mut(&mut self) -> &mut StateData {
        &mut self.data
    }

    fn commit(&mut self) -> Result<(), StateError> {
        let (state, conn, holder) = (&self.state, &self.conn, &self.holder);
        self.data.commit_with(|data, base| state.write(conn, holder, data, base))
    }

    fn holder(&self) -> &LockHolder {
        &self.holder
    }

    fn location(&self) -> String {
        self.state.location.clone()
    }
}

impl Drop for PgStateLock {
    fn drop(&mut self) {
        if !self.recorded {
            return; // closing the connection releases the lock
        }
        // Clear the record first, so the next holder does not mistake a clean release for a
        // dead run; then release the lock (closing the connection would too).
        let name = self.state.name.clone();
        let key = lock_key(&name);
        let released = self.conn.run("releasing the state lock", |client| async move {
            let release = async {
                let client = client.lock().await;
                client
                    .execute(
                        "DELETE FROM cairn.locks WHERE name = $1 AND backend_pid = pg_backend_pid()",
                        &[&name],
                    )
                    .await?;
                client.execute("SELECT pg_advisory_unlock($1)", &[&key]).await?;
                Ok::<_, Failure>(())
            };
            // A run must not hang at its end on a server that stopped answering: closing the
            // connection releases the lock as well, once the server notices.
            match tokio::time::timeout(RELEASE_TIMEOUT, release).await {
                Ok(result) => result.map(|()| true),
                Err(_) => Ok(false),
            }
        });
        match released {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                "{} did not answer within {}s while releasing the state lock; closing the \
                 connection instead",
                self.state.location,
                RELEASE_TIMEOUT.as_secs()
            ),
            Err(e) => tracing::warn!("could not clear the state lock record: {e}"),
        }
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
