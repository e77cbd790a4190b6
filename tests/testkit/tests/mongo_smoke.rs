//! Proves the test MongoDB-wire server (FerretDB) is real: inserts, queries with filter,
//! sort and projection, and a unique index that rejects a duplicate with code 11000.

use futures::TryStreamExt;
use mongodb::IndexModel;
use mongodb::bson::{Document, doc};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::IndexOptions;
use pulse_testkit::{FerretDb, unique_name};

#[tokio::test]
async fn documents_insert_and_query_back() {
    let ferret = FerretDb::start().await.expect("start FerretDB");
    let client = ferret.client().await.expect("connect");
    let events = client.database(&unique_name("tenant")).collection::<Document>("events");
    events
        .insert_many([
            doc! { "_id": "e1", "event": "signup", "distinct_id": "u1", "ts": 3_i64 },
            doc! { "_id": "e2", "event": "purchase", "distinct_id": "u1", "ts": 1_i64 },
            doc! { "_id": "e3", "event": "signup", "distinct_id": "u2", "ts": 2_i64 },
        ])
        .await
        .expect("insert_many");
    let signups: Vec<Document> = events
        .find(doc! { "event": "signup" })
        .sort(doc! { "ts": 1 })
        .projection(doc! { "distinct_id": 1 })
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("read cursor");
    let users: Vec<&str> = signups.iter().map(|d| d.get_str("distinct_id").expect("distinct_id")).collect();
    assert_eq!(users, ["u2", "u1"]);
    assert!(signups[0].get("event").is_none(), "the projection left out `event`");
    assert_eq!(events.count_documents(doc! {}).await.expect("count"), 3);
}

#[tokio::test]
async fn a_unique_index_rejects_a_duplicate_with_code_11000() {
    let ferret = FerretDb::start().await.expect("start FerretDB");
    let client = ferret.client().await.expect("connect");
    let users = client.database(&unique_name("tenant")).collection::<Document>("users");
    users
        .create_index(
            IndexModel::builder()
                .keys(doc! { "distinct_id": 1 })
                .options(IndexOptions::builder().unique(true).build())
                .build(),
        )
        .await
        .expect("create unique index");
    users.insert_one(doc! { "distinct_id": "u1" }).await.expect("first insert");
    let err = users.insert_one(doc! { "distinct_id": "u1" }).await.expect_err("duplicate must fail");
    match *err.kind {
        ErrorKind::Write(WriteFailure::WriteError(ref e)) => assert_eq!(e.code, 11000, "{e:?}"),
        ref other => panic!("expected a duplicate-key write error, got {other:?}"),
    }
    assert_eq!(users.count_documents(doc! {}).await.expect("count"), 1);
}
