//! The text form of an object ID: exactly 64 lower-case hex digits for 32 bytes.
//!
//! Only the shape is checked here. Whether this host minted the ID for this class (the tag in
//! its last 8 bytes) is the host's check, under its key (`dohost::id`).

use std::fmt;

use crate::hex;

/// Bytes of an object ID.
pub const ID_LEN: usize = 32;

/// Why a string is not the text form of an ID. The messages are sent to clients as `400`
/// bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdFormatError {
    /// Not 64 bytes long (the length in characters, as a person would count them).
    BadLength(usize),
    /// The first character that is not `0-9` or `a-f`.
    NotHex(char),
}

impl fmt::Display for IdFormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdFormatError::BadLength(chars) => write!(
                f,
                "an object ID is exactly {} lower-case hex digits; got {chars} characters",
                ID_LEN * 2
            ),
            IdFormatError::NotHex(c) => {
                write!(f, "an object ID is lower-case hex (0-9, a-f); found {c:?}")
            }
        }
    }
}

impl std::error::Error for IdFormatError {}

/// The 64 lower-case hex digits of `id`.
pub fn encode_id_hex(id: &[u8; ID_LEN]) -> String {
    hex::encode(id)
}

/// Parses exactly 64 lower-case hex digits. Upper case is rejected so that every ID has one
/// spelling (IDs name files).
pub fn parse_id_hex(text: &str) -> Result<[u8; ID_LEN], IdFormatError> {
    if text.len() != ID_LEN * 2 {
        return Err(IdFormatError::BadLength(text.chars().count()));
    }
    let bytes = hex::decode(text).map_err(|e| match e {
        hex::HexError::NotHex(c) => IdFormatError::NotHex(c),
        // 64 bytes that are all hex digits are 64 digits: even.
        hex::HexError::OddLength(_) => IdFormatError::BadLength(text.chars().count()),
    })?;
    bytes
        .try_into()
        .map_err(|_| IdFormatError::BadLength(text.chars().count()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn round_trips() {
        let bytes = parse_id_hex(HEX).unwrap();
        assert_eq!(bytes[..4], [0x00, 0x11, 0x22, 0x33]);
        assert_eq!(encode_id_hex(&bytes), HEX);
        assert_eq!(encode_id_hex(&[0xff; ID_LEN]), "f".repeat(64));
    }

    #[test]
    fn rejects_anything_else() {
        use IdFormatError::*;
        assert_eq!(parse_id_hex(""), Err(BadLength(0)));
        assert_eq!(parse_id_hex(&format!("{HEX}0")), Err(BadLength(65)));
        assert_eq!(parse_id_hex(&HEX[1..]), Err(BadLength(63)));
        assert_eq!(parse_id_hex(&HEX.to_uppercase()), Err(NotHex('A')));
        assert_eq!(parse_id_hex(&format!("{}\0", &HEX[1..])), Err(NotHex('\0')));
        assert_eq!(parse_id_hex(&format!("{}g", &HEX[1..])), Err(NotHex('g')));
        assert_eq!(parse_id_hex(&format!("+{}", &HEX[1..])), Err(NotHex('+')));
        assert_eq!(parse_id_hex(&format!("{}é", &HEX[2..])), Err(NotHex('é')));
        // 66 bytes: the length is reported in characters, as a person would count them.
        assert_eq!(parse_id_hex(&"é".repeat(33)), Err(BadLength(33)));
    }

    #[test]
    fn messages_are_what_clients_see() {
        assert_eq!(
            IdFormatError::BadLength(3).to_string(),
            "an object ID is exactly 64 lower-case hex digits; got 3 characters"
        );
        assert_eq!(
            IdFormatError::NotHex('G').to_string(),
            "an object ID is lower-case hex (0-9, a-f); found 'G'"
        );
    }
}
