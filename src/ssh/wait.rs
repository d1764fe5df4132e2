//! Waiting for a host to answer over SSH (after creation, kexec or reboot), with capped
//! exponential backoff and a hard deadline.

use std::time::Duration;

use tokio::time::Instant;

use super::error::{Error, Result};
use super::{Auth, ConnectOptions, HostKeyPolicy, Session, Target};

const FIRST_DELAY: Duration = Duration::from_millis(250);
const MAX_DELAY: Duration = Duration::from_secs(5);

/// Connects to `target`, retrying until `deadline`. A host key that does not match the
/// policy fails at once (retrying cannot fix it, and it may be an attack); other errors are
/// retried, and at the deadline the error says how long it waited and the last error seen.
pub async fn wait_reachable(
    target: &Target,
    auth: &Auth,
    policy: &HostKeyPolicy,
    options: &ConnectOptions,
    deadline: Instant,
) -> Result<Session> {
    let started = Instant::now();
    let mut delay = FIRST_DELAY;
    let mut attempts = 0u32;
    let mut last_error = String::from("no attempt was made before the deadline");
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        attempts += 1;
        let mut attempt = options.clone();
        attempt.connect_timeout = options.connect_timeout.min(deadline - now);
        match Session::connect(target, auth, policy, &attempt).await {
            Ok(session) => {
                tracing::debug!(ssh = %target, attempts, "reachable");
                return Ok(session);
            }
            Err(e) if !e.is_retryable_connect() => return Err(e),
            Err(e) => {
                last_error = error_chain(&e);
                tracing::debug!(ssh = %target, attempt = attempts, error = %last_error, "not reachable yet");
            }
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        tokio::time::sleep(delay.min(deadline - now)).await;
        delay = (delay * 2).min(MAX_DELAY);
    }
    Err(Error::Unreachable {
        target: std::sync::Arc::new(target.clone()),
        waited: started.elapsed(),
        attempts,
        last_error,
    })
}

/// The error and its causes on one line: `cannot connect to x: Connection refused`.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
