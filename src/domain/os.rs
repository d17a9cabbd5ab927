//! The device's operating system, as a request states it, with the one text
//! syntax every surface parses (strategy files, the admin API, the CLI).

use std::fmt;
use std::str::FromStr;

/// The device's operating system, as a request states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Os {
    /// Not stated.
    #[default]
    Unknown = 0,
    /// Android.
    Android = 1,
    /// iOS.
    Ios = 2,
    /// HarmonyOS.
    Harmony = 3,
    /// Anything else.
    Other = 4,
}

impl Os {
    /// Every OS with its name, in code order (`Os as u8` indexes it).
    pub const NAMES: [(&'static str, Os); 5] = [
        ("unknown", Os::Unknown),
        ("android", Os::Android),
        ("ios", Os::Ios),
        ("harmony", Os::Harmony),
        ("other", Os::Other),
    ];

    /// The name strategy files and the admin API use.
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize].0
    }
}

impl fmt::Display for Os {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An OS name that is not one of [`Os::NAMES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown os `{0}`: expected one of android, ios, harmony, other, unknown")]
pub struct UnknownOs(pub String);

impl FromStr for Os {
    type Err = UnknownOs;

    /// Parses a name of [`Os::NAMES`]; the empty string is [`Os::Unknown`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Ok(Os::Unknown);
        }
        Self::NAMES
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, os)| *os)
            .ok_or_else(|| UnknownOs(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_to_its_os() {
        for (name, os) in Os::NAMES {
            assert_eq!(name.parse::<Os>(), Ok(os));
            assert_eq!(os.name(), name);
        }
        assert_eq!("".parse::<Os>(), Ok(Os::Unknown));
    }

    #[test]
    fn an_unknown_name_is_an_error_naming_it() {
        let e = "windows".parse::<Os>().unwrap_err();
        assert!(e.to_string().contains("`windows`"), "{e}");
        assert!("Android".parse::<Os>().is_err(), "names are lower case");
    }
}
