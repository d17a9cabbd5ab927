//! Validated domain events, decoded from a topic's protobuf or JSON messages.
//!
//! Validation happens here, once: names are resolved against the taxonomy,
//! ids parsed, timestamps checked. What comes out can be applied without
//! failing except for profile limits; what does not is a [`SkipReason`].

use prost::Message;
use serde::Deserialize;

use super::pb;
use crate::decision::blacklist::{Listed, Reason};
pub use crate::decision::observer::{ControlEvent, FeedbackEvent, Subject};
use crate::domain::ids::{DeviceIdKind, DeviceKey};
use crate::domain::taxonomy::{TagCode, Taxonomy};
use crate::index::UserId;
use crate::index::profile::{Action, Attr, ItemKey, Scope, StateField, UserVector, model_tag};

/// What a topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TopicKind {
    /// `TagUpdate` messages from the tag platform.
    Tags,
    /// `BehaviourEvent` messages (on-site behaviour).
    Behaviour,
    /// `FeedbackEvent` messages (media exposure / click / conversion).
    Feedback,
    /// `IdentityEvent` messages (link, unlink, delete user).
    Identity,
    /// `UserVector` messages (the dual-tower model's user vectors).
    Vectors,
    /// `BlacklistCommand` messages (blacklist changes); always consumed from
    /// the topic's start.
    Control,
}

/// How a topic's messages are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Protobuf, the schemas in proto/rta/v1/events.proto.
    #[default]
    Protobuf,
    /// JSON with the same field names; enums as lower-case names.
    Json,
    /// Many protobuf events per Kafka message, each preceded by its length as
    /// a varint: protobuf's delimited framing (Java `writeDelimitedTo`,
    /// Python `_VarintBytes(len) + bytes`). For bulk producers such as a tag
    /// platform's daily refresh: the broker and client cost is per message,
    /// so batches raise the events a consumer applies per second.
    #[serde(rename = "protobuf-delimited")]
    ProtobufDelimited,
    /// Many JSON events per Kafka message, one per line (JSON Lines).
    #[serde(rename = "json-lines")]
    JsonLines,
}

/// The events of one Kafka message: the whole payload for `protobuf` and
/// `json`, each frame for `protobuf-delimited` and `json-lines` (blank lines
/// are skipped). A frame that cannot be cut out (a bad or too long length
/// prefix) ends the message: it comes as `Err` with the unreadable rest.
pub fn frames(format: Format, payload: &[u8]) -> Frames<'_> {
    Frames {
        format,
        rest: payload,
        done: false,
    }
}

/// Iterator over the events of a message; see [`frames`].
#[derive(Debug)]
pub struct Frames<'a> {
    format: Format,
    rest: &'a [u8],
    done: bool,
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<&'a [u8], &'a [u8]>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.format {
            Format::Protobuf | Format::Json => {
                self.done = true;
                Some(Ok(self.rest))
            }
            Format::ProtobufDelimited => {
                if self.rest.is_empty() {
                    self.done = true;
                    return None;
                }
                let mut buf = self.rest;
                let len = prost::encoding::decode_varint(&mut buf)
                    .ok()
                    .and_then(|l| usize::try_from(l).ok())
                    .filter(|l| *l <= buf.len());
                match len {
                    Some(len) => {
                        let (frame, rest) = buf.split_at(len);
                        self.rest = rest;
                        Some(Ok(frame))
                    }
                    None => {
                        self.done = true;
                        Some(Err(self.rest))
                    }
                }
            }
            Format::JsonLines => loop {
                if self.rest.is_empty() {
                    self.done = true;
                    return None;
                }
                let (line, rest) = match self.rest.iter().position(|&b| b == b'\n') {
                    Some(i) => (&self.rest[..i], &self.rest[i + 1..]),
                    None => (self.rest, &self.rest[self.rest.len()..]),
                };
                self.rest = rest;
                let line = line.trim_ascii();
                if !line.is_empty() {
                    return Some(Ok(line));
                }
            },
        }
    }
}

/// Why a message was skipped: a metric label and a log field. Never carries ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    /// The payload is not a valid message of the topic's type.
    #[error("undecodable")]
    Undecodable,
    /// No user id (and, for feedback, no usable device).
    #[error("missing_user")]
    MissingUser,
    /// The event time is before 2020, too far in the past for the retention, or in the future.
    #[error("absurd_timestamp")]
    AbsurdTimestamp,
    /// An enum value is unspecified or unknown.
    #[error("unknown_enum")]
    UnknownEnum,
    /// A tag system or value is not in the taxonomy.
    #[error("unknown_tag")]
    UnknownTag,
    /// A demographic, state or level name is unknown, or a value is out of range.
    #[error("bad_value")]
    BadValue,
    /// A device id is malformed or doubtful.
    #[error("bad_device")]
    BadDevice,
    /// A tag update whose version is not newer than the applied one.
    #[error("stale_version")]
    StaleVersion,
    /// An event about a user deleted after the event happened.
    #[error("deleted_user")]
    DeletedUser,
    /// The profile would exceed its limits.
    #[error("profile_full")]
    ProfileFull,
}

impl SkipReason {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Undecodable => "undecodable",
            Self::MissingUser => "missing_user",
            Self::AbsurdTimestamp => "absurd_timestamp",
            Self::UnknownEnum => "unknown_enum",
            Self::UnknownTag => "unknown_tag",
            Self::BadValue => "bad_value",
            Self::BadDevice => "bad_device",
            Self::StaleVersion => "stale_version",
            Self::DeletedUser => "deleted_user",
            Self::ProfileFull => "profile_full",
        }
    }
}

impl From<crate::index::profile::ProfileError> for SkipReason {
    fn from(e: crate::index::profile::ProfileError) -> Self {
        match e {
            crate::index::profile::ProfileError::ItemIdTooLarge(_) => Self::BadValue,
            crate::index::profile::ProfileError::TooMany(_) => Self::ProfileFull,
            crate::index::profile::ProfileError::NotFinite => Self::BadValue,
        }
    }
}

/// A tag-platform update.
#[derive(Debug, Clone, PartialEq)]
pub struct TagsEvent {
    /// The user.
    pub user: UserId,
    /// Event time, Unix ms.
    pub time_ms: i64,
    /// Monotonic per user.
    pub version: u64,
    /// Systems whose tags are cleared first.
    pub replace_systems: Vec<u32>,
    /// Tags to add.
    pub set: Vec<TagCode>,
    /// Tags to remove.
    pub clear: Vec<TagCode>,
    /// Demographics to set (0 clears).
    pub demographics: Vec<(Attr, u8)>,
    /// Item-state fields to set.
    pub items: Vec<(ItemKey, Vec<(StateField, u8)>)>,
    /// Devices to link.
    pub devices: Vec<DeviceKey>,
}

/// One on-site behaviour.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BehaviourEvent {
    /// The user.
    pub user: UserId,
    /// Event time, Unix ms.
    pub time_ms: i64,
    /// The action.
    pub action: Action,
    /// The category, brand and sku acted on (those given).
    pub items: [Option<ItemKey>; 3],
}

/// A One-ID change.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum IdentityEvent {
    /// Link a device to a user.
    Link {
        /// Event time, Unix ms.
        time_ms: i64,
        /// The user.
        user: UserId,
        /// The device.
        device: DeviceKey,
    },
    /// Unlink a device.
    Unlink {
        /// The device.
        device: DeviceKey,
    },
    /// Delete a user (privacy request).
    Delete {
        /// Event time, Unix ms.
        time_ms: i64,
        /// The user.
        user: UserId,
    },
}

/// A user vector from the offline model.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorEvent {
    /// The user.
    pub user: UserId,
    /// Event time, Unix ms.
    pub time_ms: i64,
    /// The quantised vector, tagged with its model version.
    pub vector: UserVector,
}

/// A validated event.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Tag platform.
    Tags(TagsEvent),
    /// On-site behaviour.
    Behaviour(BehaviourEvent),
    /// Media feedback.
    Feedback(FeedbackEvent),
    /// One-ID change.
    Identity(IdentityEvent),
    /// The user tower's vector of a user.
    Vector(VectorEvent),
    /// A blacklist change.
    Control(ControlEvent),
}

/// What decoding needs besides the bytes.
#[derive(Debug, Clone, Copy)]
pub struct DecodeContext<'a> {
    /// The tag vocabulary.
    pub taxonomy: &'a Taxonomy,
    /// Now, Unix ms.
    pub now_ms: i64,
    /// Behaviour older than this many days is not kept.
    pub retention_days: u32,
}

/// 2020-01-01T00:00:00Z: no event of ours is older.
const MIN_TIME_MS: i64 = 1_577_836_800_000;
/// Clock skew tolerated for events from the future.
const MAX_FUTURE_MS: i64 = 24 * 3600 * 1000;

impl DecodeContext<'_> {
    fn time(&self, t: i64, retained: bool) -> Result<i64, SkipReason> {
        let oldest = if retained {
            self.now_ms - i64::from(self.retention_days) * 86_400_000
        } else {
            MIN_TIME_MS
        };
        if t < MIN_TIME_MS.max(oldest) || t > self.now_ms + MAX_FUTURE_MS {
            return Err(SkipReason::AbsurdTimestamp);
        }
        Ok(t)
    }
}

fn decode_msg<M: Message + Default + for<'de> Deserialize<'de>>(
    format: Format,
    payload: &[u8],
) -> Result<M, SkipReason> {
    match format {
        Format::Protobuf | Format::ProtobufDelimited => {
            M::decode(payload).map_err(|_| SkipReason::Undecodable)
        }
        Format::Json | Format::JsonLines => {
            serde_json::from_slice(payload).map_err(|_| SkipReason::Undecodable)
        }
    }
}

/// Parses a device reference.
pub fn device(d: &pb::DeviceRef) -> Result<DeviceKey, SkipReason> {
    let key = if !d.md5.is_empty() {
        DeviceKey::from_md5_hex(&d.md5)
    } else {
        let kind = DeviceIdKind::from_name(&d.kind).ok_or(SkipReason::BadDevice)?;
        DeviceKey::from_raw(kind, &d.raw)
    }
    .map_err(|_| SkipReason::BadDevice)?;
    if key.is_doubtful() {
        return Err(SkipReason::BadDevice);
    }
    Ok(key)
}

fn item(scope: i32, id: u32) -> Result<ItemKey, SkipReason> {
    let scope = match pb::ItemScope::try_from(scope) {
        Ok(pb::ItemScope::Category) => Scope::Category,
        Ok(pb::ItemScope::Brand) => Scope::Brand,
        Ok(pb::ItemScope::Sku) => Scope::Sku,
        _ => return Err(SkipReason::UnknownEnum),
    };
    ItemKey::new(scope, u64::from(id)).map_err(|_| SkipReason::BadValue)
}

fn level(field: StateField, name: &str) -> Result<Option<(StateField, u8)>, SkipReason> {
    if name.is_empty() {
        return Ok(None);
    }
    field
        .value_names()
        .iter()
        .position(|n| *n == name)
        .map(|i| Some((field, i as u8)))
        .ok_or(SkipReason::BadValue)
}

/// Decodes and validates one event of a topic: a whole message, or one
/// frame of a batch format (see [`frames`]).
pub fn decode(
    kind: TopicKind,
    format: Format,
    payload: &[u8],
    ctx: &DecodeContext<'_>,
) -> Result<Event, SkipReason> {
    match kind {
        TopicKind::Tags => {
            let m: pb::TagUpdate = decode_msg(format, payload)?;
            if m.user_id == 0 {
                return Err(SkipReason::MissingUser);
            }
            let time_ms = ctx.time(m.event_time_ms, false)?;
            let tag = |t: &pb::Tag| {
                ctx.taxonomy
                    .code(&t.system, &t.value)
                    .ok_or(SkipReason::UnknownTag)
            };
            let mut demographics = Vec::with_capacity(m.demographics.len());
            for d in &m.demographics {
                let attr = Attr::from_name(&d.name).ok_or(SkipReason::BadValue)?;
                let v = match attr.value_names() {
                    Some(names) if !d.label.is_empty() => names
                        .iter()
                        .position(|n| *n == d.label)
                        .map(|i| i as u8 + 1)
                        .ok_or(SkipReason::BadValue)?,
                    Some(_) => 0,
                    None => u8::try_from(d.number).map_err(|_| SkipReason::BadValue)?,
                };
                demographics.push((attr, v));
            }
            let mut items = Vec::with_capacity(m.item_states.len());
            for s in &m.item_states {
                let fields = [
                    level(StateField::FourA, &s.four_a)?,
                    level(StateField::RfmR, &s.rfm_r)?,
                    level(StateField::RfmF, &s.rfm_f)?,
                    level(StateField::RfmM, &s.rfm_m)?,
                    level(StateField::Clv, &s.clv)?,
                ];
                items.push((item(s.scope, s.id)?, fields.into_iter().flatten().collect()));
            }
            Ok(Event::Tags(TagsEvent {
                user: m.user_id,
                time_ms,
                version: m.version,
                replace_systems: m
                    .replace_systems
                    .iter()
                    .map(|s| ctx.taxonomy.system(s).ok_or(SkipReason::UnknownTag))
                    .collect::<Result<_, _>>()?,
                set: m.set_tags.iter().map(tag).collect::<Result<_, _>>()?,
                clear: m.clear_tags.iter().map(tag).collect::<Result<_, _>>()?,
                demographics,
                items,
                devices: m.devices.iter().map(device).collect::<Result<_, _>>()?,
            }))
        }
        TopicKind::Behaviour => {
            let m: pb::BehaviourEvent = decode_msg(format, payload)?;
            if m.user_id == 0 {
                return Err(SkipReason::MissingUser);
            }
            let action = match pb::Action::try_from(m.action) {
                Ok(pb::Action::Browse) => Action::Browse,
                Ok(pb::Action::Search) => Action::Search,
                Ok(pb::Action::Favorite) => Action::Favorite,
                Ok(pb::Action::Cart) => Action::Cart,
                Ok(pb::Action::Buy) => Action::Buy,
                Ok(pb::Action::Share) => Action::Share,
                _ => return Err(SkipReason::UnknownEnum),
            };
            let key = |scope, id: u32| -> Result<Option<ItemKey>, SkipReason> {
                if id == 0 {
                    Ok(None)
                } else {
                    ItemKey::new(scope, u64::from(id))
                        .map(Some)
                        .map_err(|_| SkipReason::BadValue)
                }
            };
            let items = [
                key(Scope::Category, m.category_id)?,
                key(Scope::Brand, m.brand_id)?,
                key(Scope::Sku, m.sku_id)?,
            ];
            if items.iter().all(Option::is_none) {
                return Err(SkipReason::BadValue);
            }
            Ok(Event::Behaviour(BehaviourEvent {
                user: m.user_id,
                time_ms: ctx.time(m.event_time_ms, true)?,
                action,
                items,
            }))
        }
        TopicKind::Feedback => {
            let m: pb::FeedbackEvent = decode_msg(format, payload)?;
            let action = match pb::FeedbackKind::try_from(m.kind) {
                Ok(pb::FeedbackKind::Exposure) => Some(Action::Exposure),
                Ok(pb::FeedbackKind::Click) => Some(Action::Click),
                Ok(pb::FeedbackKind::Conversion) => Some(Action::Conversion),
                Ok(pb::FeedbackKind::Fraud) => None,
                _ => return Err(SkipReason::UnknownEnum),
            };
            let subject = match (&m.user_id, &m.device) {
                (u, _) if *u != 0 => Subject::User(*u),
                (_, Some(d)) => Subject::Device(device(d)?),
                _ => return Err(SkipReason::MissingUser),
            };
            let Some(action) = action else {
                // a fraud report lists its subject (rule `media_fraud`)
                return Ok(Event::Control(ControlEvent::List {
                    listed: match subject {
                        Subject::User(u) => Listed::User(u),
                        Subject::Device(d) => Listed::Device(d),
                    },
                    reason: Reason::MediaFraud,
                    time_ms: ctx.time(m.event_time_ms, false)?,
                    ttl_seconds: None,
                }));
            };
            if m.strategy_id.is_empty() || m.strategy_id.len() > 64 {
                return Err(SkipReason::BadValue);
            }
            Ok(Event::Feedback(FeedbackEvent {
                subject,
                time_ms: ctx.time(m.event_time_ms, true)?,
                action,
                strategy: ItemKey::strategy(&m.strategy_id),
            }))
        }
        TopicKind::Identity => {
            let m: pb::IdentityEvent = decode_msg(format, payload)?;
            let time_ms = ctx.time(m.event_time_ms, false)?;
            let dev = || {
                m.device
                    .as_ref()
                    .ok_or(SkipReason::BadDevice)
                    .and_then(device)
            };
            Ok(Event::Identity(
                match pb::IdentityChange::try_from(m.change) {
                    Ok(pb::IdentityChange::Link) if m.user_id != 0 => IdentityEvent::Link {
                        time_ms,
                        user: m.user_id,
                        device: dev()?,
                    },
                    Ok(pb::IdentityChange::Unlink) => IdentityEvent::Unlink { device: dev()? },
                    Ok(pb::IdentityChange::DeleteUser) if m.user_id != 0 => IdentityEvent::Delete {
                        time_ms,
                        user: m.user_id,
                    },
                    Ok(pb::IdentityChange::Link | pb::IdentityChange::DeleteUser) => {
                        return Err(SkipReason::MissingUser);
                    }
                    _ => return Err(SkipReason::UnknownEnum),
                },
            ))
        }
        TopicKind::Vectors => {
            let m: pb::UserVector = decode_msg(format, payload)?;
            if m.user_id == 0 {
                return Err(SkipReason::MissingUser);
            }
            if m.model_version.is_empty() || m.model_version.len() > 64 {
                return Err(SkipReason::BadValue);
            }
            let vector = UserVector::quantise(model_tag(&m.model_version), &m.values)
                .map_err(|_| SkipReason::BadValue)?;
            Ok(Event::Vector(VectorEvent {
                user: m.user_id,
                time_ms: ctx.time(m.event_time_ms, false)?,
                vector,
            }))
        }
        TopicKind::Control => {
            let m: pb::BlacklistCommand = decode_msg(format, payload)?;
            let listed = match (&m.user_id, &m.device) {
                (u, None) if *u != 0 => Listed::User(*u),
                (0, Some(d)) => Listed::Device(device(d)?),
                _ => return Err(SkipReason::MissingUser),
            };
            let time_ms = ctx.time(m.event_time_ms, false)?;
            match pb::BlacklistOp::try_from(m.op) {
                Ok(pb::BlacklistOp::Add) => {
                    let reason = if m.reason.is_empty() {
                        Reason::Operator
                    } else {
                        Reason::from_label(&m.reason).ok_or(SkipReason::BadValue)?
                    };
                    if m.ttl_seconds > crate::decision::blacklist::MAX_TTL_SECONDS {
                        return Err(SkipReason::BadValue);
                    }
                    Ok(Event::Control(ControlEvent::List {
                        listed,
                        reason,
                        time_ms,
                        ttl_seconds: (m.ttl_seconds > 0).then_some(m.ttl_seconds),
                    }))
                }
                Ok(pb::BlacklistOp::Remove) => Ok(Event::Control(ControlEvent::Unlist { listed })),
                _ => Err(SkipReason::UnknownEnum),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn delimited_frames_come_back_as_written(
            events in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..300), 0..20),
            cut in proptest::num::usize::ANY,
        ) {
            let mut payload = Vec::new();
            for e in &events {
                prost::encoding::encode_varint(e.len() as u64, &mut payload);
                payload.extend_from_slice(e);
            }
            let back: Vec<_> = frames(Format::ProtobufDelimited, &payload).collect();
            let want: Vec<Result<&[u8], &[u8]>> = events.iter().map(|e| Ok(e.as_slice())).collect();
            proptest::prop_assert_eq!(back, want);
            // a message cut short yields the whole frames before the cut, then
            // at most one error carrying exactly the bytes that were left
            let cut = if payload.is_empty() { 0 } else { cut % payload.len() };
            let short = &payload[..cut];
            let mut seen = 0;
            for f in frames(Format::ProtobufDelimited, short) {
                match f {
                    Ok(frame) => {
                        proptest::prop_assert_eq!(frame, events[seen].as_slice());
                        seen += 1;
                    }
                    Err(rest) => {
                        let used: usize = events[..seen]
                            .iter()
                            .map(|e| e.len() + prost::encoding::encoded_len_varint(e.len() as u64))
                            .sum();
                        proptest::prop_assert_eq!(rest, &short[used..]);
                    }
                }
            }
        }
    }

    #[test]
    fn json_lines_skip_blank_lines_and_carriage_returns() {
        let payload = b"{\"a\":1}\r\n\n  \n{\"b\":2}\nlast";
        let got: Vec<_> = frames(Format::JsonLines, payload).collect();
        let want: Vec<Result<&[u8], &[u8]>> = vec![Ok(b"{\"a\":1}"), Ok(b"{\"b\":2}"), Ok(b"last")];
        assert_eq!(got, want);
        assert_eq!(frames(Format::Json, b"x\ny").count(), 1);
        assert_eq!(frames(Format::ProtobufDelimited, b"").count(), 0);
    }

    const NOW: i64 = 1_790_000_000_000;

    fn ctx(t: &Taxonomy) -> DecodeContext<'_> {
        DecodeContext {
            taxonomy: t,
            now_ms: NOW,
            retention_days: 90,
        }
    }

    #[test]
    fn json_and_protobuf_decode_to_the_same_event() {
        let t = Taxonomy::default_taxonomy();
        let m = pb::BehaviourEvent {
            user_id: 7,
            event_time_ms: NOW - 1000,
            action: pb::Action::Cart as i32,
            category_id: 1319,
            brand_id: 8557,
            ..Default::default()
        };
        let from_pb = decode(
            TopicKind::Behaviour,
            Format::Protobuf,
            &m.encode_to_vec(),
            &ctx(&t),
        )
        .unwrap();
        let json = format!(
            r#"{{"user_id": 7, "event_time_ms": {}, "action": "cart", "category_id": 1319, "brand_id": 8557}}"#,
            NOW - 1000
        );
        let from_json = decode(
            TopicKind::Behaviour,
            Format::Json,
            json.as_bytes(),
            &ctx(&t),
        )
        .unwrap();
        assert_eq!(from_pb, from_json);
    }

    #[test]
    fn bad_messages_are_skipped_with_their_reason() {
        let t = Taxonomy::default_taxonomy();
        let c = ctx(&t);
        let b = |m: pb::BehaviourEvent| {
            decode(
                TopicKind::Behaviour,
                Format::Protobuf,
                &m.encode_to_vec(),
                &c,
            )
        };
        let ok = pb::BehaviourEvent {
            user_id: 1,
            event_time_ms: NOW,
            action: 1,
            category_id: 5,
            ..Default::default()
        };
        assert!(b(ok).is_ok());
        assert_eq!(
            b(pb::BehaviourEvent { user_id: 0, ..ok }),
            Err(SkipReason::MissingUser)
        );
        assert_eq!(
            b(pb::BehaviourEvent { action: 42, ..ok }),
            Err(SkipReason::UnknownEnum)
        );
        assert_eq!(
            b(pb::BehaviourEvent {
                event_time_ms: NOW + 2 * 86_400_000,
                ..ok
            }),
            Err(SkipReason::AbsurdTimestamp)
        );
        assert_eq!(
            b(pb::BehaviourEvent {
                event_time_ms: NOW - 91 * 86_400_000,
                ..ok
            }),
            Err(SkipReason::AbsurdTimestamp)
        );
        assert_eq!(
            b(pb::BehaviourEvent {
                category_id: 0,
                ..ok
            }),
            Err(SkipReason::BadValue)
        );
        assert_eq!(
            decode(
                TopicKind::Behaviour,
                Format::Protobuf,
                &[0xff, 0xff, 0xff],
                &c
            ),
            Err(SkipReason::Undecodable)
        );
        assert_eq!(
            decode(
                TopicKind::Tags,
                Format::Json,
                b"{\"user_id\": 1, \"colour\": 3}",
                &c
            ),
            Err(SkipReason::Undecodable)
        );
        let unknown_tag = format!(
            r#"{{"user_id": 1, "event_time_ms": {NOW}, "set_tags": [{{"system": "target_group", "value": "martians"}}]}}"#
        );
        assert_eq!(
            decode(TopicKind::Tags, Format::Json, unknown_tag.as_bytes(), &c),
            Err(SkipReason::UnknownTag)
        );
        let doubtful = format!(
            r#"{{"event_time_ms": {NOW}, "change": "link", "user_id": 3, "device": {{"md5": "d41d8cd98f00b204e9800998ecf8427e"}}}}"#
        );
        assert_eq!(
            decode(TopicKind::Identity, Format::Json, doubtful.as_bytes(), &c),
            Err(SkipReason::BadDevice)
        );
    }

    #[test]
    fn tag_updates_resolve_names_against_the_taxonomy() {
        let t = Taxonomy::default_taxonomy();
        let json = format!(
            r#"{{"user_id": 5, "event_time_ms": {NOW}, "version": 3,
                "set_tags": [{{"system": "target_group", "value": "silver"}}],
                "replace_systems": ["target_group"],
                "demographics": [{{"name": "age", "number": 61}}, {{"name": "gender", "label": "female"}}],
                "item_states": [{{"scope": "brand", "id": 8557, "four_a": "act", "clv": "high"}}],
                "devices": [{{"kind": "imei", "raw": "861234567890123"}}]}}"#
        );
        let Event::Tags(e) =
            decode(TopicKind::Tags, Format::Json, json.as_bytes(), &ctx(&t)).unwrap()
        else {
            panic!("not a tag event")
        };
        assert_eq!(e.set, vec![t.code("target_group", "silver").unwrap()]);
        assert_eq!(e.demographics, vec![(Attr::Age, 61), (Attr::Gender, 2)]);
        assert_eq!(
            e.items[0].1,
            vec![(StateField::FourA, 3), (StateField::Clv, 3)]
        );
        assert_eq!(e.devices.len(), 1);
    }
}
