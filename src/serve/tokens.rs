//! Bearer tokens, each with a name and a role, configured as SHA-256 hashes
//! (never the clear token) and compared in constant time: who may use the
//! admin API and, when any are configured, who may call `Decide`.
//!
//! On the admin API, `read` may look (profiles, explain, strategies, the
//! blacklist, calibration) and `write` may also change (reload, blacklist
//! edits, recalibration); `/metrics` and the health checks stay open on the
//! admin listener, as Prometheus and probes expect. A `Decide` caller's token
//! needs `read`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::domain::field::FieldError;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read-only requests (`GET`).
    Read,
    /// Every request, mutations included.
    Write,
}

/// One configured token: `{ name = "ops", role = "write", sha256 = "<64 hex>" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Who holds it: named in the audit log instead of the token.
    pub name: String,
    /// What it may do (`read` when not given).
    #[serde(default = "read")]
    pub role: Role,
    /// `sha256(token)` in hex: `printf %s "$TOKEN" | sha256sum`.
    pub sha256: String,
    /// `Decide` callers only: the strategy ids this caller may ask about
    /// (empty: all). A caller naming another strategy gets
    /// `PERMISSION_DENIED`; one naming none is answered for these only.
    #[serde(default)]
    pub strategies: Vec<String>,
}

fn read() -> Role {
    Role::Read
}

/// The `[admin]` configuration section.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Tokens, as hashes.
    pub tokens: Vec<TokenEntry>,
    /// A TOML file with more `[[tokens]]` (e.g. a mounted Kubernetes Secret).
    pub tokens_file: Option<PathBuf>,
    /// Longest TTL of a blacklist entry added through the API, seconds.
    pub max_ttl_seconds: Option<u64>,
    /// Most blacklist entries one token may hold.
    pub max_entries_per_token: Option<usize>,
    /// Mutations per second per token, sustained.
    pub mutations_per_second: Option<f64>,
    /// Mutations a token may make at once before the rate applies.
    pub mutation_burst: Option<u32>,
}

impl AdminConfig {
    /// The operator limits, defaults filled in.
    pub fn limits(&self) -> crate::serve::admin_policy::AdminLimits {
        let d = crate::serve::admin_policy::AdminLimits::default();
        crate::serve::admin_policy::AdminLimits {
            max_ttl_seconds: self.max_ttl_seconds.unwrap_or(d.max_ttl_seconds),
            max_entries_per_token: self
                .max_entries_per_token
                .unwrap_or(d.max_entries_per_token),
            mutations_per_second: self.mutations_per_second.unwrap_or(d.mutations_per_second),
            mutation_burst: self.mutation_burst.unwrap_or(d.mutation_burst),
        }
    }
}

/// Tokens given by the environment: `RTA_ADMIN_TOKENS="name:role:sha256,..."`.
pub const TOKENS_ENV: &str = "RTA_ADMIN_TOKENS";

/// The `[grpc]` configuration section: who may call `Decide` and `BatchDecide`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// Callers' tokens, as hashes, sent as `authorization: Bearer <token>`
    /// metadata. None: any caller that reaches the port may decide.
    pub client_tokens: Vec<TokenEntry>,
}

/// Why a request was not let in: the `reason` label of
/// `rta_admin_auth_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A token no entry has.
    Invalid,
    /// A known token whose role does not allow the request.
    Forbidden,
}

impl AuthFailure {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Invalid => "invalid",
            Self::Forbidden => "forbidden",
        }
    }
}

#[derive(Debug, Clone)]
struct Token {
    name: String,
    role: Role,
    hash: [u8; 32],
    scope: Option<Arc<[String]>>,
}

/// A `Decide` caller let in: its token's name and the strategies it may ask
/// about (`None`: all).
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's configured name.
    pub name: String,
    /// The strategy ids it is restricted to.
    pub scope: Option<Arc<[String]>>,
}

/// The tokens the admin API accepts.
#[derive(Debug, Clone, Default)]
pub struct BearerTokens {
    tokens: Vec<Token>,
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// `sha256(token)` in hex, as a [`TokenEntry`] holds it.
pub fn token_sha256_hex(token: &str) -> String {
    hex::encode(sha256(token.as_bytes()))
}

impl BearerTokens {
    /// Tokens from configured entries; a hash that is not 64 hex digits is an
    /// error naming the token's entry (by name, never by value).
    pub fn from_entries(entries: &[TokenEntry]) -> Result<Self, FieldError> {
        let mut tokens = Vec::with_capacity(entries.len());
        for e in entries {
            let mut hash = [0u8; 32];
            hex::decode_to_slice(&e.sha256, &mut hash).map_err(|_| {
                FieldError::new(
                    "admin.tokens",
                    format!("token `{}`: sha256 must be 64 hex digits", e.name),
                )
            })?;
            if e.name.is_empty() {
                return Err(FieldError::new("admin.tokens", "a token needs a name"));
            }
            tokens.push(Token {
                name: e.name.clone(),
                role: e.role,
                hash,
                scope: (!e.strategies.is_empty()).then(|| e.strategies.clone().into()),
            });
        }
        Ok(Self { tokens })
    }

    /// Every configured source together: the section's tokens, its
    /// `tokens_file`, and [`TOKENS_ENV`] when `env` has it.
    pub fn from_config(cfg: &AdminConfig, env: Option<&str>) -> Result<Self, FieldError> {
        let mut entries = cfg.tokens.clone();
        if let Some(path) = &cfg.tokens_file {
            entries.extend(read_tokens_file(path)?);
        }
        if let Some(env) = env {
            entries.extend(parse_env(env)?);
        }
        Self::from_entries(&entries)
    }

    /// One token of `role`, for a process that makes its own (`demo`).
    pub fn single(name: &str, role: Role, token: &str) -> Self {
        Self {
            tokens: vec![Token {
                name: name.to_string(),
                role,
                hash: sha256(token.as_bytes()),
                scope: None,
            }],
        }
    }

    /// Whether no token is configured (then every admin request is refused).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The name of the token in `authorization` if it allows `needs`.
    /// Every configured hash is compared, in constant time, whatever matches.
    pub fn authorize(
        &self,
        authorization: Option<&[u8]>,
        needs: Role,
    ) -> Result<&str, AuthFailure> {
        let presented = authorization
            .and_then(|h| h.strip_prefix(b"Bearer "))
            .filter(|t| !t.is_empty())
            .ok_or(AuthFailure::Missing)?;
        let hash = sha256(presented);
        let mut found: Option<&Token> = None;
        for t in &self.tokens {
            if bool::from(t.hash.ct_eq(&hash)) {
                found = Some(t);
            }
        }
        let token = found.ok_or(AuthFailure::Invalid)?;
        if token.role < needs {
            return Err(AuthFailure::Forbidden);
        }
        Ok(&token.name)
    }

    /// The `Decide` caller of the token in `authorization`, with its scope.
    pub fn caller(&self, authorization: Option<&[u8]>) -> Result<Caller, AuthFailure> {
        let name = self.authorize(authorization, Role::Read)?;
        let scope = self
            .tokens
            .iter()
            .find(|t| t.name == name)
            .and_then(|t| t.scope.clone());
        Ok(Caller {
            name: name.to_string(),
            scope,
        })
    }

    /// Refuses admin tokens that carry a strategy scope (only `Decide`
    /// callers have one), naming the token.
    pub fn without_scopes(self, key: &'static str) -> Result<Self, FieldError> {
        match self.tokens.iter().find(|t| t.scope.is_some()) {
            Some(t) => Err(FieldError::new(
                key,
                format!(
                    "token `{}`: `strategies` applies to [grpc] client_tokens only",
                    t.name
                ),
            )),
            None => Ok(self),
        }
    }
}

fn read_tokens_file(path: &Path) -> Result<Vec<TokenEntry>, FieldError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        tokens: Vec<TokenEntry>,
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| FieldError::new("admin.tokens_file", format!("{}: {e}", path.display())))?;
    toml::from_str::<File>(&text)
        .map(|f| f.tokens)
        .map_err(|e| {
            FieldError::new(
                "admin.tokens_file",
                format!("{}: {}", path.display(), e.message()),
            )
        })
}

fn parse_env(value: &str) -> Result<Vec<TokenEntry>, FieldError> {
    value
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|item| {
            let mut parts = item.trim().splitn(3, ':');
            let (Some(name), Some(role), Some(sha256)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(FieldError::new(
                    TOKENS_ENV,
                    "expected name:role:sha256[,name:role:sha256...]",
                ));
            };
            let role = match role {
                "read" => Role::Read,
                "write" => Role::Write,
                other => {
                    return Err(FieldError::new(
                        TOKENS_ENV,
                        format!("token `{name}`: role `{other}` is not read or write"),
                    ));
                }
            };
            Ok(TokenEntry {
                name: name.to_string(),
                role,
                sha256: sha256.to_string(),
                strategies: Vec::new(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, role: Role, token: &str) -> TokenEntry {
        TokenEntry {
            name: name.into(),
            role,
            sha256: hex::encode(sha256(token.as_bytes())),
            strategies: Vec::new(),
        }
    }

    #[test]
    fn a_token_is_let_in_by_its_hash_and_only_as_far_as_its_role() {
        let auth = BearerTokens::from_entries(&[
            entry("ops", Role::Write, "s3cret-w"),
            entry("viewer", Role::Read, "s3cret-r"),
        ])
        .unwrap();
        assert_eq!(
            auth.authorize(Some(b"Bearer s3cret-w"), Role::Write),
            Ok("ops")
        );
        assert_eq!(
            auth.authorize(Some(b"Bearer s3cret-r"), Role::Read),
            Ok("viewer")
        );
        assert_eq!(
            auth.authorize(Some(b"Bearer s3cret-r"), Role::Write),
            Err(AuthFailure::Forbidden)
        );
        assert_eq!(
            auth.authorize(Some(b"Bearer s3cret-x"), Role::Read),
            Err(AuthFailure::Invalid)
        );
        assert_eq!(auth.authorize(None, Role::Read), Err(AuthFailure::Missing));
        assert_eq!(
            auth.authorize(Some(b"Basic b3BzOnB3"), Role::Read),
            Err(AuthFailure::Missing)
        );
        assert_eq!(
            auth.authorize(Some(b"Bearer "), Role::Read),
            Err(AuthFailure::Missing)
        );
    }

    #[test]
    fn no_token_configured_lets_nobody_in() {
        let auth = BearerTokens::default();
        assert!(auth.is_empty());
        assert_eq!(
            auth.authorize(Some(b"Bearer anything"), Role::Read),
            Err(AuthFailure::Invalid)
        );
    }

    #[test]
    fn tokens_come_from_the_section_a_file_and_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens.toml");
        let e = entry("from-file", Role::Read, "f");
        std::fs::write(
            &file,
            format!(
                "[[tokens]]\nname = \"from-file\"\nrole = \"read\"\nsha256 = \"{}\"\n",
                e.sha256
            ),
        )
        .unwrap();
        let cfg = AdminConfig {
            tokens: vec![entry("from-config", Role::Write, "c")],
            tokens_file: Some(file),
            ..AdminConfig::default()
        };
        let env = format!("from-env:write:{}", entry("x", Role::Write, "e").sha256);
        let auth = BearerTokens::from_config(&cfg, Some(&env)).unwrap();
        assert_eq!(
            auth.authorize(Some(b"Bearer c"), Role::Write),
            Ok("from-config")
        );
        assert_eq!(
            auth.authorize(Some(b"Bearer f"), Role::Read),
            Ok("from-file")
        );
        assert_eq!(
            auth.authorize(Some(b"Bearer e"), Role::Write),
            Ok("from-env")
        );
    }

    #[test]
    fn a_bad_hash_or_role_is_an_error_that_names_the_token_not_its_value() {
        let bad = TokenEntry {
            name: "ops".into(),
            role: Role::Write,
            sha256: "not-hex".into(),
            strategies: Vec::new(),
        };
        let e = BearerTokens::from_entries(&[bad]).unwrap_err();
        assert_eq!(e.field, "admin.tokens");
        assert!(e.message.contains("`ops`"), "{e}");
        let e = parse_env("ops:admin:00").unwrap_err();
        assert!(e.message.contains("role `admin`"), "{e}");
        assert!(parse_env("just-a-token").is_err());
    }
}
