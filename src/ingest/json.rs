//! JSON spellings of the event enums: a lower-case name (`"cart"`,
//! `"category"`, `"exposure"`, `"delete_user"`) or the protobuf number.

use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::pb;

#[derive(Deserialize)]
#[serde(untagged)]
enum NameOrNumber {
    Name(String),
    Number(i32),
}

fn parse<'de, D: Deserializer<'de>>(
    d: D,
    what: &str,
    names: &[(&str, i32)],
) -> Result<i32, D::Error> {
    match NameOrNumber::deserialize(d)? {
        NameOrNumber::Number(n) => Ok(n),
        NameOrNumber::Name(s) => names
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, v)| *v)
            .ok_or_else(|| de::Error::custom(format!("unknown {what} `{s}`"))),
    }
}

/// `ItemState.scope`.
pub fn item_scope<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    use pb::ItemScope as S;
    parse(
        d,
        "scope",
        &[
            ("category", S::Category as i32),
            ("brand", S::Brand as i32),
            ("sku", S::Sku as i32),
        ],
    )
}

/// `BehaviourEvent.action`.
pub fn action<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    use pb::Action as A;
    parse(
        d,
        "action",
        &[
            ("browse", A::Browse as i32),
            ("search", A::Search as i32),
            ("favorite", A::Favorite as i32),
            ("cart", A::Cart as i32),
            ("buy", A::Buy as i32),
            ("share", A::Share as i32),
        ],
    )
}

/// `FeedbackEvent.kind`.
pub fn feedback_kind<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    use pb::FeedbackKind as K;
    parse(
        d,
        "feedback kind",
        &[
            ("exposure", K::Exposure as i32),
            ("click", K::Click as i32),
            ("conversion", K::Conversion as i32),
            ("fraud", K::Fraud as i32),
        ],
    )
}

/// `BlacklistCommand.op`.
pub fn blacklist_op<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    use pb::BlacklistOp as O;
    parse(
        d,
        "blacklist op",
        &[("add", O::Add as i32), ("remove", O::Remove as i32)],
    )
}

/// `IdentityEvent.change`.
pub fn identity_change<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    use pb::IdentityChange as C;
    parse(
        d,
        "identity change",
        &[
            ("link", C::Link as i32),
            ("unlink", C::Unlink as i32),
            ("delete_user", C::DeleteUser as i32),
        ],
    )
}
