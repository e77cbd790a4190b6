//! Writes lines to InfluxDB's v1 HTTP `/write` endpoint (served by InfluxDB 1.x, kept by
//! 2.x and 3.x for compatibility) in batches of a bounded number of points.

use std::time::Duration;

use pulse_core::config::InfluxConfig;

/// How long one write request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a write failed. Every kind is retried by the sink with capped backoff; the
/// variant name is the metric label.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot reach InfluxDB: {0}")]
    Unreachable(reqwest::Error),
    #[error("InfluxDB refused the credentials ({status}): {body}")]
    Unauthorized { status: u16, body: String },
    #[error("InfluxDB refused the points ({status}): {body}")]
    Refused { status: u16, body: String },
    #[error("InfluxDB failed ({status}): {body}")]
    Server { status: u16, body: String },
    #[error("cannot read {path}: {source}")]
    Credentials { path: String, source: std::io::Error },
}

impl WriteError {
    /// The kind, as a metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            WriteError::Unreachable(_) => "unreachable",
            WriteError::Unauthorized { .. } => "unauthorized",
            WriteError::Refused { .. } => "refused",
            WriteError::Server { .. } => "server",
            WriteError::Credentials { .. } => "credentials",
        }
    }
}

/// A client of one database (and retention policy).
pub struct Writer {
    client: reqwest::Client,
    /// `<base>/write?db=..&precision=ms[&rp=..]`.
    url: String,
    config: InfluxConfig,
    credentials: Option<(String, String)>,
}

impl Writer {
    /// A writer for `config`; credentials are read from their files on the first write and
    /// again after InfluxDB refuses them (so a rotated Secret is picked up).
    pub fn new(config: &InfluxConfig) -> Result<Self, WriteError> {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(3))
            .build()
            .map_err(WriteError::Unreachable)?;
        let mut url = format!(
            "{}/write?db={}&precision=ms",
            config.url.trim_end_matches('/'),
            percent_encode(&config.database)
        );
        if let Some(rp) = &config.retention_policy {
            url.push_str(&format!("&rp={}", percent_encode(rp)));
        }
        Ok(Writer { client, url, config: config.clone(), credentials: None })
    }

    /// Writes `lines` (newline-free, one point each) in requests of at most `batch_points`
    /// lines; on an error, the lines before the failed request are written.
    pub async fn write(&mut self, lines: &[String]) -> Result<(), WriteError> {
        for chunk in lines.chunks(self.config.batch_points.max(1) as usize) {
            self.write_request(chunk.join("\n")).await?;
        }
        Ok(())
    }

    async fn write_request(&mut self, body: String) -> Result<(), WriteError> {
        if self.credentials.is_none() {
            self.credentials = self.read_credentials().await?;
        }
        let mut request = self.client.post(&self.url).body(body);
        if let Some((user, password)) = &self.credentials {
            request = request.basic_auth(user, Some(password));
        }
        let response = request.send().await.map_err(WriteError::Unreachable)?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let body: String = response.text().await.unwrap_or_default().chars().take(300).collect();
        Err(match status {
            401 | 403 => {
                self.credentials = None;
                WriteError::Unauthorized { status, body }
            }
            400..=499 => WriteError::Refused { status, body },
            _ => WriteError::Server { status, body },
        })
    }

    async fn read_credentials(&self) -> Result<Option<(String, String)>, WriteError> {
        let (Some(user), Some(password)) = (&self.config.username_file, &self.config.password_file) else {
            return Ok(None);
        };
        let read = |path: std::path::PathBuf| async move {
            tokio::fs::read_to_string(&path)
                .await
                .map(|s| s.trim().to_string())
                .map_err(|source| WriteError::Credentials { path: path.display().to_string(), source })
        };
        Ok(Some((read(user.clone()).await?, read(password.clone()).await?)))
    }
}

/// A query-string value: every byte but the unreserved ones of RFC 3986 as `%XX`.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(percent_encode("my db/ä&rp=x"), "my%20db%2F%C3%A4%26rp%3Dx");
        assert_eq!(percent_encode("pulse_acme-1.x"), "pulse_acme-1.x");
    }
}
