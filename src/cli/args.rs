//! Value parsers shared by every command, so an option means the same thing everywhere.

use std::time::Duration;

/// A non-negative number of seconds, fractions allowed (`2`, `0.5`): the one parser for
/// every `SECS` option (`#[arg(value_parser = args::secs)]`).
pub fn secs(text: &str) -> Result<Duration, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds (e.g. 2 or 0.5)"))?;
    Duration::try_from_secs_f64(value)
        .map_err(|_| format!("`{text}` is not a non-negative, finite number of seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_non_negative_and_finite() {
        assert_eq!(secs("2"), Ok(Duration::from_secs(2)));
        assert_eq!(secs("0.5"), Ok(Duration::from_millis(500)));
        assert!(secs("-1").is_err());
        assert!(secs("inf").is_err());
        assert!(secs("soon").is_err());
    }
}
