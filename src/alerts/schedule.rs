//! When a failed delivery is tried again, and when a destination that keeps failing is disabled.
use std::time::Duration;

use chrono::{DateTime, Utc};

/// The waits after the first, second, … failed attempt (Standard Webhooks' schedule); after the
/// last, the delivery has failed for good.
pub const RETRY_DELAYS: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

/// The longest `Retry-After` honoured: a receiver cannot park a delivery for longer than the
/// schedule's longest wait.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10 * 3600);

/// A destination whose deliveries have failed, with no success, for this long is disabled.
pub const DISABLE_AFTER: chrono::TimeDelta = chrono::TimeDelta::days(5);

/// After the `attempts`-th attempt failed: how long until the next, or `None` when the schedule
/// has run out. A receiver's `Retry-After` (429, 503) replaces the schedule's wait.
pub fn after_failure(attempts: u32, retry_after: Option<Duration>) -> Option<Duration> {
    let planned = *RETRY_DELAYS.get((attempts.max(1) - 1) as usize)?;
    Some(retry_after.map_or(planned, |asked| asked.min(MAX_RETRY_AFTER)))
}

/// Whether a destination failing since `since` is disabled at `now`.
pub fn gives_up_on(since: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    since.is_some_and(|since| now - since >= DISABLE_AFTER)
}

/// A `Retry-After` value: seconds, or an HTTP date.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?.with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_then_nothing() {
        let waits: Vec<u64> = (1..=8).filter_map(|n| after_failure(n, None)).map(|d| d.as_secs()).collect();
        assert_eq!(waits, [5, 300, 1800, 7200, 18000, 36000, 36000]);
        assert_eq!(after_failure(8, Some(Duration::from_secs(1))), None);
    }

    #[test]
    fn retry_after_replaces_the_wait_within_bounds() {
        assert_eq!(after_failure(2, Some(Duration::from_secs(2))), Some(Duration::from_secs(2)));
        assert_eq!(after_failure(1, Some(Duration::from_secs(999_999))), Some(MAX_RETRY_AFTER));
        let now = DateTime::parse_from_rfc3339("2026-12-06T10:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Sun, 06 Dec 2026 10:01:00 GMT", now), Some(Duration::from_secs(60)));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn five_days_of_failures_disable() {
        let now = Utc::now();
        assert!(!gives_up_on(None, now));
        assert!(!gives_up_on(Some(now - chrono::TimeDelta::days(4)), now));
        assert!(gives_up_on(Some(now - chrono::TimeDelta::days(5)), now));
    }
}
