//! cairn's integration tests, as one test binary (one link, one process): each module is one
//! area, tested at its own level against the real tools (sshd, sops, age, nix, PostgreSQL,
//! cloudalone, moto). The QEMU VM tests are the other binary, `tests/vm`.

mod support;

mod adopt;
mod apply_paging;
mod bootstrap;
mod check;
mod cli;
mod download;
mod gate;
mod gitops;
mod hang;
mod hostile;
mod installed;
mod inventory;
mod inventory_scale;
mod keys;
mod network;
mod nix;
mod nix_log;
mod plan;
mod plan_aws;
mod provider_aws;
mod provider_hcloud;
mod secrets;
mod secrets_interop;
mod secrets_pq;
mod secrets_rules;
mod secrets_yaml;
mod seed;
mod ssh;
mod state;
mod state_name;
mod state_tls;
mod trust;
