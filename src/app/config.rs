//! One typed configuration for `serve`: a TOML file, overridden by flags,
//! validated at start with errors that name the field.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::domain::field::FieldError;
use crate::serve::endpoints::MediaEndpoints;
use crate::serve::meituan::MeituanConfig;
use crate::serve::oceanengine::OceanEngineConfig;
use crate::serve::tencent::TencentConfig;

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
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// An `RTA__` variable does not fit its key.
    #[error("{var}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong with it.
        message: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
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
    /// Users loaded at start: a file and/or a generated population.
    #[serde(default)]
    pub users: UsersConfig,
    /// Kafka topics that keep the index fresh; none = no streaming ingestion.
    #[serde(default)]
    pub kafka: Option<crate::ingest::kafka::KafkaConfig>,
    /// Snapshots of index + offsets, restored at start; none = no durability.
    #[serde(default)]
    pub snapshot: Option<crate::ingest::kafka::SnapshotConfig>,
    /// Expiry of behaviour counts and untouched profiles.
    #[serde(default)]
    pub retention: crate::ingest::kafka::RetentionConfig,
    /// The business calendar.
    #[serde(default)]
    pub time: TimeConfig,
    /// The Tencent RTA endpoint (`POST /rta/tencent` on the media listener).
    #[serde(default)]
    pub tencent: TencentConfig,
    /// The Ocean Engine RTA endpoint (`POST /rta/oceanengine`).
    #[serde(default)]
    pub oceanengine: OceanEngineConfig,
    /// The Meituan RTA endpoint (`POST /rta/meituan`).
    #[serde(default)]
    pub meituan: MeituanConfig,
    /// Anti-cheat blacklist rules and TTL.
    #[serde(default)]
    pub blacklist: crate::decision::blacklist::BlacklistConfig,
    /// Online calibration of the dual-tower model from media feedback.
    #[serde(default)]
    pub calibration: crate::decision::ledger::CalibrationConfig,
    /// Who may use the admin API (tokens as hashes; see `serve::tokens`).
    #[serde(default)]
    pub admin: crate::serve::tokens::AdminConfig,
    /// Who may call `Decide` (tokens as hashes; none: anyone).
    #[serde(default)]
    pub grpc: crate::serve::tokens::GrpcConfig,
    /// Connection caps and timeouts of the three listeners.
    #[serde(default)]
    pub connections: crate::serve::listener::ConnectionsConfig,
    /// Certificates for TLS on the listeners; none = plain TCP.
    #[serde(default)]
    pub tls: Option<crate::serve::listener::TlsConfig>,
}

/// Listen addresses and request limits.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// gRPC `rta.v1.RtaService` address.
    pub grpc_addr: SocketAddr,
    /// HTTP address of the media protocols (`POST /rta/tencent`,
    /// `/rta/oceanengine`, `/rta/meituan`) and the
    /// health checks.
    pub http_addr: SocketAddr,
    /// HTTP address of the admin API and `/metrics` (and the health checks).
    /// Loopback by default: expose it only to operators and Prometheus.
    pub admin_addr: SocketAddr,
    /// Deadline for one gRPC call (a shorter `grpc-timeout` from the client wins), ms.
    pub request_timeout_ms: u64,
    /// Most requests in one BatchDecide.
    pub max_batch: usize,
    /// Threads serving requests; none = one per core. 1 serves from a single
    /// thread, as Redis does: on a small machine shared with other processes
    /// it leaves them the other cores.
    pub worker_threads: Option<usize>,
    /// Source networks (CIDRs or addresses) allowed to connect to the media
    /// listener; empty: any. Media platforms send no token, so this is their
    /// credential.
    pub media_allow: Vec<String>,
    /// On SIGTERM, how long `/readyz` says 503 while the node keeps serving,
    /// so that load balancers stop sending before the listeners close.
    pub drain_seconds: u64,
}

impl ServerConfig {
    /// Threads serving requests: the configured number or one per core.
    pub fn worker_threads(&self) -> usize {
        self.worker_threads
            .unwrap_or_else(crate::serve::runtime::default_worker_threads)
    }
}

/// The most `server.worker_threads` may ask for.
pub const MAX_WORKER_THREADS: usize = 1024;

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            grpc_addr: SocketAddr::from(([0, 0, 0, 0], 50051)),
            http_addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 9090)),
            request_timeout_ms: 50,
            max_batch: 1000,
            worker_threads: None,
            media_allow: Vec::new(),
            drain_seconds: 5,
        }
    }
}

/// Where strategies come from.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct StrategiesConfig {
    /// A strategy file, re-read on SIGHUP and `POST /strategies/reload`; none = the demo set.
    pub path: Option<PathBuf>,
}

/// Where the tag vocabulary comes from.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TaxonomyConfig {
    /// A taxonomy file; none = the shipped taxonomy.
    pub path: Option<PathBuf>,
}

/// The most users `users.expected` may pre-size an index for (2^31, the
/// index's own limit for one node).
pub const MAX_EXPECTED_USERS: u64 = 1 << 31;

/// Where users come from.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsersConfig {
    /// JSON-lines user records to load at start (see `UserRecord`).
    pub file: Option<PathBuf>,
    /// Users of the generated demo population to add (0 = none).
    pub generate: u64,
    /// Seed of the generated population.
    pub seed: u64,
    /// Users the index is sized for at start (0: as many as the snapshot
    /// being restored or the generated population holds). A node that fills
    /// from Kafka with no snapshot yet should set it: a pre-sized index keeps
    /// its tables in one huge-page-backed region instead of growing them,
    /// rehashing each time, out of small pages.
    pub expected: u64,
}

impl Default for UsersConfig {
    fn default() -> Self {
        Self {
            file: None,
            generate: 0,
            seed: 42,
            expected: 0,
        }
    }
}

/// The business calendar: behaviour windows count whole days in this zone.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
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
        Self::from_toml(&src, path)
    }

    /// Reads a config file and applies the `RTA__` variables among `vars`
    /// over it ([`crate::app::overrides`]), then validates; an error names
    /// the variable that set the key at fault.
    pub fn from_path_and_env(
        path: &Path,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let src = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_and_env(&src, path, vars)
    }

    /// As [`Config::from_path_and_env`], from config text.
    pub fn from_toml_and_env(
        src: &str,
        origin: &Path,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let parse_error = |e: toml::de::Error| ConfigError::Parse {
            path: origin.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        };
        let mut doc: toml::Table = toml::from_str(src).map_err(parse_error)?;
        let applied = crate::app::overrides::apply(&mut doc, vars)?;
        let merged = toml::to_string(&doc).map_err(|e| ConfigError::Parse {
            path: origin.to_path_buf(),
            message: e.to_string(),
        })?;
        let cfg: Config = toml::from_str(&merged).map_err(parse_error)?;
        match cfg.validate() {
            Ok(()) => Ok(cfg),
            Err(ConfigError::Invalid(field)) => {
                match applied.iter().find(|o| {
                    field.field == o.key || field.field.starts_with(&format!("{}.", o.key))
                }) {
                    Some(o) => Err(ConfigError::Env {
                        var: o.var.clone(),
                        message: field.to_string(),
                    }),
                    None => Err(ConfigError::Invalid(field)),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Parses and validates config text; `origin` names it in errors.
    pub fn from_toml(src: &str, origin: &Path) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(src).map_err(|e| ConfigError::Parse {
            path: origin.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.users.expected > MAX_EXPECTED_USERS {
            return Err(FieldError::new(
                "users.expected",
                format!("must be at most {MAX_EXPECTED_USERS}"),
            )
            .into());
        }
        if !(1..=60_000).contains(&self.server.request_timeout_ms) {
            return Err(FieldError::new("server.request_timeout_ms", "must be 1..=60000").into());
        }
        if self
            .server
            .worker_threads
            .is_some_and(|n| !(1..=MAX_WORKER_THREADS).contains(&n))
        {
            return Err(FieldError::new(
                "server.worker_threads",
                format!("must be 1..={MAX_WORKER_THREADS}"),
            )
            .into());
        }
        if self.server.drain_seconds > 3600 {
            return Err(FieldError::new("server.drain_seconds", "must be at most 3600").into());
        }
        if !(1..=100_000).contains(&self.server.max_batch) {
            return Err(FieldError::new("server.max_batch", "must be 1..=100000").into());
        }
        self.blacklist.validate()?;
        self.calibration.validate()?;
        if !(-12..=14).contains(&self.time.tz_offset_hours) {
            return Err(FieldError::new("time.tz_offset_hours", "must be -12..=14").into());
        }
        if !(1..=3650).contains(&self.retention.behaviour_days) {
            return Err(FieldError::new("retention.behaviour_days", "must be 1..=3650").into());
        }
        if self.retention.profile_ttl_days == 0 {
            return Err(FieldError::new("retention.profile_ttl_days", "must be at least 1").into());
        }
        if let Some(k) = &self.kafka {
            if k.topics.is_empty() {
                return Err(FieldError::new("kafka.topics", "list at least one topic").into());
            }
            if k.ready_max_lag < 0 {
                return Err(FieldError::new("kafka.ready_max_lag", "must be >= 0").into());
            }
        }
        if let Some(s) = &self.snapshot
            && (s.interval_secs == 0 || s.keep == 0)
        {
            return Err(
                FieldError::new("snapshot", "interval_secs and keep must be at least 1").into(),
            );
        }
        self.connections.validate()?;
        self.admin.limits().validate()?;
        if let Some(tls) = &self.tls {
            tls.validate()?;
        }
        self.media_allow()?;
        Ok(self.media_endpoints().validate()?)
    }

    /// The media endpoints' sections together.
    pub fn media_endpoints(&self) -> MediaEndpoints {
        MediaEndpoints {
            tencent: self.tencent.clone(),
            oceanengine: self.oceanengine.clone(),
            meituan: self.meituan.clone(),
        }
    }

    /// The media listener's allow-list; `None` when any address may connect.
    pub fn media_allow(&self) -> Result<Option<crate::serve::listener::AllowList>, ConfigError> {
        if self.server.media_allow.is_empty() {
            return Ok(None);
        }
        Ok(Some(crate::serve::listener::AllowList::parse(
            "server.media_allow",
            &self.server.media_allow,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::tencent::FailMode;

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let e = toml::from_str::<Config>("[server]\ngrpc_adr = \"0.0.0.0:1\"\n").unwrap_err();
        assert!(e.to_string().contains("grpc_adr"), "{e}");
    }

    #[test]
    fn kafka_topics_parse_with_kind_and_format() {
        let cfg: Config = toml::from_str(
            "[kafka]\nbrokers = \"k:9092\"\ntopics = [{ name = \"t\", kind = \"behaviour\", format = \"json\" }]\n[snapshot]\ndir = \"/tmp/s\"\n",
        )
        .unwrap();
        cfg.validate().unwrap();
        let k = cfg.kafka.unwrap();
        assert_eq!(k.topics[0].kind, crate::ingest::event::TopicKind::Behaviour);
        assert_eq!(k.topics[0].format, crate::ingest::event::Format::Json);
        for (name, format) in [
            (
                "protobuf-delimited",
                crate::ingest::event::Format::ProtobufDelimited,
            ),
            ("json-lines", crate::ingest::event::Format::JsonLines),
        ] {
            let cfg: Config = toml::from_str(&format!(
                "[kafka]\nbrokers = \"k\"\ntopics = [{{ name = \"t\", kind = \"tags\", format = \"{name}\" }}]\n"
            ))
            .unwrap();
            assert_eq!(cfg.kafka.unwrap().topics[0].format, format);
        }
        assert!(
            toml::from_str::<Config>(
                "[kafka]\nbrokers = \"k\"\ntopics = [{ name = \"t\", kind = \"clicks\" }]\n"
            )
            .is_err()
        );
        let empty: Config = toml::from_str("[kafka]\nbrokers = \"k\"\ntopics = []\n").unwrap();
        assert!(
            empty
                .validate()
                .unwrap_err()
                .to_string()
                .contains("kafka.topics")
        );
    }

    #[test]
    fn out_of_range_values_name_the_field() {
        let cfg: Config = toml::from_str("[server]\nmax_batch = 0\n").unwrap();
        let e = cfg.validate().unwrap_err();
        assert!(e.to_string().contains("server.max_batch"), "{e}");
        let cfg: Config = toml::from_str("[users]\nexpected = 3000000000\n").unwrap();
        let e = cfg.validate().unwrap_err();
        assert!(e.to_string().contains("users.expected"), "{e}");
        let cfg: Config = toml::from_str("[users]\nexpected = 50000000\n").unwrap();
        assert!(cfg.validate().is_ok());
        let cfg: Config = toml::from_str("[server]\nworker_threads = 0\n").unwrap();
        let e = cfg.validate().unwrap_err();
        assert!(e.to_string().contains("server.worker_threads"), "{e}");
        let cfg: Config = toml::from_str("[server]\nworker_threads = 1\n").unwrap();
        assert!(cfg.validate().is_ok());
        assert_eq!(cfg.server.worker_threads(), 1);
    }

    #[test]
    fn tencent_section_rejects_unknown_keys_and_values_by_name() {
        let e = toml::from_str::<Config>("[tencent]\ndeadline = 5\n").unwrap_err();
        assert!(e.to_string().contains("deadline"), "{e}");
        let e = toml::from_str::<Config>("[tencent]\ndefault_answer = \"maybe\"\n").unwrap_err();
        assert!(e.to_string().contains("maybe"), "{e}");
        let e = toml::from_str::<Config>("[tencent]\nbid_factor_fields = [\"cpa_factor\"]\n")
            .unwrap_err();
        assert!(e.to_string().contains("cpa_factor"), "{e}");
    }

    #[test]
    fn tencent_cache_bounds_are_validated_against_each_other_and_seven_days() {
        let cfg: Config =
            toml::from_str("[tencent]\nmin_cache_seconds = 600\nmax_cache_seconds = 60\n").unwrap();
        let e = cfg.validate().unwrap_err();
        assert!(e.to_string().contains("tencent.min_cache_seconds"), "{e}");
        let cfg: Config = toml::from_str("[tencent]\nmax_cache_seconds = 604801\n").unwrap();
        let e = cfg.validate().unwrap_err();
        assert!(e.to_string().contains("tencent.max_cache_seconds"), "{e}");
        let cfg: Config = toml::from_str(
            "[tencent]\ndefault_answer = \"fail_open\"\nbid_factor_fields = [\"cpc_factor\", \"user_weight_factor\"]\n",
        )
        .unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.tencent.default_answer, FailMode::FailOpen);
    }

    #[test]
    fn the_shipped_config_file_parses_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/rta-engine.toml");
        let cfg = Config::from_path(&path).unwrap();
        assert_eq!(cfg.tencent, TencentConfig::default());
        assert_eq!(
            cfg.blacklist,
            crate::decision::blacklist::BlacklistConfig::default()
        );
        let kafka = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/rta-engine-kafka.toml");
        let cfg = Config::from_path(&kafka).unwrap();
        assert_eq!(cfg.blacklist.max_requests_per_second, 200);
        assert_eq!(cfg.kafka.unwrap().topics.len(), 6);
    }

    #[test]
    fn bad_blacklist_and_calibration_values_name_their_section() {
        let cfg: Config = toml::from_str(
            "[blacklist]
ttl_seconds = 0
",
        )
        .unwrap();
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .contains("blacklist")
        );
        // the key is named once, as the file spells it
        assert_eq!(
            cfg.validate().unwrap_err().to_string(),
            "config field `blacklist.ttl_seconds`: must be between 1 and 31536000, got 0"
        );
        let cfg: Config = toml::from_str(
            "[calibration]
half_life_seconds = 0
",
        )
        .unwrap();
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("calibration.half_life_seconds"), "{e}");
        assert!(
            toml::from_str::<Config>(
                "[blacklist]
max_rps = 3
"
            )
            .is_err()
        );
    }
}
