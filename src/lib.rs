//! cairn: bootstrap and provision NixOS fleets declaratively.
//!
//! The binary (`src/main.rs`) is a thin shell around this library: it parses the command line
//! ([`cli`]), sets up the UI ([`ui`]) and runs one of [`commands`]. Library code never prints;
//! it emits `tracing` events, and the UI layer decides how to show them.

pub mod bootstrap;
pub mod check;
pub mod cli;
pub mod commands;
pub mod disk;
pub mod download;
pub mod gitops;
pub mod hosts;
pub mod installer;
pub mod inventory;
pub mod keys;
pub mod nix;
pub mod phase;
pub mod plan;
pub mod provider;
pub mod reach;
pub mod repo;
pub mod scaffold;
pub mod secrets;
pub mod ssh;
pub mod state;
pub mod ui;
pub mod util;
