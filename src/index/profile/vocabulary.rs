//! The vocabulary profiles are written in: scopes and item keys, actions,
//! 4A states and tiers, per-item state fields, demographic attributes and
//! daily behaviour counts. Kept apart from the packed layout (`mod.rs`) so
//! that the words the audience language and user records name can be read
//! without the unsafe code that stores them.

use super::{Day, ProfileError};

/// What an item id refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// A product category (e.g. 1319 infant formula).
    Category = 0,
    /// A brand.
    Brand = 1,
    /// A single product.
    Sku = 2,
    /// A strategy, for media feedback (exposures, clicks, conversions); the id
    /// is a 30-bit hash of the strategy id. Not addressable in audiences yet.
    Strategy = 3,
}

impl Scope {
    /// The name used in the audience language and user records.
    pub fn name(self) -> &'static str {
        match self {
            Self::Category => "category",
            Self::Brand => "brand",
            Self::Sku => "sku",
            Self::Strategy => "strategy",
        }
    }

    /// Parses [`Scope::name`] (catalogue scopes only).
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "category" => Self::Category,
            "brand" => Self::Brand,
            "sku" => Self::Sku,
            _ => return None,
        })
    }
}

/// A category, brand or SKU: the scope in the top 2 bits, the id in the low 30.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ItemKey(pub(super) u32);

impl ItemKey {
    /// The largest item id.
    pub const MAX_ID: u32 = (1 << 30) - 1;

    /// The key of item `id` in `scope`.
    pub fn new(scope: Scope, id: u64) -> Result<Self, ProfileError> {
        if id > u64::from(Self::MAX_ID) {
            return Err(ProfileError::ItemIdTooLarge(id));
        }
        Ok(Self(((scope as u32) << 30) | id as u32))
    }

    /// The scope of this key.
    pub fn scope(self) -> Scope {
        match self.0 >> 30 {
            0 => Scope::Category,
            1 => Scope::Brand,
            2 => Scope::Sku,
            _ => Scope::Strategy,
        }
    }

    /// The item id within its scope.
    pub fn id(self) -> u32 {
        self.0 & Self::MAX_ID
    }

    /// The feedback key of a strategy id (FNV-1a folded to 30 bits).
    pub fn strategy(id: &str) -> Self {
        let h = id.bytes().fold(0x811c_9dc5u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
        Self(((Scope::Strategy as u32) << 30) | (h & Self::MAX_ID))
    }

    /// The key our answers are counted under for a user cap that counts
    /// decisions (one per answer, whatever it matched): the feedback key of
    /// the empty id, which no strategy may have.
    pub fn answers() -> Self {
        Self::strategy("")
    }
}

/// An on-site behaviour (or search) a user performed on an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Viewed a product page.
    Browse = 0,
    /// Searched for the item.
    Search = 1,
    /// Added to favourites.
    Favorite = 2,
    /// Added to cart.
    Cart = 3,
    /// Bought.
    Buy = 4,
    /// Shared.
    Share = 5,
    /// Media feedback: an ad of a strategy was shown.
    Exposure = 6,
    /// Media feedback: clicked.
    Click = 7,
    /// Media feedback: converted.
    Conversion = 8,
    /// Our answer took the traffic for a strategy (counted only for caps
    /// configured to count decisions).
    Offer = 9,
}

impl Action {
    /// All actions, in code order.
    pub const ALL: [Action; 10] = [
        Self::Browse,
        Self::Search,
        Self::Favorite,
        Self::Cart,
        Self::Buy,
        Self::Share,
        Self::Exposure,
        Self::Click,
        Self::Conversion,
        Self::Offer,
    ];

    /// The on-site actions audiences can count (feedback actions are not, yet).
    pub const ON_SITE: &'static [Action] = Self::ALL.split_at(6).0;

    /// The name used in the audience language (`cart(category 1319, 7d)`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Browse => "browse",
            Self::Search => "search",
            Self::Favorite => "favorite",
            Self::Cart => "cart",
            Self::Buy => "buy",
            Self::Share => "share",
            Self::Exposure => "exposure",
            Self::Click => "click",
            Self::Conversion => "conversion",
            Self::Offer => "offer",
        }
    }

    /// Parses [`Action::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == s)
    }

    /// Parses the name of an on-site action (see [`Action::ON_SITE`]).
    pub fn on_site_from_name(s: &str) -> Option<Self> {
        Self::ON_SITE.iter().copied().find(|a| a.name() == s)
    }

    fn from_code(c: u32) -> Self {
        Self::ALL.get(c as usize).copied().unwrap_or(Self::Share)
    }
}

/// The 4A relationship of a user with a brand or category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FourA {
    /// No relationship known.
    None = 0,
    /// Aware 认知: exposed, searched.
    Aware = 1,
    /// Appeal 吸引: clicked, browsed, favourited, carted.
    Appeal = 2,
    /// Act 行动: bought.
    Act = 3,
    /// Advocate 拥护: bought again, shared.
    Advocate = 4,
}

impl FourA {
    /// All states, in order.
    pub const ALL: [FourA; 5] = [
        Self::None,
        Self::Aware,
        Self::Appeal,
        Self::Act,
        Self::Advocate,
    ];

    /// The name used in the audience language.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Aware => "aware",
            Self::Appeal => "appeal",
            Self::Act => "act",
            Self::Advocate => "advocate",
        }
    }
}

/// A three-step tier (RFM components, CLV); `Unknown` when not scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Not scored.
    Unknown = 0,
    /// Low.
    Low = 1,
    /// Middle.
    Mid = 2,
    /// High.
    High = 3,
}

impl Level {
    /// All levels, in order.
    pub const ALL: [Level; 4] = [Self::Unknown, Self::Low, Self::Mid, Self::High];

    /// The name used in the audience language.
    pub fn name(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Low => "low",
            Self::Mid => "mid",
            Self::High => "high",
        }
    }
}

/// A per-item state field the audience language can compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateField {
    /// The 4A state.
    FourA,
    /// RFM recency tier.
    RfmR,
    /// RFM frequency tier.
    RfmF,
    /// RFM monetary tier.
    RfmM,
    /// Predicted customer-lifetime-value tier.
    Clv,
}

impl StateField {
    /// All fields.
    pub const ALL: [StateField; 5] = [Self::FourA, Self::RfmR, Self::RfmF, Self::RfmM, Self::Clv];

    /// The function name in the audience language (`four_a(brand 8557)`).
    pub fn name(self) -> &'static str {
        match self {
            Self::FourA => "four_a",
            Self::RfmR => "rfm_r",
            Self::RfmF => "rfm_f",
            Self::RfmM => "rfm_m",
            Self::Clv => "clv",
        }
    }

    /// The names of this field's values, in order of their codes.
    pub fn value_names(self) -> &'static [&'static str] {
        match self {
            Self::FourA => &["none", "aware", "appeal", "act", "advocate"],
            _ => &["unknown", "low", "mid", "high"],
        }
    }

    fn shift(self) -> u32 {
        4 * self as u32
    }
}

/// A user's state with one item: 4A, RFM and CLV, 4 bits each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ItemState(pub(super) u32);

impl ItemState {
    /// The code (see [`StateField::value_names`]) of one field.
    pub fn get(self, field: StateField) -> u8 {
        ((self.0 >> field.shift()) & 0xf) as u8
    }

    /// Returns this state with one field set to `code`.
    pub fn with(self, field: StateField, code: u8) -> Self {
        let s = field.shift();
        Self((self.0 & !(0xf << s)) | (u32::from(code & 0xf) << s))
    }
}

/// Demographic attributes, one byte each; 0 means unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Attr {
    /// 1 male, 2 female.
    Gender = 0,
    /// Age in years.
    Age = 1,
    /// City tier 1..6.
    CityTier = 2,
    /// 1 single, 2 married.
    Marital = 3,
    /// 1 no children, 2 has children.
    Children = 4,
    /// Education level, ordered.
    Education = 5,
    /// Occupation code.
    Occupation = 6,
    /// Spend per order in 5-yuan buckets (1 = up to 5 yuan).
    PurchasingPower = 7,
}

impl Attr {
    /// All attributes, in slot order.
    pub const ALL: [Attr; 8] = [
        Self::Gender,
        Self::Age,
        Self::CityTier,
        Self::Marital,
        Self::Children,
        Self::Education,
        Self::Occupation,
        Self::PurchasingPower,
    ];

    /// The name used in the audience language and user records.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gender => "gender",
            Self::Age => "age",
            Self::CityTier => "city_tier",
            Self::Marital => "marital",
            Self::Children => "children",
            Self::Education => "education",
            Self::Occupation => "occupation",
            Self::PurchasingPower => "purchasing_power",
        }
    }

    /// Parses [`Attr::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == s)
    }

    /// Named values (value `i + 1` is `names[i]`) for categorical attributes;
    /// `None` for numeric ones, which are written as numbers.
    pub fn value_names(self) -> Option<&'static [&'static str]> {
        Some(match self {
            Self::Gender => &["male", "female"],
            Self::Marital => &["single", "married"],
            Self::Children => &["no", "yes"],
            Self::Education => &[
                "junior",
                "high_school",
                "college",
                "bachelor",
                "master",
                "doctor",
            ],
            Self::Occupation => &[
                "student",
                "white_collar",
                "blue_collar",
                "self_employed",
                "civil_servant",
                "farmer",
                "retired",
                "other",
            ],
            Self::Age | Self::CityTier | Self::PurchasingPower => return None,
        })
    }
}

/// One day's count of one action on one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BehaviourCount {
    /// The item acted on.
    pub item: ItemKey,
    /// What was done.
    pub action: Action,
    /// The day it was done.
    pub day: Day,
    /// How often that day (saturates at [`BehaviourCount::MAX`]).
    pub count: u16,
}

impl BehaviourCount {
    /// Counts saturate at 12 bits.
    pub const MAX: u16 = 4095;

    pub(super) fn pack(self) -> [u32; 2] {
        [
            self.item.0,
            ((self.action as u32) << 28) | (u32::from(self.day) << 12) | u32::from(self.count),
        ]
    }

    pub(super) fn unpack(w: [u32; 2]) -> Self {
        Self {
            item: ItemKey(w[0]),
            action: Action::from_code(w[1] >> 28),
            day: ((w[1] >> 12) & 0xffff) as Day,
            count: (w[1] & 0xfff) as u16,
        }
    }
}
