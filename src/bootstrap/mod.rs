//! The per-host bootstrap phase machine and the fleet runner.
