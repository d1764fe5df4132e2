//! Work counted in items (`asked 37/120 hosts`): a line of its own under the hosts'.

use super::super::human;
use super::super::progress::BAR_FROM;
use super::{ProgressLayer, Surface, COUNT_FROM};

impl ProgressLayer {
    /// A count on its own line: `asked 37/120 hosts`, with a bar from [`BAR_FROM`] items;
    /// gone when all are done. Terminal only: plain output waits for the summary.
    pub(super) fn count(&self, what: &str, done: u64, total: u64, unit: &str) {
        if total < COUNT_FROM {
            return;
        }
        let line = count_line(what, done, total, unit);
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let key = format!("count {what}");
        match &self.surface {
            Surface::Terminal(multi) => {
                let bar = st.bars.entry(key.clone()).or_insert_with(|| super::spinner(multi));
                bar.set_message(line);
                if done >= total {
                    bar.finish_and_clear();
                    st.bars.remove(&key);
                }
            }
            Surface::Frame(frame) => {
                let mut frame = frame.lock().unwrap_or_else(|e| e.into_inner());
                if done >= total {
                    frame.hosts.retain(|(h, _)| *h != key);
                } else {
                    frame.set_host(&key, line);
                }
            }
            Surface::Lines(_) => {}
        }
    }
}

/// `asked 37/120 hosts`, or `re-keyed  ████░░░  340/1200 files` for many items.
pub fn count_line(what: &str, done: u64, total: u64, unit: &str) -> String {
    if total as usize > BAR_FROM {
        format!("{what}  {}  {done}/{total} {unit}", human::bar(done, total, 20))
    } else {
        format!("{what} {done}/{total} {unit}")
    }
}
