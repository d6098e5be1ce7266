//! Command handlers, one module per domain. Each handler is a plain function taking the
//! context and typed arguments; the registry wires them to names.

pub mod bc_admin;
pub mod bc_apps;
pub mod bc_check;
pub mod bc_disk;
pub mod bc_monitor;
pub mod bc_oom;
pub mod cpu;
pub mod cpu_info;
pub mod disk_io;
pub mod disks;
pub mod exec;
pub mod file;
pub mod fs;
pub mod fs_usage;
pub mod fsfreeze;
pub mod host;
pub mod memory;
pub mod net;
pub mod power;
pub mod session;
pub mod ssh;
pub mod sysload;
pub mod tcp;
pub mod time;
pub mod topn;
pub mod users;

use serde::{Deserialize, Serialize};

/// Arguments of a command that takes none (unknown members are errors).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

/// The `{}` reply of a command that returns nothing.
#[derive(Debug, Serialize)]
pub struct Empty {}

/// Writes a sysfs attribute below the root; it must already exist (never created).
pub(crate) fn write_attribute(
    ctx: &crate::ctx::Ctx,
    rel: &str,
    value: &str,
) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(ctx.path(rel))?;
    f.write_all(value.as_bytes())
}
