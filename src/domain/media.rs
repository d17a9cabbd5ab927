//! The media platforms the engine answers, and the numeric ids a strategy is
//! known by on those that name strategies by number (Tencent names them by
//! its `out_target_id` string, a strategy's `target_id`).

use serde::{Deserialize, Serialize};

/// A media platform with its own RTA protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Media {
    /// Tencent Ads (`tencent.ad.rta`).
    Tencent,
    /// Ocean Engine: ByteDance's platforms and Pangle.
    OceanEngine,
    /// Meituan.
    Meituan,
}

impl Media {
    /// The media that name strategies by a number, in [`MediaIds`] order.
    pub const NUMBERED: [Media; 2] = [Media::OceanEngine, Media::Meituan];

    /// The name used in config sections, strategy files and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tencent => "tencent",
            Self::OceanEngine => "oceanengine",
            Self::Meituan => "meituan",
        }
    }
}

/// The numeric ids a strategy is known by on each media that has them:
/// Ocean Engine's `rta_id`, Meituan's `promotion_target_id`. A strategy
/// without an id on a media is never offered to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MediaIds {
    /// Ocean Engine `rta_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oceanengine: Option<i64>,
    /// Meituan `promotion_target_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meituan: Option<i64>,
}

impl MediaIds {
    /// The id on `media`; `None` for Tencent (see [`MediaIds`]) and for a
    /// media the strategy is not offered to.
    pub fn on(&self, media: Media) -> Option<i64> {
        match media {
            Media::Tencent => None,
            Media::OceanEngine => self.oceanengine,
            Media::Meituan => self.meituan,
        }
    }

    /// True when the strategy has no numeric id anywhere.
    pub fn is_empty(&self) -> bool {
        self.oceanengine.is_none() && self.meituan.is_none()
    }

    /// Checks every id is positive (both media use 0 for "none").
    pub fn validate(&self) -> Result<(), String> {
        for media in Media::NUMBERED {
            if let Some(id) = self.on(media)
                && id <= 0
            {
                return Err(format!(
                    "media_ids.{} must be a positive integer, got {id}",
                    media.name()
                ));
            }
        }
        Ok(())
    }
}

/// Which of a media's strategies a request may be answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaScope<'a> {
    /// The media asking.
    pub media: Media,
    /// The media's ids it asks about; empty = every strategy it knows.
    pub ids: &'a [i64],
}
