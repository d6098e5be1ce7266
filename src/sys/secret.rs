//! Wiping secrets (decoded passwords) from memory before it is freed; volatile writes,
//! because the compiler removes ordinary stores to memory that is about to be freed.

/// Overwrites `bytes` with zeros.
pub fn wipe(bytes: &mut [u8]) {
    for b in bytes.iter_mut() {
        // SAFETY: `b` is a valid, aligned, exclusive reference for the write.
        unsafe { std::ptr::write_volatile(b, 0) };
    }
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    #[test]
    fn wiped_bytes_are_zero() {
        let mut v = b"secret".to_vec();
        super::wipe(&mut v);
        assert_eq!(v, [0; 6]);
    }
}
