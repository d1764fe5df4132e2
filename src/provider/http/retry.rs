//! When and how long to wait before trying again: capped exponential backoff with jitter,
//! at least what the server asked for (`Retry-After`, `RateLimit-Reset`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;

use super::*;

pub(super) fn retried_note(attempt: u32) -> String {
    match attempt {
        0 => String::new(),
        1 => ", after 1 retry".into(),
        n => format!(", after {n} retries"),
    }
}

/// How long the server asks us to wait: `Retry-After` (seconds), or on 429 `RateLimit-Reset`
/// (Hetzner: a unix time; the IETF draft: seconds from now).
pub(super) fn server_wait(
    status: StatusCode,
    headers: &HeaderMap,
    now: SystemTime,
) -> Option<Duration> {
    let number = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok();
    if let Some(secs) = number("retry-after") {
        return Some(Duration::from_secs(secs));
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        if let Some(reset) = number("ratelimit-reset") {
            let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
            // Anything past 2001-09-09 is a point in time, anything smaller a delta.
            return Some(Duration::from_secs(if reset >= 1_000_000_000 {
                reset.saturating_sub(now)
            } else {
                reset
            }));
        }
    }
    None
}

/// The wait before retry number `attempt + 1`: `base * 2^attempt` with equal jitter (between
/// half and all of it), at least what the server asked for, never more than `max_delay`.
pub(super) fn retry_delay(
    policy: &RetryPolicy,
    attempt: u32,
    server_wait: Option<Duration>,
) -> Duration {
    let exp = policy.base_delay.saturating_mul(1u32 << attempt.min(20)).min(policy.max_delay);
    let half = exp / 2;
    let jitter = if half.is_zero() {
        Duration::ZERO
    } else {
        rand::thread_rng().gen_range(Duration::ZERO..=half)
    };
    (half + jitter).max(server_wait.unwrap_or_default()).min(policy.max_delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let p = RetryPolicy {
            max_retries: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
        };
        for attempt in 0..5 {
            let full = Duration::from_secs(1 << attempt);
            for _ in 0..50 {
                let d = retry_delay(&p, attempt, None);
                assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
            }
        }
        assert!(retry_delay(&p, 12, None) <= Duration::from_secs(60));
        assert!(retry_delay(&p, 40, None) <= Duration::from_secs(60));
    }

    #[test]
    fn server_wait_wins_over_a_shorter_backoff_but_not_over_the_cap() {
        let p = RetryPolicy {
            max_retries: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
        };
        assert_eq!(retry_delay(&p, 0, Some(Duration::from_secs(7))), Duration::from_secs(7));
        assert_eq!(retry_delay(&p, 0, Some(Duration::from_secs(600))), Duration::from_secs(60));
    }

    #[test]
    fn rate_limit_reset_is_a_unix_time_or_a_delta() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let h = headers(&[("ratelimit-reset", "1800000009"), ("ratelimit-remaining", "0")]);
        assert_eq!(
            server_wait(StatusCode::TOO_MANY_REQUESTS, &h, now),
            Some(Duration::from_secs(9))
        );
        let h = headers(&[("ratelimit-reset", "4")]);
        assert_eq!(
            server_wait(StatusCode::TOO_MANY_REQUESTS, &h, now),
            Some(Duration::from_secs(4))
        );
        // A reset in the past means "now".
        let h = headers(&[("ratelimit-reset", "1799999990")]);
        assert_eq!(server_wait(StatusCode::TOO_MANY_REQUESTS, &h, now), Some(Duration::ZERO));
        // Only a 429 makes RateLimit-Reset a wait.
        assert_eq!(server_wait(StatusCode::SERVICE_UNAVAILABLE, &h, now), None);
        let h = headers(&[("retry-after", "3")]);
        assert_eq!(
            server_wait(StatusCode::SERVICE_UNAVAILABLE, &h, now),
            Some(Duration::from_secs(3))
        );
    }
}
