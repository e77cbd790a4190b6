//! Proves a missing or broken server binary fails with a clear message instead of a hang.
//! This binary holds one test because it points `PULSE_BIN_DIR` at a fake dir.

use std::os::unix::fs::PermissionsExt;

use pulse_testkit::{Error, FerretDb, KubeOptions, KubeStack};

#[tokio::test]
#[allow(unsafe_code)]
async fn missing_and_broken_binaries_give_clear_errors() {
    let bin = tempfile::tempdir().expect("temp dir");
    // SAFETY: this is the only test in this binary and no other thread reads the env yet.
    unsafe { std::env::set_var("PULSE_BIN_DIR", bin.path()) };

    let missing = FerretDb::start().await.expect_err("ferretdb is missing");
    assert!(matches!(missing, Error::MissingBinary { .. }), "{missing}");
    assert!(missing.to_string().contains("make env"), "the error says how to fix it: {missing}");

    let etcd = bin.path().join("etcd");
    std::fs::write(&etcd, "#!/bin/sh\necho 'etcd: cannot open data dir: disk on fire' >&2\nexit 3\n")
        .expect("write fake etcd");
    std::fs::set_permissions(&etcd, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let broken = KubeStack::start(KubeOptions::api_only()).await.expect_err("etcd is broken");
    let message = broken.to_string();
    assert!(matches!(broken, Error::Exited { .. }), "{message}");
    assert!(message.contains("disk on fire"), "the error shows the server's own output: {message}");
}
