//! Peak memory of the server under load, from `/proc/<pid>/status` every 100 ms.
//!
//! Runs on its own thread: reading procfs is a blocking call, and the runtime's threads are
//! busy sending.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

const INTERVAL: Duration = Duration::from_millis(100);

/// What the sampler saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryPeak {
    /// Highest VmRSS sampled, KiB.
    pub rss_kib: u64,
    /// VmHWM (the kernel's own peak RSS since the process started) at the last sample, KiB.
    pub hwm_kib: u64,
    /// Samples taken.
    pub samples: u64,
    /// The process was gone before the sampler stopped.
    pub exited: bool,
}

/// A running sampler; `stop` returns the peak.
#[derive(Debug)]
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<MemoryPeak>,
}

impl RssSampler {
    /// Starts sampling `pid`; fails at once when its status cannot be read.
    pub fn start(pid: u32) -> Result<RssSampler, String> {
        let path = PathBuf::from(format!("/proc/{pid}/status"));
        let first = std::fs::read_to_string(&path)
            .map_err(|e| format!("--pid {pid}: cannot read {}: {e}", path.display()))?;
        let mut peak = MemoryPeak::default();
        peak.add(&first);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("rss-sampler".to_string())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(INTERVAL);
                    match std::fs::read_to_string(&path) {
                        Ok(status) => peak.add(&status),
                        Err(_) => {
                            peak.exited = true;
                            break;
                        }
                    }
                }
                peak
            })
            .map_err(|e| format!("cannot start the memory sampler thread: {e}"))?;
        Ok(RssSampler { stop, thread })
    }

    /// Stops sampling and returns the peak.
    pub fn stop(self) -> MemoryPeak {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

impl MemoryPeak {
    fn add(&mut self, status: &str) {
        let (rss, hwm) = parse_status(status);
        if let Some(rss) = rss {
            self.rss_kib = self.rss_kib.max(rss);
            self.samples += 1;
        }
        if let Some(hwm) = hwm {
            self.hwm_kib = self.hwm_kib.max(hwm);
        }
    }
}

/// VmRSS and VmHWM in KiB from the text of `/proc/<pid>/status`.
fn parse_status(status: &str) -> (Option<u64>, Option<u64>) {
    let field = |name: &str| {
        status.lines().find_map(|line| {
            let value = line.strip_prefix(name)?.strip_prefix(':')?;
            value.trim().strip_suffix("kB")?.trim().parse().ok()
        })
    };
    (field("VmRSS"), field("VmHWM"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str =
        "Name:\tpulse-ingest\nVmPeak:\t  812344 kB\nVmHWM:\t   88064 kB\nVmRSS:\t   87312 kB\nThreads:\t4\n";

    #[test]
    fn reads_rss_and_hwm_in_kib() {
        assert_eq!(parse_status(STATUS), (Some(87_312), Some(88_064)));
        assert_eq!(parse_status("Name:\tkthreadd\n"), (None, None));
    }

    #[test]
    fn keeps_the_highest_rss_seen() {
        let mut peak = MemoryPeak::default();
        peak.add(STATUS);
        peak.add("VmHWM:\t 90000 kB\nVmRSS:\t 1000 kB\n");
        assert_eq!((peak.rss_kib, peak.hwm_kib, peak.samples), (87_312, 90_000, 2));
    }

    #[test]
    fn samples_this_process() {
        let sampler = RssSampler::start(std::process::id()).expect("own status readable");
        let peak = sampler.stop();
        assert!(peak.rss_kib > 0 && peak.hwm_kib >= peak.rss_kib, "{peak:?}");
        assert!(!peak.exited);
    }

    #[test]
    fn a_missing_process_is_refused_at_start() {
        let err = RssSampler::start(u32::MAX).expect_err("no such pid");
        assert!(err.contains("--pid"), "{err}");
    }
}
