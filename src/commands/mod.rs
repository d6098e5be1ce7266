//! Command handlers, one module per domain. Each handler is a plain function taking the
//! context and typed arguments; the registry wires them to names.

pub mod cpu_info;
pub mod disk_io;
pub mod session;
pub mod tcp;

use serde::{Deserialize, Serialize};

/// Arguments of a command that takes none (unknown members are errors).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

/// The `{}` reply of a command that returns nothing.
#[derive(Debug, Serialize)]
pub struct Empty {}
