//! The tag vocabulary: which tag systems exist (target groups, value groups,
//! scene tags, ...) and their values. Group systems are data, not code: a
//! brand with a 15-group value model or a finance-side model adds a system to
//! the taxonomy file and writes strategies against it.
//!
//! A tag is stored in profiles as a [`TagCode`]: the system's number in the
//! top 8 bits and the value's number in the low 24.

use std::collections::HashMap;

use serde::Deserialize;

/// A tag as stored in profiles: `(system << 24) | value`, both counted from 1.
pub type TagCode = u32;

/// The most tag systems a taxonomy may define (8 bits, 0 unused).
pub const MAX_SYSTEMS: usize = 255;
/// The most values one tag system may define (24 bits, 0 unused).
pub const MAX_VALUES: usize = (1 << 24) - 1;

/// The taxonomy shipped with the engine: the ten target groups, the 15-group
/// value model, and demo scene / custom tags.
pub const DEFAULT_TAXONOMY: &str = include_str!("../../deploy/demo/taxonomy.toml");

/// Why a taxonomy file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum TaxonomyError {
    /// The file is not valid TOML of the expected shape.
    #[error("taxonomy: {0}")]
    Parse(#[from] toml::de::Error),
    /// Two systems, or two values of one system, share a name.
    #[error("taxonomy: duplicate name `{0}`")]
    Duplicate(String),
    /// A name is not a lower-case identifier.
    #[error("taxonomy: `{0}` is not a valid name (use [a-z0-9_], starting with a letter)")]
    BadName(String),
    /// More systems or values than a tag code can hold.
    #[error("taxonomy: too many {0}")]
    TooMany(&'static str),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaxonomyFile {
    #[serde(rename = "system", default)]
    systems: Vec<SystemFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SystemFile {
    /// The system's name as written in strategies (`target_group`).
    name: String,
    /// A human description for operators.
    #[serde(default)]
    description: String,
    /// The values, in order; the first gets number 1.
    values: Vec<String>,
}

/// One tag system: a named set of values.
#[derive(Debug, Clone)]
pub struct TagSystem {
    /// The name used in strategies and user records.
    pub name: String,
    /// What the system means, for operators.
    pub description: String,
    /// The value names; value number `i + 1` is `values[i]`.
    pub values: Vec<String>,
    value_numbers: HashMap<String, u32>,
}

/// All tag systems, with name <-> code lookups in both directions.
#[derive(Debug, Clone)]
pub struct Taxonomy {
    systems: Vec<TagSystem>,
    system_numbers: HashMap<String, u32>,
}

impl Taxonomy {
    /// Parses and validates a taxonomy file.
    pub fn from_toml(src: &str) -> Result<Self, TaxonomyError> {
        let file: TaxonomyFile = toml::from_str(src)?;
        if file.systems.len() > MAX_SYSTEMS {
            return Err(TaxonomyError::TooMany("tag systems"));
        }
        let mut systems = Vec::with_capacity(file.systems.len());
        let mut system_numbers = HashMap::new();
        for (i, s) in file.systems.into_iter().enumerate() {
            check_name(&s.name)?;
            if s.values.len() > MAX_VALUES {
                return Err(TaxonomyError::TooMany("values in one tag system"));
            }
            if system_numbers
                .insert(s.name.clone(), i as u32 + 1)
                .is_some()
            {
                return Err(TaxonomyError::Duplicate(s.name));
            }
            let mut value_numbers = HashMap::new();
            for (j, v) in s.values.iter().enumerate() {
                check_name(v)?;
                if value_numbers.insert(v.clone(), j as u32 + 1).is_some() {
                    return Err(TaxonomyError::Duplicate(format!("{}.{}", s.name, v)));
                }
            }
            systems.push(TagSystem {
                name: s.name,
                description: s.description,
                values: s.values,
                value_numbers,
            });
        }
        Ok(Self {
            systems,
            system_numbers,
        })
    }

    /// The taxonomy shipped with the engine.
    pub fn default_taxonomy() -> Self {
        // The embedded file is checked by a unit test; failing here is a build defect.
        Self::from_toml(DEFAULT_TAXONOMY).expect("embedded taxonomy is valid")
    }

    /// The number of a tag system, if it exists.
    pub fn system(&self, name: &str) -> Option<u32> {
        self.system_numbers.get(name).copied()
    }

    /// The tag code of `system.value`, if both exist.
    pub fn code(&self, system: &str, value: &str) -> Option<TagCode> {
        let s = self.system(system)?;
        let v = self.systems[s as usize - 1].value_numbers.get(value)?;
        Some((s << 24) | v)
    }

    /// The code of a value inside an already resolved system.
    pub fn value_code(&self, system: u32, value: &str) -> Option<TagCode> {
        let sys = self.systems.get(system as usize - 1)?;
        sys.value_numbers.get(value).map(|v| (system << 24) | v)
    }

    /// `(system name, value name)` of a tag code, for display.
    pub fn name_of(&self, code: TagCode) -> Option<(&str, &str)> {
        let s = self.systems.get(((code >> 24) as usize).checked_sub(1)?)?;
        let v = s
            .values
            .get(((code & 0x00ff_ffff) as usize).checked_sub(1)?)?;
        Some((s.name.as_str(), v.as_str()))
    }

    /// All systems, in file order.
    pub fn systems(&self) -> &[TagSystem] {
        &self.systems
    }
}

fn check_name(name: &str) -> Result<(), TaxonomyError> {
    let mut chars = name.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(TaxonomyError::BadName(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_taxonomy_has_the_ten_target_groups() {
        let t = Taxonomy::default_taxonomy();
        let tg = t.system("target_group").unwrap();
        assert_eq!(t.systems()[tg as usize - 1].values.len(), 10);
        let code = t.code("target_group", "urban_family").unwrap();
        assert_eq!(t.name_of(code), Some(("target_group", "urban_family")));
    }

    #[test]
    fn duplicate_values_are_rejected() {
        let src = "[[system]]\nname = \"g\"\nvalues = [\"a\", \"a\"]\n";
        assert!(matches!(
            Taxonomy::from_toml(src),
            Err(TaxonomyError::Duplicate(_))
        ));
    }

    #[test]
    fn codes_outside_the_taxonomy_have_no_name() {
        let t = Taxonomy::default_taxonomy();
        assert_eq!(t.name_of(0), None);
        assert_eq!(t.name_of((200 << 24) | 1), None);
        assert_eq!(t.name_of((1 << 24) | 0x00ff_fff0), None);
    }
}
