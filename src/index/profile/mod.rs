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

mod builder;
mod vector;
mod vocabulary;

use std::alloc::{self, Layout};
use std::ptr::NonNull;

use crate::domain::ids::DeviceKey;
use crate::domain::taxonomy::TagCode;

pub use crate::domain::calendar::{Day, EPOCH_UNIX_DAY, day_of};
pub use builder::ProfileBuilder;
pub use vector::{MAX_VECTOR_DIMS, UserVector, VectorView, model_tag};
pub use vocabulary::{
    Action, Attr, BehaviourCount, FourA, ItemKey, ItemState, Level, Scope, StateField,
};

use vector::vector_words;

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

#[cfg(test)]
mod tests;
