//! Linux 2.6.32 simulated with seccomp (compat.md §2.4): a filter, installed in a child
//! between fork and exec, under which every syscall newer than 2.6.32 fails with ENOSYS,
//! as it would on CentOS 6. The last syscall of 2.6.32 is perf_event_open: 298 on x86_64,
//! 336 on i386 (asm/unistd_64.h, asm/unistd_32.h). A test helper, not part of the agent.
//!
//! The filter looks at the syscall's ABI, not at the binary: the i686 agent on this
//! 64-bit kernel makes i386 syscalls (`int 0x80` or the vDSO's `sysenter`), which seccomp
//! reports as AUDIT_ARCH_I386 with i386 numbers. x32 calls (x86_64 arch, bit 30 set in
//! the number) did not exist in 2.6.32 either. Any other ABI kills the process.

use std::os::unix::process::CommandExt;
use std::process::Command;

use libc::{sock_filter, sock_fprog};

/// `linux/audit.h`: EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE.
pub const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
/// `linux/audit.h`: EM_386 | __AUDIT_ARCH_LE.
pub const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// perf_event_open, the newest x86_64 syscall of 2.6.32.
pub const LAST_X86_64: u32 = 298;
/// perf_event_open, the newest i386 syscall of 2.6.32.
pub const LAST_I386: u32 = 336;
/// `__X32_SYSCALL_BIT` (3.4).
pub const X32_BIT: u32 = 0x4000_0000;

// Offsets in `struct seccomp_data { int nr; __u32 arch; … }`.
const NR: u32 = 0;
const ARCH: u32 = 4;

const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGT: u16 = (libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) as u16;
const JGE: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

const fn op(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

/// A conditional jump; `jt` and `jf` count instructions after this one.
const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// Built at compile time, so the child has nothing to build between fork and exec.
static PROGRAM: [sock_filter; 11] = [
    /* 0 */ op(LD_W_ABS, ARCH),
    /* 1 */ jump(JEQ, AUDIT_ARCH_X86_64, 0, 3), // else 5
    /* 2 */ op(LD_W_ABS, NR),
    /* 3 */ jump(JGE, X32_BIT, 5, 0), // x32: 9
    /* 4 */ jump(JGT, LAST_X86_64, 4, 3), // 9 or 8
    /* 5 */ jump(JEQ, AUDIT_ARCH_I386, 0, 4), // else 10
    /* 6 */ op(LD_W_ABS, NR),
    /* 7 */ jump(JGT, LAST_I386, 1, 0), // 9 or 8
    /* 8 */ op(RET, libc::SECCOMP_RET_ALLOW),
    /* 9 */ op(RET, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
    /* 10 */ op(RET, libc::SECCOMP_RET_KILL_PROCESS),
];

/// Makes `cmd`'s process run under the 2.6.32 filter (its children inherit it).
pub fn install(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec. It only builds a struct on
    // the stack and calls prctl(2), a plain syscall wrapper that is async-signal-safe; it
    // allocates nothing and takes no lock. `PROGRAM` is a static, valid for the call.
    unsafe {
        cmd.pre_exec(|| {
            let prog = sock_fprog {
                len: PROGRAM.len() as u16,
                filter: PROGRAM.as_ptr().cast_mut(),
            };
            // NO_NEW_PRIVS lets an unprivileged process install a filter (since 3.5).
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            let mode = libc::SECCOMP_MODE_FILTER as libc::c_ulong;
            if libc::prctl(libc::PR_SET_SECCOMP, mode, &prog as *const sock_fprog) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
