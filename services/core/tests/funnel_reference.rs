//! The funnel engine against the brute-force reference, on generated users and
//! definitions of every order mode, and the same answer whatever the order of the events
//! and however users are split into tallies that are merged (as partitions would be).

mod support;

use jiff::tz::TimeZone;
use proptest::prelude::*;
use pulse_core::analytics::funnel::{self, FunnelEngine, FunnelQuery, FunnelTally, UserFunnel};
use pulse_core::analytics::{AnalyticsEvent, Limits, by_user};
use support::generate::{SECOND, definitions, events};
use support::reference::funnel_user;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn each_user_matches_the_reference(
        def in definitions(),
        events in events(3, 8),
        from in 0i64..6,
        len in 1i64..20,
    ) {
        let (from, to) = (from * SECOND, (from + len) * SECOND);
        let engine = FunnelEngine::new(&def, from, to).expect("valid definition");
        for user in by_user(&events) {
            let got = engine.user(&user.events);
            let want = funnel_user(&def, &user.events, from, to);
            prop_assert_eq!(
                (got.level, &got.step_times, &got.breakdown),
                (want.level, &want.step_times, &want.breakdown),
                "user {} events {:?}", user.distinct_id,
                user.events.iter().map(|e| (&e.event, e.timestamp / SECOND, &e.properties)).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn order_of_events_and_split_into_partitions_do_not_matter(
        def in definitions(),
        events in events(6, 6),
        seed in any::<u64>(),
        parts in 1usize..4,
    ) {
        let query = FunnelQuery { from: 0, to: 12 * SECOND, trend: None , session_timeout: None};
        let limits = Limits::default();
        let whole = funnel::run(&def, &query, &events, None, &TimeZone::UTC, &limits).expect("runs");
        // Shuffle (a fixed permutation from the seed) and deal users to partitions. Repeated
        // ids are left out of the shuffle: which copy counts depends on the order given.
        let mut ids = std::collections::HashSet::new();
        let mut shuffled: Vec<AnalyticsEvent> =
            events.iter().filter(|e| ids.insert((e.distinct_id.clone(), e.event_id.clone()))).cloned().collect();
        let len = shuffled.len();
        for i in (1..len).rev() {
            let j = (seed.wrapping_mul(6364136223846793005).wrapping_add(i as u64) >> 7) as usize % (i + 1);
            shuffled.swap(i, j);
        }
        let engine = FunnelEngine::new(&def, query.from, query.to).expect("valid");
        let mut merged = FunnelTally::new(def.steps.len());
        for p in 0..parts {
            let mut tally = FunnelTally::new(def.steps.len());
            for user in by_user(&shuffled).iter().filter(|u| u.distinct_id.bytes().map(usize::from).sum::<usize>() % parts == p) {
                tally.add(&engine.user(&user.events));
            }
            merged.merge(tally);
        }
        prop_assert_eq!(merged.report(&def, &[], &limits).expect("report"), whole.clone());
        // The events outside the span a query reads change nothing.
        let (start, end) = funnel::event_span(&def, &query);
        let read: Vec<AnalyticsEvent> = events.iter().filter(|e| (start..end).contains(&e.timestamp)).cloned().collect();
        prop_assert_eq!(&funnel::run(&def, &query, &read, None, &TimeZone::UTC, &limits).expect("runs"), &whole);
        // And the report equals the one built from the reference's users.
        let mut reference = FunnelTally::new(def.steps.len());
        for user in by_user(&events) {
            let r = funnel_user(&def, &user.events, query.from, query.to);
            reference.add(&UserFunnel { level: r.level, step_times: r.step_times, breakdown: r.breakdown });
        }
        prop_assert_eq!(reference.report(&def, &[], &limits).expect("report"), whole);
    }

    #[test]
    fn a_range_of_periods_is_the_best_of_its_periods(
        def in definitions(),
        events in events(3, 8),
        cuts in prop::collection::btree_set(1i64..20, 0..4),
    ) {
        // The level over [0, 20 s) is the largest level over any split of it into
        // periods: what lets a pre-aggregate keep one level per user and start period.
        let mut bounds: Vec<i64> = vec![0];
        bounds.extend(cuts.iter().copied());
        bounds.push(20);
        let ranges: Vec<(i64, i64)> = bounds.windows(2).map(|w| (w[0] * SECOND, w[1] * SECOND)).collect();
        let engine = FunnelEngine::new(&def, 0, 20 * SECOND).expect("valid");
        for user in by_user(&events) {
            let whole = engine.user(&user.events).level;
            let best = engine.levels_in(&user.events, &ranges).into_iter().max().unwrap_or(0);
            prop_assert_eq!(whole, best);
        }
    }
}
