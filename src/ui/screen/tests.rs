use super::*;

fn phase(host: &str, phase: &str, step: &str, detail: &str) -> Input {
    Input::Phase {
        host: host.into(),
        phase: phase.into(),
        step: step.into(),
        detail: detail.into(),
    }
}

#[test]
fn a_transfer_without_a_total_shows_what_was_sent() {
    let mut s = Screen::new(Places::default());
    s.take(phase("web1", "disk", "started", ""), Duration::ZERO);
    let t = Input::Transfer { host: Some("web1".into()), bytes: 5 << 20, raw: None, total: None };
    assert!(s.take(t.clone(), Duration::from_secs(1)).is_empty());
    assert_eq!(s.host_line("web1", Duration::from_secs(1)), "web1  disk     5.0 MiB sent");
    let t = Input::Transfer { host: Some("web1".into()), bytes: 10 << 20, raw: None, total: None };
    s.take(t, Duration::from_secs(3));
    assert_eq!(
        s.host_line("web1", Duration::from_secs(3)),
        "web1  disk     10 MiB sent  2.5 MiB/s"
    );
}

#[test]
fn a_phase_that_starts_drops_the_last_transfer() {
    let mut s = Screen::new(Places::default());
    s.take(phase("web1", "copy", "started", ""), Duration::ZERO);
    let t = Input::Transfer { host: Some("web1".into()), bytes: 1, raw: Some(2), total: Some(4) };
    s.take(t, Duration::from_secs(1));
    s.take(phase("web1", "copy", "done", ""), Duration::from_secs(2));
    assert_eq!(s.host_line("web1", Duration::from_secs(3)), "web1  copy     done in 2.0 s");
    assert!(!s.finished("web1"));
    s.take(phase("web1", "verify", "done", ""), Duration::from_secs(3));
    assert!(s.finished("web1"));
}
