//! Durations as people write them (`90s`, `5m`, `1h30m`), for flags and the inventory, and
//! back into that form for messages.

use std::time::Duration;

/// Why a duration does not parse; the text says what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidDuration(pub String);

/// Parses `90s`, `5m`, `1h`, `1h30m`, `2m30s`. With `bare_seconds`, a plain number means
/// seconds (`--lock-timeout 90`); the inventory wants a unit. Zero is refused: a deadline of
/// nothing fails every wait.
pub fn parse(s: &str, bare_seconds: bool) -> Result<Duration, InvalidDuration> {
    let text = s.trim();
    let example = "write a duration like \"90s\", \"5m\", \"1h\" or \"1h30m\"";
    if text.is_empty() {
        return Err(InvalidDuration(format!("an empty duration; {example}")));
    }
    if bare_seconds && text.bytes().all(|b| b.is_ascii_digit()) {
        let n: u64 = text.parse().map_err(|_| InvalidDuration(format!("`{text}` is too large")))?;
        return positive(Duration::from_secs(n), text);
    }
    let mut total: u64 = 0;
    let mut rest = text;
    let mut last_unit = u64::MAX;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(InvalidDuration(format!("`{text}` is not a duration; {example}")));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| InvalidDuration(format!("`{text}` is too large")))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "" => {
                return Err(InvalidDuration(format!(
                    "`{text}` has no unit; write \"{n}s\", \"{n}m\" or \"{n}h\""
                )))
            }
            other => {
                return Err(InvalidDuration(format!(
                    "`{other}` in `{text}` is not a unit: use s, m or h, as in \"90s\", \"5m\", \"1h30m\""
                )))
            }
        };
        if factor >= last_unit {
            return Err(InvalidDuration(format!(
                "`{text}`: write larger units first, each once, as in \"1h30m\""
            )));
        }
        last_unit = factor;
        rest = &rest[unit_len..];
        total = n
            .checked_mul(factor)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| InvalidDuration(format!("`{text}` is too large")))?;
    }
    positive(Duration::from_secs(total), text)
}

fn positive(d: Duration, text: &str) -> Result<Duration, InvalidDuration> {
    if d.is_zero() {
        Err(InvalidDuration(format!("`{text}` is zero: a deadline must leave some time")))
    } else {
        Ok(d)
    }
}

/// `90s` → "1m30s", `300s` → "5m", `3.2s` → "3.2s": the form [`parse`] reads, for messages.
pub fn format(d: Duration) -> String {
    if d.subsec_millis() != 0 && d < Duration::from_secs(60) {
        return format!("{:.1}s", d.as_secs_f64());
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_print_back() {
        let secs = |s: &str| parse(s, false).map(|d| d.as_secs());
        assert_eq!(secs("90s"), Ok(90));
        assert_eq!(secs("5m"), Ok(300));
        assert_eq!(secs("1h30m"), Ok(5400));
        assert_eq!(secs(" 2m30s "), Ok(150));
        assert_eq!(parse("90", true).unwrap().as_secs(), 90);
        for (bad, why) in [
            ("90", "has no unit"),
            ("", "empty"),
            ("5 m", "is not a unit"),
            ("5min", "is not a unit"),
            ("1.5h", "is not a unit"),
            ("30m1h", "larger units first"),
            ("0s", "zero"),
            ("m", "not a duration"),
            ("99999999999999999999h", "too large"),
        ] {
            let e = parse(bad, false).unwrap_err().0;
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        assert_eq!(format(Duration::from_secs(90)), "1m30s");
        assert_eq!(format(Duration::from_secs(600)), "10m");
        assert_eq!(format(Duration::from_secs(3600)), "1h");
        assert_eq!(format(Duration::from_millis(3200)), "3.2s");
        assert_eq!(format(Duration::from_secs(3)), "3s");
    }
}
