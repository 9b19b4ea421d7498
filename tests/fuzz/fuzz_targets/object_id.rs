//! The hex form of object IDs: parsing arbitrary text never panics and accepts exactly 64
//! lower-case hex digits, whose encoding is the text again; any 32 bytes round-trip.

#![no_main]

use dohost_wire::{ID_LEN, IdFormatError, encode_id_hex, parse_id_hex};
use libfuzzer_sys::fuzz_target;

fn is_lower_hex(c: char) -> bool {
    matches!(c, '0'..='9' | 'a'..='f')
}

fuzz_target!(|data: &[u8]| {
    if let Some(bytes) = data.first_chunk::<ID_LEN>() {
        let text = encode_id_hex(bytes);
        assert!(
            text.len() == 64 && text.chars().all(is_lower_hex),
            "{text:?}"
        );
        assert_eq!(parse_id_hex(&text), Ok(*bytes));
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_id_hex(text) {
        Ok(bytes) => {
            assert!(
                text.len() == 64 && text.chars().all(is_lower_hex),
                "{text:?} accepted"
            );
            assert_eq!(encode_id_hex(&bytes), text);
        }
        Err(IdFormatError::BadLength(chars)) => {
            assert_ne!(text.len(), 64, "{text:?}");
            assert_eq!(chars, text.chars().count());
        }
        Err(IdFormatError::NotHex(c)) => {
            assert_eq!(text.len(), 64, "{text:?}");
            assert_eq!(
                text.chars().find(|c| !is_lower_hex(*c)),
                Some(c),
                "{text:?}"
            );
        }
    }
});
