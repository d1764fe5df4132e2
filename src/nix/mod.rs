//! Runs the nix CLI: build, path-info, closure transfer.
