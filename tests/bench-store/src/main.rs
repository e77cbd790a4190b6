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
use futures::StreamExt;
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
    /// Create the secondary indexes of Pulse's raw events collection first
    /// ({event, ts}, {distinct_id, ts}, {ts}), so every insert maintains them too.
    #[arg(long)]
    indexes: bool,
    /// Leave the documents in place after the run.
    #[arg(long)]
    keep: bool,
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

async fn run(args: &Args) -> Result<Outcome, String> {
    let client =
        Client::with_uri_str(&args.uri).await.map_err(|e| format!("connecting to {}: {e}", args.uri))?;
    client
        .database("admin")
        .run_command(doc! { "ping": 1 })
        .await
        .map_err(|e| format!("MongoDB at {} does not answer ping: {e}", args.uri))?;
    let collection = client.database(&args.database).collection::<Document>(&args.collection);
    let name = format!("{}.{}", args.database, args.collection);
    collection.drop().await.map_err(|e| format!("dropping {name}: {e}"))?;
    if args.indexes {
        // As ensure_schema makes them where the server has no TTL index (FerretDB).
        let indexes = [doc! { "ts": 1 }].into_iter().map(|keys| IndexModel::builder().keys(keys).build());
        collection.create_indexes(indexes).await.map_err(|e| format!("creating indexes on {name}: {e}"))?;
    }

    // Every document is built before the clock starts: the store is measured, not this.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let run_id = format!("{:x}{:x}", now.as_nanos() as u64, std::process::id());
    let events = RawEvents::new(run_id, now.as_millis() as i64);
    let batches: Vec<Vec<Document>> = (0..args.docs)
        .step_by(args.batch as usize)
        .map(|start| (start..(start + args.batch).min(args.docs)).map(|i| events.document(i)).collect())
        .collect();

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
        "insert_many: {} documents in {:.2} s = {:.0} docs/s ({}-document unordered batches, {} in flight, {})",
        outcome.docs,
        outcome.elapsed.as_secs_f64(),
        outcome.docs_per_s(),
        args.batch,
        args.concurrency,
        if args.indexes { "with the raw events' 3 secondary indexes" } else { "no secondary index" },
    );
    if args.json {
        let json = serde_json::json!({
            "docs": outcome.docs,
            "batch": args.batch,
            "concurrency": args.concurrency,
            "indexes": args.indexes,
            "seconds": outcome.elapsed.as_secs_f64(),
            "docs_per_s": outcome.docs_per_s().round(),
        });
        println!("{json}");
    }
}
