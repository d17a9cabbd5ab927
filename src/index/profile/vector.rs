//! User vectors: the int8-quantised output of the user tower, as built
//! ([`UserVector`]) and as read in place from a profile ([`VectorView`]).
//! Apart from the packed layout (`mod.rs`), which only stores their words.

use super::ProfileError;

/// The most dimensions a user vector may have.
pub const MAX_VECTOR_DIMS: usize = 256;

/// Words a user vector of `dims` dimensions takes: its scale, then the
/// int8 values four to a word.
pub(super) fn vector_words(dims: u16) -> usize {
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

    pub(super) fn words(&self) -> impl Iterator<Item = u32> + '_ {
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
    pub(super) dims: usize,
    pub(super) scale: f32,
    pub(super) packed: &'a [u32],
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
