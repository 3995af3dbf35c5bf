//! How numbers and times look in tables: like Docker's.

pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

/// "3 seconds ago" for a time in seconds since the epoch.
pub fn ago(then: u64) -> String {
    format!(
        "{} ago",
        duration(crate::image::now_secs().saturating_sub(then))
    )
}

/// "3 seconds", "5 minutes", "2 hours", "4 days".
pub fn duration(secs: u64) -> String {
    match secs {
        0 => "Less than a second".to_string(),
        1 => "1 second".to_string(),
        2..=59 => format!("{secs} seconds"),
        60..=119 => "About a minute".to_string(),
        120..=3599 => format!("{} minutes", secs / 60),
        3600..=7199 => "About an hour".to_string(),
        7200..=86_399 => format!("{} hours", secs / 3600),
        _ => format!("{} days", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_like_dockers() {
        assert_eq!(human_size(512), "512B");
        assert_eq!(human_size(64 << 20), "64.0MiB");
        assert_eq!(duration(0), "Less than a second");
        assert_eq!(duration(5), "5 seconds");
        assert_eq!(duration(600), "10 minutes");
    }
}
