//! The inventory (`cairn.hcl`): HCL → raw structs → validated [`model::Inventory`], with
//! diagnostics that point at file:line:col.

pub mod model;

pub use model::*;
