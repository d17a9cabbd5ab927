//! The device ids requests carry: the server's generated population
//! regenerated to learn each user's device ([`Population`]), and the draw of
//! a known or an unknown id per request.

use anyhow::{Result, bail};
use rand::Rng;
use rand_pcg::Pcg64Mcg;

use rta_engine::demo::population;
use rta_engine::domain::ids::{DeviceIdKind, DeviceKey};
use rta_engine::domain::taxonomy::Taxonomy;

use crate::args::Args;

/// A known user's primary device id, and whether it is an Android (IMEI) or an
/// iOS (IDFA) device, so that the request carries the matching type and OS.
#[derive(Clone, Copy)]
pub(crate) struct KnownDevice {
    pub(crate) key: DeviceKey,
    pub(crate) android: bool,
}

/// The device ids requests are drawn from.
pub(crate) struct Population {
    /// `known[i]` is user `i + 1`'s first device.
    pub(crate) known: Vec<KnownDevice>,
    /// Cumulative Zipf weights over `known` (None: uniform).
    zipf_cdf: Option<Vec<f64>>,
    hit_ratio: f64,
}

/// One drawn device id.
pub(crate) struct Draw {
    pub(crate) key: DeviceKey,
    pub(crate) android: bool,
}

impl Population {
    /// Regenerates the server's population (the same public generator `demo`
    /// uses) to learn each user's device id; on `--threads` threads.
    pub(crate) fn generate(args: &Args) -> Result<Self> {
        let taxonomy = Taxonomy::default_taxonomy();
        // device ids do not depend on the day, only on (seed, user)
        let today = 20_000;
        let users = if args.hit_ratio > 0.0 { args.users } else { 0 };
        let threads = args.threads as u64;
        let chunk = users.div_ceil(threads).max(1);
        let parts: Vec<Vec<KnownDevice>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let taxonomy = &taxonomy;
                    let (lo, hi) = (t * chunk + 1, ((t + 1) * chunk).min(users));
                    s.spawn(move || {
                        (lo..=hi)
                            .map(|id| known_device(args.seed, id, today, taxonomy))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        let known: Vec<KnownDevice> = parts.into_iter().flatten().collect();
        if known.len() as u64 != users {
            bail!("generated {} of {users} users' device ids", known.len());
        }
        let zipf_cdf = (args.zipf > 0.0 && !known.is_empty()).then(|| {
            let mut acc = 0.0;
            let mut cdf: Vec<f64> = (1..=known.len())
                .map(|rank| {
                    acc += (rank as f64).powf(-args.zipf);
                    acc
                })
                .collect();
            for c in &mut cdf {
                *c /= acc;
            }
            cdf
        });
        Ok(Self {
            known,
            zipf_cdf,
            hit_ratio: args.hit_ratio,
        })
    }

    /// A device id: a known user's with probability `hit_ratio`, else a random one.
    pub(crate) fn draw(&self, rng: &mut Pcg64Mcg) -> Draw {
        if !self.known.is_empty() && rng.random_bool(self.hit_ratio) {
            let i = match &self.zipf_cdf {
                Some(cdf) => {
                    let u: f64 = rng.random();
                    cdf.partition_point(|c| *c < u).min(cdf.len() - 1)
                }
                None => rng.random_range(0..self.known.len()),
            };
            let d = self.known[i];
            Draw {
                key: d.key,
                android: d.android,
            }
        } else {
            // a random md5 belongs to no user; Android-heavy like the population
            Draw {
                key: DeviceKey(rng.random()),
                android: rng.random_bool(0.7),
            }
        }
    }
}

/// User `id`'s first device: its IMEI on Android, else its IDFA.
pub(crate) fn known_device(seed: u64, id: u64, today: u16, taxonomy: &Taxonomy) -> KnownDevice {
    let profile = population::generate_user(seed, id, today, taxonomy);
    let first = profile.devices().next().unwrap_or(DeviceKey([0; 16]));
    // the generator derives Android users' IMEI from the user id, as `demo` prints
    let imei = DeviceKey::from_raw(
        DeviceIdKind::Imei,
        &format!("86{:013}", id % 10_000_000_000_000),
    );
    KnownDevice {
        key: first,
        android: imei.is_ok_and(|k| k == first),
    }
}
