//! The lock of a pg state held by this process: commits on its connection, and the release
//! at the end of the run.

use std::fmt;
use std::time::Duration;

use super::session::{Conn, Failure};
use super::{lock_key, lock_key_halves, PgError, PgState};
use crate::state::{LockHolder, StateData, StateError, StateLock};

/// How long releasing the lock may take at the end of a run.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// [`PgState`] locked by this process, on a connection of its own.
pub struct PgStateLock {
    pub(super) state: PgState,
    pub(super) conn: Conn,
    pub(super) holder: LockHolder,
    pub(super) data: StateData,
    pub(super) recorded: bool,
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
