//! What the integration tests share: servers they start (sshd, PostgreSQL, cloudalone, a
//! fake hcloud) and the secrets lab (age keys, sops).

pub mod cloudalone;
pub mod flake;
pub mod hcloud_fake;
pub mod pg;
pub mod secrets;
pub mod sshd;
pub mod tools;
