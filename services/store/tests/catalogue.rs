//! A store that cannot create a collection (FerretDB on PostgreSQL stopped while creating
//! it): the events are not set aside as refused, the fault says it needs the repair, and
//! after the repair (docs/ferretdb-orphan-tables.sql) they are stored.

use mongodb::bson::{Document, doc};
use pulse_core::buffer::BufferedEvent;
use pulse_core::rollup::StreamPosition;
use pulse_store::{EventWrite, Store, raw_collection};
use pulse_testkit::{Backend, FerretDb, unique_name};

/// The table FerretDB 1.x names for a collection, as its PostgreSQL backend computes it:
/// the lower-cased name with each character not a letter (and the run of characters after
/// it that are neither letters, digits nor `_`) replaced by `_`, then the FNV-1a hash of
/// the name.
fn table_of(collection: &str) -> String {
    let hash = collection.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    let mut name = String::new();
    let mut chars = collection.to_lowercase().chars().collect::<Vec<_>>().into_iter().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_lowercase() {
            name.push(c);
            continue;
        }
        name.push('_');
        while chars.next_if(|n| !(n.is_ascii_lowercase() || n.is_ascii_digit() || *n == '_')).is_some() {}
    }
    format!("{name}_{hash:08x}")
}

/// When the events happened: their day's collection is the one FerretDB lost.
const AT: i64 = 1_795_132_800_000;

fn event(n: usize) -> BufferedEvent {
    BufferedEvent {
        event_id: format!("e-{n}"),
        id_generated: false,
        event: "signed up".into(),
        distinct_id: format!("u-{n}"),
        timestamp: AT,
        received_at: AT,
        properties: serde_json::Map::new(),
    }
}

#[tokio::test]
async fn a_collection_ferretdb_lost_from_its_catalogue_holds_events_back_until_the_repair() {
    let mut ferret = FerretDb::start_on(Backend::Postgresql).await.expect("FerretDB on PostgreSQL");
    let db = unique_name("catalogue").replace('-', "_");
    let client = ferret.client().await.expect("client");
    // The database (a schema with FerretDB's catalogue) exists; then FerretDB is "killed"
    // between creating the events table and recording it.
    client.database(&db).collection::<Document>("other").insert_one(doc! { "_id": 1 }).await.expect("insert");
    ferret
        .psql(&format!(r#"CREATE TABLE "{db}"."{}" (_jsonb jsonb)"#, table_of(&raw_collection(AT))))
        .expect("orphan table");

    let store = Store::new(client.database(&db));
    let events: Vec<BufferedEvent> = (0..3).map(event).collect();
    let writes: Vec<EventWrite<'_>> = events
        .iter()
        .enumerate()
        .map(|(i, e)| EventWrite {
            partition: 0,
            position: StreamPosition { millis: 1 + i as u64, sequence: 0 },
            event: e,
        })
        .collect();
    let fault =
        store.insert_events_or_refuse(&writes, false).await.expect_err("the collection cannot be created");
    assert!(
        fault.damaged_catalogue(),
        "a fault that only the repair ends, not a refusal of the events: {fault}"
    );

    ferret.restart().await.expect("repair, then restart FerretDB");
    let store = Store::new(ferret.client().await.expect("reconnect").database(&db));
    let outcome = store.insert_events_or_refuse(&writes, true).await.expect("stored after the repair");
    assert!(outcome.refused.is_empty(), "{:?}", outcome.refused);
    assert_eq!(outcome.flags, vec![true; 3]);
    let stored = store
        .database()
        .collection::<Document>(&raw_collection(AT))
        .count_documents(doc! {})
        .await
        .expect("count");
    assert_eq!(stored, 3);
    let kept =
        ferret.psql(&format!("SELECT count(*) FROM \"{db}\".\"{}\"", table_of("other"))).expect("count");
    assert_eq!(kept, "1", "the repair leaves the tables FerretDB knows alone");
}
