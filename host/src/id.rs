//! Object IDs: minting from a name or at random, and strict parsing of the hex form.
//!
//! An ID is 32 bytes shown as 64 lower-case hex digits. The first 24 bytes identify the object
//! (an HMAC of class and name, or random bytes); the last 8 bytes are a tag, an HMAC of the class
//! and the first 24 bytes under the host key. The tag lets `parse` reject IDs that this host did
//! not mint for this class (typos, guesses, IDs of another class), as Cloudflare's
//! `idFromString` does, before any file is touched.
//!
//! The key lives in the data directory (`id.key`), so IDs stay stable across restarts as long
//! as the data directory is kept.

use std::fmt;
use std::fs;
use std::path::Path;

// ID_LEN (32) is also the length of the host key.
use dohost_wire::{ID_LEN, encode_id_hex, parse_id_hex};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// The rules for names and the shape of the hex form live in `dohost-wire` (pure, fuzzed).
pub use dohost_wire::{IdFormatError, MAX_NAME_LEN, NameError, validate_name};

/// Bytes of the tag at the end of an ID.
const TAG_LEN: usize = 8;

/// Why an ID or name was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    /// Not 64 lower-case hex digits.
    #[error(transparent)]
    Format(#[from] IdFormatError),
    #[error(
        "not an ID of class {0:?} on this host (wrong class, mistyped, or minted with another key)"
    )]
    ForeignId(String),
    /// Not a valid object name.
    #[error(transparent)]
    Name(#[from] NameError),
}

/// Failure to load or create the host key.
#[derive(Debug, thiserror::Error)]
#[error("host key {path}: {source}")]
pub struct KeyError {
    path: String,
    #[source]
    source: std::io::Error,
}

/// A validated object ID.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId([u8; ID_LEN]);

impl ObjectId {
    /// The 64-digit lower-case hex form, used in URLs and file names.
    pub fn to_hex(&self) -> String {
        encode_id_hex(&self.0)
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({})", self.to_hex())
    }
}

/// Mints and checks the IDs of one host (one key).
#[derive(Clone)]
pub struct IdMinter {
    /// HMAC-SHA256 keyed with the host's key. Keying hashes two blocks (the padded key, inner
    /// and outer); done once here, each ID's MAC starts from a copy (a name's ID takes two
    /// MACs per request, and this CPU kind has no SHA instructions).
    keyed: Hmac<Sha256>,
}

impl fmt::Debug for IdMinter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdMinter { key: <redacted> }")
    }
}

impl IdMinter {
    /// A minter with an explicit key (tests, embedding).
    pub fn with_key(key: [u8; ID_LEN]) -> Self {
        Self {
            keyed: <Hmac<Sha256> as Mac>::new_from_slice(&key)
                .expect("HMAC accepts keys of any length"),
        }
    }

    /// Loads the key from `path`, creating it (random, mode 0600) if it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        let err = |source| KeyError {
            path: path.display().to_string(),
            source,
        };
        match fs::read(path) {
            Ok(bytes) => {
                let key: [u8; ID_LEN] = bytes.as_slice().try_into().map_err(|_| {
                    err(std::io::Error::other(format!(
                        "expected {ID_LEN} bytes, found {}; restore it from a backup or move the data directory aside",
                        bytes.len()
                    )))
                })?;
                Ok(Self::with_key(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; ID_LEN];
                rand::rng().fill_bytes(&mut key);
                // Whole or not at all: a crash mid-write must not leave a short key, which
                // would stop the host from starting.
                crate::storage::write_durably(path, &key).map_err(err)?;
                Ok(Self::with_key(key))
            }
            Err(e) => Err(err(e)),
        }
    }

    /// The stable ID of the object called `name` in `class`.
    pub fn from_name(&self, class: &str, name: &str) -> Result<ObjectId, IdError> {
        validate_name(name)?;
        let digest = self.mac(&[b"name", class.as_bytes(), name.as_bytes()]);
        Ok(self.finish(class, &digest[..ID_LEN - TAG_LEN]))
    }

    /// A fresh random ID in `class`.
    pub fn new_unique(&self, class: &str) -> ObjectId {
        let mut body = [0u8; ID_LEN - TAG_LEN];
        rand::rng().fill_bytes(&mut body);
        self.finish(class, &body)
    }

    /// Parses the hex form. Accepts exactly 64 lower-case hex digits whose tag matches `class`.
    pub fn parse(&self, class: &str, text: &str) -> Result<ObjectId, IdError> {
        let bytes = parse_id_hex(text)?;
        let expected = self.finish(class, &bytes[..ID_LEN - TAG_LEN]);
        // Constant-time comparison is not needed for secrecy here (the tag only prevents
        // mistakes and guessing), but it costs nothing.
        if hmac_eq(&expected.0, &bytes) {
            Ok(expected)
        } else {
            Err(IdError::ForeignId(class.to_string()))
        }
    }

    fn finish(&self, class: &str, body: &[u8]) -> ObjectId {
        let tag = self.mac(&[b"tag", class.as_bytes(), body]);
        let mut id = [0u8; ID_LEN];
        id[..ID_LEN - TAG_LEN].copy_from_slice(body);
        id[ID_LEN - TAG_LEN..].copy_from_slice(&tag[..TAG_LEN]);
        ObjectId(id)
    }

    /// HMAC-SHA256 over length-prefixed parts, so ("ab","c") and ("a","bc") differ.
    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        for part in parts {
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

fn hmac_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minter() -> IdMinter {
        IdMinter::with_key([7; 32])
    }

    #[test]
    fn names_are_stable_and_distinct() {
        let m = minter();
        let a = m.from_name("room", "lobby").unwrap();
        assert_eq!(a, m.from_name("room", "lobby").unwrap());
        assert_ne!(a, m.from_name("room", "lobby2").unwrap());
        assert_ne!(a, m.from_name("other", "lobby").unwrap());
        assert_eq!(a.to_hex().len(), 64);
    }

    #[test]
    fn parse_round_trips_and_checks_the_tag() {
        let m = minter();
        let id = m.new_unique("room");
        assert_eq!(m.parse("room", &id.to_hex()), Ok(id));
        assert!(matches!(
            m.parse("other", &id.to_hex()),
            Err(IdError::ForeignId(_))
        ));
        let other_key = IdMinter::with_key([8; 32]);
        assert!(other_key.parse("room", &id.to_hex()).is_err());
        let mut flipped = id.to_hex().into_bytes();
        flipped[3] = if flipped[3] == b'0' { b'1' } else { b'0' };
        assert!(
            m.parse("room", std::str::from_utf8(&flipped).unwrap())
                .is_err()
        );
    }

    #[test]
    fn parse_rejects_anything_else() {
        let m = minter();
        let hex = m.new_unique("room").to_hex();
        for bad in [
            String::new(),
            "..".into(),
            hex.to_uppercase(),
            format!("{hex}0"),
            hex[1..].to_string(),
            format!("{}\0", &hex[1..]),
            format!("{}g", &hex[1..]),
            format!("{}é", &hex[2..]),
        ] {
            assert!(m.parse("room", &bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn names_are_validated() {
        let m = minter();
        assert!(m.from_name("room", "spaces and ünïcode").is_ok());
        assert_eq!(
            m.from_name("room", ".."),
            Err(IdError::Name(NameError::DotName))
        );
        assert_eq!(
            m.from_name("room", "").unwrap_err().to_string(),
            "object names are 1 to 256 bytes; got 0"
        );
    }

    #[test]
    fn key_file_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id.key");
        let a = IdMinter::load_or_create(&path).unwrap();
        let b = IdMinter::load_or_create(&path).unwrap();
        assert_eq!(a.from_name("c", "n"), b.from_name("c", "n"));
        // Written whole, through a temporary file that is gone afterwards.
        assert_eq!(fs::read(&path).unwrap().len(), ID_LEN);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        fs::write(&path, b"short").unwrap();
        assert!(IdMinter::load_or_create(&path).is_err());
    }
}
