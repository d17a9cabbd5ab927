//! One error for a configuration value out of range, whichever section it is
//! in (server, blacklist, calibration, a media endpoint) and whichever source
//! set it (the file or a flag): it names the key as the file spells it.

/// A configuration value that is out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config field `{field}`: {message}")]
pub struct FieldError {
    /// The dotted key, e.g. `tencent.deadline_ms`.
    pub field: std::borrow::Cow<'static, str>,
    /// What is wrong with its value.
    pub message: String,
}

impl FieldError {
    /// The value of `field` is wrong because of `message`.
    pub fn new(
        field: impl Into<std::borrow::Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_key_once() {
        let e = FieldError::new("blacklist.ttl_seconds", "must be 1..=31536000, got 0");
        assert_eq!(
            e.to_string(),
            "config field `blacklist.ttl_seconds`: must be 1..=31536000, got 0"
        );
    }
}
