//! TLS for the listeners: one certificate and key from PEM files, optional
//! client-certificate verification (mTLS) for gRPC and admin, and a reload
//! from disk whenever the files change, without a restart (cert-manager and
//! Kubernetes Secrets rotate them in place).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use serde::Deserialize;
use tokio_rustls::TlsAcceptor;

use super::Kind;
use crate::domain::field::FieldError;

/// `[tls]`: certificate files and which listeners use them.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificates; when set, gRPC and admin clients must present a
    /// certificate it signed (media platforms present none, so the media
    /// listener never asks).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// How often the files are checked for a change.
    #[serde(default = "default_reload_interval")]
    pub reload_interval_seconds: u64,
    /// The listeners that speak TLS (`grpc`, `media`, `admin`).
    #[serde(default = "all_listeners")]
    pub listeners: Vec<String>,
}

fn default_reload_interval() -> u64 {
    30
}

fn all_listeners() -> Vec<String> {
    ["grpc", "media", "admin"].map(String::from).to_vec()
}

impl TlsConfig {
    /// Checks the listener names and the interval.
    pub fn validate(&self) -> Result<(), FieldError> {
        if let Some(bad) = self
            .listeners
            .iter()
            .find(|l| !["grpc", "media", "admin"].contains(&l.as_str()))
        {
            return Err(FieldError::new(
                "tls.listeners",
                format!("unknown listener {bad:?} (grpc, media, admin)"),
            ));
        }
        if !(1..=86_400).contains(&self.reload_interval_seconds) {
            return Err(FieldError::new(
                "tls.reload_interval_seconds",
                "must be 1..=86400",
            ));
        }
        Ok(())
    }
}

/// Why certificates could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM item.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// rustls refused the certificate, key or CA.
    #[error("tls: {0}")]
    Rejected(String),
}

/// The server configurations in use, one per listener kind.
struct Loaded {
    grpc: Arc<ServerConfig>,
    media: Arc<ServerConfig>,
    admin: Arc<ServerConfig>,
}

/// Modification time and length of each file: a change in either reloads.
type Stamp = Vec<Option<(SystemTime, u64)>>;

/// The certificates of a node, swapped in place when their files change.
pub struct TlsFiles {
    config: TlsConfig,
    current: ArcSwap<Loaded>,
    stamp: Mutex<Stamp>,
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFiles")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl TlsFiles {
    /// Loads the files once; an error here stops the start.
    pub fn load(config: TlsConfig) -> Result<Self, TlsError> {
        let stamp = stamp(&config);
        let loaded = build(&config)?;
        Ok(Self {
            config,
            current: ArcSwap::from_pointee(loaded),
            stamp: Mutex::new(stamp),
        })
    }

    /// Whether `kind`'s listener speaks TLS.
    pub fn applies_to(&self, kind: Kind) -> bool {
        self.config.listeners.iter().any(|l| l == kind.label())
    }

    /// The configured check interval.
    pub fn reload_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.config.reload_interval_seconds)
    }

    /// An acceptor with the certificates in use now.
    pub fn acceptor(&self, kind: Kind) -> TlsAcceptor {
        let loaded = self.current.load();
        TlsAcceptor::from(match kind {
            Kind::Grpc => loaded.grpc.clone(),
            Kind::Media => loaded.media.clone(),
            Kind::Admin => loaded.admin.clone(),
        })
    }

    /// Reloads when a file changed since the last look: `Ok(true)` when new
    /// certificates serve from now on, `Ok(false)` when nothing changed. On
    /// error the certificates in use keep serving, and the same files are not
    /// retried until they change again.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = stamp(&self.config);
        {
            let mut last = self.stamp.lock().unwrap_or_else(|p| p.into_inner());
            if *last == now {
                return Ok(false);
            }
            *last = now;
        }
        let loaded = build(&self.config)?;
        self.current.store(Arc::new(loaded));
        Ok(true)
    }
}

fn stamp(config: &TlsConfig) -> Stamp {
    [
        Some(&config.cert),
        Some(&config.key),
        config.client_ca.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|p| {
        std::fs::metadata(p)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())))
    })
    .collect()
}

fn file_error(path: &Path, message: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

fn build(config: &TlsConfig) -> Result<Loaded, TlsError> {
    let chain = certificates(&config.cert)?;
    let key = PrivateKeyDer::from_pem_file(&config.key).map_err(|e| file_error(&config.key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = match &config.client_ca {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in certificates(path)? {
                roots
                    .add(ca)
                    .map_err(|e| file_error(path, format!("not a CA certificate: {e}")))?;
            }
            Some(
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| TlsError::Rejected(e.to_string()))?,
            )
        }
        None => None,
    };
    let server = |client_auth: bool, alpn: &[&[u8]]| -> Result<Arc<ServerConfig>, TlsError> {
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Rejected(e.to_string()))?;
        let builder = match (&verifier, client_auth) {
            (Some(v), true) => builder.with_client_cert_verifier(v.clone()),
            _ => builder.with_no_client_auth(),
        };
        let mut server = builder
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| TlsError::Rejected(e.to_string()))?;
        server.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(server))
    };
    Ok(Loaded {
        grpc: server(true, &[b"h2"])?,
        media: server(false, &[b"h2", b"http/1.1"])?,
        admin: server(true, &[b"h2", b"http/1.1"])?,
    })
}
