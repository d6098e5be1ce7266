//! Memory hotplug blocks: guest-get-memory-blocks, guest-set-memory-blocks and
//! guest-get-memory-block-info through /sys/devices/system/memory (memoryN/state,
//! memoryN/removable, block_size_bytes in hex).

use std::io;

use serde::{Deserialize, Serialize};

use super::{write_attribute, NoArgs};
use crate::ctx::Ctx;
use crate::error::Error;

const MEMORY_DIR: &str = "sys/devices/system/memory";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct MemoryBlock {
    pub phys_index: u64,
    pub online: bool,
    /// Optional in the schema, always present in replies (as qemu-ga fills it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub can_offline: Option<bool>,
}

/// A mem-blks entry from the host; `can-offline` is accepted and ignored, as in qemu-ga.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MemoryBlockArg {
    pub phys_index: u64,
    pub online: bool,
    #[allow(dead_code)]
    pub can_offline: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SetMemoryBlocksArgs {
    pub mem_blks: Vec<MemoryBlockArg>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlockResponseType {
    Success,
    NotFound,
    OperationNotSupported,
    OperationFailed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct MemoryBlockResponse {
    pub phys_index: u64,
    pub response: BlockResponseType,
    /// The errno behind a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemoryBlockInfo {
    /// Bytes per block.
    pub size: u64,
}

/// Every memoryN block in index order; none at all when the kernel has no memory
/// hotplug directory (not an error, as in qemu-ga).
pub fn get_memory_blocks(ctx: &Ctx, _: NoArgs) -> Result<Vec<MemoryBlock>, Error> {
    let entries = match std::fs::read_dir(ctx.path(MEMORY_DIR)) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::io(
                format!("Can't open directory\"/{MEMORY_DIR}/\""),
                e,
            ))
        }
    };
    let mut indexes: Vec<u64> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| block_index(&e.file_name().to_string_lossy()))
        .collect();
    if indexes.is_empty() {
        return Err(Error::Failed("guest reported zero memory blocks!".into()));
    }
    indexes.sort_unstable();
    indexes
        .into_iter()
        .map(|index| read_block(ctx, index))
        .collect()
}

/// The N of a "memoryN" directory.
fn block_index(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("memory")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn read_block(ctx: &Ctx, index: u64) -> Result<MemoryBlock, Error> {
    let dir = format!("{MEMORY_DIR}/memory{index}");
    let state = match read_attribute(ctx, &format!("{dir}/state")) {
        Ok(s) => s,
        // Kernels without the attribute cannot offline the block.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(MemoryBlock {
                phys_index: index,
                online: true,
                can_offline: Some(false),
            })
        }
        Err(e) => return Err(Error::io(format!("read(\"/{dir}/state\")"), e)),
    };
    let can_offline = match read_attribute(ctx, &format!("{dir}/removable")) {
        Ok(r) => !r.starts_with('0'),
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(Error::io(format!("read(\"/{dir}/removable\")"), e)),
    };
    Ok(MemoryBlock {
        phys_index: index,
        online: state.starts_with("online"),
        can_offline: Some(can_offline),
    })
}

fn read_attribute(ctx: &Ctx, rel: &str) -> io::Result<String> {
    crate::whole_file::read_to_string(&ctx.path(rel))
}

/// One response per requested block, in request order; failures are per block.
pub fn set_memory_blocks(
    ctx: &Ctx,
    args: SetMemoryBlocksArgs,
) -> Result<Vec<MemoryBlockResponse>, Error> {
    let hotplug = std::fs::metadata(ctx.path(MEMORY_DIR));
    Ok(args
        .mem_blks
        .iter()
        .map(|blk| {
            let (response, error_code) = match &hotplug {
                Ok(_) => transfer_block(ctx, blk),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    (BlockResponseType::OperationNotSupported, errno(e))
                }
                Err(e) => (BlockResponseType::OperationFailed, errno(e)),
            };
            MemoryBlockResponse {
                phys_index: blk.phys_index,
                response,
                error_code,
            }
        })
        .collect())
}

fn transfer_block(ctx: &Ctx, blk: &MemoryBlockArg) -> (BlockResponseType, Option<i32>) {
    use BlockResponseType::*;
    let dir = format!("{MEMORY_DIR}/memory{}", blk.phys_index);
    match std::fs::metadata(ctx.path(&dir)) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return (OperationFailed, Some(libc::ENOTDIR)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return (NotFound, errno(&e)),
        Err(e) => return (OperationFailed, errno(&e)),
    }
    let state_rel = format!("{dir}/state");
    let state = match read_attribute(ctx, &state_rel) {
        Ok(s) => s,
        // No state attribute: the block is always online.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return if blk.online {
                (Success, None)
            } else {
                (OperationNotSupported, errno(&e))
            };
        }
        Err(e) => return (OperationFailed, errno(&e)),
    };
    if state.starts_with("online") == blk.online {
        return (Success, None);
    }
    let value = if blk.online { "online" } else { "offline" };
    match write_attribute(ctx, &state_rel, value) {
        Ok(()) => (Success, None),
        Err(e) => (OperationFailed, errno(&e)),
    }
}

fn errno(e: &io::Error) -> Option<i32> {
    Some(e.raw_os_error().unwrap_or(libc::EIO))
}

pub fn get_memory_block_info(ctx: &Ctx, _: NoArgs) -> Result<MemoryBlockInfo, Error> {
    let rel = format!("{MEMORY_DIR}/block_size_bytes");
    if let Err(e) = std::fs::metadata(ctx.path(MEMORY_DIR)) {
        return Err(Error::io(format!("open(\"/{MEMORY_DIR}/\")"), e));
    }
    let text = read_attribute(ctx, &rel).map_err(|e| Error::io(format!("read(\"/{rel}\")"), e))?;
    let size = parse_block_size(&text)
        .ok_or_else(|| Error::Failed(format!("invalid block size in /{rel}: {:?}", text.trim())))?;
    Ok(MemoryBlockInfo { size })
}

/// block_size_bytes is hex without a prefix ("8000000" = 128 MiB).
fn parse_block_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let t = t.strip_prefix("0x").unwrap_or(t);
    u64::from_str_radix(t, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_size_is_hex() {
        assert_eq!(parse_block_size("8000000\n"), Some(134_217_728));
        assert_eq!(parse_block_size("80000000\n"), Some(2_147_483_648));
        assert_eq!(parse_block_size("zz"), None);
    }

    #[test]
    fn block_directory_names() {
        assert_eq!(block_index("memory0"), Some(0));
        assert_eq!(block_index("memory123"), Some(123));
        assert_eq!(block_index("memory_failure"), None);
        assert_eq!(block_index("power"), None);
    }

    #[test]
    fn responses_serialize_kebab_case() {
        let r = MemoryBlockResponse {
            phys_index: 3,
            response: BlockResponseType::OperationNotSupported,
            error_code: Some(2),
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"phys-index":3,"response":"operation-not-supported","error-code":2}"#
        );
    }
}
