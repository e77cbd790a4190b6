//! Helpers the query API's tests share.

use std::process::Command;
use std::time::Duration;

use pulse_testkit::{PipelineFiles, ServerProcess};

/// The pulse-query binary on a free port with `files`' config, its log in the files' dir,
/// `log_format` and `RUST_LOG=rust_log`; returns once it is ready, with its base URL.
pub async fn start_binary(
    files: &PipelineFiles,
    log_format: &str,
    rust_log: &str,
) -> (ServerProcess, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let url = format!("http://127.0.0.1:{port}");
    let mut command = Command::new(env!("CARGO_BIN_EXE_pulse-query"));
    command
        .arg("--config")
        .arg(&files.config)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--log-format")
        .arg(log_format)
        .env("RUST_LOG", rust_log);
    let mut query =
        ServerProcess::spawn("query", command, &files.dir().join("query.log")).expect("start query");
    let http = reqwest::Client::new();
    query
        .wait_ready(Duration::from_secs(60), || {
            let probe = http.get(format!("{url}/readyz")).send();
            async move {
                probe.await.ok().filter(|r| r.status().is_success()).ok_or_else(|| "not ready".to_string())
            }
        })
        .await
        .expect("query ready");
    (query, url)
}
