//! memcpy and memmove for the static musl build, in place of musl's.
//!
//! Why: musl's x86 memcpy is `rep movsq` plus a `movsb` loop for the odd bytes, and its
//! memmove the same backwards. Those string instructions cost tens of cycles to start
//! whatever the length, and the agent's copies are mostly a few bytes long (`", "`, a
//! key, a short value appended to a reply). Profiled on guest-info, memcpy and memmove
//! were 59 % of the agent's cycles; the glibc build of the same code ran 3x faster.
//! Here a copy of up to 64 bytes is a few unaligned loads and stores, longer ones move
//! 32 bytes a turn, and on x86_64 copies of a page or more use `rep movsb` (fast there).
//!
//! Only the unaligned loads and stores of fixed-size integers are used: anything the
//! compiler could turn back into a call to memcpy (a slice copy, `ptr::copy`) would call
//! these very functions. LLVM leaves loops inside functions named memcpy and memmove as
//! they are; were that ever to change, the musl agent would recurse on its first copy and
//! every test of the musl passes would fail at once.

use std::ptr::{read_unaligned as load, write_unaligned as store};

type Chunk = u128;
const CHUNK: usize = 16;

/// Copies `n` bytes of up to 64 from `s` to `d`, every load before the first store, so
/// the two ranges may overlap either way.
#[inline(always)]
unsafe fn short(d: *mut u8, s: *const u8, n: usize) {
    if n >= 32 {
        let (a, b) = (load(s as *const Chunk), load(s.add(16) as *const Chunk));
        let (y, z) = (
            load(s.add(n - 32) as *const Chunk),
            load(s.add(n - 16) as *const Chunk),
        );
        store(d as *mut Chunk, a);
        store(d.add(16) as *mut Chunk, b);
        store(d.add(n - 32) as *mut Chunk, y);
        store(d.add(n - 16) as *mut Chunk, z);
    } else if n >= 16 {
        let (a, z) = (load(s as *const Chunk), load(s.add(n - 16) as *const Chunk));
        store(d as *mut Chunk, a);
        store(d.add(n - 16) as *mut Chunk, z);
    } else if n >= 8 {
        let (a, z) = (load(s as *const u64), load(s.add(n - 8) as *const u64));
        store(d as *mut u64, a);
        store(d.add(n - 8) as *mut u64, z);
    } else if n >= 4 {
        let (a, z) = (load(s as *const u32), load(s.add(n - 4) as *const u32));
        store(d as *mut u32, a);
        store(d.add(n - 4) as *mut u32, z);
    } else if n > 0 {
        let (a, m, z) = (*s, *s.add(n / 2), *s.add(n - 1));
        *d = a;
        *d.add(n / 2) = m;
        *d.add(n - 1) = z;
    }
}

/// Copies front to back: right for disjoint ranges and for `d` below `s`.
#[inline(always)]
unsafe fn forward(d: *mut u8, s: *const u8, n: usize) {
    if n <= 64 {
        return short(d, s, n);
    }
    #[cfg(target_arch = "x86_64")]
    if n >= 4096 && (d as usize).wrapping_sub(s as usize) >= n {
        std::arch::asm!(
            "rep movsb",
            inout("rcx") n => _,
            inout("rdi") d => _,
            inout("rsi") s => _,
            options(nostack, preserves_flags)
        );
        return;
    }
    // The last 32 bytes are loaded first: a store below may overwrite them when `d` is
    // below `s`.
    let (y, z) = (
        load(s.add(n - 32) as *const Chunk),
        load(s.add(n - 16) as *const Chunk),
    );
    let mut i = 0;
    while i + 2 * CHUNK <= n - 2 * CHUNK {
        let (a, b) = (
            load(s.add(i) as *const Chunk),
            load(s.add(i + CHUNK) as *const Chunk),
        );
        store(d.add(i) as *mut Chunk, a);
        store(d.add(i + CHUNK) as *mut Chunk, b);
        i += 2 * CHUNK;
    }
    let (a, b) = (
        load(s.add(i) as *const Chunk),
        load(s.add(i + CHUNK) as *const Chunk),
    );
    store(d.add(i) as *mut Chunk, a);
    store(d.add(i + CHUNK) as *mut Chunk, b);
    store(d.add(n - 32) as *mut Chunk, y);
    store(d.add(n - 16) as *mut Chunk, z);
}

/// Copies back to front: for `d` above `s` within `n` bytes.
#[inline(always)]
unsafe fn backward(d: *mut u8, s: *const u8, n: usize) {
    if n <= 64 {
        return short(d, s, n);
    }
    // The first 32 bytes are loaded first: the stores below may overwrite them.
    let (a, b) = (load(s as *const Chunk), load(s.add(CHUNK) as *const Chunk));
    let mut end = n;
    while end >= 4 * CHUNK {
        let (y, z) = (
            load(s.add(end - 2 * CHUNK) as *const Chunk),
            load(s.add(end - CHUNK) as *const Chunk),
        );
        store(d.add(end - 2 * CHUNK) as *mut Chunk, y);
        store(d.add(end - CHUNK) as *mut Chunk, z);
        end -= 2 * CHUNK;
    }
    // 32..64 bytes are left at the front: the two chunks loaded first cover the first
    // 32, and one more pair ending at `end` the rest (overlapping them).
    let (y, z) = (
        load(s.add(end - 2 * CHUNK) as *const Chunk),
        load(s.add(end - CHUNK) as *const Chunk),
    );
    store(d.add(end - 2 * CHUNK) as *mut Chunk, y);
    store(d.add(end - CHUNK) as *mut Chunk, z);
    store(d as *mut Chunk, a);
    store(d.add(CHUNK) as *mut Chunk, b);
}

/// memmove's choice of direction.
#[inline(always)]
unsafe fn copy(d: *mut u8, s: *const u8, n: usize) {
    if (d as usize).wrapping_sub(s as usize) >= n {
        forward(d, s, n)
    } else {
        backward(d, s, n)
    }
}

#[cfg(all(target_env = "musl", any(target_arch = "x86_64", target_arch = "x86")))]
mod exported {
    /// # Safety
    /// As C's memcpy.
    #[no_mangle]
    pub unsafe extern "C" fn memcpy(d: *mut u8, s: *const u8, n: usize) -> *mut u8 {
        super::forward(d, s, n);
        d
    }

    /// # Safety
    /// As C's memmove.
    #[no_mangle]
    pub unsafe extern "C" fn memmove(d: *mut u8, s: *const u8, n: usize) -> *mut u8 {
        super::copy(d, s, n);
        d
    }
}

/// For the tests: the copy memmove does.
///
/// # Safety
/// As C's memmove.
pub unsafe fn move_bytes(d: *mut u8, s: *const u8, n: usize) {
    copy(d, s, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every length to 300 and 5,000, every offset and overlap in both directions, in a
    /// buffer with guard bytes around the target, against `copy_within`.
    #[test]
    fn copies_match_copy_within_for_every_length_and_overlap() {
        let mut seed = 0x9E37_79B9u32;
        let pattern: Vec<u8> = (0..12_000)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                seed as u8
            })
            .collect();
        for n in (0..=300).chain([4095, 4096, 4097, 5000]) {
            for (src, dst) in [
                (64, 64 + n + 8),
                (64 + n + 8, 64),
                (64, 65),
                (65, 64),
                (64, 64 + n / 2),
                (64 + n / 2, 64),
                (64, 64 + 31),
                (64 + 31, 64),
                (64, 64),
            ] {
                let len = 64 * 2 + 2 * n + 16;
                let mut want = pattern[..len].to_vec();
                let mut got = want.clone();
                want.copy_within(src..src + n, dst);
                unsafe {
                    let base = got.as_mut_ptr();
                    move_bytes(base.add(dst), base.add(src), n);
                }
                assert!(got == want, "n={n} src={src} dst={dst}");
            }
        }
    }
}
