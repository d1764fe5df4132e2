//! Providers: where machines come from (qemu, hcloud, aws, existing).
