//! Every accepted event lands in exactly one partition stream, as sent plus the receive
//! time, on a single Redis and on a Redis Cluster.

mod support;

use std::collections::HashMap;

use proptest::prelude::*;
use pulse_buffer::TenantLayout;
use pulse_core::buffer::partition_of;
use pulse_testkit::{RedisCluster, RedisServer};
use serde_json::{Value, json};
use support::{Pipeline, TestIngest, batch, event};

fn ids_of(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["event_id"].as_str().expect("id").to_string()).collect()
}

async fn assert_each_event_once_in_its_partition(ingest: &TestIngest, sent: &[Value]) {
    let buffered = ingest.buffered().await;
    let mut seen: HashMap<String, u32> = HashMap::new();
    for (partition, e) in &buffered {
        assert_eq!(
            *partition,
            partition_of(&e.distinct_id, ingest.partitions),
            "{} is in its user's partition",
            e.event_id
        );
        assert!(seen.insert(e.event_id.clone(), *partition).is_none(), "{} is buffered twice", e.event_id);
    }
    let mut expected = ids_of(sent);
    expected.sort();
    let mut got: Vec<String> = seen.into_keys().collect();
    got.sort();
    assert_eq!(got, expected, "exactly the accepted events are buffered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_events_land_once_in_their_partition_with_the_receive_time() {
    let redis = RedisServer::start().await.expect("redis");
    let ingest = TestIngest::start(&redis.url(), Pipeline { partitions: 8, ..Pipeline::default() }).await;
    let before = jiff::Timestamp::now().as_millisecond();
    let events: Vec<Value> =
        (0..300).map(|i| event(&format!("e-{i}"), &format!("user-{}", i % 37))).collect();
    for chunk in events.chunks(100) {
        let reply = ingest.post("/v1/batch", batch(chunk)).await;
        assert_eq!(reply.status, 202, "{}", reply.text);
        assert_eq!(reply.json["accepted"], 100);
    }
    let single = json!({ "event_id": "single-1", "event": "signed_up", "distinct_id": "user-1", "timestamp": 1_790_000_000_000i64 });
    let reply = ingest.post("/v1/events", single.to_string()).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let after = jiff::Timestamp::now().as_millisecond();

    let mut sent = events.clone();
    sent.push(single);
    assert_each_event_once_in_its_partition(&ingest, &sent).await;
    for (_, e) in ingest.buffered().await {
        assert!((before..=after).contains(&e.received_at), "received_at is the receive time");
        if e.event_id == "single-1" {
            assert_eq!(e.timestamp, 1_790_000_000_000, "the client's timestamp is kept");
        } else {
            assert_eq!(e.timestamp, e.received_at, "no timestamp: the receive time");
            assert_eq!(e.properties["path"], "/pricing");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_batch_is_buffered_again_and_keeps_its_ids() {
    // At-least-once into the buffer; the processor stores each event_id once.
    let redis = RedisServer::start().await.expect("redis");
    let ingest = TestIngest::start(&redis.url(), Pipeline::default()).await;
    let events: Vec<Value> = (0..10).map(|i| event(&format!("r-{i}"), "u")).collect();
    for _ in 0..2 {
        assert_eq!(ingest.post("/v1/batch", batch(&events)).await.status, 202);
    }
    let buffered = ingest.buffered().await;
    assert_eq!(buffered.len(), 20);
    assert!(buffered.iter().all(|(_, e)| e.event_id.starts_with("r-") && !e.id_generated));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_without_an_id_get_one_and_are_marked() {
    let redis = RedisServer::start().await.expect("redis");
    let ingest = TestIngest::start(&redis.url(), Pipeline::default()).await;
    let reply = ingest.post("/v1/events", r#"{"event":"a","distinct_id":"u"}"#).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let buffered = ingest.buffered().await;
    assert_eq!(buffered.len(), 1);
    assert!(buffered[0].1.id_generated, "the generated id is marked, so nobody expects it deduplicated");
    assert!(!buffered[0].1.event_id.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_events_land_once_on_a_redis_cluster() {
    let cluster = RedisCluster::start().await.expect("redis cluster");
    let seed = cluster.urls()[0].clone();
    let ingest =
        TestIngest::start(&seed, Pipeline { partitions: 8, cluster: true, ..Pipeline::default() }).await;
    let events: Vec<Value> = (0..200).map(|i| event(&format!("c-{i}"), &format!("user-{i}"))).collect();
    let reply = ingest.post("/v1/batch", batch(&events)).await;
    assert_eq!(reply.status, 202, "{}", reply.text);

    // Read every partition through a cluster connection.
    let mut conn = cluster.connection().await.expect("cluster connection");
    let mut seen = Vec::new();
    for p in 0..8 {
        let key = TenantLayout::of(&ingest.tenant).stream(p);
        let reply: redis::streams::StreamRangeReply =
            redis::AsyncCommands::xrange_all(&mut conn, &key).await.expect("XRANGE");
        for entry in reply.ids {
            let payload: String = entry.get("events").expect("events field");
            let batch: Vec<pulse_core::buffer::BufferedEvent> = serde_json::from_str(&payload).expect("json");
            for e in batch {
                assert_eq!(partition_of(&e.distinct_id, 8), p);
                seen.push(e.event_id);
            }
        }
    }
    seen.sort();
    let mut expected = ids_of(&events);
    expected.sort();
    assert_eq!(seen, expected);
}

fn property_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(Value::from),
        "[a-zA-Z0-9 éü✓_.-]{0,20}".prop_map(Value::from),
        Just(Value::Null),
    ];
    leaf.prop_recursive(3, 20, 4, |inner| {
        prop_oneof![
            // No array directly in an array: no store holds one, so ingest refuses it.
            prop::collection::vec(inner.clone().prop_filter("not an array", |v| !v.is_array()), 0..4)
                .prop_map(Value::from),
            prop::collection::btree_map("[a-z$_][a-z0-9_.$ -]{0,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn valid_event() -> impl Strategy<Value = Value> {
    (
        "[a-zA-Z0-9_:-]{1,40}",
        // Names that are only whitespace are refused.
        "[\\PC]{1,30}".prop_filter("not blank", |s| !s.trim().is_empty()),
        "[\\PC]{1,30}".prop_filter("not blank", |s| !s.trim().is_empty()),
        prop::option::of(0i64..86_400_000),
        prop::collection::btree_map("[a-zA-Z$_][a-zA-Z0-9_ $.-]{0,15}", property_value(), 0..6),
    )
        .prop_map(|(id, name, user, age, props)| {
            let mut e = json!({ "event_id": id, "event": name, "distinct_id": user,
                "properties": Value::Object(props.into_iter().collect()) });
            if let Some(age) = age {
                e["timestamp"] = json!(jiff::Timestamp::now().as_millisecond() - age);
            }
            e
        })
}

#[test]
fn random_valid_events_reach_the_stream_unchanged() {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let redis = runtime.block_on(RedisServer::start()).expect("redis");
    let config = ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() };
    proptest!(config, |(events in prop::collection::vec(valid_event(), 1..20))| {
        runtime.block_on(async {
            let ingest = TestIngest::start(&redis.url(), Pipeline::default()).await;
            let reply = ingest.post("/v1/batch", batch(&events)).await;
            assert_eq!(reply.status, 202, "{}", reply.text);
            assert_eq!(reply.json["accepted"], events.len(), "{}", reply.text);
            let buffered = ingest.buffered().await;
            assert_eq!(buffered.len(), events.len());
            for sent in &events {
                let id = sent["event_id"].as_str().expect("id");
                // Ids may repeat in a generated batch: find one stored copy equal to this event.
                let found = buffered.iter().any(|(_, e)| {
                    e.event_id == id
                        && e.event == sent["event"]
                        && e.distinct_id == sent["distinct_id"]
                        && Value::Object(e.properties.clone()) == sent["properties"]
                        && sent.get("timestamp").is_none_or(|t| *t == json!(e.timestamp))
                });
                assert!(found, "{sent} reached the stream unchanged");
            }
        });
    });
}
