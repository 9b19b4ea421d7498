//! Lower-case hex, the one spelling dohost uses for bytes in text (object IDs, blobs).
//!
//! Decoding is strict: only `0-9` and `a-f`, in pairs. Upper case, signs and whitespace are
//! errors, so every byte string has exactly one accepted spelling and `encode(decode(s)) == s`.

use std::fmt;

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Why a string is not lower-case hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HexError {
    /// An odd number of digits (the length in bytes).
    OddLength(usize),
    /// A character other than `0-9` and `a-f`.
    NotHex(char),
}

impl fmt::Display for HexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HexError::OddLength(len) => write!(f, "hex has an even number of digits; got {len}"),
            HexError::NotHex(c) => write!(f, "hex is lower-case (0-9, a-f); found {c:?}"),
        }
    }
}

impl std::error::Error for HexError {}

/// Two lower-case hex digits per byte.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// Decodes lower-case hex of any even length (`""` is no bytes).
///
/// Reports the first character that is not a lower-case hex digit before an odd length.
pub fn decode(text: &str) -> Result<Vec<u8>, HexError> {
    let nibbles = text
        .chars()
        .map(|c| digit(c).ok_or(HexError::NotHex(c)))
        .collect::<Result<Vec<u8>, HexError>>()?;
    if !nibbles.len().is_multiple_of(2) {
        return Err(HexError::OddLength(nibbles.len()));
    }
    let (pairs, _) = nibbles.as_chunks::<2>();
    Ok(pairs.iter().map(|[hi, lo]| hi << 4 | lo).collect())
}

fn digit(c: char) -> Option<u8> {
    match c {
        '0'..='9' => Some(c as u8 - b'0'),
        'a'..='f' => Some(c as u8 - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        let text = encode(&all);
        assert_eq!(&text[..6], "000102");
        assert_eq!(&text[text.len() - 4..], "feff");
        assert_eq!(decode(&text), Ok(all));
        assert_eq!(decode(""), Ok(vec![]));
    }

    #[test]
    fn rejects_anything_but_lower_case_pairs() {
        assert_eq!(decode("abc"), Err(HexError::OddLength(3)));
        assert_eq!(decode("AB"), Err(HexError::NotHex('A')));
        assert_eq!(decode("+f"), Err(HexError::NotHex('+')));
        assert_eq!(decode("0 "), Err(HexError::NotHex(' ')));
        assert_eq!(decode("éé"), Err(HexError::NotHex('é')));
        assert_eq!(decode("0x"), Err(HexError::NotHex('x')));
    }
}
