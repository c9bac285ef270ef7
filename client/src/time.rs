//! Timestamps as FsShell prints them: `-ls` in the local time zone (Java's default
//! TimeZone: `TZ`, else /etc/localtime), `-stat` in UTC.

use chrono::{DateTime, Local, TimeZone, Utc};

/// Formats epoch milliseconds in the local time zone with a strftime pattern.
pub fn format_local(epoch_ms: i64, pattern: &str) -> String {
    match Local.timestamp_millis_opt(epoch_ms).single() {
        Some(time) => time.format(pattern).to_string(),
        None => format_utc(epoch_ms, pattern),
    }
}

/// Formats epoch milliseconds in UTC with a strftime pattern.
pub fn format_utc(epoch_ms: i64, pattern: &str) -> String {
    let time = DateTime::<Utc>::from_timestamp_millis(epoch_ms).unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    time.format(pattern).to_string()
}

/// Epoch milliseconds of a local wall-clock time `[year, month, day, hour, minute,
/// second]`; `None` if it does not exist (invalid, or skipped by a DST change).
pub fn local_to_epoch_ms(parts: [u32; 6]) -> Option<u64> {
    let [year, month, day, hour, minute, second] = parts;
    let time = Local.with_ymd_and_hms(year as i32, month, day, hour, minute, second).earliest()?;
    u64::try_from(time.timestamp_millis()).ok()
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formatting() {
        // 2026-11-21 16:30:05.123 UTC
        let ms = 1_795_278_605_123;
        assert_eq!(format_utc(ms, "%Y-%m-%d %H:%M:%S"), "2026-11-21 16:30:05");
        assert_eq!(format_utc(0, "%Y-%m-%d %H:%M"), "1970-01-01 00:00");
        let ms = local_to_epoch_ms([2026, 11, 21, 16, 30, 5]).unwrap();
        assert_eq!(format_local(ms as i64, "%Y%m%d:%H%M%S"), "20261121:163005");
        assert!(local_to_epoch_ms([2026, 13, 1, 0, 0, 0]).is_none());
    }
}
