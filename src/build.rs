//! Build script: lays out the static musl agent's hot code together (src/hot_code.txt).
//!
//! Why: the agent's RSS is mostly its own executable's pages, and a kernel since 3.15 maps
//! the 16 pages around every page of a file it faults in (fault-around). The code a
//! running agent executes is about a third of its text, but spread over every 64 KiB of
//! it, so all of it was mapped. Put in one place, what a host's requests run is mapped and
//! the rest (std's backtrace printer, rare commands, error paths) stays on disk.
//!
//! src/hot_code.txt lists the functions `make hot-code` saw run (tests/hot_code.rs), as
//! patterns of their section names; this script turns them into a linker script that puts
//! those sections, and the C library's code, in an output section `.text.hot` in front of
//! `.text`. A function the list misses still links, only elsewhere.

use std::env;
use std::fmt::Write;
use std::fs;
use std::path::PathBuf;

const LIST: &str = "src/hot_code.txt";

fn main() {
    println!("cargo:rerun-if-changed={LIST}");
    println!("cargo:rerun-if-changed=src/build.rs");
    // The layout is for the binary we ship: the static musl build, linked by GNU ld (or
    // lld, which reads the same script). The host build links as the toolchain likes.
    let var = |k: &str| env::var(k).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") != "linux" || var("CARGO_CFG_TARGET_ENV") != "musl" {
        return;
    }
    let list = fs::read_to_string(LIST).unwrap_or_else(|e| panic!("{LIST}: {e}"));
    let mut script = String::from("SECTIONS\n{\n  .text.hot : {\n");
    // musl's objects are not built a section per function; its code is small (40 KiB)
    // and its malloc, syscall wrappers and directory reads run on every request. Its
    // start code (crt1.o) runs once, at start.
    script.push_str("    *libc.a:*(.text .text.*)\n    *crt1.o(.text .text.*)\n");
    for pattern in patterns(&list) {
        let _ = writeln!(script, "    *(.text.{pattern} .text.unlikely.{pattern})");
    }
    script.push_str("  }\n}\nINSERT BEFORE .text;\n");
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap()).join("hot_code.ld");
    fs::write(&out, script).unwrap();
    println!("cargo:rustc-link-arg-bin=qemu-ga=-Wl,-T,{}", out.display());
}

/// The list's patterns: every line but blank ones and `#` comments.
fn patterns(list: &str) -> impl Iterator<Item = &str> {
    list.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}
