//! The NVMe SMART / health log page (Get Log Page 02h, NVMe 1.0) through
//! NVME_IOCTL_ADMIN_CMD on a namespace's device node (3.3+; older kernels answer
//! ENOTTY, and the caller reports no SMART data, as qemu-ga does on any failure).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// struct nvme_passthru_cmd (linux/nvme_ioctl.h), 72 bytes.
#[repr(C)]
#[derive(Default)]
struct AdminCmd {
    opcode: u8,
    flags: u8,
    rsvd1: u16,
    nsid: u32,
    cdw2: u32,
    cdw3: u32,
    metadata: u64,
    addr: u64,
    metadata_len: u32,
    data_len: u32,
    cdw10: u32,
    cdw11: u32,
    cdw12: u32,
    cdw13: u32,
    cdw14: u32,
    cdw15: u32,
    timeout_ms: u32,
    result: u32,
}

/// _IOWR('N', 0x41, struct nvme_admin_cmd).
const NVME_IOCTL_ADMIN_CMD: libc::c_ulong = 0xC048_4E41;
const GET_LOG_PAGE: u8 = 0x02;
const SMART_LOG: u32 = 0x02;
/// The log page is 512 bytes.
pub const SMART_LOG_LEN: usize = 512;

/// Reads the controller-wide SMART log (nsid FFFFFFFFh) through `dev`; the bytes are
/// the page as the controller sent it (little-endian fields).
pub fn smart_log(dev: &File) -> io::Result<[u8; SMART_LOG_LEN]> {
    let mut page = [0u8; SMART_LOG_LEN];
    let mut cmd = AdminCmd {
        opcode: GET_LOG_PAGE,
        nsid: u32::MAX,
        addr: page.as_mut_ptr() as u64,
        data_len: SMART_LOG_LEN as u32,
        // Log id, Retain Asynchronous Event (bit 15), number of dwords - 1 (bits 16+).
        cdw10: SMART_LOG | (1 << 15) | (((SMART_LOG_LEN as u32 >> 2) - 1) << 16),
        ..AdminCmd::default()
    };
    // SAFETY: `dev` stays open for the call; `cmd` is a valid nvme_passthru_cmd whose
    // `addr` points at `page`, which outlives the call and holds `data_len` bytes.
    let rc = unsafe { libc::ioctl(dev.as_raw_fd(), NVME_IOCTL_ADMIN_CMD as _, &mut cmd) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    // A positive value is the NVMe status of a command the controller failed.
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(libc::EIO));
    }
    Ok(page)
}
