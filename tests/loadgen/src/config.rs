//! Command-line flags, and the validated configuration of a run.

use std::time::Duration;

use clap::Parser;
use hyper::Uri;
use hyper::header::HeaderValue;

use crate::mix::{DEFAULT_MIX, EventMix};
use crate::pacing::Schedule;

/// Most events held in precomputed bodies, to keep the generator's memory small.
const MAX_POOL_EVENTS: usize = 4_000_000;

/// Drives `POST /v1/batch` of Pulse ingest with precomputed batches and reports throughput,
/// latency percentiles (HdrHistogram) and, with --pid, the server's peak memory.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Args {
    /// Base URL of ingest (http only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The pipeline's write key.
    #[arg(long, env = "PULSE_WRITE_KEY", hide_env_values = true)]
    pub key: String,
    /// Concurrent keep-alive connections, one worker each.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// Events per request.
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
    /// Target events per second offered (0 = flat out). Latency is then measured from each
    /// request's scheduled send time.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Distinct users (distinct_id) the events spread over.
    #[arg(long, default_value_t = 10_000)]
    pub users: u64,
    /// Event names with weights, `name:weight,...`.
    #[arg(long, default_value = DEFAULT_MIX)]
    pub events: EventMix,
    /// Send bodies gzip-compressed (Content-Encoding: gzip).
    #[arg(long)]
    pub gzip: bool,
    /// The API to load: native, segment (compat) or posthog (compat).
    #[arg(long, value_enum, default_value = "native")]
    pub format: crate::format::WireFormat,
    /// Pid of the ingest process: samples /proc/<pid>/status every 100 ms for peak VmRSS.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Also print the summary as one JSON line, last.
    #[arg(long)]
    pub json: bool,
    /// Batch bodies precomputed and cycled through (event ids stay unique regardless).
    #[arg(long, default_value_t = 128)]
    pub pool: usize,
    /// Runtime threads of the generator (default: one per CPU).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Seconds to wait for one request's answer before counting it as an error.
    #[arg(long, default_value_t = 30.0)]
    pub timeout: f64,
    /// Event timestamps fall at random in this many milliseconds before --spread-end-ms
    /// (a backfill of history: e.g. 864000000 for ten days).
    #[arg(long, default_value_t = 60_000)]
    pub spread_ms: i64,
    /// The end of the timestamps' spread, epoch milliseconds (default: the start of the run).
    #[arg(long)]
    pub spread_end_ms: Option<i64>,
}

/// A run's settings, checked.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// `{url}/v1/batch`.
    pub batch_uri: Uri,
    /// `host:port` of the server, for the reachability check.
    pub authority: String,
    /// `Bearer <key>`.
    pub authorization: HeaderValue,
    pub connections: usize,
    pub batch_size: usize,
    pub schedule: Schedule,
    pub rate: u64,
    pub duration: Duration,
    pub warmup: Duration,
    pub users: u64,
    pub events: EventMix,
    pub gzip: bool,
    pub format: crate::format::WireFormat,
    /// The write key (PostHog bodies carry it).
    pub key: String,
    pub pid: Option<u32>,
    pub json: bool,
    pub pool: usize,
    pub threads: usize,
    pub timeout: Duration,
    pub spread_ms: i64,
    pub spread_end_ms: Option<i64>,
}

impl Args {
    /// Checks every flag, with a message naming the flag.
    pub fn validate(self) -> Result<LoadConfig, String> {
        let base = self.url.trim_end_matches('/');
        let batch_uri: Uri = format!("{base}{}", self.format.path())
            .parse()
            .map_err(|e| format!("--url {:?} is not a URL: {e}", self.url))?;
        if batch_uri.scheme_str() != Some("http") {
            return Err(format!("--url {:?}: only http:// is supported", self.url));
        }
        let host = batch_uri.host().ok_or_else(|| format!("--url {:?} has no host", self.url))?;
        let authority = format!("{host}:{}", batch_uri.port_u16().unwrap_or(80));
        let key = self.key.trim();
        if key.is_empty() {
            return Err("--key (or PULSE_WRITE_KEY) is empty".to_string());
        }
        let mut authorization = HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|_| "--key holds characters not allowed in an HTTP header".to_string())?;
        authorization.set_sensitive(true);
        check_range("--connections", self.connections, 1, 4096)?;
        check_range("--batch-size", self.batch_size, 1, 100_000)?;
        check_range("--pool", self.pool, 1, 100_000)?;
        if self.pool.saturating_mul(self.batch_size) > MAX_POOL_EVENTS {
            return Err(format!(
                "--pool {} x --batch-size {} is over {MAX_POOL_EVENTS} precomputed events; lower --pool",
                self.pool, self.batch_size
            ));
        }
        if self.users == 0 {
            return Err("--users must be at least 1".to_string());
        }
        if !(1..=3_650 * 86_400_000).contains(&self.spread_ms) {
            return Err(format!(
                "--spread-ms must be 1 to 3650 days of milliseconds, not {}",
                self.spread_ms
            ));
        }
        if self.spread_end_ms.is_some_and(|end| end <= self.spread_ms) {
            return Err("--spread-end-ms must be an epoch time after --spread-ms".to_string());
        }
        let duration = seconds("--duration", self.duration, false)?;
        let warmup = seconds("--warmup", self.warmup, true)?;
        let timeout = seconds("--timeout", self.timeout, false)?;
        let threads = match self.threads {
            Some(threads) => check_range("--threads", threads, 1, 256).map(|()| threads)?,
            None => std::thread::available_parallelism().map(usize::from).unwrap_or(2),
        };
        Ok(LoadConfig {
            batch_uri,
            authority,
            authorization,
            connections: self.connections,
            batch_size: self.batch_size,
            schedule: Schedule::new(self.rate, self.batch_size),
            rate: self.rate,
            duration,
            warmup,
            users: self.users,
            events: self.events,
            gzip: self.gzip,
            format: self.format,
            key: key.to_string(),
            pid: self.pid,
            json: self.json,
            pool: self.pool,
            threads,
            timeout,
            spread_ms: self.spread_ms,
            spread_end_ms: self.spread_end_ms,
        })
    }
}

fn check_range(flag: &str, value: usize, min: usize, max: usize) -> Result<(), String> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(format!("{flag} must be {min} to {max}, not {value}"))
    }
}

fn seconds(flag: &str, value: f64, zero_ok: bool) -> Result<Duration, String> {
    let ok = value.is_finite() && value <= 86_400.0 && (value > 0.0 || (zero_ok && value == 0.0));
    if ok {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(format!("{flag} {value} is not a sensible number of seconds"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let argv = ["pulse-loadgen", "--key", "k1"].iter().chain(extra).copied();
        Args::try_parse_from(argv).expect("flags parse")
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let config = args(&[]).validate().expect("valid");
        assert_eq!(config.batch_uri, "http://127.0.0.1:8080/v1/batch");
        assert_eq!(config.authority, "127.0.0.1:8080");
        assert_eq!(config.authorization, "Bearer k1");
        assert_eq!((config.connections, config.batch_size, config.users), (16, 500, 10_000));
        assert_eq!(config.schedule, Schedule::FlatOut);
        assert_eq!((config.duration, config.warmup), (Duration::from_secs(10), Duration::from_secs(1)));
    }

    #[test]
    fn a_rate_makes_a_paced_schedule() {
        let config = args(&["--rate", "1000", "--batch-size", "100", "--url", "http://[::1]:9/"])
            .validate()
            .expect("valid");
        assert_eq!(config.schedule, Schedule::Paced { events_per_second: 1000, batch_size: 100 });
        assert_eq!(config.batch_uri, "http://[::1]:9/v1/batch");
    }

    #[test]
    fn a_format_picks_its_endpoint() {
        let uri = |format: &str| args(&["--format", format]).validate().expect("valid").batch_uri.to_string();
        assert_eq!(uri("native"), "http://127.0.0.1:8080/v1/batch");
        assert_eq!(uri("segment"), "http://127.0.0.1:8080/compat/segment/v1/batch");
        assert_eq!(uri("posthog"), "http://127.0.0.1:8080/compat/posthog/batch/");
        assert!(Args::try_parse_from(["pulse-loadgen", "--key", "k", "--format", "amplitude"]).is_err());
    }

    #[test]
    fn bad_flags_are_refused_by_name() {
        for (flags, flag) in [
            (&["--url", "https://x"][..], "--url"),
            (&["--url", "not a url"][..], "--url"),
            (&["--connections", "0"][..], "--connections"),
            (&["--duration", "0"][..], "--duration"),
            (&["--warmup=-1"][..], "--warmup"),
            (&["--users", "0"][..], "--users"),
            (&["--pool", "100000", "--batch-size", "1000"][..], "--pool"),
            (&["--spread-ms", "0"][..], "--spread-ms"),
            (&["--spread-ms", "1000", "--spread-end-ms", "500"][..], "--spread-end-ms"),
        ] {
            let err = args(flags).validate().expect_err("refused");
            assert!(err.contains(flag), "{flags:?}: {err}");
        }
    }

    #[test]
    fn a_bad_event_mix_is_refused_at_parse_time() {
        let argv = ["pulse-loadgen", "--key", "k", "--events", "a:x"];
        assert!(Args::try_parse_from(argv).is_err());
    }
}
