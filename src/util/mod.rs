//! Small helpers shared by several modules.

pub mod atomic;
pub mod duration;
pub mod parallel;
pub mod process;
pub mod redact;
pub mod shell;
pub mod template;
