//! One typed configuration for `serve`: a TOML file, overridden by flags,
//! validated at start with errors that name the field.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why the configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape (the message names the key).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The error, naming the key.
        message: String,
    },
    /// A value is out of range.
    #[error("config field `{field}`: {message}")]
    Invalid {
        /// The dotted field name.
        field: &'static str,
        /// Why.
        message: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listen addresses and request limits.
    #[serde(default)]
    pub server: ServerConfig,
    /// Where strategies come from.
    #[serde(default)]
    pub strategies: StrategiesConfig,
    /// Where the tag vocabulary comes from.
    #[serde(default)]
    pub taxonomy: TaxonomyConfig,
    /// Where users come from (until Kafka ingestion: files and a generated population).
    #[serde(default)]
    pub users: UsersConfig,
    /// The business calendar.
    #[serde(default)]
    pub time: TimeConfig,
}

/// Listen addresses and request limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// gRPC `rta.v1.RtaService` address.
    pub grpc_addr: SocketAddr,
    /// HTTP address for admin endpoints and media protocols.
    pub http_addr: SocketAddr,
    /// Deadline for one gRPC call (a shorter `grpc-timeout` from the client wins), ms.
    pub request_timeout_ms: u64,
    /// Most requests in one BatchDecide.
    pub max_batch: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            grpc_addr: SocketAddr::from(([0, 0, 0, 0], 50051)),
            http_addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            request_timeout_ms: 50,
            max_batch: 1000,
        }
    }
}

/// Where strategies come from.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrategiesConfig {
    /// A strategy file, re-read on SIGHUP and `POST /strategies/reload`; none = the demo set.
    pub path: Option<PathBuf>,
}

/// Where the tag vocabulary comes from.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaxonomyConfig {
    /// A taxonomy file; none = the shipped taxonomy.
    pub path: Option<PathBuf>,
}

/// Where users come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsersConfig {
    /// JSON-lines user records to load at start (see `UserRecord`).
    pub file: Option<PathBuf>,
    /// Users of the generated demo population to add (0 = none).
    pub generate: u64,
    /// Seed of the generated population.
    pub seed: u64,
}

impl Default for UsersConfig {
    fn default() -> Self {
        Self {
            file: None,
            generate: 0,
            seed: 42,
        }
    }
}

/// The business calendar: behaviour windows count whole days in this zone.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeConfig {
    /// Offset of the business time zone from UTC, hours (China: 8).
    pub tz_offset_hours: i8,
}

impl Default for TimeConfig {
    fn default() -> Self {
        Self { tz_offset_hours: 8 }
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn from_path(path: &Path) -> Result<Self, ConfigError> {
        let src = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let cfg: Config = toml::from_str(&src).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=60_000).contains(&self.server.request_timeout_ms) {
            return Err(ConfigError::Invalid {
                field: "server.request_timeout_ms",
                message: "must be 1..=60000".into(),
            });
        }
        if !(1..=100_000).contains(&self.server.max_batch) {
            return Err(ConfigError::Invalid {
                field: "server.max_batch",
                message: "must be 1..=100000".into(),
            });
        }
        if !(-12..=14).contains(&self.time.tz_offset_hours) {
            return Err(ConfigError::Invalid {
                field: "time.tz_offset_hours",
                message: "must be -12..=14".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let e = toml::from_str::<Config>("[server]\ngrpc_adr = \"0.0.0.0:1\"\n").unwrap_err();
        assert!(e.to_string().contains("grpc_adr"), "{e}");
    }

    #[test]
    fn out_of_range_values_name_the_field() {
        let cfg: Config = toml::from_str("[server]\nmax_batch = 0\n").unwrap();
        let e = cfg.validate().unwrap_err();
        assert!(e.to_string().contains("server.max_batch"), "{e}");
    }
}
