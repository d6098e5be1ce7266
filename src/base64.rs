//! Base64 (RFC 4648 alphabet) as qemu-ga's qbase64_decode accepts it: only alphabet
//! characters, '=' and newlines are allowed, padding and line breaks are lenient (the
//! GLib decoder behind it ignores them). Used for passwords, file and exec data.

use crate::error::Error;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Decodes `text`; errors use qemu-ga's wording.
pub fn decode(text: &str) -> Result<Vec<u8>, Error> {
    if text.contains('\0') {
        return Err(Error::Failed(
            "Base64 data contains embedded NUL characters".into(),
        ));
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in text.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\n' => continue,
            _ => {
                return Err(Error::Failed(
                    "Base64 data contains invalid characters".into(),
                ))
            }
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

/// Encodes `bytes` with padding and without line breaks (as qemu-ga's replies), straight
/// into a string of the final size: a 48 MiB guest-file-read is encoded once, with
/// whole 3-byte groups looked up four characters at a time.
pub fn encode(bytes: &[u8]) -> String {
    // Written in place into a buffer of the final size: one 4-byte store per group,
    // not a Vec::extend_from_slice (a memcpy call at opt-level "s") for every 4 bytes.
    let mut out = vec![0u8; bytes.len().div_ceil(3) * 4];
    let sextet = |n: u32, shift: u32| ALPHABET[(n >> shift & 63) as usize];
    let groups = bytes.chunks_exact(3);
    let tail = groups.remainder();
    let (body, end) = out.split_at_mut(bytes.len() / 3 * 4);
    for (g, o) in groups.zip(body.chunks_exact_mut(4)) {
        let n = u32::from(g[0]) << 16 | u32::from(g[1]) << 8 | u32::from(g[2]);
        o.copy_from_slice(&[sextet(n, 18), sextet(n, 12), sextet(n, 6), sextet(n, 0)]);
    }
    match *tail {
        [a] => {
            let n = u32::from(a) << 16;
            end.copy_from_slice(&[sextet(n, 18), sextet(n, 12), b'=', b'=']);
        }
        [a, b] => {
            let n = u32::from(a) << 16 | u32::from(b) << 8;
            end.copy_from_slice(&[sextet(n, 18), sextet(n, 12), sextet(n, 6), b'=']);
        }
        _ => {}
    }
    String::from_utf8(out).expect("the base64 alphabet is ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4648_vectors_round_trip() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, coded) in cases {
            assert_eq!(encode(plain.as_bytes()), coded);
            assert_eq!(decode(coded).unwrap(), plain.as_bytes());
        }
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(decode(&encode(&all)).unwrap(), all);
    }

    #[test]
    fn padding_and_newlines_are_lenient() {
        assert_eq!(decode("eA").unwrap(), b"x");
        assert_eq!(decode("eA==\n").unwrap(), b"x");
        assert_eq!(decode("Zm9v\nYmFy\n").unwrap(), b"foobar");
    }

    #[test]
    fn invalid_input_has_upstream_wording() {
        assert_eq!(
            decode("!!!").unwrap_err().to_string(),
            "Base64 data contains invalid characters"
        );
        assert_eq!(
            decode("eA=\0").unwrap_err().to_string(),
            "Base64 data contains embedded NUL characters"
        );
    }
}
