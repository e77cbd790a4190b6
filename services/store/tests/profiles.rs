//! Per-user profiles on a real MongoDB-wire server (FerretDB): `$set`, `$set_once` and
//! `$unset` in stream order, property names the store cannot hold as keys, and replays of
//! an already applied run leaving the profile as it was.

use futures::TryStreamExt;
use pulse_core::buffer::BufferedEvent;
use pulse_core::profile::{ProfileUpdate, profile_updates};
use pulse_core::rollup::StreamPosition;
use pulse_store::Store;
use pulse_store::profiles::PROFILE_CHANGES;
use pulse_testkit::{FerretDb, unique_name};
use serde_json::{Map, Value, json};

fn event(user: &str, properties: Value) -> BufferedEvent {
    BufferedEvent {
        event_id: unique_name("e"),
        id_generated: false,
        event: "$identify".into(),
        distinct_id: user.into(),
        timestamp: 0,
        received_at: 0,
        properties: properties.as_object().cloned().unwrap_or_default(),
    }
}

/// Applies `events` as a batch of partition 0 whose last entry is at `at` (ms).
async fn apply(store: &Store, at: u64, events: &[BufferedEvent]) {
    let at = StreamPosition { millis: at, sequence: 0 };
    store.apply_profile_updates(0, at, &profile_updates(events)).await.expect("profile updates applied");
}

async fn profile(store: &Store, user: &str) -> Value {
    Value::Object(store.profile(user).await.expect("read profile").unwrap_or_default())
}

#[tokio::test]
async fn updates_apply_in_stream_order_and_replays_change_nothing() {
    let ferret = FerretDb::start().await.expect("ferretdb");
    let store = Store::connect(&ferret.uri(), &unique_name("profiles")).await.expect("store");
    let events = [
        event(
            "u-1",
            json!({ "$set": { "plan": "free", "a.b": 1, "$browser": "x" }, "$set_once": { "first_plan": "free" } }),
        ),
        event("u-2", json!({ "$set_once": { "source": "ads" } })),
        event(
            "u-1",
            json!({ "$set": { "plan": "pro" }, "$set_once": { "first_plan": "pro", "referrer": "blog" } }),
        ),
        event("u-1", json!({ "$unset": ["referrer"] })),
        event("u-3", json!({ "plan": "an event property, not a profile change" })),
    ];
    apply(&store, 1, &events[..2]).await;
    assert_eq!(profile(&store, "u-2").await, json!({ "source": "ads" }));
    apply(&store, 4, &events[2..]).await;
    let u1 = json!({ "plan": "pro", "a.b": 1, "$browser": "x", "first_plan": "free" });
    assert_eq!(profile(&store, "u-1").await, u1);
    assert_eq!(store.profile("u-3").await.expect("read"), None, "no profile without a profile change");

    // A crash after the writes and before the acknowledgement: the whole run again, in
    // the same order, with different batch boundaries.
    apply(&store, 0, &events[..1]).await;
    apply(&store, 4, &events[1..]).await;
    assert_eq!(profile(&store, "u-1").await, u1, "replayed: unchanged");
    assert_eq!(profile(&store, "u-2").await, json!({ "source": "ads" }));

    // Later updates keep applying; set_once after an unset writes.
    apply(&store, 5, &[event("u-2", json!({ "$unset": ["source"], "$set_once": { "source": "email" } }))])
        .await;
    apply(&store, 6, &[event("u-2", json!({ "$set_once": { "source": "social" } }))]).await;
    assert_eq!(profile(&store, "u-2").await, json!({ "source": "email" }));
}

#[tokio::test]
async fn the_store_agrees_with_the_pure_fold() {
    let ferret = FerretDb::start().await.expect("ferretdb");
    let store = Store::connect(&ferret.uri(), &unique_name("profiles")).await.expect("store");
    // A fixed pseudo-random run over few keys, applied in batches of 1 to 7.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let keys = ["a", "b", "c.d"];
    let events: Vec<BufferedEvent> = (0..120)
        .map(|i| {
            let key = keys[next(3) as usize];
            let properties = match next(3) {
                0 => json!({ "$set": { key: i } }),
                1 => json!({ "$set_once": { key: i } }),
                _ => json!({ "$unset": [key] }),
            };
            event(&format!("u-{}", next(4)), properties)
        })
        .collect();
    let expected = |upto: usize, user: &str| {
        let folded = events[..upto].iter().filter(|e| e.distinct_id == user).fold(Map::new(), |p, e| {
            let mut single = ProfileUpdate::default();
            single.then(e);
            single.apply(&p)
        });
        Value::Object(folded)
    };
    let changes = store.database().collection::<mongodb::bson::Document>(PROFILE_CHANGES);
    let mut start = 0;
    while start < events.len() {
        let end = (start + 1 + next(7) as usize).min(events.len());
        apply(&store, end as u64, &events[start..end]).await;
        start = end;
        // Folded now and then, as the processor does between batches.
        if start > 60 && start < 70 {
            let before = changes.count_documents(mongodb::bson::doc! {}).await.expect("count");
            let done = store.compact_profile_changes(0).await.expect("fold");
            let after = changes.count_documents(mongodb::bson::doc! {}).await.expect("count");
            assert!(done.users > 0 && after < before, "{done:?}: {before} -> {after} documents");
            assert_eq!(store.compact_profile_changes(0).await.expect("again").users, 0, "folded already");
            for user in ["u-0", "u-1", "u-2", "u-3"] {
                assert_eq!(profile(&store, user).await, expected(start, user), "{user} after the fold");
            }
        }
    }
    for user in ["u-0", "u-1", "u-2", "u-3"] {
        assert_eq!(profile(&store, user).await, expected(events.len(), user), "{user}");
    }
    // A fold that stopped before deleting what it replaced, then ran again.
    let folded: Vec<mongodb::bson::Document> =
        changes.find(mongodb::bson::doc! {}).await.expect("find").try_collect().await.expect("read");
    store.compact_profile_changes(0).await.expect("fold");
    for change in folded.into_iter().filter(|d| !d.contains_key("c")) {
        // The changes the fold deleted come back; those it kept are there already.
        let _ = changes.insert_one(change).await;
    }
    store.compact_profile_changes(0).await.expect("fold again");
    for user in ["u-0", "u-1", "u-2", "u-3"] {
        assert_eq!(profile(&store, user).await, expected(events.len(), user), "{user} after a repeated fold");
    }
}

#[tokio::test]
async fn a_change_the_store_refuses_is_reported_and_the_others_are_kept() {
    let ferret = FerretDb::start().await.expect("ferretdb");
    let store = Store::connect(&ferret.uri(), &unique_name("profiles")).await.expect("store");
    let events = [
        event("u-1", json!({ "$set": { "plan": "pro" } })),
        // A NUL in a key: no store can hold it.
        event("u-2", json!({ "$set": { "meta": { "a\u{0}b": 1 } } })),
        event("u-3", json!({ "$set_once": { "source": "ads" } })),
    ];
    let updates = profile_updates(&events);
    let at = StreamPosition { millis: 7, sequence: 0 };
    let refused = store.apply_profile_updates(0, at, &updates).await.expect("no error, a refusal");
    let users: Vec<&String> = updates.keys().collect();
    assert_eq!(refused.iter().map(|r| users[r.index].as_str()).collect::<Vec<_>>(), ["u-2"]);
    assert!(!refused[0].detail.is_empty(), "it says what the store said");
    assert_eq!(profile(&store, "u-1").await, json!({ "plan": "pro" }));
    assert_eq!(profile(&store, "u-3").await, json!({ "source": "ads" }));
    assert_eq!(store.profile("u-2").await.expect("read"), None);
}

#[tokio::test]
async fn a_fold_of_more_documents_than_one_deletion_takes_keeps_every_profile() {
    let ferret = FerretDb::start().await.expect("ferretdb");
    let store = Store::connect(&ferret.uri(), &unique_name("profiles")).await.expect("store");
    // 36,000 changes: more than FerretDB deletes in one request on SQLite (32,766), so
    // the fold must delete what it replaces in parts.
    let users = 12_000;
    for round in 0..3u64 {
        let events: Vec<BufferedEvent> = (0..users)
            .map(|u| event(&format!("u-{u}"), json!({ "$set": { "round": round, "u": u } })))
            .collect();
        for (batch, events) in events.chunks(4_000).enumerate() {
            apply(&store, round * 10 + batch as u64, events).await;
        }
    }
    let changes = store.database().collection::<mongodb::bson::Document>(PROFILE_CHANGES);
    let done = store.compact_profile_changes(0).await.expect("fold");
    assert_eq!((done.users, done.replaced), (users, 3 * users));
    assert_eq!(changes.count_documents(mongodb::bson::doc! {}).await.expect("count"), users as u64);
    for u in [0, 5_999, 11_999] {
        assert_eq!(profile(&store, &format!("u-{u}")).await, json!({ "round": 2, "u": u }));
    }
    // A few changes next to many profiles wait for more.
    apply(&store, 100, &[event("u-1", json!({ "$set": { "round": 3 } }))]).await;
    assert_eq!(store.compact_profile_changes(0).await.expect("fold").users, 0, "one change waits");
    assert_eq!(profile(&store, "u-1").await, json!({ "round": 3, "u": 1 }));
}
