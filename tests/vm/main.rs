//! The QEMU VM tests, as one test binary: real VMs under TCG, minutes each. They run on CI
//! (`CI=true`, where a missing prerequisite fails them); set `CAIRN_SKIP_VM_TESTS=1` to skip
//! them locally.

mod support;

mod bootstrap_vm;
mod disk;
mod disk_holders;
mod existing;
mod forge;
mod gitops_vm;
mod luks;
mod vm_smoke;
