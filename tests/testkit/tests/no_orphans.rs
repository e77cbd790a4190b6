//! Proves no server outlives its test: not when the test panics, and not when the whole
//! test process is killed. Each case runs a helper test of this binary in a child process.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pulse_testkit::RedisServer;

const PID_FILE: &str = "PULSE_TESTKIT_PID_FILE";

/// The helper: starts Redis, records its pid, then panics or hangs as asked. It does
/// nothing unless run by one of the tests below.
#[tokio::test]
#[ignore = "helper run in a child process by the no-orphan tests"]
async fn helper_starts_redis_then_fails() {
    let Some(pid_file) = std::env::var_os(PID_FILE) else { return };
    let redis = RedisServer::start().await.expect("start redis-server");
    let pid = redis_pid(&redis);
    std::fs::write(&pid_file, pid.to_string()).expect("write pid file");
    if std::env::var("PULSE_TESTKIT_HANG").is_ok() {
        loop {
            std::thread::sleep(Duration::from_secs(60));
        }
    }
    panic!("the helper test fails on purpose with redis-server {pid} running");
}

fn redis_pid(redis: &RedisServer) -> u32 {
    // redis-server reports its own pid, which is also the child we spawned.
    let output = Command::new("redis-cli")
        .args(["-p", &redis.port().to_string(), "INFO", "server"])
        .output()
        .expect("run redis-cli");
    let info = String::from_utf8_lossy(&output.stdout);
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no process_id in INFO: {info}"))
}

fn helper(pid_file: &Path) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("current test binary"));
    command
        .args(["--ignored", "--exact", "helper_starts_redis_then_fails", "--test-threads=1"])
        .env(PID_FILE, pid_file)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

fn wait_for_pid_file(path: &Path) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(pid) = std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse().ok()) {
            return pid;
        }
        assert!(Instant::now() < deadline, "the helper never started redis-server");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `pid` still runs (a zombie counts as gone: it has exited).
fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

fn assert_gone_soon(pid: u32) {
    // SIGKILL is delivered asynchronously; give the kernel a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    while is_running(pid) {
        assert!(Instant::now() < deadline, "redis-server {pid} outlived its test");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn pid_file(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(name);
    (dir, path)
}

#[test]
fn a_panicking_test_leaves_no_server_behind() {
    let (_dir, path) = pid_file("panic.pid");
    let status = helper(&path).status().expect("run the helper");
    assert!(!status.success(), "the helper panics");
    let pid = wait_for_pid_file(&path);
    assert_gone_soon(pid);
}

#[test]
fn a_killed_test_process_leaves_no_server_behind() {
    let (_dir, path) = pid_file("kill.pid");
    let mut child = helper(&path).env("PULSE_TESTKIT_HANG", "1").spawn().expect("run the helper");
    let pid = wait_for_pid_file(&path);
    assert!(is_running(pid), "redis-server runs while its test runs");
    child.kill().expect("SIGKILL the test process");
    child.wait().expect("reap the test process");
    assert_gone_soon(pid);
}
