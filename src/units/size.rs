//! Sizes in bytes: parsed from flags (`64M`, `1.5G`) and shown in tables as Docker does (`64.0MiB`).

/// Parses a size like `64M`, `1.5G`, `512k` or `1048576` (bytes). Units are binary (k = 1024).
/// At most `i64::MAX` bytes: the OCI spec and the kernel take limits as signed 64-bit numbers.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    if number.is_empty() {
        return Err(format!(
            "'{text}' is not a size (examples: 64M, 1.5G, 512k)"
        ));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a size (examples: 64M, 1.5G, 512k)"))?;
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "unknown unit '{unit}' in '{text}' (use b, k, m, g or t)"
            ))
        }
    };
    let bytes = value * multiplier as f64;
    if bytes < 1.0 {
        return Err(format!("'{text}' must be greater than zero"));
    }
    // i64::MAX as f64 rounds up to 2^63, the first size too large.
    if bytes >= i64::MAX as f64 {
        return Err(format!(
            "'{text}' is too large: sizes must be below 8388608t (2^63 bytes)"
        ));
    }
    Ok(bytes as u64)
}

/// `512B`, `64.0MiB`: binary units with one decimal, as Docker's tables show sizes.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("2gib"), Ok(2 << 30));
    }

    #[test]
    fn bad_sizes_are_rejected() {
        for bad in ["64X", "-1", "0", "", "M", "1.2.3M", "0.0001k"] {
            assert!(parse_size(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn sizes_beyond_a_signed_64_bit_limit_are_refused() {
        assert_eq!(parse_size("8388607t"), Ok(8_388_607 << 40));
        for huge in [
            "8388608t",
            "9000000t",
            "9223372036854775808",
            "99999999999999999999",
        ] {
            let err = parse_size(huge).unwrap_err();
            assert!(err.contains("too large"), "{huge}: {err}");
        }
    }

    #[test]
    fn sizes_read_like_dockers() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(512), "512B");
        assert_eq!(human_size(1023), "1023B");
        assert_eq!(human_size(1024), "1.0KiB");
        assert_eq!(human_size(64 << 20), "64.0MiB");
        assert_eq!(human_size(3 << 29), "1.5GiB");
        assert_eq!(human_size(2048 << 40), "2048.0TiB");
    }
}
