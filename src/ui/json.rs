//! `--json` for `bootstrap`, `apply` and `destroy`: the run's events as JSON objects, one per
//! line on stdout, built from the same tracing events the human UI draws (which stays on
//! stderr). The shapes are documented in docs/json-events.md; every object has an `event`
//! field: `phase`, `transfer`, `warning`, or the final `summary`.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{json, Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use super::progress::{
    ACTION_TARGET, BUILD_TARGET, DOWNLOAD_TARGET, HOST_SPAN, TARGET as PROGRESS_TARGET,
    TRANSFER_TARGET,
};
use crate::bootstrap::{Finished, HostReport, Outcome};
use crate::plan::apply::{Done, HostOutcome};

/// Writes one JSON value as a line on stdout.
pub fn write_line(value: &Value) -> std::io::Result<()> {
    let mut line = serde_json::to_string(value).map_err(std::io::Error::other)?;
    line.push('\n');
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes())?;
    out.flush()
}

type Sink = Arc<dyn Fn(&Value) + Send + Sync>;

/// The tracing layer that turns events into JSON lines.
pub struct JsonEvents {
    sink: Sink,
    /// When each host's current phase started, for `elapsed_s`.
    phase_started: Mutex<HashMap<String, Instant>>,
}

impl JsonEvents {
    /// Lines on stdout.
    pub fn stdout() -> Self {
        Self::with_sink(Arc::new(|v: &Value| {
            let _ = write_line(v);
        }))
    }

    /// Lines handed to `sink` (tests collect them).
    pub fn with_sink(sink: Sink) -> Self {
        Self { sink, phase_started: Mutex::new(HashMap::new()) }
    }
}

/// The host a span's events belong to.
struct JsonHost(String);

/// Every field of an event, as JSON.
#[derive(Default)]
struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        self.0.insert(field.name().into(), text.trim_matches('"').into());
    }
}

impl Fields {
    fn text(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }
    fn number(&self, key: &str) -> Option<u64> {
        self.0.get(key).and_then(Value::as_u64)
    }
}

impl<S> Layer<S> for JsonEvents
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != HOST_SPAN {
            return;
        }
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let (Some(host), Some(span)) = (fields.text("host"), ctx.span(id)) {
            span.extensions_mut().insert(JsonHost(host.to_owned()));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let host = fields.text("host").map(str::to_owned).or_else(|| {
            ctx.event_scope(event)?
                .from_root()
                .find_map(|s| s.extensions().get::<JsonHost>().map(|h| h.0.clone()))
        });
        let meta = event.metadata();
        let value = match meta.target() {
            PROGRESS_TARGET | ACTION_TARGET => {
                let Some(host) = host else { return };
                let step = fields.text("step").unwrap_or_default();
                let elapsed = {
                    let mut started = self.phase_started.lock().unwrap_or_else(|e| e.into_inner());
                    if step == "started" {
                        started.insert(host.clone(), Instant::now());
                        None
                    } else {
                        started.get(&host).map(|t| t.elapsed().as_secs_f64())
                    }
                };
                phase_event(
                    &host,
                    fields.text("phase").unwrap_or_default(),
                    step,
                    fields.text("detail").unwrap_or_default(),
                    elapsed,
                )
            }
            DOWNLOAD_TARGET => download_event(host.as_deref(), &fields),
            TRANSFER_TARGET => {
                let mut v = json!({
                    "event": "transfer",
                    "kind": fields.text("kind").unwrap_or("closure"),
                    "status": "progress",
                    "bytes": fields.number("bytes").unwrap_or(0),
                });
                for key in ["raw", "total"] {
                    if let Some(n) = fields.number(key) {
                        v[key] = n.into();
                    }
                }
                if let Some(host) = host {
                    v["host"] = host.into();
                }
                v
            }
            BUILD_TARGET => {
                let mut v = json!({ "event": "build" });
                for key in ["built", "builds", "running", "failed", "fetched", "fetches"] {
                    v[key] = fields.number(key).unwrap_or(0).into();
                }
                if let Some(host) = host {
                    v["host"] = host.into();
                }
                v
            }
            _ if *meta.level() <= Level::WARN => {
                let message = fields.text("message").unwrap_or_default().to_owned();
                let mut v = json!({
                    "event": if *meta.level() == Level::ERROR { "error" } else { "warning" },
                    "message": message,
                });
                if let Some(host) = host {
                    v["host"] = host.into();
                }
                v
            }
            _ => return,
        };
        (self.sink)(&value);
    }
}

/// `{"event":"phase", ...}`: a phase (bootstrap) or an action (apply, destroy) of one host
/// started, ended, was skipped or failed.
pub fn phase_event(
    host: &str,
    phase: &str,
    status: &str,
    detail: &str,
    elapsed: Option<f64>,
) -> Value {
    let mut v = json!({ "event": "phase", "host": host, "phase": phase, "status": status });
    if let Some(secs) = elapsed {
        v["elapsed_s"] = round(secs).into();
    }
    if !detail.is_empty() {
        v["detail"] = detail.into();
    }
    v
}

/// `{"event":"transfer","kind":"download", ...}` from a download event.
fn download_event(host: Option<&str>, f: &Fields) -> Value {
    let mut v = json!({
        "event": "transfer",
        "kind": "download",
        "url": f.text("url").unwrap_or_default(),
        "status": f.text("step").unwrap_or_default(),
    });
    for key in ["bytes", "total", "resumed_from"] {
        if let Some(n) = f.number(key) {
            v[key] = n.into();
        }
    }
    for key in ["path", "checksum"] {
        if let Some(s) = f.text(key) {
            v[key] = s.into();
        }
    }
    if let Some(host) = host {
        v["host"] = host.into();
    }
    v
}

/// Seconds to the millisecond: enough for a pipeline, and stable to read.
fn round(secs: f64) -> f64 {
    (secs * 1000.0).round() / 1000.0
}

/// The error as one line: its message and its causes'.
fn error_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(next.trim()) {
            text = format!("{text}: {next}");
        }
        source = s.source();
    }
    text
}

/// `{"event":"error", "message": ...}`: the run stopped before its summary (the inventory
/// did not load, the state lock was held, ...); the rendered error is on stderr.
pub fn error_event(e: &(dyn std::error::Error + 'static)) -> Value {
    json!({ "event": "error", "message": error_line(e) })
}

/// `{"event":"summary","command":"bootstrap", ...}`: per host the result and each phase.
pub fn bootstrap_summary(reports: &[HostReport]) -> Value {
    let hosts: Vec<Value> = reports
        .iter()
        .map(|r| {
            let phases: Vec<Value> = r
                .timings
                .iter()
                .map(|t| {
                    let (outcome, detail) = match &t.outcome {
                        Outcome::Done => ("done", None),
                        Outcome::Skipped(why) => ("skipped", Some(why.clone())),
                        Outcome::Failed => ("failed", None),
                    };
                    let mut p = json!({
                        "phase": t.phase.as_str(),
                        "outcome": outcome,
                        "elapsed_s": round(t.elapsed.as_secs_f64()),
                    });
                    if let Some(d) = detail {
                        p["detail"] = d.into();
                    }
                    p
                })
                .collect();
            let mut h = json!({
                "host": r.host,
                "ok": r.result.is_ok(),
                "elapsed_s": round(r.elapsed.as_secs_f64()),
                "phases": phases,
            });
            match &r.result {
                Ok(Finished::Verified(v)) => {
                    h["result"] = if v.unchanged { "unchanged" } else { "verified" }.into();
                    h["address"] = v.address.clone().into();
                    h["host_key"] = v.host_key.clone().into();
                    h["boot_id"] = v.boot_id.clone().into();
                    h["root_device"] = v.root_device.clone().into();
                    h["checks"] = v.checks.clone().into();
                    if let Some(a) = &v.agent {
                        h["agent"] = match &a.status {
                            Ok(status) => json!({ "branch": a.branch, "comin": status }),
                            Err(why) => json!({ "branch": a.branch, "error": why }),
                        };
                    }
                }
                Ok(Finished::PhasesRan(_)) => h["result"] = "phases_ran".into(),
                Err(e) => {
                    h["result"] = "failed".into();
                    h["error"] = error_line(e).into();
                    if let Some(phase) = e.phase {
                        h["failed_phase"] = phase.as_str().into();
                    }
                }
            }
            h
        })
        .collect();
    summary("bootstrap", hosts, reports.iter().filter(|r| r.result.is_ok()).count())
}

/// `{"event":"summary","command":"apply"|"destroy", ...}`: per host what was done.
pub fn apply_summary(command: &str, outcomes: &[HostOutcome]) -> Value {
    let hosts: Vec<Value> = outcomes
        .iter()
        .map(|o| {
            let mut h = json!({
                "host": o.host,
                "ok": o.result.is_ok(),
                "elapsed_s": round(o.elapsed.as_secs_f64()),
            });
            let (result, machine, old, detail) = match &o.result {
                Ok(Done::Created(id)) => ("created", Some(id.clone()), None, None),
                Ok(Done::Adopted(id)) => ("adopted", Some(id.clone()), None, None),
                Ok(Done::Replaced { old, new }) => {
                    ("replaced", Some(new.clone()), old.clone(), None)
                }
                Ok(Done::Destroyed(id)) => ("destroyed", id.clone(), None, None),
                Ok(Done::Skipped(why)) => ("skipped", None, None, Some(why.clone())),
                Err(e) => ("failed", None, None, Some(error_line(e))),
            };
            h["result"] = result.into();
            if let Some(m) = machine {
                h["machine"] = m.into();
            }
            if let Some(old) = old {
                h["old_machine"] = old.into();
            }
            if let Some(d) = detail {
                h[if o.result.is_err() { "error" } else { "detail" }] = d.into();
            }
            h
        })
        .collect();
    summary(command, hosts, outcomes.iter().filter(|o| o.result.is_ok()).count())
}

fn summary(command: &str, hosts: Vec<Value>, ok: usize) -> Value {
    let failed = hosts.len() - ok;
    json!({ "event": "summary", "command": command, "ok": ok, "failed": failed, "hosts": hosts })
}

#[cfg(test)]
mod tests;
