//! The store's raw write limit: inserts documents shaped like Pulse raw events with
//! unordered `insert_many` batches into a fresh collection and reports docs/s, the ceiling
//! the processor's event rate is compared with. Exits 1 when the store fails, 2 on bad flags.
//!
//! ```text
//! pulse-bench-store --uri mongodb://127.0.0.1:27017/ --database bench_raw --docs 100000 --json
//! ```

mod raw_event;

use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{Document, doc};
use mongodb::{Client, Collection, IndexModel};

use crate::raw_event::RawEvents;

const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// pulse-bench-store: insert_many throughput of Pulse-shaped raw events.
#[derive(Debug, Parser)]
#[command(name = "pulse-bench-store", version, about)]
struct Args {
    /// MongoDB connection string.
    #[arg(long, env = "PULSE_BENCH_MONGODB_URI")]
    uri: String,
    /// Database to write to; its collection is dropped before and after the run.
    #[arg(long)]
    database: String,
    /// Collection to write to.
    #[arg(long, default_value = "events")]
    collection: String,
    /// Documents to insert.
    #[arg(long, default_value_t = 100_000)]
    docs: u64,
    /// Documents per insert_many call.
    #[arg(long, default_value_t = 500)]
    batch: u64,
    /// insert_many calls in flight at once.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Create an index on `ts` first (as the TTL index Pulse keeps on MongoDB, or the plain
    /// one earlier versions kept on FerretDB), so every insert maintains it too.
    #[arg(long)]
    indexes: bool,
    /// Insert copies of the first `--docs` documents of this collection instead of generated
    /// ones: the store's limit for exactly the documents the processor wrote. A name ending
    /// in `*` reads the collections it starts, in name order (the processor's raw events,
    /// one collection per UTC day: `pulse_bench.events_*`).
    #[arg(long, value_name = "DATABASE.COLLECTION")]
    copy_from: Option<String>,
    /// Leave the documents in place after the run.
    #[arg(long)]
    keep: bool,
    /// Only drop the whole database `--database` (what a benchmark stage left) and exit.
    #[arg(long)]
    drop_database: bool,
    /// Also print the result as one JSON line, last.
    #[arg(long)]
    json: bool,
}

impl Args {
    fn validate(self) -> Result<Self, String> {
        if self.docs == 0 {
            return Err("--docs must be at least 1".to_string());
        }
        if !(1..=100_000).contains(&self.batch) {
            return Err(format!("--batch must be within 1..=100000, not {}", self.batch));
        }
        if !(1..=256).contains(&self.concurrency) {
            return Err(format!("--concurrency must be within 1..=256, not {}", self.concurrency));
        }
        if self.database.is_empty() || self.collection.is_empty() {
            return Err("--database and --collection must not be empty".to_string());
        }
        if let Some(source) = &self.copy_from {
            match source.split_once('.') {
                Some((database, collection)) if !database.is_empty() && !collection.is_empty() => {
                    if (database, collection) == (self.database.as_str(), self.collection.as_str()) {
                        return Err(format!("--copy-from {source} is the collection written to"));
                    }
                }
                _ => return Err(format!("--copy-from must be DATABASE.COLLECTION, not {source:?}")),
            }
        }
        Ok(self)
    }
}

/// What one run measured.
struct Outcome {
    docs: u64,
    elapsed: Duration,
}

impl Outcome {
    fn docs_per_s(&self) -> f64 {
        self.docs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match Args::parse().validate() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("pulse-bench-store: {message}");
            return ExitCode::from(2);
        }
    };
    if args.drop_database {
        return match drop_database(&args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("pulse-bench-store: {message}");
                ExitCode::FAILURE
            }
        };
    }
    match run(&args).await {
        Ok(outcome) => {
            report(&args, &outcome);
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("pulse-bench-store: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn connect(uri: &str) -> Result<Client, String> {
    let client = Client::with_uri_str(uri).await.map_err(|e| format!("connecting to {uri}: {e}"))?;
    client
        .database("admin")
        .run_command(doc! { "ping": 1 })
        .await
        .map_err(|e| format!("MongoDB at {uri} does not answer ping: {e}"))?;
    Ok(client)
}

async fn drop_database(args: &Args) -> Result<(), String> {
    let client = connect(&args.uri).await?;
    client
        .database(&args.database)
        .drop()
        .await
        .map_err(|e| format!("dropping database {}: {e}", args.database))
}

async fn run(args: &Args) -> Result<Outcome, String> {
    let client = connect(&args.uri).await?;
    let collection = client.database(&args.database).collection::<Document>(&args.collection);
    let name = format!("{}.{}", args.database, args.collection);
    collection.drop().await.map_err(|e| format!("dropping {name}: {e}"))?;
    if args.indexes {
        // As ensure_schema makes them where the server has no TTL index (FerretDB).
        let indexes = [doc! { "ts": 1 }].into_iter().map(|keys| IndexModel::builder().keys(keys).build());
        collection.create_indexes(indexes).await.map_err(|e| format!("creating indexes on {name}: {e}"))?;
    }

    // Every document is built (or read) before the clock starts: the store is measured,
    // not this.
    let documents = match &args.copy_from {
        Some(source) => copied(&client, source, args.docs).await?,
        None => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
            let run_id = format!("{:x}{:x}", now.as_nanos() as u64, std::process::id());
            let events = RawEvents::new(run_id, now.as_millis() as i64);
            (0..args.docs).map(|i| events.document(i)).collect()
        }
    };
    let batches: Vec<Vec<Document>> =
        documents.chunks(args.batch as usize).map(<[Document]>::to_vec).collect();

    let outcome = insert(&collection, batches, args.concurrency).await.map_err(|e| format!("{name}: {e}"))?;
    let stored = collection
        .count_documents(doc! {})
        .await
        .map_err(|e| format!("counting documents in {name}: {e}"))?;
    if stored != args.docs {
        return Err(format!("{name} holds {stored} documents after inserting {}", args.docs));
    }
    if !args.keep {
        collection.drop().await.map_err(|e| format!("dropping {name}: {e}"))?;
    }
    Ok(outcome)
}

/// The first `docs` documents of `source` (DATABASE.COLLECTION, checked by `validate`).
async fn copied(client: &Client, source: &str, docs: u64) -> Result<Vec<Document>, String> {
    let (database, collection) = source.split_once('.').unwrap_or((source, ""));
    let database = client.database(database);
    let names = match collection.strip_suffix('*') {
        None => vec![collection.to_string()],
        Some(prefix) => {
            let mut names =
                database.list_collection_names().await.map_err(|e| format!("listing {source}: {e}"))?;
            names.retain(|n| n.starts_with(prefix));
            names.sort();
            names
        }
    };
    let mut documents = Vec::new();
    for name in names {
        let left = docs.saturating_sub(documents.len() as u64);
        if left == 0 {
            break;
        }
        let read: Vec<Document> = database
            .collection::<Document>(&name)
            .find(doc! {})
            .limit(i64::try_from(left).unwrap_or(i64::MAX))
            .await
            .map_err(|e| format!("reading {source}: {e}"))?
            .try_collect()
            .await
            .map_err(|e| format!("reading {source}: {e}"))?;
        documents.extend(read);
    }
    if (documents.len() as u64) < docs {
        return Err(format!("{source} holds {} documents, fewer than --docs {docs}", documents.len()));
    }
    Ok(documents)
}

/// Sends the batches with at most `concurrency` in flight; times from the first send to
/// the last answer.
async fn insert(
    collection: &Collection<Document>,
    batches: Vec<Vec<Document>>,
    concurrency: usize,
) -> Result<Outcome, String> {
    let started = Instant::now();
    let mut last_progress = started;
    let mut inserted = 0u64;
    let mut answers = futures::stream::iter(batches)
        .map(|batch| {
            let collection = collection.clone();
            async move { collection.insert_many(batch).ordered(false).await }
        })
        .buffer_unordered(concurrency);
    while let Some(answer) = answers.next().await {
        let result = answer.map_err(|e| format!("insert_many after {inserted} documents: {e}"))?;
        inserted += result.inserted_ids.len() as u64;
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            let secs = started.elapsed().as_secs_f64();
            eprintln!("  {inserted} documents in {secs:.1} s ({:.0} docs/s)", inserted as f64 / secs);
        }
    }
    Ok(Outcome { docs: inserted, elapsed: started.elapsed() })
}

fn report(args: &Args, outcome: &Outcome) {
    println!(
        "insert_many: {} documents{} in {:.2} s = {:.0} docs/s ({}-document unordered batches, {} in flight, {})",
        outcome.docs,
        args.copy_from.as_ref().map(|s| format!(" copied from {s}")).unwrap_or_default(),
        outcome.elapsed.as_secs_f64(),
        outcome.docs_per_s(),
        args.batch,
        args.concurrency,
        if args.indexes { "with the raw events' index on ts" } else { "no secondary index" },
    );
    if args.json {
        let json = serde_json::json!({
            "docs": outcome.docs,
            "batch": args.batch,
            "concurrency": args.concurrency,
            "indexes": args.indexes,
            "copied_from": args.copy_from,
            "seconds": outcome.elapsed.as_secs_f64(),
            "docs_per_s": outcome.docs_per_s().round(),
        });
        println!("{json}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Result<Args, String> {
        let base = ["pulse-bench-store", "--uri", "mongodb://127.0.0.1:1/", "--database", "bench_raw"];
        Args::try_parse_from(base.iter().chain(extra)).map_err(|e| e.to_string())?.validate()
    }

    #[test]
    fn copy_from_names_another_collection() {
        assert!(args(&["--copy-from", "pulse_bench.events"]).is_ok());
        for bad in ["events", ".events", "pulse_bench.", "bench_raw.events"] {
            let refused = args(&["--copy-from", bad]).err().unwrap_or_default();
            assert!(refused.contains("--copy-from"), "{bad}: {refused}");
        }
    }
}
