//! An event's fields as text, for the lines and the host's log.

use tracing::field::{Field, Visit};

/// An event's fields, as text.
#[derive(Default)]
pub(super) struct Fields {
    pub(super) message: String,
    pub(super) all: Vec<(String, String)>,
}

impl Fields {
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.all.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
    pub(super) fn number(&self, name: &str) -> Option<u64> {
        self.get(name)?.parse().ok()
    }
    /// Every field but the message, `name=value`, as the log file keeps them.
    pub(super) fn rest(&self) -> String {
        self.all.iter().map(|(n, v)| format!(" {n}={v}")).collect()
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_string(),
            name => self.all.push((name.to_string(), value.to_string())),
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        match field.name() {
            "message" => self.message = text,
            name => self.all.push((name.to_string(), text.trim_matches('"').to_string())),
        }
    }
}
