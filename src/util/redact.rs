//! Values the user marked as secret, kept out of what cairn shows: what the inventory's
//! `env()` returned and the values of `sensitive = true` variables, as OpenTofu treats them.
//!
//! The command layer registers them once the inventory is loaded ([`register`]); the plan
//! output and every rendered error pass through [`text`] or [`value`]. A value is replaced by
//! [`REDACTED`] where it is a whole attribute value; inside free text only values of at
//! least [`MIN_LEN_IN_TEXT`] characters are replaced (a one-letter value would blank out
//! every message).

use std::sync::RwLock;

/// What is shown instead of a sensitive value.
pub const REDACTED: &str = "(sensitive value)";

/// Shorter values are redacted only where they are a whole value.
pub const MIN_LEN_IN_TEXT: usize = 4;

/// Longest first, so a value that contains another is replaced whole.
static VALUES: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Values to redact, carried from where they were found to where they are registered.
/// Debug output shows how many there are, never what.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Values(pub Vec<String>);

impl std::fmt::Debug for Values {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} redacted values>", self.0.len())
    }
}

/// Adds values to redact from now on (empty strings are ignored).
pub fn register(values: impl IntoIterator<Item = String>) {
    let mut all = VALUES.write().unwrap_or_else(|e| e.into_inner());
    for v in values {
        if !v.is_empty() && !all.contains(&v) {
            all.push(v);
        }
    }
    all.sort_by_key(|v| std::cmp::Reverse(v.len()));
}

/// `text` with every registered value of [`MIN_LEN_IN_TEXT`] characters or more replaced.
pub fn text(text: &str) -> String {
    let all = VALUES.read().unwrap_or_else(|e| e.into_inner());
    let mut out = text.to_owned();
    for v in all.iter().filter(|v| v.chars().count() >= MIN_LEN_IN_TEXT) {
        if out.contains(v.as_str()) {
            out = out.replace(v.as_str(), REDACTED);
        }
    }
    out
}

/// An attribute value: [`REDACTED`] if it is a registered value, else as [`text`] makes it.
pub fn value(value: &str) -> String {
    let all = VALUES.read().unwrap_or_else(|e| e.into_inner());
    if all.iter().any(|v| v == value) {
        return REDACTED.to_owned();
    }
    drop(all);
    text(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_values_and_long_values_in_text_are_replaced() {
        register(["hunter2-redact-test".to_owned(), "q9z".to_owned(), String::new()]);
        assert_eq!(value("q9z"), REDACTED);
        assert_eq!(value("hunter2-redact-test"), REDACTED);
        assert_eq!(
            text("token hunter2-redact-test refused for q9z"),
            format!("token {REDACTED} refused for q9z")
        );
        assert_eq!(value("unrelated"), "unrelated");
    }
}
