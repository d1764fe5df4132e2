//! One database session of the pg state backend, driven by a runtime of its own, and the
//! tables it creates and migrates.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_postgres::Client;

use super::{PgError, PgState};

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

/// One connection, driven by a runtime of its own.
pub(super) struct Conn {
    client: Arc<Mutex<Client>>,
    runtime: Option<tokio::runtime::Runtime>,
    location: String,
}

impl Conn {
    pub(super) fn open(state: &PgState) -> Result<Self, PgError> {
        let location = &state.location;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("cairn-pg")
            .enable_all()
            .build()
            .map_err(PgError::Runtime)?;
        let (config, tls) = (state.config.clone(), state.tls.clone());
        let deadline = login_deadline(&config);
        let connected = Self::wait(&runtime, async move {
            tokio::time::timeout(deadline, config.connect(tls)).await
        });
        let lost = || PgError::ConnectionLost { location: location.to_owned(), source: None };
        let (client, connection) = connected
            .ok_or_else(lost)?
            .map_err(|_| PgError::LoginTimeout { location: location.to_owned(), deadline })?
            .map_err(|source| PgError::Connect {
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
    pub(super) fn wait<R: Send + 'static>(
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
    pub(super) fn run<R, F, Fut>(&self, what: &'static str, op: F) -> Result<R, PgError>
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
    pub(super) fn layout(&self) -> Result<Option<i32>, PgError> {
        let location = self.location.clone();
        self.run("reading the cairn table layout", |client| async move {
            let client = client.lock().await;
            read_layout(&*client, &location).await
        })
    }

    /// Creates the tables, or migrates them to this build's layout. Idempotent; concurrent
    /// first runs wait for each other.
    pub(super) fn ensure_layout(&self) -> Result<(), PgError> {
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

/// How long connecting may take in all: `connect_timeout` bounds only the TCP connect of
/// each host, so a server that accepts and then never answers (during the TLS handshake or
/// the login) would hold the run forever. Three times it per host: connect, TLS, login.
fn login_deadline(config: &tokio_postgres::Config) -> Duration {
    let per_host = config.get_connect_timeout().copied().unwrap_or(Duration::from_secs(10));
    let hosts = config.get_hosts().len().max(config.get_hostaddrs().len()).max(1);
    per_host * 3 * u32::try_from(hosts).unwrap_or(u32::MAX)
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
pub(super) enum Failure {
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
pub(super) type StoredVersion = (i64, i32, String);

pub(super) async fn newest_version(
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
