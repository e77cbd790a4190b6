//! The printed summary: human lines, and one JSON line for scripts.

use std::fmt::Write;
use std::time::Duration;

use serde_json::{Value, json};

use crate::config::LoadConfig;
use crate::cpu::CpuUse;
use crate::rss::MemoryPeak;
use crate::run::RunReport;

/// The first line, printed before the run.
pub fn header(config: &LoadConfig) -> String {
    let load = match config.rate {
        0 => "flat out".to_string(),
        rate => format!("at {rate} events/s"),
    };
    format!(
        "pulse-loadgen: {} connections, {} events/batch, {} {load}, {} users{}",
        config.connections,
        config.batch_size,
        secs(config.duration),
        config.users,
        if config.gzip { ", gzip" } else { "" }
    )
}

/// The line about the precomputed bodies.
pub fn bodies(count: usize, events: usize, (plain, sent): (usize, usize)) -> String {
    let per_event = plain / events.max(1);
    let mut line =
        format!("bodies     {count} precomputed, {:.1} kB each, {per_event} B/event", plain as f64 / 1e3);
    if sent != plain {
        let _ = write!(line, ", {:.1} kB gzipped", sent as f64 / 1e3);
    }
    line
}

/// The outcome of a run.
pub struct Summary<'a> {
    pub config: &'a LoadConfig,
    pub report: &'a RunReport,
    pub memory: Option<MemoryPeak>,
    /// Cores used over the run (warmup included) by the generator and the server.
    pub cpu: CpuUse,
}

impl Summary<'_> {
    /// Accepted events per second of the measured window.
    pub fn events_per_second(&self) -> f64 {
        let window = self.report.window.as_secs_f64();
        if window > 0.0 { self.report.tally.accepted as f64 / window } else { 0.0 }
    }

    /// The human-readable lines.
    pub fn human(&self) -> String {
        let t = &self.report.tally;
        let mut out = String::new();
        let backpressure: Vec<String> = t.backpressure.iter().map(|(s, n)| format!("{s}: {n}")).collect();
        let _ = write!(
            out,
            "requests   {} ok (200/202), {} backpressure (429/503){}, {} errors",
            t.ok,
            t.backpressured(),
            if backpressure.is_empty() { String::new() } else { format!(" [{}]", backpressure.join(", ")) },
            t.errors()
        );
        if let (Some(scheduled), Some(per_second)) =
            (self.report.scheduled, self.config.schedule.requests_per_second())
        {
            let _ = write!(
                out,
                "\nschedule   offered {} events/s ({per_second:.1} requests/s): {} of {scheduled} due requests sent",
                self.config.rate,
                t.requests()
            );
        }
        let _ = write!(
            out,
            "\nevents     {} accepted  ({:.0} events/s over {:.2} s)",
            t.accepted,
            self.events_per_second(),
            self.report.window.as_secs_f64()
        );
        if t.rejected > 0 {
            let _ = write!(
                out,
                "\nrejected   {} events; first: {}",
                t.rejected,
                t.first_rejection.as_deref().unwrap_or("?")
            );
        }
        for (status, (n, message)) in &t.http_errors {
            let _ = write!(out, "\nerror      {n} x HTTP {status}: {message}");
        }
        for (message, n) in &t.transport_errors {
            let _ = write!(out, "\nerror      {n} x {message}");
        }
        if t.latency_us.is_empty() {
            out.push_str("\nlatency    no answers");
        } else {
            let _ = write!(
                out,
                "\nlatency    p50 {}  p90 {}  p99 {}  max {}   (per batch request{})",
                ms(t.latency(0.5)),
                ms(t.latency(0.9)),
                ms(t.latency(0.99)),
                ms(t.max_latency()),
                if self.config.rate > 0 { ", from its scheduled send time" } else { "" }
            );
        }
        if let Some(own) = self.cpu.own_cores {
            let _ = write!(out, "\ncpu        loadgen {own:.2} cores");
            if let Some(server) = self.cpu.server_cores {
                let _ = write!(out, ", ingest {server:.2} cores");
            }
            if let Ok(cpus) = std::thread::available_parallelism() {
                let _ = write!(out, " (of {cpus})");
            }
        }
        if let Some(memory) = self.memory {
            let _ = write!(
                out,
                "\ningest rss peak {:.1} MB (VmHWM {:.1} MB){}",
                mb(memory.rss_kib),
                mb(memory.hwm_kib),
                if memory.exited { "; the process exited during the run" } else { "" }
            );
        }
        out
    }

    /// The summary as one JSON object.
    pub fn json(&self) -> Value {
        let t = &self.report.tally;
        let latency_ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
        let has_latency = !t.latency_us.is_empty();
        json!({
            "connections": self.config.connections,
            "batch_size": self.config.batch_size,
            "rate": self.config.rate,
            "duration_s": self.config.duration.as_secs_f64(),
            "users": self.config.users,
            "gzip": self.config.gzip,
            "requests": t.requests(),
            "scheduled": self.report.scheduled,
            "ok": t.ok,
            "backpressure": t.backpressured(),
            "errors": t.errors(),
            "events_accepted": t.accepted,
            "events_rejected": t.rejected,
            "window_s": self.report.window.as_secs_f64(),
            "events_per_s": self.events_per_second().round(),
            "p50_ms": has_latency.then(|| latency_ms(t.latency(0.5))),
            "p90_ms": has_latency.then(|| latency_ms(t.latency(0.9))),
            "p99_ms": has_latency.then(|| latency_ms(t.latency(0.99))),
            "max_ms": has_latency.then(|| latency_ms(t.max_latency())),
            "rss_peak_mb": self.memory.map(|m| (mb(m.rss_kib) * 10.0).round() / 10.0),
            "vm_hwm_mb": self.memory.map(|m| (mb(m.hwm_kib) * 10.0).round() / 10.0),
            "loadgen_cores": self.cpu.own_cores.map(|c| (c * 100.0).round() / 100.0),
            "ingest_cores": self.cpu.server_cores.map(|c| (c * 100.0).round() / 100.0),
        })
    }
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 { format!("{s:.0}s") } else { format!("{s}s") }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// KiB (as /proc reports) to megabytes.
fn mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use clap::Parser;
    use hyper::StatusCode;

    use super::*;
    use crate::config::Args;
    use crate::outcome::{Outcome, Tally};

    fn config(flags: &[&str]) -> LoadConfig {
        let argv = ["pulse-loadgen", "--key", "k"].iter().chain(flags).copied();
        Args::try_parse_from(argv).expect("flags").validate().expect("valid")
    }

    fn report() -> RunReport {
        let t0 = Instant::now();
        let mut tally = Tally::new();
        for i in 0..10u64 {
            let outcome = Outcome::Accepted { accepted: 500, rejected: 0, first_error: None };
            tally.record(outcome, t0, t0 + Duration::from_millis(i + 1));
        }
        tally.record(Outcome::Backpressure(StatusCode::SERVICE_UNAVAILABLE), t0, t0);
        tally.record(
            Outcome::HttpError { status: StatusCode::UNAUTHORIZED, message: "bad key".into() },
            t0,
            t0,
        );
        RunReport { tally, window: Duration::from_secs(2), scheduled: None }
    }

    #[test]
    fn the_header_names_the_load() {
        assert_eq!(
            header(&config(&[])),
            "pulse-loadgen: 16 connections, 500 events/batch, 10s flat out, 10000 users"
        );
        assert_eq!(
            header(&config(&["--rate", "1000", "--duration", "2.5", "--gzip"])),
            "pulse-loadgen: 16 connections, 500 events/batch, 2.5s at 1000 events/s, 10000 users, gzip"
        );
    }

    #[test]
    fn throughput_is_accepted_events_over_the_window() {
        let config = config(&[]);
        let report = report();
        let memory = Some(MemoryPeak { rss_kib: 83_300, hwm_kib: 84_000, samples: 5, exited: false });
        let cpu = CpuUse { own_cores: Some(0.5), server_cores: Some(1.25) };
        let summary = Summary { config: &config, report: &report, memory, cpu };
        assert_eq!(summary.events_per_second(), 2500.0);
        let text = summary.human();
        assert!(
            text.contains("requests   10 ok (200/202), 1 backpressure (429/503) [503: 1], 1 errors"),
            "{text}"
        );
        assert!(text.contains("error      1 x HTTP 401: bad key"), "{text}");
        assert!(text.contains("ingest rss peak 85.3 MB (VmHWM 86.0 MB)"), "{text}");
        assert!(text.contains("cpu        loadgen 0.50 cores, ingest 1.25 cores"), "{text}");
        let json = summary.json();
        assert_eq!(json["events_per_s"], 2500.0);
        assert_eq!(json["ok"], 10);
        assert_eq!(json["rss_peak_mb"], 85.3);
        assert!(json["p99_ms"].as_f64().is_some_and(|p| (9.9..=10.1).contains(&p)), "{json}");
    }
}
