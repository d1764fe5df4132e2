use super::*;
use std::time::Duration;
use tracing_subscriber::layer::SubscriberExt;

/// The JSON lines the layer writes for events emitted under `f`.
fn events(f: impl FnOnce()) -> String {
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = lines.clone();
    let layer = JsonEvents::with_sink(Arc::new(move |v: &Value| {
        sink.lock().unwrap().push(v.to_string());
    }));
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, f);
    let text = lines.lock().unwrap().join("\n");
    regex::Regex::new(r#""elapsed_s":[0-9.]+"#)
        .unwrap()
        .replace_all(&text, r#""elapsed_s":"[s]""#)
        .into_owned()
}

#[test]
fn warnings_and_closure_transfers_inside_a_host_span() {
    let text = events(|| {
        let span = tracing::info_span!(HOST_SPAN, host = "web1");
        let _in = span.enter();
        crate::ui::progress::report("web1", "copy", crate::ui::progress::Step::Started, "");
        tracing::info!(target: TRANSFER_TARGET, bytes = 52_428_800u64, raw = 125_829_120u64, total = 150_994_944u64, "copy: 50.0 MiB sent so far");
        tracing::info!("an ordinary log line is not an event");
        tracing::warn!("KVM does not work here");
        crate::ui::progress::report("web1", "copy", crate::ui::progress::Step::Done, "");
    });
    insta::assert_snapshot!(text, @r#"
    {"event":"phase","host":"web1","phase":"copy","status":"started"}
    {"event":"transfer","kind":"closure","status":"progress","bytes":52428800,"raw":125829120,"total":150994944,"host":"web1"}
    {"event":"warning","message":"KVM does not work here","host":"web1"}
    {"event":"phase","host":"web1","phase":"copy","status":"done","elapsed_s":"[s]"}
    "#);
}

#[test]
fn apply_summaries_name_each_result() {
    let outcome = |host: &str, result| HostOutcome {
        host: host.into(),
        result: Ok(result),
        elapsed: Duration::from_millis(1500),
    };
    let summary = apply_summary(
        "apply",
        &[
            outcome("a", Done::Created("qemu:a".into())),
            outcome("b", Done::Adopted("7".into())),
            outcome("c", Done::Replaced { old: Some("1".into()), new: "2".into() }),
            outcome("d", Done::Destroyed(None)),
            outcome("e", Done::Skipped("nothing to do".into())),
        ],
    );
    insta::assert_snapshot!(serde_json::to_string_pretty(&summary).unwrap());
    let empty = apply_summary("destroy", &[]);
    assert_eq!(
        empty.to_string(),
        r#"{"event":"summary","command":"destroy","ok":0,"failed":0,"hosts":[]}"#
    );
}
