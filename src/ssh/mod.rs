//! SSH sessions with pinned host keys (russh): exec, upload, wait, boot id.
