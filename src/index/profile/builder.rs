//! [`ProfileBuilder`]: a profile's contents in plain vectors, in any order,
//! packed into a [`UserProfile`] block by [`ProfileBuilder::build`]. The one
//! way to make or reshape a profile; apart from the layout (`mod.rs`) so that
//! the sorting and merging rules read on their own.

use crate::domain::ids::DeviceKey;
use crate::domain::taxonomy::TagCode;

use super::vector::vector_words;
use super::{
    Attr, BehaviourCount, Day, Header, ItemKey, ItemState, MAX_VECTOR_DIMS, MAX_WORDS,
    ProfileError, UserProfile, UserVector,
};

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
