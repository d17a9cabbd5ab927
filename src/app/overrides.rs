//! Configuration from the environment, the twelve-factor way: every key of
//! the TOML file can be set by a variable named after its path,
//! `RTA__<SECTION>__<KEY>` (upper or lower case; `__` between levels), e.g.
//! `RTA__SERVER__GRPC_ADDR=0.0.0.0:50051` or `RTA__TENCENT__DEADLINE_MS=15`.
//! A value is read as a TOML value when it is one (`15`, `true`,
//! `["a", "b"]`, `{ name = "t", kind = "tags" }`) and as a string otherwise.
//! Variables win over the file; flags win over both. A variable whose value
//! does not fit its key is refused naming the variable.

use toml::{Table, Value};

use crate::app::config::{Config, ConfigError};

/// The prefix of override variables.
pub const PREFIX: &str = "RTA__";

/// One variable applied: its name and the config key it set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// The variable, e.g. `RTA__SERVER__MAX_BATCH`.
    pub var: String,
    /// The key, e.g. `server.max_batch`.
    pub key: String,
}

/// Applies the `RTA__` variables among `vars` to `doc`, checking each alone
/// against the config's shape so that a bad one is named.
pub fn apply(
    doc: &mut Table,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<Override>, ConfigError> {
    let mut applied = Vec::new();
    let mut vars: Vec<_> = vars
        .into_iter()
        .filter(|(k, _)| k.starts_with(PREFIX))
        .collect();
    // deterministic: a table variable first, then its keys
    vars.sort();
    for (var, raw) in vars {
        let refuse = |message: String| ConfigError::Env {
            var: var.clone(),
            message,
        };
        let path: Vec<String> = var[PREFIX.len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        if path.iter().any(String::is_empty) {
            return Err(refuse("an empty name between `__` separators".to_string()));
        }
        let value = parse_value(&raw);
        // alone, so that an error can only be this variable's (a section's
        // required keys missing here may come from the file or other variables)
        let mut alone = Table::new();
        insert(&mut alone, &path, value.clone()).map_err(&refuse)?;
        let text = toml::to_string(&alone).map_err(|e| refuse(e.to_string()))?;
        if let Err(e) = toml::from_str::<Config>(&text)
            && !e.message().starts_with("missing field")
        {
            return Err(refuse(e.message().to_string()));
        }
        insert(doc, &path, value).map_err(&refuse)?;
        applied.push(Override {
            key: path.join("."),
            var,
        });
    }
    Ok(applied)
}

fn parse_value(raw: &str) -> Value {
    toml::from_str::<Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(raw.to_string()))
}

fn insert(doc: &mut Table, path: &[String], value: Value) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("no key after the prefix".to_string());
    };
    let mut table = doc;
    for (i, part) in parents.iter().enumerate() {
        let entry = table
            .entry(part.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        table = match entry {
            Value::Table(t) => t,
            _ => return Err(format!("`{}` is not a table", parents[..=i].join("."))),
        };
    }
    table.insert(last.clone(), value);
    Ok(())
}

/// The effective configuration as TOML, secrets replaced by `<redacted>`:
/// token hashes, and Kafka properties that hold passwords, secrets or keys.
pub fn print(cfg: &Config) -> Result<String, ConfigError> {
    let mut value = Value::try_from(cfg).map_err(|e| ConfigError::Env {
        var: "config print".to_string(),
        message: e.to_string(),
    })?;
    redact(&mut value, false);
    toml::to_string_pretty(&value).map_err(|e| ConfigError::Env {
        var: "config print".to_string(),
        message: e.to_string(),
    })
}

const REDACTED: &str = "<redacted>";

fn secret_key(key: &str, in_properties: bool) -> bool {
    let k = key.to_ascii_lowercase();
    k == "sha256"
        || k.contains("password")
        || k.contains("secret")
        || (in_properties && (k.contains("jaas") || k.ends_with(".pem") || k.contains("token")))
}

fn redact(value: &mut Value, in_properties: bool) {
    match value {
        Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                if secret_key(k, in_properties) && !v.is_table() {
                    *v = Value::String(REDACTED.to_string());
                } else {
                    redact(v, k == "properties");
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| redact(v, in_properties)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load(file: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_toml_and_env(file, std::path::Path::new("test.toml"), vars(env))
    }

    #[test]
    fn a_variable_sets_its_key_over_the_file() {
        let cfg = load(
            "[server]\nmax_batch = 10\n",
            &[
                ("RTA__SERVER__MAX_BATCH", "20"),
                ("RTA__SERVER__GRPC_ADDR", "127.0.0.1:1"),
                // not ours: left alone
                ("OTHER", "1"),
            ],
        )
        .unwrap();
        assert_eq!(cfg.server.max_batch, 20);
        assert_eq!(cfg.server.grpc_addr.to_string(), "127.0.0.1:1");
    }

    #[test]
    fn lists_and_tables_are_toml_values() {
        let cfg = load(
            "",
            &[
                ("RTA__SERVER__MEDIA_ALLOW", r#"["10.0.0.0/8"]"#),
                (
                    "RTA__KAFKA",
                    r#"{ brokers = "k:9092", topics = [{ name = "t", kind = "tags" }] }"#,
                ),
                ("RTA__KAFKA__GROUP_ID", "g1"),
            ],
        )
        .unwrap();
        assert_eq!(cfg.server.media_allow, ["10.0.0.0/8"]);
        let kafka = cfg.kafka.unwrap();
        assert_eq!(kafka.brokers, "k:9092");
        assert_eq!(kafka.group_id.as_deref(), Some("g1"));
    }

    #[test]
    fn a_bad_variable_is_named_whichever_key_it_sets() {
        let e = load("", &[("RTA__SERVER__MAX_BATCH", "many")]).unwrap_err();
        assert!(e.to_string().contains("RTA__SERVER__MAX_BATCH"), "{e}");
        let e = load("", &[("RTA__SERVER__NO_SUCH_KEY", "1")]).unwrap_err();
        assert!(e.to_string().contains("RTA__SERVER__NO_SUCH_KEY"), "{e}");
        assert!(e.to_string().contains("no_such_key"), "{e}");
        // out of range: the field and the variable
        let e = load("", &[("RTA__SERVER__MAX_BATCH", "0")]).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("server.max_batch") && msg.contains("RTA__SERVER__MAX_BATCH"),
            "{msg}"
        );
    }

    #[test]
    fn print_shows_defaults_and_hides_secrets() {
        let cfg = load(
            "[admin]\ntokens = [{ name = \"ops\", role = \"write\", sha256 = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\" }]\n\
             [kafka]\nbrokers = \"k\"\ntopics = [{ name = \"t\", kind = \"tags\" }]\n\
             properties = { \"sasl.password\" = \"hunter2\", \"security.protocol\" = \"SASL_SSL\" }\n",
            &[],
        )
        .unwrap();
        let text = print(&cfg).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("aaaaaaaa"), "{text}");
        assert!(text.contains("SASL_SSL"), "{text}");
        assert!(text.contains("max_batch = 1000"), "{text}");
        // what it prints reads back as the same configuration
        let again: Config = toml::from_str(&text.replace("\"<redacted>\"", "\"x\""))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(again.server.max_batch, cfg.server.max_batch);
    }
}
