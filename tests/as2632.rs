//! The 2.6.32 simulation of the test matrix (compat.md §2.4) is real: the filter gives
//! ENOSYS for exactly the syscalls newer than 2.6.32, on the x86_64, x32 and i386 ABIs,
//! and the harness puts the agent under it exactly when `QGA_AS2632=1`. Without this, a
//! filter pass that silently ran unfiltered would look green.

#![cfg(target_arch = "x86_64")]

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::as2632::{self, LAST_I386, LAST_X86_64, X32_BIT};
use common::Agent;

/// Set in the environment of the probe child (this test binary, started again).
const PROBE: &str = "QGA_AS2632_PROBE";

/// A syscall made by the probe; `newer` when it came after 2.6.32.
struct Probe {
    name: &'static str,
    newer: bool,
    call: fn() -> i64,
}

/// The calls, each with arguments that need no memory (so they also work through
/// `int 0x80`, which sees only the low 32 bits of a pointer). Each returns -errno or ≥0.
const PROBES: &[Probe] = &[
    Probe {
        name: "x86_64 getpid",
        newer: false,
        call: || x86_64(libc::SYS_getpid, 0),
    },
    Probe {
        name: "x86_64 perf_event_open (the last one in 2.6.32)",
        newer: false,
        call: || x86_64(LAST_X86_64.into(), 0),
    },
    Probe {
        name: "x86_64 recvmmsg (2.6.33, the first after)",
        newer: true,
        call: || x86_64(libc::SYS_recvmmsg, -1),
    },
    Probe {
        name: "x86_64 getrandom (3.17)",
        newer: true,
        call: || x86_64(libc::SYS_getrandom, 0),
    },
    Probe {
        name: "x32 getpid",
        newer: true,
        call: || x86_64(i64::from(X32_BIT) | libc::SYS_getpid, 0),
    },
    Probe {
        name: "i386 getpid",
        newer: false,
        call: || i386(20, 0),
    },
    Probe {
        name: "i386 perf_event_open (the last one in 2.6.32)",
        newer: false,
        call: || i386(LAST_I386, 0),
    },
    Probe {
        name: "i386 recvmmsg (2.6.33, the first after)",
        newer: true,
        call: || i386(LAST_I386 + 1, -1),
    },
    Probe {
        name: "i386 getrandom (3.17)",
        newer: true,
        call: || i386(355, 0),
    },
    Probe {
        name: "i386 socket (4.3, before that only socketcall)",
        newer: true,
        call: || i386(359, libc::AF_UNIX),
    },
];

/// An x86_64 syscall with first argument `a` and zeros after it.
fn x86_64(nr: i64, a: i32) -> i64 {
    // SAFETY: the probes pass integers only (no pointers), so a call that runs can at most
    // fail with EFAULT or EBADF; getpid and socket change no memory.
    let rc = unsafe { libc::syscall(nr, a as libc::c_long, 0, 0, 0, 0) };
    if rc == -1 {
        -i64::from(std::io::Error::last_os_error().raw_os_error().unwrap())
    } else {
        rc
    }
}

/// An i386 syscall through `int 0x80`, as the i686 agent makes them on this kernel: seccomp
/// sees AUDIT_ARCH_I386 and the i386 number. First argument `a`, zeros after it.
fn i386(nr: u32, a: i32) -> i64 {
    let ret: u32;
    // SAFETY: `int 0x80` enters the kernel's 32-bit syscall path with the number in eax and
    // the arguments in ebx, ecx, edx, esi, edi; it returns in eax and may clobber r8-r11.
    // LLVM reserves rbx, so the first argument is swapped into it and back. No probe
    // passes a pointer.
    unsafe {
        std::arch::asm!(
            "xchg {a}, rbx",
            "int 0x80",
            "xchg {a}, rbx",
            a = inout(reg) i64::from(a) => _,
            inlateout("eax") nr => ret,
            in("ecx") 0u32,
            in("edx") 0u32,
            in("esi") 0u32,
            in("edi") 0u32,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
        );
    }
    i64::from(ret as i32)
}

/// Not a case of its own: the body of the child that [`run_probe`] starts. It prints one
/// `QGA_AS2632_PROBE name=result` line per probe; success is reported as 0.
#[test]
fn probe_child() {
    if std::env::var_os(PROBE).is_none() {
        return;
    }
    for p in PROBES {
        println!("{PROBE} {}={}", p.name, (p.call)().min(0));
    }
}

/// Starts this test binary as the probe child and returns its results by probe name.
fn run_probe(mut cmd: Command) -> BTreeMap<String, i64> {
    let out = cmd
        .args(["--exact", "probe_child", "--nocapture", "--test-threads=1"])
        .env(PROBE, "1")
        .output()
        .expect("start the probe");
    assert!(out.status.success(), "probe failed: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let results: BTreeMap<String, i64> = text
        .lines()
        // The first line follows libtest's "test probe_child ... " on the same line.
        .filter_map(|l| l.split_once(PROBE)?.1.trim().rsplit_once('='))
        .map(|(name, rc)| (name.to_string(), rc.parse().unwrap()))
        .collect();
    assert_eq!(results.len(), PROBES.len(), "{text}");
    results
}

fn probe_command() -> Command {
    Command::new(std::env::current_exe().unwrap())
}

#[test]
fn filter_gives_enosys_for_exactly_the_syscalls_after_2632() {
    let native = run_probe(probe_command());
    let mut filtered = probe_command();
    as2632::install(&mut filtered);
    let filtered = run_probe(filtered);
    let enosys = -i64::from(libc::ENOSYS);
    for p in PROBES {
        let (n, f) = (native[p.name], filtered[p.name]);
        if !p.newer {
            assert_eq!(f, n, "{}: the filter changed a 2.6.32 syscall", p.name);
        } else {
            assert_eq!(f, enosys, "{}: newer than 2.6.32 but not ENOSYS", p.name);
            // x32 is compiled out of most kernels: ENOSYS without the filter too.
            if !p.name.starts_with("x32") {
                assert_ne!(n, enosys, "{}: ENOSYS without the filter", p.name);
            }
        }
    }
}

#[test]
fn harness_filters_exactly_when_qga_as2632_is_set() {
    let tested = run_probe(common::as_tested(probe_command()));
    let expected = if common::as2632_on() {
        let mut cmd = probe_command();
        as2632::install(&mut cmd);
        run_probe(cmd)
    } else {
        run_probe(probe_command())
    };
    assert_eq!(tested, expected, "QGA_AS2632={}", common::as2632_on());
}

/// The agent process itself (a musl build in the matrix, 32- or 64-bit) carries one
/// filter more than this test process exactly when `QGA_AS2632=1`.
#[test]
fn agent_runs_under_the_filter_exactly_when_qga_as2632_is_set() {
    let agent = Agent::start(&[]);
    let ours = seccomp_filters("self");
    let theirs = seccomp_filters(&agent.pid().to_string());
    assert_eq!(theirs, ours + u32::from(common::as2632_on()));
    // Under the filter the agent still answers: its arch check let it through.
    assert_eq!(
        agent.call("guest-ping", serde_json::json!({})),
        serde_json::json!({})
    );
}

/// `Seccomp_filters:` of /proc/PID/status (since 5.9).
fn seccomp_filters(pid: &str) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp_filters:"))
        .unwrap_or_else(|| panic!("no Seccomp_filters in /proc/{pid}/status"))
        .trim()
        .parse()
        .unwrap()
}
