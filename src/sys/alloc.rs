//! The agent's allocator: the C library's malloc, with freed blocks of up to 128 KiB kept
//! on a free list per power-of-two size for the next request.
//!
//! Why: musl's allocator (mallocng) gives a group of blocks back to the kernel as soon as
//! the last block in it is freed. A request reads a /proc file into a growing buffer and
//! writes its reply into another, so every request paid 5–6 mmap/munmap pairs, and a page
//! fault and the kernel's zeroing for every page it touched again, plus mallocng's ~100
//! instructions per malloc or free. Kept blocks make a steady stream of requests allocate
//! from the lists alone. What is kept is bounded ([`KEEP_BYTES`] a size, [`KEEP_BLOCKS`] of
//! the larger ones), given back once the agent is idle ([`trim`]), so an idle agent holds
//! what it needs, not what its busiest second did, and a size no request has taken since
//! the last look ([`age`]) is given back while it works, so a stream of small requests does
//! not hold the large blocks of the reply before it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

/// The smallest size kept (16 bytes: the C library's alignment, and room for the link).
const MIN_SHIFT: u32 = 4;
/// The largest (128 KiB): bigger buffers are rare, and the C library grows them in place
/// with mremap.
const MAX_SHIFT: u32 = 17;
const CLASSES: usize = (MAX_SHIFT - MIN_SHIFT + 1) as usize;
/// The bytes kept per size, and at least [`KEEP_BLOCKS`] blocks of it.
const KEEP_BYTES: usize = 16 * 1024;
const KEEP_BLOCKS: usize = 2;
/// Every block comes from the C library with this alignment; stricter ones are passed on.
const ALIGN: usize = 16;

struct Free {
    next: *mut Free,
}

struct Lists {
    heads: [*mut Free; CLASSES],
    counts: [usize; CLASSES],
    /// A bit per class a block was taken from since the last [`age`].
    taken: u32,
    /// The bytes of every listed block.
    bytes: usize,
}

/// The pool of the `qemu-ga` binary: main.rs makes [`Global`] its allocator. Anything
/// else (the tests, the client) leaves it empty.
pub static POOL: Pool = Pool::new();

/// The global allocator that is [`POOL`].
pub struct Global;

// SAFETY: forwards to the pool, which upholds GlobalAlloc's contract.
unsafe impl GlobalAlloc for Global {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        POOL.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        POOL.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        POOL.dealloc(block, layout)
    }
    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        POOL.realloc(block, layout, new_size)
    }
}

/// Kept bytes below which an idle agent does not bother to give them back: the loop's
/// own few small blocks would otherwise have it wake up to trim them again and again.
const TRIM_FLOOR: usize = 32 * 1024;

/// Whether [`trim`] has anything worth giving back.
pub fn worth_trimming() -> bool {
    POOL.with(|l| l.bytes) > TRIM_FLOOR
}

/// Gives every kept block back to the C library (the loop calls it once idle).
pub fn trim() {
    POOL.trim()
}

/// Gives back the kept blocks of every size none was taken of since the last call (the
/// loop calls it every so often while it works).
pub fn age() {
    POOL.age()
}

pub struct Pool {
    // The agent has one thread; the lock keeps the allocator sound for any other, and an
    // uncontended swap is cheap.
    busy: AtomicBool,
    lists: UnsafeCell<Lists>,
}

// SAFETY: the lists are only touched with `busy` held.
unsafe impl Sync for Pool {}

impl Pool {
    pub const fn new() -> Pool {
        Pool {
            busy: AtomicBool::new(false),
            lists: UnsafeCell::new(Lists {
                heads: [ptr::null_mut(); CLASSES],
                counts: [0; CLASSES],
                taken: 0,
                bytes: 0,
            }),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Lists) -> R) -> R {
        while self
            .busy
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
        // SAFETY: `busy` makes this the only reference until it is released below.
        let r = f(unsafe { &mut *self.lists.get() });
        self.busy.store(false, Ordering::Release);
        r
    }

    fn pop(&self, class: usize) -> *mut u8 {
        self.with(|l| {
            let head = l.heads[class];
            if !head.is_null() {
                // SAFETY: every listed block is a live, unused block of this class.
                l.heads[class] = unsafe { (*head).next };
                l.counts[class] -= 1;
                l.taken |= 1 << class;
                l.bytes -= block_layout(class).size();
            }
            head.cast()
        })
    }

    /// Lists the block; false when its size already keeps enough.
    fn push(&self, class: usize, block: *mut u8) -> bool {
        self.with(|l| {
            if l.counts[class] >= keep(class) {
                return false;
            }
            let free = block.cast::<Free>();
            // SAFETY: the block is ours, unused, aligned and at least 16 bytes long.
            unsafe {
                free.write(Free {
                    next: l.heads[class],
                })
            };
            l.heads[class] = free;
            l.counts[class] += 1;
            l.bytes += block_layout(class).size();
            true
        })
    }

    fn trim(&self) {
        self.with(|l| (0..CLASSES).for_each(|class| l.release(class)))
    }

    fn age(&self) {
        self.with(|l| {
            let taken = std::mem::take(&mut l.taken);
            for class in (0..CLASSES).filter(|c| taken & (1 << c) == 0) {
                l.release(class);
            }
        })
    }
}

impl Lists {
    /// Gives the class's kept blocks back to the C library.
    fn release(&mut self, class: usize) {
        let mut block = std::mem::replace(&mut self.heads[class], ptr::null_mut());
        while !block.is_null() {
            // SAFETY: a listed block: live, unused, of this class, now unlisted.
            unsafe {
                let next = (*block).next;
                System.dealloc(block.cast(), block_layout(class));
                block = next;
            }
        }
        self.bytes -= self.counts[class] * block_layout(class).size();
        self.counts[class] = 0;
    }
}

impl Default for Pool {
    fn default() -> Self {
        Pool::new()
    }
}

/// The size class of `layout`, or None for what goes straight to the C library.
fn class(layout: &Layout) -> Option<usize> {
    class_of(layout.size(), layout.align())
}

fn class_of(size: usize, align: usize) -> Option<usize> {
    if align > ALIGN || size > 1 << MAX_SHIFT {
        return None;
    }
    let shift = size
        .max(1)
        .next_power_of_two()
        .trailing_zeros()
        .max(MIN_SHIFT);
    Some((shift - MIN_SHIFT) as usize)
}

fn block_layout(class: usize) -> Layout {
    // SAFETY: a power of two no larger than 128 KiB, with a power-of-two alignment.
    unsafe { Layout::from_size_align_unchecked(1 << (class as u32 + MIN_SHIFT), ALIGN) }
}

fn keep(class: usize) -> usize {
    (KEEP_BYTES >> (class as u32 + MIN_SHIFT)).max(KEEP_BLOCKS)
}

// SAFETY: blocks are the C library's, sized and aligned for their class, and a block is
// either in use by one owner or on one list.
unsafe impl GlobalAlloc for Pool {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(c) = class(&layout) else {
            return System.alloc(layout);
        };
        let block = self.pop(c);
        if block.is_null() {
            System.alloc(block_layout(c))
        } else {
            block
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let Some(c) = class(&layout) else {
            return System.alloc_zeroed(layout);
        };
        let block = self.pop(c);
        if block.is_null() {
            // calloc: fresh pages from the kernel are not written twice.
            System.alloc_zeroed(block_layout(c))
        } else {
            block.write_bytes(0, layout.size());
            block
        }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        match class(&layout) {
            Some(c) if self.push(c, block) => {}
            Some(c) => System.dealloc(block, block_layout(c)),
            None => System.dealloc(block, layout),
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = class(&layout);
        let new = class_of(new_size, layout.align());
        match (old, new) {
            // The block is already big enough (Vec's doublings inside one class).
            (Some(a), Some(b)) if a == b => block,
            (None, None) => System.realloc(block, layout, new_size),
            _ => {
                let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
                let moved = self.alloc(new_layout);
                if !moved.is_null() {
                    ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                    self.dealloc(block, layout);
                }
                moved
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_map_to_power_of_two_classes() {
        assert_eq!(class_of(1, 1), Some(0));
        assert_eq!(class_of(16, 8), Some(0));
        assert_eq!(class_of(17, 8), Some(1));
        assert_eq!(class_of(4096, 16), Some(8));
        assert_eq!(class_of(128 * 1024, 1), Some(CLASSES - 1));
        assert_eq!(class_of(128 * 1024 + 1, 1), None);
        assert_eq!(class_of(64, 32), None);
        assert_eq!(keep(0), 1024);
        assert_eq!(keep(CLASSES - 1), KEEP_BLOCKS);
    }

    #[test]
    fn blocks_are_reused_zeroed_grown_in_place_and_bounded() {
        let pool = Pool::new();
        let small = Layout::from_size_align(100, 8).unwrap();
        unsafe {
            let a = pool.alloc(small);
            a.write_bytes(0xAB, 100);
            pool.dealloc(a, small);
            // The same block comes back, zeroed when asked for.
            let b = pool.alloc_zeroed(small);
            assert_eq!(a, b);
            assert!(std::slice::from_raw_parts(b, 100).iter().all(|&x| x == 0));
            // 100 → 128 bytes stays in its class: the same block, nothing copied.
            let c = pool.realloc(b, small, 128);
            assert_eq!(c, b);
            // 128 → 300 moves it, keeping the contents.
            c.write_bytes(7, 128);
            let grown = Layout::from_size_align(128, 8).unwrap();
            let d = pool.realloc(c, grown, 300);
            assert!(std::slice::from_raw_parts(d, 128).iter().all(|&x| x == 7));
            pool.dealloc(d, Layout::from_size_align(300, 8).unwrap());

            // No more than keep() blocks of a size stay listed.
            let big = Layout::from_size_align(100_000, 16).unwrap();
            let blocks: Vec<_> = (0..5).map(|_| pool.alloc(big)).collect();
            for &p in &blocks {
                pool.dealloc(p, big);
            }
            let c = class(&big).unwrap();
            assert_eq!(pool.with(|l| l.counts[c]), KEEP_BLOCKS);
            assert!(pool.with(|l| l.bytes) >= 128 * 1024);
            pool.trim();
            assert_eq!(pool.with(|l| (l.bytes, l.counts[c])), (0, 0));
            assert_ne!(pool.alloc(big), ptr::null_mut());

            // Oversized and over-aligned layouts go to the C library and back.
            let huge = Layout::from_size_align(1 << 20, 16).unwrap();
            let h = pool.alloc(huge);
            let h2 = pool.realloc(h, huge, 2 << 20);
            pool.dealloc(h2, Layout::from_size_align(2 << 20, 16).unwrap());
            let wide = Layout::from_size_align(64, 64).unwrap();
            let w = pool.alloc(wide);
            assert_eq!(w as usize % 64, 0);
            pool.dealloc(w, wide);
        }
    }

    #[test]
    fn age_gives_back_only_the_sizes_nobody_took() {
        let pool = Pool::new();
        let small = Layout::from_size_align(100, 8).unwrap();
        let big = Layout::from_size_align(100_000, 16).unwrap();
        let (s, b) = (class(&small).unwrap(), class(&big).unwrap());
        let counts = || pool.with(|l| (l.counts[s], l.counts[b]));
        unsafe {
            // A large reply's blocks, then small requests only.
            let x = pool.alloc(big);
            let y = pool.alloc(small);
            pool.dealloc(x, big);
            pool.dealloc(y, small);
            pool.age();
            // Neither was taken from the lists since they were filled: both go.
            assert_eq!(counts(), (0, 0));
            let y = pool.alloc(small);
            pool.dealloc(y, small);
            let x = pool.alloc(big);
            pool.dealloc(x, big);
            pool.age();
            // Both were listed again, but neither from a list: both go once more.
            assert_eq!(counts(), (0, 0));
            for _ in 0..2 {
                let y = pool.alloc(small);
                pool.dealloc(y, small);
            }
            let x = pool.alloc(big);
            pool.dealloc(x, big);
            pool.age();
            // The small size was reused, so it stays; the large one goes.
            assert_eq!(counts(), (1, 0));
            assert_eq!(pool.with(|l| l.bytes), 128);
            pool.age();
            // Nobody took it since: now it goes too.
            assert_eq!(counts(), (0, 0));
            assert_eq!(pool.with(|l| l.bytes), 0);
        }
    }
}
