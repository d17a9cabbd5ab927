//! `UserRecord`: the human-readable form of a profile, with names instead of
//! codes and days-ago instead of day numbers. Used for user files (JSON
//! lines), test fixtures and the admin API, in both directions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::device_text::DeviceIdText;
use crate::domain::ids::DeviceKey;
use crate::domain::taxonomy::Taxonomy;
use crate::index::UserId;
use crate::index::profile::{
    Action, Attr, BehaviourCount, Day, ItemKey, ItemState, ProfileBuilder, ProfileError, Scope,
    StateField, UserProfile, UserVector, model_tag,
};

/// Why a user record could not become a profile.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// A device id is malformed.
    #[error("device `{0}`: {1}")]
    Device(String, String),
    /// A tag system or value is not in the taxonomy.
    #[error("unknown tag `{0}.{1}`")]
    UnknownTag(String, String),
    /// A demographic value is unknown.
    #[error("demographics.{0}: unknown value `{1}`")]
    UnknownAttr(&'static str, String),
    /// A name (scope, action, state) is unknown.
    #[error("unknown {0} `{1}`")]
    UnknownName(&'static str, String),
    /// The profile cannot hold the record.
    #[error(transparent)]
    Profile(#[from] ProfileError),
}

/// A user, as people read and write it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRecord {
    /// The user's id (One-ID).
    pub user_id: UserId,
    /// Device ids: 32-hex md5 (any type), or `raw:<kind>:<value>` to hash here.
    #[serde(default)]
    pub devices: Vec<String>,
    /// Tags by system: `{"target_group": ["urban_family"], "scene": [...]}`.
    #[serde(default)]
    pub tags: BTreeMap<String, Vec<String>>,
    /// Demographics by attribute name: numbers for numeric attributes, names otherwise.
    #[serde(default)]
    pub demographics: BTreeMap<String, serde_json::Value>,
    /// Per-item states (4A, RFM, CLV).
    #[serde(default)]
    pub items: Vec<ItemRecord>,
    /// Daily behaviour counts (media feedback read back from a profile shows
    /// here too, under scope `strategy` and the strategy's feedback key).
    #[serde(default)]
    pub behaviour: Vec<BehaviourRecord>,
    /// Media feedback by strategy id (written in; read back as behaviour).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub feedback: Vec<FeedbackRecord>,
    /// The dual-tower model's user vector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<VectorRecord>,
}

/// Media feedback about one strategy on one day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRecord {
    /// `exposure`, `click` or `conversion`.
    pub kind: String,
    /// The strategy id.
    pub strategy: String,
    /// 0 = today.
    pub days_ago: u16,
    /// How often that day.
    #[serde(default = "one")]
    pub count: u16,
}

/// A user vector as written in records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VectorRecord {
    /// The model version (`#<tag>` when read back from a profile, which
    /// keeps only the version's 16-bit tag).
    pub model: String,
    /// The values (quantised to int8 when stored).
    pub values: Vec<f32>,
}

/// A user's state with one item.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemRecord {
    /// `category`, `brand` or `sku`.
    pub scope: String,
    /// The item id.
    pub id: u32,
    /// `none`, `aware`, `appeal`, `act`, `advocate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub four_a: Option<String>,
    /// RFM recency tier: `low`, `mid`, `high`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rfm_r: Option<String>,
    /// RFM frequency tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rfm_f: Option<String>,
    /// RFM monetary tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rfm_m: Option<String>,
    /// CLV tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clv: Option<String>,
}

/// How often the user did an action on an item on one day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BehaviourRecord {
    /// `browse`, `search`, `favorite`, `cart`, `buy`, `share`.
    pub action: String,
    /// `category`, `brand` or `sku`.
    pub scope: String,
    /// The item id.
    pub id: u32,
    /// 0 = today.
    pub days_ago: u16,
    /// How often that day.
    #[serde(default = "one")]
    pub count: u16,
}

fn one() -> u16 {
    1
}

/// Parses a device id as written in records: 32 hex, or `raw:<kind>:<value>`.
pub fn parse_device(s: &str) -> Result<DeviceKey, RecordError> {
    let err = |m: String| RecordError::Device(s.chars().take(8).collect(), m);
    s.parse::<DeviceIdText>()
        .map(|text| text.key())
        .map_err(|e| err(e.to_string()))
}

fn state_code(field: StateField, name: &Option<String>) -> Result<u8, RecordError> {
    match name {
        None => Ok(0),
        Some(n) => field
            .value_names()
            .iter()
            .position(|x| x == n)
            .map(|i| i as u8)
            .ok_or_else(|| RecordError::UnknownName(field.name(), n.clone())),
    }
}

fn scope(name: &str) -> Result<Scope, RecordError> {
    Scope::from_name(name).ok_or_else(|| RecordError::UnknownName("scope", name.to_string()))
}

impl UserRecord {
    /// Builds the profile, with days-ago counted back from `today`.
    pub fn to_profile(&self, taxonomy: &Taxonomy, today: Day) -> Result<UserProfile, RecordError> {
        let mut b = ProfileBuilder {
            touched: today,
            ..Default::default()
        };
        for d in &self.devices {
            b.devices.push(parse_device(d)?);
        }
        for (system, values) in &self.tags {
            for v in values {
                b.tags.push(
                    taxonomy
                        .code(system, v)
                        .ok_or_else(|| RecordError::UnknownTag(system.clone(), v.clone()))?,
                );
            }
        }
        for (name, value) in &self.demographics {
            let attr = Attr::from_name(name)
                .ok_or_else(|| RecordError::UnknownName("demographic", name.clone()))?;
            let code = match (attr.value_names(), value) {
                (None, serde_json::Value::Number(n)) => n
                    .as_u64()
                    .and_then(|n| u8::try_from(n).ok())
                    .ok_or_else(|| RecordError::UnknownAttr(attr.name(), n.to_string()))?,
                (Some(names), serde_json::Value::String(s)) => names
                    .iter()
                    .position(|x| x == s)
                    .map(|i| i as u8 + 1)
                    .ok_or_else(|| RecordError::UnknownAttr(attr.name(), s.clone()))?,
                (_, v) => return Err(RecordError::UnknownAttr(attr.name(), v.to_string())),
            };
            b.attr(attr, code);
        }
        for it in &self.items {
            let key = ItemKey::new(scope(&it.scope)?, u64::from(it.id))?;
            let mut st = ItemState::default();
            for (field, name) in [
                (StateField::FourA, &it.four_a),
                (StateField::RfmR, &it.rfm_r),
                (StateField::RfmF, &it.rfm_f),
                (StateField::RfmM, &it.rfm_m),
                (StateField::Clv, &it.clv),
            ] {
                st = st.with(field, state_code(field, name)?);
            }
            b.items.push((key, st));
        }
        for ev in &self.behaviour {
            let action = Action::from_name(&ev.action)
                .ok_or_else(|| RecordError::UnknownName("action", ev.action.clone()))?;
            b.behaviour.push(BehaviourCount {
                item: ItemKey::new(scope(&ev.scope)?, u64::from(ev.id))?,
                action,
                day: today.saturating_sub(ev.days_ago),
                count: ev.count.min(BehaviourCount::MAX),
            });
        }
        for f in &self.feedback {
            let action = match f.kind.as_str() {
                "exposure" => Action::Exposure,
                "click" => Action::Click,
                "conversion" => Action::Conversion,
                other => return Err(RecordError::UnknownName("feedback kind", other.to_string())),
            };
            b.behaviour.push(BehaviourCount {
                item: ItemKey::strategy(&f.strategy),
                action,
                day: today.saturating_sub(f.days_ago),
                count: f.count.min(BehaviourCount::MAX),
            });
        }
        if let Some(v) = &self.vector {
            let tag = match v.model.strip_prefix('#') {
                Some(t) => t
                    .parse::<u16>()
                    .ok()
                    .filter(|t| *t != 0)
                    .ok_or_else(|| RecordError::UnknownName("model tag", v.model.clone()))?,
                None => model_tag(&v.model),
            };
            b.vector = Some(UserVector::quantise(tag, &v.values)?);
        }
        Ok(b.build()?)
    }

    /// The record of a profile, with days-ago counted back from `today`.
    pub fn from_profile(user_id: UserId, p: &UserProfile, taxonomy: &Taxonomy, today: Day) -> Self {
        let mut tags: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for code in p.tags() {
            if let Some((s, v)) = taxonomy.name_of(*code) {
                tags.entry(s.to_string()).or_default().push(v.to_string());
            }
        }
        let mut demographics = BTreeMap::new();
        for a in Attr::ALL {
            let v = p.attr(a);
            if v == 0 {
                continue;
            }
            let value = match a.value_names() {
                Some(names) => names
                    .get(usize::from(v) - 1)
                    .map(|s| serde_json::Value::from(*s))
                    .unwrap_or_else(|| serde_json::Value::from(v)),
                None => serde_json::Value::from(v),
            };
            demographics.insert(a.name().to_string(), value);
        }
        let name = |f: StateField, s: ItemState| {
            let c = s.get(f);
            (c != 0).then(|| {
                f.value_names()
                    .get(usize::from(c))
                    .unwrap_or(&"?")
                    .to_string()
            })
        };
        let items = p
            .items()
            .map(|(k, s)| ItemRecord {
                scope: k.scope().name().to_string(),
                id: k.id(),
                four_a: name(StateField::FourA, s),
                rfm_r: name(StateField::RfmR, s),
                rfm_f: name(StateField::RfmF, s),
                rfm_m: name(StateField::RfmM, s),
                clv: name(StateField::Clv, s),
            })
            .collect();
        let behaviour = p
            .behaviour()
            .map(|b| BehaviourRecord {
                action: b.action.name().to_string(),
                scope: b.item.scope().name().to_string(),
                id: b.item.id(),
                days_ago: today.saturating_sub(b.day),
                count: b.count,
            })
            .collect();
        Self {
            user_id,
            devices: p.devices().map(|d| d.to_hex()).collect(),
            tags,
            demographics,
            items,
            behaviour,
            feedback: Vec::new(),
            vector: p.vector().map(|v| VectorRecord {
                model: format!("#{}", v.model),
                values: v.to_f32(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_through_a_profile() {
        let t = Taxonomy::default_taxonomy();
        let json = r#"{"user_id": 7,
            "devices": ["e10adc3949ba59abbe56e057f20f883e"],
            "tags": {"target_group": ["urban_family"], "scene": ["gift_new_year", "new_parent"]},
            "demographics": {"age": 31, "gender": "female", "children": "yes"},
            "items": [{"scope": "brand", "id": 8557, "four_a": "appeal", "clv": "high"}],
            "behaviour": [{"action": "cart", "scope": "category", "id": 1319, "days_ago": 2, "count": 1}]}"#;
        let rec: UserRecord = serde_json::from_str(json).unwrap();
        let p = rec.to_profile(&t, 2000).unwrap();
        let back = UserRecord::from_profile(7, &p, &t, 2000);
        assert_eq!(back, rec);
    }

    #[test]
    fn unknown_names_are_errors_not_silently_dropped() {
        let t = Taxonomy::default_taxonomy();
        let mut rec = UserRecord {
            user_id: 1,
            ..Default::default()
        };
        rec.tags
            .insert("target_group".into(), vec!["martians".into()]);
        assert!(matches!(
            rec.to_profile(&t, 10),
            Err(RecordError::UnknownTag(..))
        ));
        let mut rec = UserRecord {
            user_id: 1,
            ..Default::default()
        };
        rec.devices.push("not-an-id".into());
        assert!(matches!(
            rec.to_profile(&t, 10),
            Err(RecordError::Device(..))
        ));
    }
}
