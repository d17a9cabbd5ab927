//! Device identifiers: parsing the hashed ids media send, the md5 conventions
//! for raw ids, and the "doubtful" ids that must never match a user.
//!
//! Every id is reduced to a [`DeviceKey`], the 16 raw bytes of its md5, so
//! that the index holds one fixed-size key per device whatever its type
//! (One-ID: several keys may resolve to the same user).

use std::fmt;
use std::sync::OnceLock;

use md5::{Digest, Md5};

/// A user's id in the advertiser's One-ID system.
pub type UserId = u64;

/// The kinds of device id the engine understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceIdKind {
    /// Android IMEI / MEID; md5 of the lower-cased value.
    Imei,
    /// Android OAID (MSA); md5 of the value as sent.
    Oaid,
    /// Apple IDFA; md5 of the upper-cased value.
    Idfa,
    /// China Advertising ID, already a 32-hex digest.
    Caid,
    /// Android ID; md5 of the value as sent.
    AndroidId,
    /// MAC address; md5 of the value as sent.
    Mac,
}

impl DeviceIdKind {
    /// The short name used in admin URLs, CLI flags and logs (`imei`, `oaid`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Imei => "imei",
            Self::Oaid => "oaid",
            Self::Idfa => "idfa",
            Self::Caid => "caid",
            Self::AndroidId => "android_id",
            Self::Mac => "mac",
        }
    }

    /// Parses a short name as printed by [`DeviceIdKind::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "imei" => Self::Imei,
            "oaid" => Self::Oaid,
            "idfa" => Self::Idfa,
            "caid" => Self::Caid,
            "android_id" | "androidid" => Self::AndroidId,
            "mac" => Self::Mac,
            _ => return None,
        })
    }
}

/// Why a device id was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id is not 32 characters long.
    #[error("expected 32 hex characters, got {0} characters")]
    WrongLength(usize),
    /// The id has a character outside `[0-9a-fA-F]`.
    #[error("not hexadecimal at character {0}")]
    NotHex(usize),
    /// The raw id is longer than any real device id.
    #[error("raw id longer than {MAX_RAW_ID_LEN} bytes")]
    TooLong,
}

/// The longest raw (unhashed) id accepted; real ones are at most ~64 bytes.
pub const MAX_RAW_ID_LEN: usize = 128;

/// A device, as the 16 bytes of its md5 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceKey(pub [u8; 16]);

impl DeviceKey {
    /// Parses 32 hexadecimal characters (either case) into a key.
    pub fn from_md5_hex(s: &str) -> Result<Self, IdError> {
        let b = s.as_bytes();
        if b.len() != 32 {
            return Err(IdError::WrongLength(s.chars().count()));
        }
        let mut out = [0u8; 16];
        for (i, pair) in b.chunks_exact(2).enumerate() {
            let hi = hex_val(pair[0]).ok_or(IdError::NotHex(2 * i))?;
            let lo = hex_val(pair[1]).ok_or(IdError::NotHex(2 * i + 1))?;
            out[i] = (hi << 4) | lo;
        }
        Ok(Self(out))
    }

    /// Hashes a raw id of the given kind with the media's convention:
    /// IDFA `md5(upper(x))`, IMEI `md5(lower(x))`, the others `md5(x)`.
    /// A CAID is not hashed by the media; its raw form is taken as md5 of itself too
    /// so that callers that only have the raw CAID still get a stable key.
    pub fn from_raw(kind: DeviceIdKind, raw: &str) -> Result<Self, IdError> {
        if raw.len() > MAX_RAW_ID_LEN {
            return Err(IdError::TooLong);
        }
        let digest = match kind {
            DeviceIdKind::Idfa => Md5::digest(raw.to_ascii_uppercase().as_bytes()),
            DeviceIdKind::Imei => Md5::digest(raw.to_ascii_lowercase().as_bytes()),
            _ => Md5::digest(raw.as_bytes()),
        };
        Ok(Self(digest.into()))
    }

    /// True for ids that many unrelated devices share (empty, all zeros, and the
    /// md5 of such values): they must never match a user nor key a cache.
    pub fn is_doubtful(&self) -> bool {
        doubtful_keys().binary_search(self).is_ok()
    }

    /// The lower-case 32-hex form, as media send it.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for DeviceKey {
    // Device ids are personal data: Debug output shows only a prefix.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceKey({:02x}{:02x}..)", self.0[0], self.0[1])
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Raw values that SDKs report when the real id is unavailable or zeroed.
const DOUBTFUL_RAW: &[&str] = &[
    "",
    "0",
    "null",
    "NULL",
    "unknown",
    "00000000-0000-0000-0000-000000000000",
    "00000000000000",
    "000000000000000",
    "0000000000000000",
    "00000000000000000000000000000000",
    "000000000000",
    "00:00:00:00:00:00",
    "02:00:00:00:00:00",
];

/// The sorted set of doubtful keys: all-zero bytes plus the md5 of each raw
/// doubtful value under every hashing convention.
fn doubtful_keys() -> &'static [DeviceKey] {
    static KEYS: OnceLock<Vec<DeviceKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut keys = vec![DeviceKey([0; 16])];
        for raw in DOUBTFUL_RAW {
            for kind in [DeviceIdKind::Idfa, DeviceIdKind::Imei, DeviceIdKind::Oaid] {
                if let Ok(k) = DeviceKey::from_raw(kind, raw) {
                    keys.push(k);
                }
            }
        }
        keys.sort();
        keys.dedup();
        keys
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_hex_parses_both_cases_to_the_same_key() {
        let lower = DeviceKey::from_md5_hex("e10adc3949ba59abbe56e057f20f883e").unwrap();
        let upper = DeviceKey::from_md5_hex("E10ADC3949BA59ABBE56E057F20F883E").unwrap();
        assert_eq!(lower, upper);
        assert_eq!(lower.to_hex(), "e10adc3949ba59abbe56e057f20f883e");
    }

    #[test]
    fn md5_hex_rejects_wrong_length_and_non_hex() {
        assert_eq!(DeviceKey::from_md5_hex("abc"), Err(IdError::WrongLength(3)));
        assert_eq!(
            DeviceKey::from_md5_hex("g10adc3949ba59abbe56e057f20f883e"),
            Err(IdError::NotHex(0))
        );
        // multi-byte characters are counted as characters, never sliced
        assert!(DeviceKey::from_md5_hex("é0adc3949ba59abbe56e057f20f883").is_err());
    }

    #[test]
    fn idfa_is_upper_cased_and_imei_lower_cased_before_hashing() {
        let a = DeviceKey::from_raw(DeviceIdKind::Idfa, "ab-cd").unwrap();
        let b = DeviceKey::from_raw(DeviceIdKind::Idfa, "AB-CD").unwrap();
        assert_eq!(a, b);
        let expected = Md5::digest(b"AB-CD");
        assert_eq!(a.0, <[u8; 16]>::from(expected));
        let i = DeviceKey::from_raw(DeviceIdKind::Imei, "86ABC").unwrap();
        assert_eq!(i.0, <[u8; 16]>::from(Md5::digest(b"86abc")));
    }

    #[test]
    fn zero_and_empty_ids_are_doubtful() {
        // md5("") is the classic placeholder sent by broken SDKs
        let empty_md5 = DeviceKey::from_md5_hex("d41d8cd98f00b204e9800998ecf8427e").unwrap();
        assert!(empty_md5.is_doubtful());
        assert!(DeviceKey([0; 16]).is_doubtful());
        let zero_idfa =
            DeviceKey::from_raw(DeviceIdKind::Idfa, "00000000-0000-0000-0000-000000000000")
                .unwrap();
        assert!(zero_idfa.is_doubtful());
        let real = DeviceKey::from_raw(DeviceIdKind::Imei, "861234567890123").unwrap();
        assert!(!real.is_doubtful());
    }

    #[test]
    fn debug_output_does_not_reveal_the_whole_id() {
        let k = DeviceKey::from_md5_hex("e10adc3949ba59abbe56e057f20f883e").unwrap();
        let s = format!("{k:?}");
        assert!(!s.contains("e10adc3949ba59ab"));
    }
}
