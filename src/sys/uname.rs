//! uname(2): the kernel's node name (the host name), release, version and machine.

use std::ffi::CStr;
use std::io;

use super::check;

/// The fields of `struct utsname` the agent reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uts {
    pub nodename: String,
    pub release: String,
    pub version: String,
    pub machine: String,
}

pub fn uname() -> io::Result<Uts> {
    // SAFETY: an all-zero utsname is a valid value (arrays of c_char).
    let mut buf: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `buf` is a valid, writable utsname owned by this frame.
    check(unsafe { libc::uname(&mut buf) })?;
    Ok(Uts {
        nodename: field(&buf.nodename),
        release: field(&buf.release),
        version: field(&buf.version),
        machine: field(&buf.machine),
    })
}

/// A NUL-terminated utsname member; the kernel always terminates them, but a missing
/// NUL must not read past the array.
fn field(chars: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = chars.iter().map(|&c| c as u8).collect();
    match CStr::from_bytes_until_nul(&bytes) {
        Ok(s) => s.to_string_lossy().into_owned(),
        Err(_) => String::from_utf8_lossy(&bytes).into_owned(),
    }
}
