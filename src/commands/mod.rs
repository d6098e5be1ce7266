//! Command handlers, one module per domain. Each handler is a plain function taking the
//! context and typed arguments; the registry wires them to names.

pub mod bc_admin;
pub mod bc_apps;
pub mod bc_check;
pub mod bc_disk;
pub mod bc_monitor;
pub mod bc_oom;
pub mod cpu_info;
pub mod disk_io;
pub mod session;
pub mod sysload;
pub mod tcp;
pub mod topn;

use serde::{Deserialize, Serialize};

/// Arguments of a command that takes none (unknown members are errors).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

/// The `{}` reply of a command that returns nothing.
#[derive(Debug, Serialize)]
pub struct Empty {}
