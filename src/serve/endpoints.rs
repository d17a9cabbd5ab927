//! The media endpoints a node serves on its media listener, one per media
//! protocol, each from its own configuration section.

use std::sync::Arc;

use axum::Router;
use serde::{Deserialize, Serialize};

use crate::decision::DecisionEngine;
use crate::domain::field::FieldError;
use crate::serve::media;
use crate::serve::meituan::{Meituan, MeituanConfig};
use crate::serve::oceanengine::{OceanEngine, OceanEngineConfig};
use crate::serve::tencent::{Tencent, TencentConfig};

/// Every media endpoint's settings: the `[tencent]`, `[oceanengine]` and
/// `[meituan]` sections.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaEndpoints {
    /// Tencent Ads, `POST /rta/tencent` by default.
    pub tencent: TencentConfig,
    /// Ocean Engine, `POST /rta/oceanengine` by default.
    pub oceanengine: OceanEngineConfig,
    /// Meituan, `POST /rta/meituan` by default.
    pub meituan: MeituanConfig,
}

impl MediaEndpoints {
    /// Checks each section, and that no two enabled endpoints share a path.
    pub fn validate(&self) -> Result<(), FieldError> {
        self.tencent.validate()?;
        self.oceanengine.validate()?;
        self.meituan.validate()?;
        let paths = self.enabled_paths();
        for (i, (name, path)) in paths.iter().enumerate() {
            if let Some((other, _)) = paths[..i].iter().find(|(_, p)| p == path) {
                return Err(FieldError::new(
                    format!("{name}.path"),
                    format!("`{path}` is also {other}'s path"),
                ));
            }
        }
        Ok(())
    }

    /// The enabled endpoints' names and paths, for the start-up line.
    pub fn enabled_paths(&self) -> Vec<(&'static str, &str)> {
        [
            ("tencent", self.tencent.enabled, self.tencent.path.as_str()),
            (
                "oceanengine",
                self.oceanengine.enabled,
                self.oceanengine.path.as_str(),
            ),
            ("meituan", self.meituan.enabled, self.meituan.path.as_str()),
        ]
        .into_iter()
        .filter(|(_, on, _)| *on)
        .map(|(name, _, path)| (name, path))
        .collect()
    }

    /// The router of every enabled endpoint.
    pub fn router(&self, engine: &Arc<DecisionEngine>) -> Router {
        media::router::<Tencent>(engine.clone(), &self.tencent)
            .merge(media::router::<OceanEngine>(
                engine.clone(),
                &self.oceanengine,
            ))
            .merge(media::router::<Meituan>(engine.clone(), &self.meituan))
    }
}
