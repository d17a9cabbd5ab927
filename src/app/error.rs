//! Why a node could not start: each step of the start-up order has its own
//! variant, naming the file or address it was about.

use std::path::PathBuf;

use crate::app::config::ConfigError;
use crate::domain::taxonomy::TaxonomyError;
use crate::index::snapshot::SnapshotError;
use crate::ingest::kafka::IngestError;
use crate::serve::node::ServeError;
use crate::strategy::StrategyError;

/// A start-up step that failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The taxonomy file does not parse.
    #[error(transparent)]
    Taxonomy(#[from] TaxonomyError),
    /// The strategy file does not compile.
    #[error(transparent)]
    Strategies(#[from] StrategyError),
    /// A snapshot could not be restored.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The TLS certificate, key or CA could not be loaded.
    #[error(transparent)]
    Tls(#[from] crate::serve::listener::TlsError),
    /// A listener could not be started.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// Kafka ingestion could not be started.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// A start-up task panicked or was cancelled.
    #[error("start-up task: {0}")]
    Task(#[from] tokio::task::JoinError),
}
