//! Proves FerretDB's PostgreSQL backend is real and behaves like the other servers of the
//! stack: documents land in the testkit's own PostgreSQL cluster, which stays up while
//! FerretDB is killed and restarted, and which is gone (process and dir) after the handle
//! drops, or when the test process itself is killed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mongodb::bson::{Document, doc};
use pulse_testkit::{Backend, FerretDb, unique_name};

const PID_FILE: &str = "PULSE_TESTKIT_PID_FILE";

/// Runs one SQL statement on the cluster behind `ferret` and returns its unaligned output.
fn psql(ferret: &FerretDb, sql: &str) -> Result<String, String> {
    ferret.psql(sql).map_err(|e| e.to_string())
}

/// The postmaster's pid and data dir, read from the server itself.
fn postmaster(ferret: &FerretDb) -> (u32, PathBuf) {
    let data = PathBuf::from(psql(ferret, "SHOW data_directory").expect("data_directory"));
    let pid_file = std::fs::read_to_string(data.join("postmaster.pid")).expect("read postmaster.pid");
    let pid = pid_file
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("pid on postmaster.pid's first line");
    (pid, data)
}

#[tokio::test]
async fn documents_are_stored_in_postgresql_which_outlives_a_ferretdb_restart() {
    let mut ferret = FerretDb::start_on(Backend::Postgresql).await.expect("start FerretDB on PostgreSQL");
    assert_eq!(ferret.backend(), Backend::Postgresql);
    let db = unique_name("onpostgres").replace('-', "_");
    let events = ferret.client().await.expect("connect").database(&db).collection::<Document>("events");
    events.insert_many([doc! { "_id": "e1" }, doc! { "_id": "e2" }]).await.expect("insert_many");

    // FerretDB keeps a MongoDB database as a PostgreSQL schema, one table per collection.
    let tables =
        psql(&ferret, &format!("SELECT count(*) FROM information_schema.tables WHERE table_schema = '{db}'"))
            .expect("list the database's tables");
    assert_ne!(tables, "0", "database {db} is a schema of the testkit's PostgreSQL");

    let (pid, _) = postmaster(&ferret);
    ferret.kill();
    assert!(
        psql(&ferret, "SELECT 1").is_ok_and(|one| one == "1"),
        "PostgreSQL keeps running while FerretDB is down"
    );
    ferret.restart().await.expect("restart FerretDB");
    assert_eq!(postmaster(&ferret).0, pid, "the same PostgreSQL serves the restarted FerretDB");
    let events = ferret.client().await.expect("reconnect").database(&db).collection::<Document>("events");
    assert_eq!(
        events.count_documents(doc! {}).await.expect("count"),
        2,
        "the documents survived the restart"
    );
}

#[tokio::test]
async fn dropping_ferretdb_stops_its_postgresql_and_removes_its_data() {
    let ferret = FerretDb::start_on(Backend::Postgresql).await.expect("start FerretDB on PostgreSQL");
    let (pid, data) = postmaster(&ferret);
    assert!(is_running(pid));
    drop(ferret);
    assert!(!is_running(pid), "the postmaster {pid} was stopped before the handle's drop returned");
    let kept = std::env::var_os("PULSE_TESTKIT_KEEP").is_some_and(|v| v == "1");
    assert!(kept || !data.exists(), "{} was removed", data.display());
}

/// The helper: starts FerretDB on PostgreSQL, records the postmaster's pid and data dir,
/// then hangs until it is killed. It does nothing unless run by the test below.
#[tokio::test]
#[ignore = "helper run in a child process by a_killed_test_process_leaves_no_postgresql_behind"]
async fn helper_starts_postgresql_then_hangs() {
    let Some(pid_file) = std::env::var_os(PID_FILE) else { return };
    let ferret = FerretDb::start_on(Backend::Postgresql).await.expect("start FerretDB on PostgreSQL");
    let (pid, data) = postmaster(&ferret);
    std::fs::write(&pid_file, format!("{pid}\n{}", data.display())).expect("write pid file");
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// The second helper: makes a work dir, which clears what dead test processes left.
#[test]
#[ignore = "helper run in a child process by a_killed_test_process_leaves_no_postgresql_behind"]
fn helper_makes_a_work_dir() {
    if std::env::var_os(PID_FILE).is_some() {
        pulse_testkit::WorkDir::new("probe").expect("work dir");
    }
}

fn helper(name: &str, pid_file: &Path) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("current test binary"));
    command
        .args(["--ignored", "--exact", name, "--test-threads=1"])
        .env(PID_FILE, pid_file)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// The System V shared memory segment a postmaster records on line 7 of its pid file, if it
/// still exists.
fn shared_memory_of(data: &Path) -> Option<String> {
    let pid_file = std::fs::read_to_string(data.join("postmaster.pid")).expect("postmaster.pid stays");
    let segment: Vec<&str> = pid_file.lines().nth(6).expect("line 7").split_whitespace().collect();
    let table = std::fs::read_to_string("/proc/sysvipc/shm").expect("/proc/sysvipc/shm");
    table
        .lines()
        .skip(1)
        .find(|l| l.split_whitespace().take(2).eq(segment.iter().copied()))
        .map(str::to_string)
}

#[test]
fn a_killed_test_process_leaves_no_postgresql_behind() {
    // PostgreSQL runs as another user when the tests run as root; a change of user clears
    // the parent-death signal unless it is set after the change.
    let dir = tempfile::tempdir().expect("temp dir");
    let pid_file = dir.path().join("postmaster.pid");
    let mut child = helper("helper_starts_postgresql_then_hangs", &pid_file).spawn().expect("run the helper");
    let deadline = Instant::now() + Duration::from_secs(60);
    let (pid, data): (u32, PathBuf) = loop {
        let written = std::fs::read_to_string(&pid_file).unwrap_or_default();
        if let Some((pid, data)) =
            written.split_once('\n').and_then(|(p, d)| Some((p.parse().ok()?, d.into())))
        {
            break (pid, data);
        }
        assert!(
            child.try_wait().expect("check on the helper").is_none(),
            "the helper exited before starting PostgreSQL"
        );
        assert!(Instant::now() < deadline, "the helper never started PostgreSQL");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(is_running(pid), "PostgreSQL runs while its test runs");
    child.kill().expect("SIGKILL the test process");
    child.wait().expect("reap the test process");
    // SIGKILL is delivered asynchronously; give the kernel a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    while is_running(pid) {
        assert!(Instant::now() < deadline, "the postmaster {pid} outlived its killed test process");
        std::thread::sleep(Duration::from_millis(20));
    }

    // A killed postmaster cannot free its shared memory segment; the next test process's
    // first work dir does, with the dead process's dir.
    let dead = data.parent().expect("the work dir").to_path_buf();
    // Its other processes notice its death and detach, one by one.
    let attached = |segment: &str| segment.split_whitespace().nth(6).map(str::to_string);
    loop {
        let segment = shared_memory_of(&data).expect("the killed postmaster left its segment");
        if attached(&segment).as_deref() == Some("0") {
            break;
        }
        assert!(Instant::now() < deadline, "PostgreSQL's processes stayed attached: {segment}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = helper("helper_makes_a_work_dir", &pid_file).status().expect("run the second helper");
    assert!(status.success());
    assert!(!dead.exists(), "{} was removed", dead.display());
    let table = std::fs::read_to_string("/proc/sysvipc/shm").expect("/proc/sysvipc/shm");
    assert!(
        !table.lines().any(|l| l.split_whitespace().nth(4) == Some(&pid.to_string())),
        "the segment was freed:\n{table}"
    );
}

/// Whether `pid` still runs (a zombie counts as gone: it has exited).
fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}
