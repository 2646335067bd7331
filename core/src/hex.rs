//! Lower-case hex, as the hashes are written in env vars, annotations and
//! the record. Decoding takes either case and an exact length.

use std::fmt;

/// Writes `bytes` as lower-case hex.
pub fn write(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
}

/// `2 * N` hex digits (either case) into `N` bytes; anything else is `None`.
pub fn decode<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.as_bytes();
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in s.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_either_case_and_only_the_exact_length() {
        assert_eq!(decode::<2>("aBcd"), Some([0xab, 0xcd]));
        assert_eq!(decode::<2>("abc"), None);
        assert_eq!(decode::<2>("abcdef"), None);
        assert_eq!(decode::<2>("abzz"), None);
    }
}
