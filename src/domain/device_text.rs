//! The one text syntax for a device id, wherever a person types one (the
//! `decide` command, the admin API, user records):
//!
//! * `<32 hex>`: an md5 as media send it, kind unstated;
//! * `<kind>:<32 hex>`: the same, with its kind (`imei`, `oaid`, `idfa`,
//!   `caid`, `android_id`, `mac`);
//! * `raw:<kind>:<value>`: a raw id, hashed here by the media's conventions
//!   ([`DeviceKey::from_raw`]).
//!
//! `oaid_raw:<value>`, the `decide` command's older spelling, is accepted as
//! an alias of `raw:oaid:<value>`.

use std::fmt;
use std::str::FromStr;

use crate::domain::ids::{DeviceIdKind, DeviceKey, IdError};

/// A device id as written in text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceIdText {
    /// An md5 digest, with its kind when stated.
    Hashed {
        /// The kind, when the text names it.
        kind: Option<DeviceIdKind>,
        /// The digest.
        key: DeviceKey,
    },
    /// A raw id of a kind, hashed by that kind's convention.
    Raw {
        /// The kind.
        kind: DeviceIdKind,
        /// The raw value, as written.
        value: String,
        /// Its key, hashed once when parsed.
        key: DeviceKey,
    },
}

/// Why a device id's text was not accepted. Never echoes the id: it may be
/// personal data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceTextError {
    /// `raw:` without `<kind>:<value>` after it.
    #[error("expected raw:<kind>:<value>")]
    RawWithoutKind,
    /// A kind that is not one of the known names.
    #[error("unknown device kind `{0}`: expected imei, oaid, idfa, caid, android_id or mac")]
    UnknownKind(String),
    /// The digest or raw value is not valid for its kind.
    #[error(transparent)]
    Id(#[from] IdError),
}

impl DeviceIdText {
    /// The index key this id resolves by.
    pub fn key(&self) -> DeviceKey {
        match self {
            Self::Hashed { key, .. } | Self::Raw { key, .. } => *key,
        }
    }

    /// The id's kind, when stated.
    pub fn kind(&self) -> Option<DeviceIdKind> {
        match self {
            Self::Hashed { kind, .. } => *kind,
            Self::Raw { kind, .. } => Some(*kind),
        }
    }
}

fn kind_of(name: &str) -> Result<DeviceIdKind, DeviceTextError> {
    DeviceIdKind::from_name(name).ok_or_else(|| DeviceTextError::UnknownKind(name.to_string()))
}

impl FromStr for DeviceIdText {
    type Err = DeviceTextError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let raw = |kind, value: &str| {
            // hashing validates the value's length; keep the text as written
            Ok(Self::Raw {
                kind,
                key: DeviceKey::from_raw(kind, value)?,
                value: value.to_string(),
            })
        };
        if let Some(rest) = s.strip_prefix("raw:") {
            let (kind, value) = rest
                .split_once(':')
                .ok_or(DeviceTextError::RawWithoutKind)?;
            return raw(kind_of(kind)?, value);
        }
        if let Some(value) = s.strip_prefix("oaid_raw:") {
            return raw(DeviceIdKind::Oaid, value);
        }
        match s.split_once(':') {
            Some((kind, hex)) => Ok(Self::Hashed {
                kind: Some(kind_of(kind)?),
                key: DeviceKey::from_md5_hex(hex)?,
            }),
            None => Ok(Self::Hashed {
                kind: None,
                key: DeviceKey::from_md5_hex(s)?,
            }),
        }
    }
}

impl fmt::Display for DeviceIdText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hashed { kind: None, key } => write!(f, "{}", key.to_hex()),
            Self::Hashed {
                kind: Some(kind),
                key,
            } => write!(f, "{}:{}", kind.name(), key.to_hex()),
            Self::Raw { kind, value, .. } => write!(f, "raw:{}:{value}", kind.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "909595f63a04410e34d024517bf03404";

    #[test]
    fn the_three_forms_and_the_alias_parse() {
        let bare: DeviceIdText = HEX.parse().unwrap();
        assert_eq!(bare.kind(), None);
        assert_eq!(bare.key().to_hex(), HEX);
        let typed: DeviceIdText = format!("imei:{HEX}").parse().unwrap();
        assert_eq!(typed.kind(), Some(DeviceIdKind::Imei));
        assert_eq!(typed.key(), bare.key());
        let raw: DeviceIdText = "raw:imei:860000000000009".parse().unwrap();
        assert_eq!(
            raw.key(),
            DeviceKey::from_raw(DeviceIdKind::Imei, "860000000000009").unwrap()
        );
        let alias: DeviceIdText = "oaid_raw:abc-123".parse().unwrap();
        assert_eq!(alias, "raw:oaid:abc-123".parse().unwrap());
    }

    #[test]
    fn display_writes_the_canonical_form_back() {
        for text in [
            HEX.to_string(),
            format!("idfa:{HEX}"),
            "raw:oaid:abc-123".to_string(),
        ] {
            let parsed: DeviceIdText = text.parse().unwrap();
            assert_eq!(parsed.to_string(), text);
        }
    }

    #[test]
    fn bad_text_is_an_error_that_does_not_echo_the_id() {
        assert_eq!(
            "raw:imei".parse::<DeviceIdText>(),
            Err(DeviceTextError::RawWithoutKind)
        );
        let e = format!("phone:{HEX}").parse::<DeviceIdText>().unwrap_err();
        assert!(matches!(e, DeviceTextError::UnknownKind(ref k) if k == "phone"));
        let e = "imei:1234".parse::<DeviceIdText>().unwrap_err();
        assert!(matches!(e, DeviceTextError::Id(_)));
        assert!(!e.to_string().contains("1234"), "{e}");
    }
}
