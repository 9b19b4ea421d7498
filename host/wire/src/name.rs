//! Object names: what `/<name>/...` and `idFromName` accept.

use std::fmt;

/// Longest object name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// Why a name was rejected. The messages are sent to clients as `400` bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// Empty or longer than [`MAX_NAME_LEN`] bytes (the length in bytes).
    BadLength(usize),
    /// Contains a control character (`char::is_control`).
    ControlChar,
    /// Is `.` or `..`.
    DotName,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::BadLength(len) => {
                write!(f, "object names are 1 to {MAX_NAME_LEN} bytes; got {len}")
            }
            NameError::ControlChar => {
                f.write_str("object names may not contain control characters")
            }
            NameError::DotName => f.write_str("object names may not be \".\" or \"..\""),
        }
    }
}

impl std::error::Error for NameError {}

/// Checks an object name: 1..=256 bytes of UTF-8, no control characters, not `.` or `..`.
///
/// Names never reach the filesystem (only the hex of the ID derived from them does); the dot
/// rule keeps them safe to show in paths and logs all the same.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(NameError::BadLength(name.len()));
    }
    if name.chars().any(char::is_control) {
        return Err(NameError::ControlChar);
    }
    if name == "." || name == ".." {
        return Err(NameError::DotName);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(validate_name("lobby").is_ok());
        assert!(validate_name("spaces and ünïcode").is_ok());
        assert!(validate_name("...").is_ok());
        assert!(validate_name(&"x".repeat(MAX_NAME_LEN)).is_ok());
        assert_eq!(validate_name(""), Err(NameError::BadLength(0)));
        assert_eq!(validate_name(".."), Err(NameError::DotName));
        assert_eq!(validate_name("."), Err(NameError::DotName));
        assert_eq!(validate_name("a\0b"), Err(NameError::ControlChar));
        assert_eq!(validate_name("a\u{85}b"), Err(NameError::ControlChar));
        assert_eq!(
            validate_name(&"x".repeat(257)),
            Err(NameError::BadLength(257))
        );
        // The limit is in bytes, not characters.
        assert_eq!(
            validate_name(&"é".repeat(129)),
            Err(NameError::BadLength(258))
        );
    }

    #[test]
    fn messages_are_what_clients_see() {
        assert_eq!(
            NameError::BadLength(300).to_string(),
            "object names are 1 to 256 bytes; got 300"
        );
        assert_eq!(
            NameError::DotName.to_string(),
            r#"object names may not be "." or "..""#
        );
    }
}
