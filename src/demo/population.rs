//! A deterministic generated population for `demo`, benchmarks and tests.
//!
//! Same seed and size, same users, on any machine: each user draws from its
//! own PCG stream seeded by `(seed, user id)`, so generation runs on all cores
//! and any single user can be regenerated alone. Distributions are meant to
//! look like a brand's first-party data: the ten target groups in plausible
//! shares, demographics consistent with each group (age, city tier, children),
//! interests per group over a small catalogue, a browse -> cart -> buy funnel
//! over the last days (purchases up to 90 days back, for repurchase windows),
//! and 4A / RFM / CLV states derived from that behaviour.

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

use crate::domain::ids::{DeviceIdKind, DeviceKey};
use crate::domain::taxonomy::Taxonomy;
use crate::index::profile::{
    Action, Attr, BehaviourCount, Day, ItemKey, ItemState, Level, ProfileBuilder, Scope,
    StateField, UserProfile,
};
use crate::index::{UserId, UserIndex};

/// Catalogue: (category, brands selling in it). The first brand is the
/// advertiser's own and is picked more often. Shared with the strategy
/// generator (`rta_testkit::generate`) so that generated audiences talk
/// about the items generated users act on.
pub const CATALOGUE: &[(u32, &[u32])] = &[
    (1319, &[8557, 8560, 8561]),       // infant formula
    (1525, &[8557, 8570, 8571]),       // diapers
    (9987, &[1001, 1002, 1003, 1004]), // phones
    (1316, &[3321, 3322, 3323, 3324]), // skincare
    (15901, &[5120, 5121]),            // light meal
    (1318, &[5120, 5130, 5131]),       // sports
    (12218, &[7001, 7002]),            // fresh food
    (737, &[2001, 2002, 2003]),        // home appliances
    (6994, &[6601, 6602]),             // pet supplies
    (670, &[1101, 1102]),              // computers
];

/// Interests of a group: (category, probability that a member shops it).
type Interests = &'static [(u32, f64)];

/// Target groups with their population share and interests.
const GROUPS: &[(&str, f64, Interests)] = &[
    (
        "urban_family",
        0.14,
        &[
            (1319, 0.35),
            (1525, 0.4),
            (12218, 0.3),
            (737, 0.2),
            (1316, 0.2),
        ],
    ),
    (
        "urban_gen_z",
        0.12,
        &[
            (9987, 0.4),
            (15901, 0.3),
            (1318, 0.3),
            (1316, 0.3),
            (670, 0.2),
            (6994, 0.15),
        ],
    ),
    (
        "urban_middle_class",
        0.10,
        &[
            (1316, 0.35),
            (9987, 0.25),
            (737, 0.3),
            (15901, 0.25),
            (1318, 0.2),
            (12218, 0.2),
            (1319, 0.1),
        ],
    ),
    (
        "urban_blue_collar",
        0.11,
        &[(9987, 0.3), (12218, 0.3), (1318, 0.1), (737, 0.15)],
    ),
    (
        "town_youth",
        0.14,
        &[(9987, 0.4), (1316, 0.2), (1318, 0.15), (670, 0.15)],
    ),
    (
        "town_middle_class",
        0.08,
        &[(737, 0.3), (1316, 0.25), (12218, 0.3), (9987, 0.2)],
    ),
    (
        "town_middle_aged",
        0.11,
        &[(12218, 0.4), (737, 0.25), (9987, 0.15)],
    ),
    (
        "town_family",
        0.10,
        &[(1319, 0.35), (1525, 0.4), (12218, 0.3), (737, 0.15)],
    ),
    (
        "students",
        0.06,
        &[(9987, 0.35), (670, 0.3), (1318, 0.2), (15901, 0.15)],
    ),
    ("silver", 0.04, &[(12218, 0.5), (737, 0.2), (9987, 0.1)]),
];

/// Interests of users without a target group (the remaining share).
const UNKNOWN_GROUP_INTERESTS: &[(u32, f64)] = &[(9987, 0.2), (12218, 0.2)];

/// Devices per generated user on average (70 % Android with an IMEI, 60 % of
/// them an OAID too; 30 % iOS with an IDFA, half of them a CAID too), to
/// pre-size an index for a population.
pub const DEVICES_PER_USER: f64 = 0.7 * (1.0 + 0.6) + 0.3 * (1.0 + 0.5);

/// Generates user `id` (1-based) of the population with `seed`, as of `today`.
pub fn generate_user(seed: u64, id: UserId, today: Day, taxonomy: &Taxonomy) -> UserProfile {
    let mut rng = Pcg64Mcg::seed_from_u64(seed ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut b = ProfileBuilder {
        touched: today,
        ..Default::default()
    };

    // identity: Android (IMEI, often OAID) or iOS (IDFA, often CAID)
    if rng.random_bool(0.7) {
        let imei = format!("86{:013}", id % 10_000_000_000_000);
        b.devices.push(key(DeviceIdKind::Imei, &imei));
        if rng.random_bool(0.6) {
            let oaid = format!("{:016x}{:016x}", rng.random::<u64>(), id);
            b.devices.push(key(DeviceIdKind::Oaid, &oaid));
        }
    } else {
        let r: u128 = rng.random();
        let idfa = format!(
            "{:08X}-{:04X}-{:04X}-{:04X}-{:012X}",
            (r >> 96) as u32,
            (r >> 80) as u16,
            (r >> 64) as u16,
            (r >> 48) as u16,
            (r as u64) & 0xffff_ffff_ffff ^ id
        );
        b.devices.push(key(DeviceIdKind::Idfa, &idfa));
        if rng.random_bool(0.5) {
            b.devices.push(DeviceKey(rng.random()));
        }
    }

    // target group and demographics consistent with it
    let mut roll: f64 = rng.random();
    let mut group = None;
    for (i, (_, share, _)) in GROUPS.iter().enumerate() {
        if roll < *share {
            group = Some(i);
            break;
        }
        roll -= share;
    }
    let name = group.map(|g| GROUPS[g].0).unwrap_or("unknown");
    if let Some(code) = taxonomy.code("target_group", name) {
        b.tags.push(code);
    }
    let urban = name.starts_with("urban");
    let family = name.ends_with("family");
    let (age_lo, age_hi) = match name {
        "students" => (16, 25),
        "urban_gen_z" => (18, 25),
        "town_youth" => (16, 35),
        "town_middle_aged" => (36, 60),
        "silver" => (56, 80),
        "urban_family" | "town_family" => (26, 45),
        "unknown" => (18, 60),
        _ => (26, 55),
    };
    if name != "unknown" || rng.random_bool(0.5) {
        b.attr(Attr::Age, rng.random_range(age_lo..=age_hi));
    }
    b.attr(
        Attr::Gender,
        if rng.random_bool(if family { 0.6 } else { 0.5 }) {
            2
        } else {
            1
        },
    );
    b.attr(
        Attr::CityTier,
        if urban {
            rng.random_range(1..=2)
        } else if name.starts_with("town") {
            rng.random_range(3..=6)
        } else {
            rng.random_range(1..=6)
        },
    );
    b.attr(
        Attr::Marital,
        if family || rng.random_bool(0.4) { 2 } else { 1 },
    );
    b.attr(
        Attr::Children,
        if family || rng.random_bool(0.25) {
            2
        } else {
            1
        },
    );
    b.attr(
        Attr::Education,
        if name == "students" {
            rng.random_range(2..=4)
        } else {
            rng.random_range(1..=6)
        },
    );
    b.attr(
        Attr::Occupation,
        match name {
            "students" => 1,
            "silver" => 7,
            "urban_blue_collar" => 3,
            _ => rng.random_range(2..=6),
        },
    );
    let spend = match name {
        "urban_middle_class" | "town_middle_class" => rng.random_range(20..=60),
        "students" | "urban_gen_z" | "town_youth" => rng.random_range(4..=20),
        _ => rng.random_range(8..=40),
    };
    b.attr(Attr::PurchasingPower, spend);

    // overlay tags
    let tag = |b: &mut ProfileBuilder, s: &str, v: &str| {
        if let Some(c) = taxonomy.code(s, v) {
            b.tags.push(c);
        }
    };
    tag(
        &mut b,
        "value_group",
        &format!("l{}", rng.random_range(0..15)),
    );
    if (urban || name == "students") && rng.random_bool(0.3) {
        tag(&mut b, "scene", "sports_nutrition");
    }
    if urban && rng.random_bool(0.25) {
        tag(&mut b, "scene", "light_meal");
    }
    if family && rng.random_bool(0.5) {
        tag(&mut b, "scene", "new_parent");
    }
    if rng.random_bool(0.08) {
        tag(&mut b, "scene", "gift_new_year");
    }
    if rng.random_bool(0.2) {
        tag(&mut b, "custom", "member");
    }
    if !urban && rng.random_bool(0.3) {
        tag(&mut b, "custom", "coupon_sensitive");
    }

    // behaviour funnel over the group's interests
    let interests = group
        .map(|g| GROUPS[g].2)
        .unwrap_or(UNKNOWN_GROUP_INTERESTS);
    for &(category, p) in interests {
        if !rng.random_bool(p) {
            continue;
        }
        let brands = CATALOGUE
            .iter()
            .find(|(c, _)| *c == category)
            .map(|(_, b)| *b)
            .unwrap_or(&[]);
        let Some(&first) = brands.first() else {
            continue;
        };
        let brand = if rng.random_bool(0.4) {
            first
        } else {
            brands[rng.random_range(0..brands.len())]
        };
        let cat = item(Scope::Category, category);
        let br = item(Scope::Brand, brand);
        let push = |b: &mut ProfileBuilder, action, days_ago: u16, count| {
            for it in [cat, br] {
                b.behaviour.push(BehaviourCount {
                    item: it,
                    action,
                    day: today.saturating_sub(days_ago),
                    count,
                });
            }
        };
        let browse_days = rng.random_range(1..=3);
        for _ in 0..browse_days {
            let ago = rng.random_range(0..7);
            let n = rng.random_range(1..=3);
            push(&mut b, Action::Browse, ago, n);
        }
        let carted = rng.random_bool(0.35);
        if carted {
            let ago = rng.random_range(0..7);
            push(&mut b, Action::Cart, ago, 1);
        }
        let mut bought = 0u16;
        let mut last_buy_ago = u16::MAX;
        if rng.random_bool(0.4) {
            let times = rng.random_range(1..=2);
            for _ in 0..times {
                let ago = rng.random_range(0..90);
                last_buy_ago = last_buy_ago.min(ago);
                push(&mut b, Action::Buy, ago, 1);
                bought += 1;
            }
        }
        let four_a = match bought {
            0 if carted || browse_days > 0 => 2,
            0 => 1,
            1 => 3,
            _ => 4,
        };
        let mut state = ItemState::default().with(StateField::FourA, four_a);
        if bought > 0 {
            let r = if last_buy_ago < 30 {
                Level::High
            } else if last_buy_ago < 60 {
                Level::Mid
            } else {
                Level::Low
            };
            let m = if spend >= 30 {
                Level::High
            } else if spend >= 15 {
                Level::Mid
            } else {
                Level::Low
            };
            state = state
                .with(StateField::RfmR, r as u8)
                .with(
                    StateField::RfmF,
                    if bought > 1 {
                        Level::High as u8
                    } else {
                        Level::Low as u8
                    },
                )
                .with(StateField::RfmM, m as u8)
                .with(StateField::Clv, rng.random_range(1..=3));
        }
        b.items.push((br, state));
    }
    // brands the user was only exposed to (4A aware)
    if rng.random_bool(0.3) {
        let (_, brands) = CATALOGUE[rng.random_range(0..CATALOGUE.len())];
        let br = item(Scope::Brand, brands[rng.random_range(0..brands.len())]);
        if !b.items.iter().any(|(k, _)| *k == br) {
            b.items
                .push((br, ItemState::default().with(StateField::FourA, 1)));
        }
    }
    // ids and counts above are in range by construction
    b.build().expect("generated profile fits its limits")
}

fn key(kind: DeviceIdKind, raw: &str) -> DeviceKey {
    DeviceKey::from_raw(kind, raw).expect("generated ids are short")
}

fn item(scope: Scope, id: u32) -> ItemKey {
    ItemKey::new(scope, u64::from(id)).expect("catalogue ids fit 30 bits")
}

/// Fills `index` with users `1..=users`, on all cores; returns the users added.
pub fn populate(index: &UserIndex, users: u64, seed: u64, today: Day, taxonomy: &Taxonomy) -> u64 {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as u64;
    let chunk = users.div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (lo, hi) = (t * chunk + 1, ((t + 1) * chunk).min(users));
            s.spawn(move || {
                for id in lo..=hi {
                    let p = generate_user(seed, id, today, taxonomy);
                    // generated devices are never doubtful and profiles fit
                    let _ = index.upsert(id, p);
                }
            });
        }
    });
    users
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_user() {
        let t = Taxonomy::default_taxonomy();
        for id in [1, 2, 999_999] {
            assert_eq!(
                generate_user(7, id, 2000, &t),
                generate_user(7, id, 2000, &t)
            );
        }
        assert_ne!(generate_user(7, 1, 2000, &t), generate_user(8, 1, 2000, &t));
    }

    #[test]
    fn target_group_shares_are_close_to_the_configured_ones() {
        let t = Taxonomy::default_taxonomy();
        let fam = t.code("target_group", "urban_family").unwrap();
        let n = 20_000;
        let hits = (1..=n)
            .filter(|id| generate_user(1, *id, 2000, &t).tags().contains(&fam))
            .count();
        let share = hits as f64 / n as f64;
        assert!((0.12..0.16).contains(&share), "urban_family share {share}");
    }

    #[test]
    fn populate_fills_every_user_with_resolvable_devices() {
        let t = Taxonomy::default_taxonomy();
        let idx = UserIndex::default();
        populate(&idx, 1000, 3, 2000, &t);
        assert_eq!(idx.users(), 1000);
        let p = generate_user(3, 500, 2000, &t);
        let dev: Vec<_> = p.devices().collect();
        assert_eq!(idx.resolve(&dev), Some(500));
    }
}
