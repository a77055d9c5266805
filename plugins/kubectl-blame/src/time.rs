//! Times as kubectl shows them: ages like `35m`, `5h12m`, `2d` (the same steps as kubectl's
//! AGE column, so the two read alike side by side), or full RFC 3339 in UTC; and checking
//! `--since`/`--until` before they go to the server, so a typo is a usage error here rather
//! than a 400 from far away.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::cli::TimeFormat;

/// Formats `time` relative to `now` or in full.
pub fn format(time: DateTime<Utc>, now: DateTime<Utc>, format: TimeFormat) -> String {
    match format {
        TimeFormat::Full => time.to_rfc3339_opts(SecondsFormat::Secs, true),
        TimeFormat::Relative => age(now.signed_duration_since(time)),
    }
}

/// kubectl's `HumanDuration`: precise when recent, coarser with age.
pub fn age(elapsed: chrono::TimeDelta) -> String {
    let seconds = elapsed.num_seconds();
    if seconds < -1 {
        // The server's clock is ahead of ours; say so instead of printing a negative age.
        return "<future>".to_owned();
    }
    let seconds = seconds.max(0);
    let minutes = seconds / 60;
    let hours = minutes / 60;
    let days = hours / 24;
    let years = days / 365;
    if seconds < 60 * 2 {
        format!("{seconds}s")
    } else if minutes < 10 {
        match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        }
    } else if minutes < 60 * 3 {
        format!("{minutes}m")
    } else if hours < 8 {
        match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h}h"),
        }
    } else if days < 365 * 2 {
        format!("{days}d")
    } else if days < 365 * 8 {
        match days % 365 {
            0 => format!("{years}y"),
            d => format!("{years}y{d}d"),
        }
    } else {
        format!("{years}y")
    }
}

/// `--since`/`--until` was neither a duration nor RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid time {input:?}: expected a duration ago (2h, 30m, 3d) or RFC 3339 (2024-05-01T10:00:00Z)"
)]
pub struct InvalidTime {
    pub input: String,
}

/// Checks a time bound and returns it as the server reads it (durations and RFC 3339 are both
/// understood there; durations stay durations so they are measured on the server's clock).
pub fn check_bound(input: &str) -> Result<String, InvalidTime> {
    let input = input.trim();
    if DateTime::parse_from_rfc3339(input).is_ok() || humantime::parse_duration(input).is_ok() {
        Ok(input.to_owned())
    } else {
        Err(InvalidTime {
            input: input.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case(0, "0s")]
    #[case(59, "59s")]
    #[case(119, "119s")]
    #[case(120, "2m")]
    #[case(125, "2m5s")]
    #[case(35 * 60, "35m")]
    #[case(179 * 60, "179m")]
    #[case(3 * 3600, "3h")]
    #[case(5 * 3600 + 12 * 60, "5h12m")]
    #[case(30 * 3600, "30h")]
    #[case(2 * 86400, "2d")]
    #[case(3 * 86400 + 4 * 3600, "3d4h")]
    #[case(40 * 86400, "40d")]
    #[case(3 * 365 * 86400 + 10 * 86400, "3y10d")]
    #[case(9 * 365 * 86400, "9y")]
    fn ages_step_like_kubectl(#[case] seconds: i64, #[case] expected: &str) {
        assert_eq!(age(TimeDelta::seconds(seconds)), expected);
    }

    #[test]
    fn clock_skew_is_not_a_negative_age() {
        assert_eq!(age(TimeDelta::milliseconds(-500)), "0s");
        assert_eq!(age(TimeDelta::seconds(-30)), "<future>");
    }

    #[test]
    fn full_times_are_utc_rfc3339() {
        let time = DateTime::parse_from_rfc3339("2024-05-01T12:00:00.123456+02:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            format(time, Utc::now(), TimeFormat::Full),
            "2024-05-01T10:00:00Z"
        );
        let later = time + TimeDelta::minutes(35);
        assert_eq!(format(time, later, TimeFormat::Relative), "35m");
    }

    #[rstest]
    #[case("2h")]
    #[case("30m")]
    #[case("3days")]
    #[case("2024-05-01T10:00:00Z")]
    #[case("2024-05-01T10:00:00.5+02:00")]
    fn accepted_bounds(#[case] input: &str) {
        assert_eq!(check_bound(input).unwrap(), input);
    }

    #[rstest]
    #[case("yesterday")]
    #[case("2024-05-01")]
    #[case("2 hours ago")]
    fn rejected_bounds(#[case] input: &str) {
        assert!(check_bound(input).is_err());
    }
}
