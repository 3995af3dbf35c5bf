//! The names users give to containers, images and networks: one rule for all, Docker's, so that a
//! name is safe as a file name and in a table column. Imports nothing from the rest of poc.

/// `--name web`, `poc init --name`, `--image`: letters, digits, `_`, `.`, `-`, starting with a
/// letter or digit, at most 128 bytes.
pub fn parse_name(text: &str) -> Result<String, String> {
    let valid = text.len() <= 128
        && text
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !valid {
        return Err(format!(
            "'{text}' is not a valid name: use letters, digits, '_', '.', '-', starting with a letter or digit"
        ));
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::parse_name;

    #[test]
    fn a_name_starts_with_a_letter_or_digit_and_has_no_slash() {
        assert!(parse_name("web-1.a_b").is_ok());
        assert!(parse_name("-web").is_err());
        assert!(parse_name("a/b").is_err());
        assert!(parse_name(&"a".repeat(129)).is_err());
    }
}
