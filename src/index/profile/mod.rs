//! `UserProfile`: everything the engine knows about one user, packed into one
//! small heap block so that 100 M users fit a single machine.
//!
//! Layout: one thin pointer to one heap block: a 28-byte header (demographics
//! inline, tag version, counts) followed by `u32` words holding, in order and
//! each sorted for binary search: device keys (4 words each), tag codes (1
//! word), per-item states (2 words: item key, packed 4A/RFM/CLV), the user
//! vector (a scale word, then int8 values four to a word), and daily
//! behaviour counts (2 words: item key, packed action/day/count). Changes go
//! through [`ProfileBuilder`] and replace the profile whole, or, for counts
//! and states, happen in place under the index shard's write lock.

use std::alloc::{self, Layout};
use std::ptr::NonNull;

use crate::domain::ids::DeviceKey;
use crate::domain::taxonomy::TagCode;

pub use crate::domain::calendar::{Day, EPOCH_UNIX_DAY, day_of};

/// Why a profile could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// Item ids have 30 bits.
    #[error("item id {0} is larger than {max}", max = ItemKey::MAX_ID)]
    ItemIdTooLarge(u64),
    /// A profile holds at most 255 devices, 65535 tags and 255 item states.
    #[error("too many {0} in one profile")]
    TooMany(&'static str),
    /// A user vector holds NaN or an infinity.
    #[error("user vector value is not finite")]
    NotFinite,
}

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
pub struct ItemKey(u32);

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
pub struct ItemState(u32);

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

    fn pack(self) -> [u32; 2] {
        [
            self.item.0,
            ((self.action as u32) << 28) | (u32::from(self.day) << 12) | u32::from(self.count),
        ]
    }

    fn unpack(w: [u32; 2]) -> Self {
        Self {
            item: ItemKey(w[0]),
            action: Action::from_code(w[1] >> 28),
            day: ((w[1] >> 12) & 0xffff) as Day,
            count: (w[1] & 0xfff) as u16,
        }
    }
}

/// The fixed part of a profile, at the start of its heap block (28 bytes,
/// 4-aligned: the tag version is kept as two halves so that the vector's
/// dimensions and model fit without padding to 32).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    tag_version: [u32; 2],
    demographics: [u8; 8],
    touched: Day,
    n_tags: u16,
    n_devices: u8,
    n_items: u8,
    /// The number of words after the header, or [`LONG`] when the number is
    /// stored as a `u32` in the first word instead (65535 words or more).
    short_len: u16,
    /// Dimensions of the user vector (0: none).
    vector_dims: u16,
    /// [`model_tag`] of the model that produced the user vector.
    vector_model: u16,
}

impl Header {
    fn tag_version(&self) -> u64 {
        u64::from(self.tag_version[0]) | (u64::from(self.tag_version[1]) << 32)
    }

    fn split_version(v: u64) -> [u32; 2] {
        [v as u32, (v >> 32) as u32]
    }
}

/// The most dimensions a user vector may have.
pub const MAX_VECTOR_DIMS: usize = 256;

/// Words a user vector of `dims` dimensions takes: its scale, then the
/// int8 values four to a word.
fn vector_words(dims: u16) -> usize {
    if dims == 0 {
        0
    } else {
        1 + usize::from(dims).div_ceil(4)
    }
}

/// A 16-bit tag of a model version string, stored with each user vector so
/// that a vector from another model generation is never scored against this
/// one's strategy vectors. Never 0 (0 means "no vector").
pub fn model_tag(version: &str) -> u16 {
    let h = version.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let t = (h ^ (h >> 16)) as u16;
    if t == 0 { 1 } else { t }
}

/// A user vector (the user tower's output), quantised to int8 with one
/// scale: 4x smaller than f32, and the dot products it feeds stay within
/// about 1 % of the float ones for the small vectors RTA models use.
#[derive(Debug, Clone, PartialEq)]
pub struct UserVector {
    /// [`model_tag`] of the model version that produced it.
    pub model: u16,
    /// Value = `scale * q`.
    pub scale: f32,
    /// The quantised values.
    pub values: Vec<i8>,
}

impl UserVector {
    /// Quantises `values` (finite, 1..=[`MAX_VECTOR_DIMS`] of them).
    pub fn quantise(model: u16, values: &[f32]) -> Result<Self, ProfileError> {
        if values.is_empty() || values.len() > MAX_VECTOR_DIMS {
            return Err(ProfileError::TooMany("vector dimensions"));
        }
        if values.iter().any(|v| !v.is_finite()) {
            return Err(ProfileError::NotFinite);
        }
        let max = values.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = if max == 0.0 { 1.0 } else { max / 127.0 };
        Ok(Self {
            model,
            scale,
            values: values
                .iter()
                .map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8)
                .collect(),
        })
    }

    fn words(&self) -> impl Iterator<Item = u32> + '_ {
        std::iter::once(self.scale.to_bits()).chain(self.values.chunks(4).map(|c| {
            c.iter()
                .rev()
                .fold(0u32, |w, v| (w << 8) | u32::from(*v as u8))
        }))
    }
}

/// A stored user vector, read in place.
#[derive(Debug, Clone, Copy)]
pub struct VectorView<'a> {
    /// [`model_tag`] of the model that produced it.
    pub model: u16,
    dims: usize,
    scale: f32,
    packed: &'a [u32],
}

impl VectorView<'_> {
    /// Its dimensions.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// The dot product with `weights` (missing weights count as 0).
    #[inline]
    pub fn dot(&self, weights: &[f32]) -> f32 {
        let mut sum = 0f32;
        for (w4, q) in weights.chunks(4).zip(self.packed) {
            for (i, w) in w4.iter().enumerate() {
                sum += f32::from((q >> (8 * i)) as u8 as i8) * w;
            }
        }
        sum * self.scale
    }

    /// The values, dequantised.
    pub fn to_f32(&self) -> Vec<f32> {
        (0..self.dims)
            .map(|i| {
                let q = self.packed[i / 4] >> (8 * (i % 4));
                f32::from(q as u8 as i8) * self.scale
            })
            .collect()
    }

    /// Back to the owned form (for rebuilding a profile).
    pub fn to_owned(&self) -> UserVector {
        UserVector {
            model: self.model,
            scale: self.scale,
            values: (0..self.dims)
                .map(|i| (self.packed[i / 4] >> (8 * (i % 4))) as u8 as i8)
                .collect(),
        }
    }
}

/// The most words one profile holds (4 MiB), whichever way it grows: building,
/// counting in place, or reading a snapshot. One bound for all three, so that
/// every profile the index holds can be written to a snapshot and read back.
pub const MAX_WORDS: usize = 1 << 20;

/// [`Header::short_len`] of a profile whose word count is in its first word.
const LONG: u16 = u16::MAX;

/// The body of [`UserProfile::empty`]: shared, never written, never freed, so
/// that evaluating an unknown device allocates nothing.
static EMPTY: Header = Header {
    tag_version: [0; 2],
    demographics: [0; 8],
    touched: 0,
    n_tags: 0,
    n_devices: 0,
    n_items: 0,
    short_len: 0,
    vector_dims: 0,
    vector_model: 0,
};

/// A user's profile. Build with [`ProfileBuilder`].
///
/// One thin pointer (8 bytes) to a single heap block: the 28-byte header, then
/// the words. Thin rather than a header plus `Box<[u32]>` (40 bytes) because
/// the index holds one per user in hash table slots that are paid for whether
/// full or not; and only 4-aligned (the address kept as two `u32` halves) so
/// that a slot of a 32-bit user id and its profile is 12 bytes, not 16.
pub struct UserProfile {
    /// The block's address, low half first (its provenance exposed).
    addr: [u32; 2],
}

// SAFETY: a profile owns its heap block exclusively, like a `Box`, and has no
// interior mutability; the shared `EMPTY` block is never written.
unsafe impl Send for UserProfile {}
// SAFETY: as above; `&UserProfile` only reads.
unsafe impl Sync for UserProfile {}

impl Drop for UserProfile {
    fn drop(&mut self) {
        if !self.is_shared_empty() {
            let layout = Self::layout(self.words().len());
            // SAFETY: allocated in `with_words` with this layout (same word count).
            unsafe { alloc::dealloc(self.body().cast(), layout) }
        }
    }
}

impl Clone for UserProfile {
    fn clone(&self) -> Self {
        if self.is_shared_empty() {
            return Self::empty();
        }
        let words = self.words();
        Self::with_words(*self.header(), words.len(), |w| w.copy_from_slice(words))
    }
}

impl PartialEq for UserProfile {
    fn eq(&self, other: &Self) -> bool {
        self.header() == other.header() && self.words() == other.words()
    }
}

impl Eq for UserProfile {}

impl std::fmt::Debug for UserProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserProfile")
            .field("demographics", &self.header().demographics)
            .field("tags", &self.tags())
            .field("items", &self.items().count())
            .field("behaviour", &self.behaviour().count())
            .finish_non_exhaustive()
    }
}

impl UserProfile {
    /// A profile with nothing known (used to evaluate unknown devices); does
    /// not allocate.
    pub fn empty() -> Self {
        Self::at(NonNull::from(&EMPTY))
    }

    /// A profile owning the block at `body` (or the shared EMPTY).
    fn at(body: NonNull<Header>) -> Self {
        let a = body.as_ptr().expose_provenance() as u64;
        Self {
            addr: [a as u32, (a >> 32) as u32],
        }
    }

    /// The block's address.
    #[inline]
    fn body(&self) -> *mut Header {
        let a = u64::from(self.addr[0]) | (u64::from(self.addr[1]) << 32);
        std::ptr::with_exposed_provenance_mut(a as usize)
    }

    /// Asks for the cache lines of the profile's block, so that the
    /// header, tags and counts arrive together instead of one miss at a
    /// time. Four lines cover a typical block (about 130 bytes, which may
    /// start anywhere in a line) and most larger ones.
    #[inline]
    pub(crate) fn prefetch(&self) {
        crate::index::prefetch::lines(self.body() as usize, 4);
    }

    fn is_shared_empty(&self) -> bool {
        std::ptr::eq(self.body(), &EMPTY)
    }

    /// The heap block of a profile with `n` words.
    fn layout(n: usize) -> Layout {
        let count_word = usize::from(n >= usize::from(LONG));
        // a profile's words are counted in u32 and exist in memory already, so
        // this is far below isize::MAX
        Layout::from_size_align(
            size_of::<Header>() + 4 * (count_word + n),
            align_of::<Header>(),
        )
        .expect("profile size fits a Layout")
    }

    /// A new block holding `header` and `n` words, which `fill` writes.
    fn with_words(mut header: Header, n: usize, fill: impl FnOnce(&mut [u32])) -> Self {
        let long = n >= usize::from(LONG);
        header.short_len = if long { LONG } else { n as u16 };
        // `build` and `read_from` bound the count; a block whose stored count
        // differed from its size could not be freed correctly, so never wrap
        let n32 = u32::try_from(n).expect("a profile has fewer than 2^32 words");
        let layout = Self::layout(n);
        // SAFETY: the layout is at least the header, never zero-sized.
        let raw = unsafe { alloc::alloc(layout) }.cast::<Header>();
        let Some(body) = NonNull::new(raw) else {
            alloc::handle_alloc_error(layout)
        };
        // SAFETY: the block is `layout` bytes, aligned for Header: the header,
        // then (when long) the count word, then `n` words, all written here
        // (zeroed before `fill` sees them).
        unsafe {
            body.as_ptr().write(header);
            let mut words = body.as_ptr().add(1).cast::<u32>();
            if long {
                words.write(n32);
                words = words.add(1);
            }
            words.write_bytes(0, n);
            fill(std::slice::from_raw_parts_mut(words, n));
        }
        Self::at(body)
    }

    #[inline]
    fn header(&self) -> &Header {
        // SAFETY: `body` always points to an initialised header (ours or EMPTY).
        unsafe { &*self.body() }
    }

    /// The header, to change it; a shared empty profile gets its own block first.
    fn header_mut(&mut self) -> &mut Header {
        if self.is_shared_empty() {
            *self = Self::with_words(EMPTY, 0, |_| {});
        }
        // SAFETY: not the shared EMPTY (replaced above) and `&mut self` is exclusive.
        unsafe { &mut *self.body() }
    }

    /// The words after the header (and after the count word, when long).
    #[inline]
    fn words(&self) -> &[u32] {
        let short = self.header().short_len;
        // SAFETY: `with_words` wrote the count and words right after the header;
        // EMPTY has short_len 0, so only a zero-length slice at its end is made.
        unsafe {
            let words = self.body().add(1).cast::<u32>();
            if short == LONG {
                std::slice::from_raw_parts(words.add(1), *words as usize)
            } else {
                std::slice::from_raw_parts(words, usize::from(short))
            }
        }
    }

    fn words_mut(&mut self) -> &mut [u32] {
        if self.is_shared_empty() {
            return &mut [];
        }
        let n = self.words().len();
        let long = self.header().short_len == LONG;
        // SAFETY: as in `words`, the block is ours (not EMPTY) and `&mut self` is exclusive.
        unsafe {
            let words = self.body().add(1).cast::<u32>();
            std::slice::from_raw_parts_mut(words.add(usize::from(long)), n)
        }
    }

    fn device_end(&self) -> usize {
        4 * usize::from(self.header().n_devices)
    }
    fn tag_end(&self) -> usize {
        self.device_end() + usize::from(self.header().n_tags)
    }
    fn item_end(&self) -> usize {
        self.tag_end() + 2 * usize::from(self.header().n_items)
    }
    fn vector_end(&self) -> usize {
        self.item_end() + vector_words(self.header().vector_dims)
    }

    /// The user vector, if the offline model has sent one.
    #[inline]
    pub fn vector(&self) -> Option<VectorView<'_>> {
        let h = self.header();
        if h.vector_dims == 0 {
            return None;
        }
        let w = &self.words()[self.item_end()..self.vector_end()];
        let (scale, packed) = w.split_first()?;
        Some(VectorView {
            model: h.vector_model,
            dims: usize::from(h.vector_dims),
            scale: f32::from_bits(*scale),
            packed,
        })
    }

    /// Replaces the user vector: in place when the dimensions are unchanged
    /// (no allocation), else by rebuilding the block.
    pub fn set_vector(&mut self, v: &UserVector) -> Result<(), ProfileError> {
        let dims = u16::try_from(v.values.len())
            .ok()
            .filter(|d| *d > 0 && usize::from(*d) <= MAX_VECTOR_DIMS)
            .ok_or(ProfileError::TooMany("vector dimensions"))?;
        let (start, end) = (self.item_end(), self.vector_end());
        let new_len = vector_words(dims);
        if self.words().len() - (end - start) + new_len > MAX_WORDS {
            return Err(ProfileError::TooMany("behaviour counts"));
        }
        if dims == self.header().vector_dims && !self.is_shared_empty() {
            for (w, new) in self.words_mut()[start..end].iter_mut().zip(v.words()) {
                *w = new;
            }
            self.header_mut().vector_model = v.model;
            return Ok(());
        }
        let old = self.words();
        let mut header = *self.header();
        header.vector_dims = dims;
        header.vector_model = v.model;
        let n = old.len() - (end - start) + new_len;
        let grown = Self::with_words(header, n, |w| {
            w[..start].copy_from_slice(&old[..start]);
            for (slot, new) in w[start..start + new_len].iter_mut().zip(v.words()) {
                *slot = new;
            }
            w[start + new_len..].copy_from_slice(&old[end..]);
        });
        *self = grown;
        Ok(())
    }

    /// Every demographic attribute's value, in [`Attr`] order (0 = unknown).
    #[inline]
    pub fn demographics(&self) -> [u8; 8] {
        self.header().demographics
    }

    /// The value of a demographic attribute (0 = unknown).
    #[inline]
    pub fn attr(&self, a: Attr) -> u8 {
        self.header().demographics[a as usize]
    }

    /// The day the profile was last changed (for expiry).
    pub fn touched(&self) -> Day {
        self.header().touched
    }

    /// The version of the last tag-platform update applied.
    pub fn tag_version(&self) -> u64 {
        self.header().tag_version()
    }

    /// The devices linked to this user.
    pub fn devices(&self) -> impl Iterator<Item = DeviceKey> + '_ {
        self.words()[..self.device_end()].chunks_exact(4).map(|w| {
            let mut k = [0u8; 16];
            for (i, word) in w.iter().enumerate() {
                k[4 * i..4 * i + 4].copy_from_slice(&word.to_le_bytes());
            }
            DeviceKey(k)
        })
    }

    /// The user's tags, sorted.
    #[inline]
    pub fn tags(&self) -> &[TagCode] {
        &self.words()[self.device_end()..self.tag_end()]
    }

    /// True if the user holds at least one of `codes`.
    #[inline]
    pub fn has_any_tag(&self, codes: &[TagCode]) -> bool {
        let tags = self.tags();
        if codes.len() < tags.len() {
            codes.iter().any(|c| tags.binary_search(c).is_ok())
        } else {
            tags.iter().any(|t| codes.binary_search(t).is_ok())
        }
    }

    fn item_words(&self) -> &[[u32; 2]] {
        self.words()[self.tag_end()..self.item_end()]
            .as_chunks::<2>()
            .0
    }

    fn behaviour_words(&self) -> &[[u32; 2]] {
        self.words()[self.vector_end()..].as_chunks::<2>().0
    }

    /// The state with `item`, if any is known.
    #[inline]
    pub fn item_state(&self, item: ItemKey) -> Option<ItemState> {
        let w = self.item_words();
        w.binary_search_by_key(&item.0, |e| e[0])
            .ok()
            .map(|i| ItemState(w[i][1]))
    }

    /// All item states, sorted by item.
    pub fn items(&self) -> impl Iterator<Item = (ItemKey, ItemState)> + '_ {
        self.item_words()
            .iter()
            .map(|w| (ItemKey(w[0]), ItemState(w[1])))
    }

    /// All behaviour counts, sorted by item, action, day.
    pub fn behaviour(&self) -> impl Iterator<Item = BehaviourCount> + '_ {
        self.behaviour_words()
            .iter()
            .map(|w| BehaviourCount::unpack(*w))
    }

    /// How often `action` was done on `item` on days `from..=to`.
    #[inline]
    pub fn count(&self, item: ItemKey, action: Action, from: Day, to: Day) -> u32 {
        let w = self.behaviour_words();
        let lo = [item.0, ((action as u32) << 28) | (u32::from(from) << 12)];
        let start = w.partition_point(|e| *e < lo);
        let mut n = 0u32;
        for e in &w[start..] {
            let b = BehaviourCount::unpack(*e);
            if e[0] != item.0 || b.action != action || b.day > to {
                break;
            }
            n += u32::from(b.count);
        }
        n
    }

    /// How often `action` was done on any strategy (media feedback) on days
    /// `from..=to`: a user's exposures across strategies, for overall caps
    /// and anti-cheat rules. Strategy keys sort last, so this reads only them.
    pub fn feedback_total(&self, action: Action, from: Day, to: Day) -> u32 {
        let w = self.behaviour_words();
        let first = (Scope::Strategy as u32) << 30;
        let start = w.partition_point(|e| e[0] < first);
        w[start..]
            .iter()
            .map(|e| BehaviourCount::unpack(*e))
            .filter(|b| b.action == action && (from..=to).contains(&b.day))
            .map(|b| u32::from(b.count))
            .sum()
    }

    /// Adds `count` to the day's count of `action` on `item`: in place when the
    /// day already has a record (no allocation), else by inserting one record.
    /// The fast path of behaviour and feedback ingestion. Fails, changing
    /// nothing, when a new record would take the profile past [`MAX_WORDS`].
    pub fn add_count(
        &mut self,
        item: ItemKey,
        action: Action,
        day: Day,
        count: u16,
    ) -> Result<(), ProfileError> {
        let start = self.vector_end();
        let key = (item.0, ((action as u32) << 16) | u32::from(day));
        let recs = self.words()[start..].as_chunks::<2>().0;
        let pos = recs.partition_point(|r| (r[0], r[1] >> 12) < key);
        if let Some(r) = recs.get(pos)
            && (r[0], r[1] >> 12) == key
        {
            let at = start + 2 * pos + 1;
            let words = self.words_mut();
            let w = words[at];
            let sum = ((w & 0xfff) + u32::from(count)).min(u32::from(BehaviourCount::MAX));
            words[at] = (w & !0xfff) | sum;
            return Ok(());
        }
        if self.words().len() + 2 > MAX_WORDS {
            return Err(ProfileError::TooMany("behaviour counts"));
        }
        let rec = BehaviourCount {
            item,
            action,
            day,
            count: count.min(BehaviourCount::MAX),
        }
        .pack();
        self.insert_words(start + 2 * pos, &rec);
        Ok(())
    }

    /// Sets one state field of `item`, in place when the item has a state.
    /// Fails only when the profile already holds 255 item states.
    pub fn set_state(
        &mut self,
        item: ItemKey,
        field: StateField,
        code: u8,
    ) -> Result<(), ProfileError> {
        let (start, end) = (self.tag_end(), self.item_end());
        let recs = self.words()[start..end].as_chunks::<2>().0;
        match recs.binary_search_by_key(&item.0, |r| r[0]) {
            Ok(i) => {
                let at = start + 2 * i + 1;
                let words = self.words_mut();
                words[at] = ItemState(words[at]).with(field, code).0;
            }
            Err(i) => {
                let n_items = self
                    .header()
                    .n_items
                    .checked_add(1)
                    .ok_or(ProfileError::TooMany("item states"))?;
                self.header_mut().n_items = n_items;
                self.insert_words(
                    start + 2 * i,
                    &[item.0, ItemState::default().with(field, code).0],
                );
            }
        }
        Ok(())
    }

    /// Marks the profile as changed on `day` (for expiry).
    pub fn touch(&mut self, day: Day) {
        if day > self.header().touched {
            self.header_mut().touched = day;
        }
    }

    /// Replaces the block by one with `new` inserted at word `at`.
    fn insert_words(&mut self, at: usize, new: &[u32]) {
        let old = self.words();
        let grown = Self::with_words(*self.header(), old.len() + new.len(), |w| {
            w[..at].copy_from_slice(&old[..at]);
            w[at..at + new.len()].copy_from_slice(new);
            w[at + new.len()..].copy_from_slice(&old[at..]);
        });
        *self = grown;
    }

    /// Heap bytes owned by this profile: header and words (excluding allocator
    /// overhead; 0 for [`UserProfile::empty`]).
    pub fn heap_bytes(&self) -> usize {
        if self.is_shared_empty() {
            0
        } else {
            Self::layout(self.words().len()).size()
        }
    }

    /// Writes the profile in the snapshot encoding (little-endian, header then words).
    pub fn write_to(&self, w: &mut impl std::io::Write) -> std::io::Result<()> {
        let h = self.header();
        let words = self.words();
        w.write_all(&h.demographics)?;
        w.write_all(&h.tag_version().to_le_bytes())?;
        w.write_all(&h.touched.to_le_bytes())?;
        w.write_all(&h.n_tags.to_le_bytes())?;
        w.write_all(&[h.n_devices, h.n_items])?;
        w.write_all(&h.vector_dims.to_le_bytes())?;
        w.write_all(&h.vector_model.to_le_bytes())?;
        w.write_all(&(words.len() as u32).to_le_bytes())?;
        for word in words {
            w.write_all(&word.to_le_bytes())?;
        }
        Ok(())
    }

    /// Reads a profile written by [`UserProfile::write_to`], checking that its
    /// counts fit its words (a corrupt file yields an error, never a bad profile).
    pub fn read_from(r: &mut impl std::io::Read) -> std::io::Result<Self> {
        Self::read_encoded(r, true)
    }

    /// Reads a profile of the previous snapshot format (`RTASNAP2`: no
    /// vector fields), so that an upgrade restores its snapshots.
    pub fn read_from_v2(r: &mut impl std::io::Read) -> std::io::Result<Self> {
        Self::read_encoded(r, false)
    }

    fn read_encoded(r: &mut impl std::io::Read, with_vector: bool) -> std::io::Result<Self> {
        let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
        // demographics 8, tag_version 8, touched 2, n_tags 2, n_devices 1,
        // n_items 1, [vector_dims 2, vector_model 2,] n_words 4
        let mut h = [0u8; 30];
        if with_vector {
            r.read_exact(&mut h)?;
        } else {
            r.read_exact(&mut h[..22])?;
            r.read_exact(&mut h[26..])?;
        }
        let mut demographics = [0u8; 8];
        demographics.copy_from_slice(&h[0..8]);
        let mut v = [0u8; 8];
        v.copy_from_slice(&h[8..16]);
        let tag_version = u64::from_le_bytes(v);
        let touched = u16::from_le_bytes([h[16], h[17]]);
        let n_tags = u16::from_le_bytes([h[18], h[19]]);
        let (n_devices, n_items) = (h[20], h[21]);
        let vector_dims = u16::from_le_bytes([h[22], h[23]]);
        let vector_model = u16::from_le_bytes([h[24], h[25]]);
        let n_words = u32::from_le_bytes([h[26], h[27], h[28], h[29]]) as usize;
        if usize::from(vector_dims) > MAX_VECTOR_DIMS {
            return Err(bad("profile vector has too many dimensions"));
        }
        let fixed = 4 * usize::from(n_devices)
            + usize::from(n_tags)
            + 2 * usize::from(n_items)
            + vector_words(vector_dims);
        if n_words < fixed || !(n_words - fixed).is_multiple_of(2) || n_words > MAX_WORDS {
            return Err(bad("profile counts do not fit its words"));
        }
        let header = Header {
            tag_version: Header::split_version(tag_version),
            demographics,
            touched,
            n_tags,
            n_devices,
            n_items,
            short_len: 0,
            vector_dims,
            vector_model,
        };
        // straight into the profile's block, through a small stack buffer:
        // restoring a snapshot reads millions of these
        let mut read = Ok(());
        let profile = Self::with_words(header, n_words, |words| {
            let mut buf = [0u8; 256];
            for chunk in words.chunks_mut(buf.len() / 4) {
                let bytes = &mut buf[..4 * chunk.len()];
                if let Err(e) = r.read_exact(bytes) {
                    read = Err(e);
                    return;
                }
                for (word, c) in chunk.iter_mut().zip(bytes.chunks_exact(4)) {
                    *word = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
            }
        });
        read.map(|()| profile)
    }

    /// A builder holding this profile's contents, to change it.
    pub fn to_builder(&self) -> ProfileBuilder {
        let h = self.header();
        ProfileBuilder {
            demographics: h.demographics,
            tag_version: h.tag_version(),
            touched: h.touched,
            devices: self.devices().collect(),
            tags: self.tags().to_vec(),
            items: self.items().collect(),
            vector: self.vector().map(|v| v.to_owned()),
            behaviour: self.behaviour().collect(),
        }
    }
}

/// Collects a profile's contents in any order, then packs them.
#[derive(Debug, Clone, Default)]
pub struct ProfileBuilder {
    /// Demographic attribute values, indexed by [`Attr`].
    pub demographics: [u8; 8],
    /// Version of the last tag-platform update applied.
    pub tag_version: u64,
    /// The day of the last change.
    pub touched: Day,
    /// Linked devices.
    pub devices: Vec<DeviceKey>,
    /// Tag codes.
    pub tags: Vec<TagCode>,
    /// Per-item states; the last one given for an item wins.
    pub items: Vec<(ItemKey, ItemState)>,
    /// The user vector, if any.
    pub vector: Option<UserVector>,
    /// Daily behaviour counts; counts of the same item, action and day add up.
    pub behaviour: Vec<BehaviourCount>,
}

impl ProfileBuilder {
    /// Sets a demographic attribute.
    pub fn attr(&mut self, a: Attr, v: u8) -> &mut Self {
        self.demographics[a as usize] = v;
        self
    }

    /// The state held for `item` (the last one given wins, as in [`ProfileBuilder::build`]).
    pub fn item_state(&self, item: ItemKey) -> ItemState {
        self.items
            .iter()
            .rev()
            .find(|(k, _)| *k == item)
            .map(|(_, s)| *s)
            .unwrap_or_default()
    }

    /// Removes behaviour counts older than `oldest`, to slide windows.
    pub fn forget_before(&mut self, oldest: Day) -> &mut Self {
        self.behaviour.retain(|b| b.day >= oldest);
        self
    }

    /// Sorts, de-duplicates and packs into a profile.
    pub fn build(mut self) -> Result<UserProfile, ProfileError> {
        self.devices.sort();
        self.devices.dedup();
        self.tags.sort_unstable();
        self.tags.dedup();
        // stable sort keeps input order among equal keys, so the last state wins
        self.items.sort_by_key(|(k, _)| *k);
        let mut items: Vec<(ItemKey, ItemState)> = Vec::with_capacity(self.items.len());
        for (k, s) in self.items {
            match items.last_mut() {
                Some(last) if last.0 == k => last.1 = s,
                _ => items.push((k, s)),
            }
        }
        let mut packed: Vec<[u32; 2]> = self.behaviour.iter().map(|b| b.pack()).collect();
        packed.sort_unstable();
        let mut behaviour: Vec<[u32; 2]> = Vec::with_capacity(packed.len());
        for w in packed {
            match behaviour.last_mut() {
                Some(last) if last[0] == w[0] && last[1] >> 12 == w[1] >> 12 => {
                    let sum = (last[1] & 0xfff) + (w[1] & 0xfff);
                    last[1] = (last[1] & !0xfff) | sum.min(u32::from(BehaviourCount::MAX));
                }
                _ => behaviour.push(w),
            }
        }
        let n_devices =
            u8::try_from(self.devices.len()).map_err(|_| ProfileError::TooMany("devices"))?;
        let n_tags = u16::try_from(self.tags.len()).map_err(|_| ProfileError::TooMany("tags"))?;
        let n_items =
            u8::try_from(items.len()).map_err(|_| ProfileError::TooMany("item states"))?;
        let vector_dims = match &self.vector {
            None => 0,
            Some(v) => u16::try_from(v.values.len())
                .ok()
                .filter(|d| *d > 0 && usize::from(*d) <= MAX_VECTOR_DIMS)
                .ok_or(ProfileError::TooMany("vector dimensions"))?,
        };
        let n_vector = vector_words(vector_dims);
        let n_words = 4 * self.devices.len()
            + self.tags.len()
            + 2 * items.len()
            + n_vector
            + 2 * behaviour.len();
        if n_words > MAX_WORDS {
            return Err(ProfileError::TooMany("behaviour counts"));
        }
        let header = Header {
            tag_version: Header::split_version(self.tag_version),
            demographics: self.demographics,
            touched: self.touched,
            n_tags,
            n_devices,
            n_items,
            short_len: 0,
            vector_dims,
            vector_model: self.vector.as_ref().map_or(0, |v| v.model),
        };
        // written straight into the profile's block: no intermediate vector
        Ok(UserProfile::with_words(header, n_words, |words| {
            let (keys, rest) = words.split_at_mut(4 * self.devices.len());
            for (w, c) in keys
                .iter_mut()
                .zip(self.devices.iter().flat_map(|d| d.0.chunks_exact(4)))
            {
                *w = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
            let (tags, rest) = rest.split_at_mut(self.tags.len());
            tags.copy_from_slice(&self.tags);
            let (states, rest) = rest.split_at_mut(2 * items.len());
            for (w, (k, s)) in states.as_chunks_mut::<2>().0.iter_mut().zip(&items) {
                *w = [k.0, s.0];
            }
            let (vector, rest) = rest.split_at_mut(n_vector);
            if let Some(v) = &self.vector {
                for (w, new) in vector.iter_mut().zip(v.words()) {
                    *w = new;
                }
            }
            for (w, b) in rest.as_chunks_mut::<2>().0.iter_mut().zip(&behaviour) {
                *w = *b;
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(scope: Scope, id: u64) -> ItemKey {
        ItemKey::new(scope, id).unwrap()
    }

    #[test]
    fn a_profile_is_one_thin_pointer_to_a_28_byte_header_and_its_words() {
        assert_eq!(size_of::<UserProfile>(), 8);
        assert_eq!(size_of::<(u32, UserProfile)>(), 12);
        assert_eq!(size_of::<Header>(), 28);
        assert_eq!(UserProfile::empty().heap_bytes(), 0);
        let p = ProfileBuilder {
            tags: vec![1, 2, 3],
            ..Default::default()
        }
        .build()
        .unwrap();
        assert_eq!(p.heap_bytes(), 28 + 3 * 4);
    }

    #[test]
    fn counts_sum_only_the_requested_window_action_and_item() {
        let c = item(Scope::Category, 1319);
        let other = item(Scope::Brand, 1319);
        let mut b = ProfileBuilder::default();
        for (it, action, day, count) in [
            (c, Action::Browse, 100, 2),
            (c, Action::Browse, 103, 5),
            (c, Action::Browse, 106, 1),
            (c, Action::Cart, 104, 1),
            (other, Action::Browse, 104, 9),
        ] {
            b.behaviour.push(BehaviourCount {
                item: it,
                action,
                day,
                count,
            });
        }
        let p = b.build().unwrap();
        assert_eq!(p.count(c, Action::Browse, 100, 106), 8);
        assert_eq!(p.count(c, Action::Browse, 101, 105), 5);
        assert_eq!(p.count(c, Action::Browse, 107, 200), 0);
        assert_eq!(p.count(c, Action::Cart, 0, 200), 1);
        assert_eq!(p.count(c, Action::Buy, 0, 200), 0);
        assert_eq!(p.count(other, Action::Browse, 0, 200), 9);
    }

    proptest::proptest! {
        /// Counting from a binary search sums exactly the records a plain
        /// filter over all of them picks, in short and long profiles.
        #[test]
        fn counts_equal_a_plain_filter_over_the_records(
            records in proptest::collection::vec(
                (0u64..4, 0usize..3, 0u16..60, 1u16..9),
                0..120,
            ),
            (id, action, from, len) in (0u64..5, 0usize..4, 0u16..70, 0u16..40),
        ) {
            const ACTIONS: [Action; 4] =
                [Action::Browse, Action::Cart, Action::Buy, Action::Click];
            let key = |id: u64| item(Scope::Sku, id + 1);
            let mut b = ProfileBuilder::default();
            for (id, action, day, count) in records {
                b.behaviour.push(BehaviourCount {
                    item: key(id),
                    action: ACTIONS[action],
                    day,
                    count,
                });
            }
            let p = b.build().unwrap();
            let (it, action, to) = (key(id), ACTIONS[action], from + len);
            let expected: u32 = p
                .behaviour()
                .filter(|r| r.item == it && r.action == action && (from..=to).contains(&r.day))
                .map(|r| u32::from(r.count))
                .sum();
            proptest::prop_assert_eq!(p.count(it, action, from, to), expected);
        }
    }

    #[test]
    fn same_day_counts_merge_and_saturate() {
        let c = item(Scope::Sku, 7);
        let mut b = ProfileBuilder::default();
        for n in [4000, 50, 100] {
            b.behaviour.push(BehaviourCount {
                item: c,
                action: Action::Browse,
                day: 9,
                count: n,
            });
        }
        let p = b.build().unwrap();
        assert_eq!(p.behaviour().count(), 1);
        assert_eq!(p.count(c, Action::Browse, 9, 9), 4095);
    }

    #[test]
    fn devices_tags_and_states_round_trip_through_the_builder() {
        let mut b = ProfileBuilder {
            devices: vec![DeviceKey([7; 16]), DeviceKey([1; 16]), DeviceKey([7; 16])],
            tags: vec![(2 << 24) | 3, (1 << 24) | 1],
            ..Default::default()
        };
        let brand = item(Scope::Brand, 8557);
        b.items
            .push((brand, ItemState::default().with(StateField::FourA, 1)));
        b.items
            .push((brand, ItemState::default().with(StateField::FourA, 3)));
        b.attr(Attr::Age, 31);
        let p = b.build().unwrap();
        assert_eq!(
            p.devices().collect::<Vec<_>>(),
            vec![DeviceKey([1; 16]), DeviceKey([7; 16])]
        );
        assert_eq!(p.tags(), &[(1 << 24) | 1, (2 << 24) | 3]);
        assert_eq!(p.item_state(brand).unwrap().get(StateField::FourA), 3);
        assert_eq!(p.attr(Attr::Age), 31);
        assert_eq!(p.to_builder().build().unwrap(), p);
        assert!(p.has_any_tag(&[(2 << 24) | 3]));
        assert!(!p.has_any_tag(&[(2 << 24) | 4]));
    }

    #[test]
    fn profiles_round_trip_through_the_snapshot_encoding() {
        let mut b = ProfileBuilder {
            devices: vec![DeviceKey([3; 16])],
            tags: vec![5, 9],
            tag_version: 77,
            touched: 12,
            ..Default::default()
        };
        b.attr(Attr::Age, 40);
        b.behaviour.push(BehaviourCount {
            item: item(Scope::Brand, 1),
            action: Action::Buy,
            day: 3,
            count: 2,
        });
        let p = b.build().unwrap();
        let mut bytes = Vec::new();
        p.write_to(&mut bytes).unwrap();
        assert_eq!(UserProfile::read_from(&mut bytes.as_slice()).unwrap(), p);
        // a truncated or inconsistent encoding is an error
        assert!(UserProfile::read_from(&mut &bytes[..bytes.len() - 1]).is_err());
        let mut bad = bytes.clone();
        bad[18] = 200; // n_tags larger than the words
        assert!(UserProfile::read_from(&mut bad.as_slice()).is_err());
        // the previous format is the same without the 4 bytes of vector fields
        let mut v2 = bytes[..22].to_vec();
        v2.extend_from_slice(&bytes[26..]);
        assert_eq!(UserProfile::read_from_v2(&mut v2.as_slice()).unwrap(), p);
    }

    #[test]
    fn a_user_vector_round_trips_through_builds_in_place_changes_and_snapshots() {
        let mut b = ProfileBuilder {
            tags: vec![5, 9],
            ..Default::default()
        };
        b.behaviour.push(BehaviourCount {
            item: item(Scope::Brand, 1),
            action: Action::Buy,
            day: 3,
            count: 2,
        });
        let mut p = b.build().unwrap();
        assert!(p.vector().is_none());
        let v = UserVector::quantise(model_tag("m"), &[1.0, -0.5, 0.25, 0.0, 2.0]).unwrap();
        p.set_vector(&v).unwrap();
        let got = p.vector().unwrap();
        assert_eq!((got.model, got.dims()), (model_tag("m"), 5));
        assert_eq!(got.to_owned(), v);
        // the sections around it are intact
        assert_eq!(p.tags(), &[5, 9]);
        assert_eq!(p.count(item(Scope::Brand, 1), Action::Buy, 0, 10), 2);
        p.add_count(item(Scope::Brand, 1), Action::Buy, 3, 1)
            .unwrap();
        assert_eq!(p.count(item(Scope::Brand, 1), Action::Buy, 0, 10), 3);
        assert_eq!(p.vector().unwrap().to_owned(), v);
        // same size: in place; another size: rebuilt
        let w = UserVector::quantise(model_tag("m2"), &[0.0, 0.0, 0.0, 0.0, -1.0]).unwrap();
        p.set_vector(&w).unwrap();
        assert_eq!(p.vector().unwrap().to_owned(), w);
        let x = UserVector::quantise(model_tag("m3"), &[0.5; 9]).unwrap();
        p.set_vector(&x).unwrap();
        assert_eq!(p.vector().unwrap().to_owned(), x);
        assert_eq!(p.count(item(Scope::Brand, 1), Action::Buy, 0, 10), 3);
        let mut bytes = Vec::new();
        p.write_to(&mut bytes).unwrap();
        assert_eq!(UserProfile::read_from(&mut bytes.as_slice()).unwrap(), p);
        assert_eq!(p.to_builder().build().unwrap(), p);
        // dot products stay within quantisation error
        let dot = p.vector().unwrap().dot(&[1.0; 9]);
        assert!((dot - 4.5).abs() < 0.05, "{dot}");
        assert!(UserVector::quantise(1, &[f32::NAN]).is_err());
        assert!(UserVector::quantise(1, &[]).is_err());
        assert!(UserVector::quantise(1, &[0.0; MAX_VECTOR_DIMS + 1]).is_err());
    }

    #[test]
    fn the_shared_empty_profile_is_copied_before_it_changes() {
        let mut p = UserProfile::empty();
        assert_eq!(p, UserProfile::empty());
        assert_eq!(p.clone(), p);
        p.touch(7);
        p.add_count(item(Scope::Brand, 1), Action::Buy, 7, 2)
            .unwrap();
        p.set_state(item(Scope::Brand, 1), StateField::Clv, 3)
            .unwrap();
        assert_eq!(p.touched(), 7);
        assert_eq!(p.count(item(Scope::Brand, 1), Action::Buy, 0, 9), 2);
        // the shared block is untouched
        let e = UserProfile::empty();
        assert_eq!(
            (e.touched(), e.behaviour().count(), e.items().count()),
            (0, 0, 0)
        );
        assert_eq!(e.heap_bytes(), 0);
        assert_ne!(p, e);
    }

    #[test]
    fn profiles_of_65535_words_or_more_keep_their_count_in_a_word() {
        let it = item(Scope::Sku, 3);
        let mut b = ProfileBuilder {
            devices: vec![DeviceKey([5; 16])],
            tags: vec![1, 2, 3],
            ..Default::default()
        };
        // 4 + 3 + 2 * 32764 = 65535 words: just long
        for day in 0..32764 {
            b.behaviour.push(BehaviourCount {
                item: it,
                action: Action::Browse,
                day,
                count: 1,
            });
        }
        let mut p = b.clone().build().unwrap();
        assert_eq!(p.words().len(), 65535);
        assert_eq!(p.heap_bytes(), 28 + 4 + 4 * 65535);
        assert_eq!(p.devices().collect::<Vec<_>>(), vec![DeviceKey([5; 16])]);
        assert_eq!(p.tags(), &[1, 2, 3]);
        assert_eq!(p.count(it, Action::Browse, 100, 199), 100);
        assert_eq!(p.clone(), p);
        assert_eq!(p.to_builder().build().unwrap(), p);
        let mut bytes = Vec::new();
        p.write_to(&mut bytes).unwrap();
        assert_eq!(UserProfile::read_from(&mut bytes.as_slice()).unwrap(), p);
        p.add_count(it, Action::Buy, 1, 1).unwrap();
        assert_eq!(p.words().len(), 65537);
        assert_eq!(p.count(it, Action::Buy, 0, 9), 1);
        // and one word less is short again
        b.behaviour.pop();
        b.tags.pop();
        let short = b.build().unwrap();
        assert_eq!(short.words().len(), 65532);
        assert_eq!(short.heap_bytes(), 28 + 4 * 65532);
        assert_eq!(short.count(it, Action::Browse, 0, 40000), 32763);
    }

    #[test]
    fn no_profile_grows_past_what_a_snapshot_reads_back() {
        let it = item(Scope::Sku, 9);
        let records = |n: u32| -> Vec<BehaviourCount> {
            (0..n)
                .map(|i| BehaviourCount {
                    item: ItemKey::new(Scope::Sku, u64::from(i / 1000 + 1)).unwrap(),
                    action: Action::Browse,
                    day: (i % 1000) as Day,
                    count: 1,
                })
                .collect()
        };
        // exactly MAX_WORDS: built, counted in place, written and read back
        let mut p = ProfileBuilder {
            behaviour: records((MAX_WORDS / 2) as u32),
            ..Default::default()
        }
        .build()
        .unwrap();
        assert_eq!(p.words().len(), MAX_WORDS);
        let first = ItemKey::new(Scope::Sku, 1).unwrap();
        p.add_count(first, Action::Browse, 0, 1).unwrap();
        assert_eq!(p.count(first, Action::Browse, 0, 0), 2);
        // a new record would not fit: refused, nothing changed
        assert_eq!(
            p.add_count(it, Action::Buy, 5, 1),
            Err(ProfileError::TooMany("behaviour counts"))
        );
        assert_eq!(p.words().len(), MAX_WORDS);
        let mut bytes = Vec::new();
        p.write_to(&mut bytes).unwrap();
        assert_eq!(UserProfile::read_from(&mut bytes.as_slice()).unwrap(), p);
        // and a builder cannot make a larger one
        let too_big = ProfileBuilder {
            behaviour: records((MAX_WORDS / 2) as u32 + 1),
            ..Default::default()
        };
        assert_eq!(
            too_big.build(),
            Err(ProfileError::TooMany("behaviour counts"))
        );
    }

    #[test]
    fn in_place_counts_and_states_equal_a_rebuild() {
        let brand = item(Scope::Brand, 8557);
        let cat = item(Scope::Category, 1319);
        let mut b = ProfileBuilder {
            devices: vec![DeviceKey([1; 16])],
            tags: vec![3],
            ..Default::default()
        };
        b.behaviour.push(BehaviourCount {
            item: cat,
            action: Action::Browse,
            day: 10,
            count: 1,
        });
        let mut fast = b.clone().build().unwrap();
        for (it, action, day) in [
            (cat, Action::Browse, 10),
            (cat, Action::Cart, 10),
            (brand, Action::Browse, 9),
            (cat, Action::Browse, 11),
            (brand, Action::Browse, 9),
        ] {
            fast.add_count(it, action, day, 1).unwrap();
            b.behaviour.push(BehaviourCount {
                item: it,
                action,
                day,
                count: 1,
            });
        }
        fast.set_state(brand, StateField::FourA, 2).unwrap();
        fast.set_state(cat, StateField::Clv, 3).unwrap();
        fast.set_state(brand, StateField::FourA, 3).unwrap();
        b.items
            .push((brand, ItemState::default().with(StateField::FourA, 3)));
        b.items
            .push((cat, ItemState::default().with(StateField::Clv, 3)));
        assert_eq!(fast, b.build().unwrap());
        assert_eq!(fast.count(cat, Action::Browse, 10, 10), 2);
        assert_eq!(fast.count(brand, Action::Browse, 0, 99), 2);
    }

    #[test]
    fn item_ids_beyond_30_bits_are_rejected() {
        assert!(ItemKey::new(Scope::Sku, 1 << 30).is_err());
        let k = ItemKey::new(Scope::Sku, (1 << 30) - 1).unwrap();
        assert_eq!((k.scope(), k.id()), (Scope::Sku, (1 << 30) - 1));
    }

    #[test]
    fn days_count_from_2020_in_the_business_time_zone() {
        // 2020-01-01T00:00:00Z is day 0 in UTC; 2019-12-31T20:00Z is day 0 in UTC+8
        assert_eq!(day_of(1_577_836_800, 0), 0);
        assert_eq!(day_of(1_577_836_800 - 4 * 3600, 8 * 3600), 0);
        assert_eq!(day_of(1_577_836_800 + 86_400, 0), 1);
        assert_eq!(day_of(0, 0), 0);
    }
}
