//! Applying validated events to the `UserIndex`.
//!
//! Apply is deterministic: the same events in the same order give the same
//! index, which is what makes snapshot + replay from the snapshot's offsets
//! exact after a crash (nothing lost, nothing counted twice).

use super::event::{
    BehaviourEvent, Event, FeedbackEvent, IdentityEvent, SkipReason, Subject, TagsEvent,
};
use crate::index::UserIndex;
use crate::index::profile::{
    Action, BehaviourCount, Day, FourA, ItemKey, ProfileBuilder, StateField, day_of,
};

/// Calendar settings apply needs.
#[derive(Debug, Clone, Copy)]
pub struct ApplyContext {
    /// Today in the business time zone (profiles touched today).
    pub today: Day,
    /// Business time zone offset, seconds east of UTC.
    pub tz_offset_secs: i32,
    /// Behaviour counts older than this many days are dropped.
    pub retention_days: u16,
}

/// Applies one event.
pub fn apply(index: &UserIndex, event: &Event, ctx: &ApplyContext) -> Result<(), SkipReason> {
    match event {
        Event::Tags(e) => tags(index, e, ctx),
        Event::Behaviour(e) => behaviour(index, e, ctx),
        Event::Feedback(e) => feedback(index, e, ctx),
        Event::Identity(e) => identity(index, e),
        Event::Vector(e) => vector(index, e, ctx),
        // blacklist changes are the decision layer's (see `EventObserver`)
        Event::Control(_) => Ok(()),
    }
}

fn vector(
    index: &UserIndex,
    e: &super::event::VectorEvent,
    ctx: &ApplyContext,
) -> Result<(), SkipReason> {
    if index.deleted_after(e.user, e.time_ms) {
        return Err(SkipReason::DeletedUser);
    }
    // a new model's vectors replace the old in place when the size holds
    let in_place = index.update_in_place(e.user, |p| {
        p.set_vector(&e.vector)?;
        p.touch(ctx.today);
        Ok::<(), crate::index::profile::ProfileError>(())
    });
    if let Some(r) = in_place {
        return r.map_err(SkipReason::from);
    }
    index.modify(e.user, |b: &mut ProfileBuilder| {
        b.touched = b.touched.max(ctx.today);
        b.vector = Some(e.vector.clone());
        Ok(())
    })
}

fn oldest_day(ctx: &ApplyContext) -> Day {
    ctx.today.saturating_sub(ctx.retention_days)
}

fn tags(index: &UserIndex, e: &TagsEvent, ctx: &ApplyContext) -> Result<(), SkipReason> {
    if index.deleted_after(e.user, e.time_ms) {
        return Err(SkipReason::DeletedUser);
    }
    index.modify(e.user, |b: &mut ProfileBuilder| {
        if e.version <= b.tag_version && b.tag_version != 0 {
            return Err(SkipReason::StaleVersion);
        }
        b.tag_version = e.version;
        b.touched = b.touched.max(ctx.today);
        b.tags
            .retain(|t| !e.replace_systems.contains(&(t >> 24)) && !e.clear.contains(t));
        b.tags.extend_from_slice(&e.set);
        for (attr, v) in &e.demographics {
            b.attr(*attr, *v);
        }
        for (item, fields) in &e.items {
            let mut st = b.item_state(*item);
            for (f, v) in fields {
                st = st.with(*f, *v);
            }
            b.items.push((*item, st)); // the builder keeps the last state per item
        }
        b.devices.extend_from_slice(&e.devices);
        Ok(())
    })
}

/// The 4A state after `action`, from `current`.
pub fn next_four_a(current: FourA, action: Action) -> FourA {
    let at_least = |s: FourA| current.max(s);
    match action {
        Action::Search | Action::Exposure => at_least(FourA::Aware),
        Action::Browse | Action::Favorite | Action::Cart | Action::Click => at_least(FourA::Appeal),
        Action::Buy | Action::Conversion => {
            if current >= FourA::Act {
                FourA::Advocate
            } else {
                FourA::Act
            }
        }
        Action::Share => FourA::Advocate,
        // our own answer says nothing about the user's relationship with a brand
        Action::Offer => current,
    }
}

fn behaviour(index: &UserIndex, e: &BehaviourEvent, ctx: &ApplyContext) -> Result<(), SkipReason> {
    if index.deleted_after(e.user, e.time_ms) {
        return Err(SkipReason::DeletedUser);
    }
    let day = day_of(e.time_ms.div_euclid(1000), ctx.tz_offset_secs);
    // fast path: an existing user, changed in place (usually no allocation);
    // behaviour older than the retention is trimmed by the expiry sweep
    let in_place = index.update_in_place(e.user, |p| {
        for item in e.items.iter().flatten() {
            p.add_count(*item, e.action, day, 1)?;
            if item.scope() != crate::index::profile::Scope::Sku {
                let st = p.item_state(*item).unwrap_or_default();
                let current = FourA::ALL[usize::from(st.get(StateField::FourA)).min(4)];
                let next = next_four_a(current, e.action);
                if next != current {
                    p.set_state(*item, StateField::FourA, next as u8)?;
                }
            }
        }
        p.touch(ctx.today);
        Ok::<(), crate::index::profile::ProfileError>(())
    });
    if let Some(r) = in_place {
        return r.map_err(SkipReason::from);
    }
    index.modify(e.user, |b: &mut ProfileBuilder| {
        b.touched = b.touched.max(ctx.today);
        for item in e.items.iter().flatten() {
            b.behaviour.push(BehaviourCount {
                item: *item,
                action: e.action,
                day,
                count: 1,
            });
            if item.scope() != crate::index::profile::Scope::Sku {
                move_four_a(b, *item, e.action);
            }
        }
        b.forget_before(oldest_day(ctx));
        Ok(())
    })
}

fn move_four_a(b: &mut ProfileBuilder, item: ItemKey, action: Action) {
    let st = b.item_state(item);
    let current = FourA::ALL[usize::from(st.get(StateField::FourA)).min(4)];
    let next = next_four_a(current, action);
    if next != current {
        b.items.push((item, st.with(StateField::FourA, next as u8)));
    }
}

fn feedback(index: &UserIndex, e: &FeedbackEvent, ctx: &ApplyContext) -> Result<(), SkipReason> {
    let user = match e.subject {
        Subject::User(u) => u,
        Subject::Device(d) => index.resolve(&[d]).ok_or(SkipReason::MissingUser)?,
    };
    if index.deleted_after(user, e.time_ms) {
        return Err(SkipReason::DeletedUser);
    }
    let day = day_of(e.time_ms.div_euclid(1000), ctx.tz_offset_secs);
    index.modify(user, |b: &mut ProfileBuilder| {
        b.touched = b.touched.max(ctx.today);
        b.behaviour.push(BehaviourCount {
            item: e.strategy,
            action: e.action,
            day,
            count: 1,
        });
        b.forget_before(oldest_day(ctx));
        Ok(())
    })
}

fn identity(index: &UserIndex, e: &IdentityEvent) -> Result<(), SkipReason> {
    match *e {
        IdentityEvent::Link {
            time_ms,
            user,
            device,
        } => {
            if index.deleted_after(user, time_ms) {
                return Err(SkipReason::DeletedUser);
            }
            index.link(device, user)?;
        }
        IdentityEvent::Unlink { device } => {
            index.unlink(device)?;
        }
        IdentityEvent::Delete { time_ms, user } => {
            index.delete_user(user, time_ms);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::DeviceKey;
    use crate::index::profile::Scope;

    const DAY_MS: i64 = 86_400_000;
    // 2026-11-23T04:00:00Z, day 2518 in UTC
    const NOW: i64 = 1_795_406_400_000;

    fn ctx() -> ApplyContext {
        ApplyContext {
            today: day_of(NOW / 1000, 0),
            tz_offset_secs: 0,
            retention_days: 90,
        }
    }

    fn cart(user: u64, t: i64) -> Event {
        Event::Behaviour(BehaviourEvent {
            user,
            time_ms: t,
            action: Action::Cart,
            items: [
                Some(ItemKey::new(Scope::Category, 1319).unwrap()),
                Some(ItemKey::new(Scope::Brand, 8557).unwrap()),
                None,
            ],
        })
    }

    #[test]
    fn behaviour_counts_per_day_and_moves_4a() {
        let idx = UserIndex::default();
        let c = ctx();
        apply(&idx, &cart(1, NOW), &c).unwrap();
        apply(&idx, &cart(1, NOW - 1000), &c).unwrap();
        apply(&idx, &cart(1, NOW - 2 * DAY_MS), &c).unwrap();
        let cat = ItemKey::new(Scope::Category, 1319).unwrap();
        let brand = ItemKey::new(Scope::Brand, 8557).unwrap();
        idx.with_profile(1, |p| {
            assert_eq!(p.count(cat, Action::Cart, c.today, c.today), 2);
            assert_eq!(p.count(brand, Action::Cart, c.today - 2, c.today), 3);
            assert_eq!(
                p.item_state(brand).unwrap().get(StateField::FourA),
                FourA::Appeal as u8
            );
        })
        .unwrap();
    }

    #[test]
    fn buying_twice_makes_an_advocate() {
        assert_eq!(next_four_a(FourA::Appeal, Action::Buy), FourA::Act);
        assert_eq!(next_four_a(FourA::Act, Action::Buy), FourA::Advocate);
        assert_eq!(next_four_a(FourA::Act, Action::Browse), FourA::Act);
        assert_eq!(next_four_a(FourA::None, Action::Search), FourA::Aware);
    }

    #[test]
    fn an_older_tag_version_never_overwrites_a_newer_one() {
        let idx = UserIndex::default();
        let t = crate::domain::taxonomy::Taxonomy::default_taxonomy();
        let g = |v: &str| t.code("target_group", v).unwrap();
        let tg = t.system("target_group").unwrap();
        let update = |version, value| {
            Event::Tags(TagsEvent {
                user: 4,
                time_ms: NOW,
                version,
                replace_systems: vec![tg],
                set: vec![g(value)],
                clear: vec![],
                demographics: vec![],
                items: vec![],
                devices: vec![DeviceKey([4; 16])],
            })
        };
        apply(&idx, &update(2, "silver"), &ctx()).unwrap();
        assert_eq!(
            apply(&idx, &update(1, "students"), &ctx()),
            Err(SkipReason::StaleVersion)
        );
        assert_eq!(
            apply(&idx, &update(2, "students"), &ctx()),
            Err(SkipReason::StaleVersion)
        );
        assert_eq!(
            idx.with_profile(4, |p| p.tags().to_vec()),
            Some(vec![g("silver")])
        );
        apply(&idx, &update(3, "students"), &ctx()).unwrap();
        assert_eq!(
            idx.with_profile(4, |p| p.tags().to_vec()),
            Some(vec![g("students")])
        );
        assert_eq!(idx.resolve(&[DeviceKey([4; 16])]), Some(4));
    }

    #[test]
    fn a_deleted_user_is_not_recreated_by_older_events() {
        let idx = UserIndex::default();
        let c = ctx();
        apply(&idx, &cart(9, NOW - 10), &c).unwrap();
        apply(
            &idx,
            &Event::Identity(IdentityEvent::Delete {
                time_ms: NOW,
                user: 9,
            }),
            &c,
        )
        .unwrap();
        assert_eq!(idx.users(), 0);
        // a late event from before the deletion (another topic, replay) is refused
        assert_eq!(
            apply(&idx, &cart(9, NOW - 5), &c),
            Err(SkipReason::DeletedUser)
        );
        assert_eq!(idx.users(), 0);
        // activity after the deletion is a new relationship
        apply(&idx, &cart(9, NOW + 5), &c).unwrap();
        assert_eq!(idx.users(), 1);
    }
}
