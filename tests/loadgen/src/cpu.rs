//! CPU time of this process and of the server, from `/proc/<pid>/stat`, to show whether the
//! generator itself was a bottleneck on a small machine.

use std::time::{Duration, Instant};

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ), 100 on every Linux architecture
/// this runs on.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds (user + system) of a process so far, or `None` when it cannot be read.
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    parse_stat(&std::fs::read_to_string(path).ok()?)
}

/// utime + stime in seconds from the text of `/proc/<pid>/stat`.
fn parse_stat(stat: &str) -> Option<f64> {
    // The command name is in parentheses and may hold spaces: count fields after the last ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    // Fields 3.. of proc(5) follow the name; utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SECOND)
}

/// CPU use of the generator and the server over an interval.
#[derive(Debug, Clone, Copy)]
pub struct CpuMeter {
    started: Instant,
    own: Option<f64>,
    server: Option<(u32, f64)>,
}

/// Cores used on average over the interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuUse {
    pub own_cores: Option<f64>,
    pub server_cores: Option<f64>,
}

impl CpuMeter {
    /// Starts measuring this process and, when given, the server.
    pub fn start(server_pid: Option<u32>) -> CpuMeter {
        CpuMeter {
            started: Instant::now(),
            own: cpu_seconds(None),
            server: server_pid.and_then(|pid| Some((pid, cpu_seconds(Some(pid))?))),
        }
    }

    /// Average cores used since `start`.
    pub fn stop(&self) -> CpuUse {
        let wall = self.started.elapsed().max(Duration::from_millis(1)).as_secs_f64();
        let cores = |before: f64, after: Option<f64>| after.map(|after| (after - before).max(0.0) / wall);
        CpuUse {
            own_cores: self.own.and_then(|before| cores(before, cpu_seconds(None))),
            server_cores: self.server.and_then(|(pid, before)| cores(before, cpu_seconds(Some(pid)))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_user_plus_system_time() {
        let stat = "4242 (pulse ingest) S 1 4242 4242 0 -1 4194560 2150 0 0 0 1250 340 0 0 20 0 6 0 9 0";
        assert_eq!(parse_stat(stat), Some(15.9));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn measures_this_process() {
        let meter = CpuMeter::start(Some(std::process::id()));
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let used = meter.stop();
        assert!(used.own_cores.is_some_and(|c| c >= 0.0), "{used:?}");
        assert!(used.server_cores.is_some(), "{used:?}");
    }
}
