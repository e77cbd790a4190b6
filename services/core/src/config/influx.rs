//! The optional InfluxDB sink of a pipeline: where the processor copies its rollups (and
//! declared funnels' conversion) as time series, over InfluxDB's v1 HTTP `/write` endpoint,
//! which InfluxDB 1.x serves and 2.x/3.x keep for compatibility.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::DurationSpec;
use crate::validation::Errors;

/// Most points in one write request.
pub const MAX_BATCH_POINTS: u32 = 100_000;

/// The InfluxDB sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InfluxConfig {
    /// The InfluxDB HTTP API's base URL, e.g. `http://influxdb.monitoring:8086`. Plain
    /// `http` only: this build has no TLS client (put a TLS-terminating proxy in front).
    pub url: String,
    /// The database (1.x), or the bucket's database name in its DBRP mapping (2.x/3.x).
    pub database: String,
    /// The retention policy written to; the database's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_policy: Option<String>,
    /// A file holding the user name (a mounted Secret key); no authentication when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_file: Option<PathBuf>,
    /// A file holding the password or token; required with `usernameFile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// How often changed rollups are written.
    #[serde(default = "default_flush_interval")]
    pub flush_interval: DurationSpec,
    /// How far back each flush looks for changed periods (late events). Older changes are
    /// written by the full sweep, which runs at start and every hour over `backfill`.
    #[serde(default = "default_lookback")]
    pub lookback: DurationSpec,
    /// How far back the full sweep goes.
    #[serde(default = "default_backfill")]
    pub backfill: DurationSpec,
    /// How often each declared funnel's conversion per day (last 7 days) is recomputed
    /// from raw events and written, when new events arrived.
    #[serde(default = "default_funnel_interval")]
    pub funnel_interval: DurationSpec,
    /// Most points in one write request (1 to 100000).
    #[serde(default = "default_batch_points")]
    pub batch_points: u32,
}

fn default_flush_interval() -> DurationSpec {
    DurationSpec::seconds(5)
}

fn default_lookback() -> DurationSpec {
    DurationSpec::hours(2)
}

fn default_backfill() -> DurationSpec {
    DurationSpec::days(7)
}

fn default_funnel_interval() -> DurationSpec {
    DurationSpec::minutes(1)
}

fn default_batch_points() -> u32 {
    5_000
}

impl InfluxConfig {
    /// Writes to `database` at `url`, without credentials, every other setting its default.
    pub fn new(url: impl Into<String>, database: impl Into<String>) -> Self {
        InfluxConfig {
            url: url.into(),
            database: database.into(),
            retention_policy: None,
            username_file: None,
            password_file: None,
            flush_interval: default_flush_interval(),
            lookback: default_lookback(),
            backfill: default_backfill(),
            funnel_interval: default_funnel_interval(),
            batch_points: default_batch_points(),
        }
    }

    /// Adds what is wrong, each under `prefix.<field>`.
    pub(crate) fn validate_into(&self, prefix: &str, errors: &mut Errors) {
        match self.url.strip_prefix("http://") {
            Some(rest) if !rest.is_empty() && !rest.contains(char::is_whitespace) => {}
            Some(_) => errors.add(format!("{prefix}.url"), "needs a host after http://"),
            None if self.url.starts_with("https://") => errors.add(
                format!("{prefix}.url"),
                "https is not supported by this build: use http:// (e.g. through a TLS-terminating proxy)",
            ),
            None => errors.add(format!("{prefix}.url"), "must start with http://"),
        }
        if !is_name(&self.database) {
            errors.add(format!("{prefix}.database"), "1-255 characters, no control characters");
        }
        if let Some(rp) = &self.retention_policy
            && !is_name(rp)
        {
            errors.add(format!("{prefix}.retentionPolicy"), "1-255 characters, no control characters");
        }
        if self.username_file.is_some() != self.password_file.is_some() {
            errors.add(format!("{prefix}.passwordFile"), "usernameFile and passwordFile go together");
        }
        if self.lookback.as_secs() < self.flush_interval.as_secs() {
            errors.add(format!("{prefix}.lookback"), "must be at least flushInterval");
        }
        if self.backfill.as_secs() < self.lookback.as_secs() {
            errors.add(format!("{prefix}.backfill"), "must be at least lookback");
        }
        if !(1..=MAX_BATCH_POINTS).contains(&self.batch_points) {
            errors.add(format!("{prefix}.batchPoints"), format!("1 to {MAX_BATCH_POINTS}"));
        }
    }
}

fn is_name(s: &str) -> bool {
    (1..=255).contains(&s.len()) && !s.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> InfluxConfig {
        serde_yaml::from_str(yaml).expect("parses")
    }

    fn problems(c: &InfluxConfig) -> Vec<String> {
        let mut errors = Errors::default();
        c.validate_into("influx", &mut errors);
        errors.into_result().err().unwrap_or_default().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn defaults_are_valid() {
        let c = config("{ url: 'http://influx:8086', database: pulse }");
        assert_eq!(c, InfluxConfig::new("http://influx:8086", "pulse"));
        assert_eq!(c.flush_interval, DurationSpec::seconds(5));
        assert_eq!(c.batch_points, 5_000);
        assert!(problems(&c).is_empty(), "{:?}", problems(&c));
    }

    #[test]
    fn names_each_bad_field() {
        let c = config(
            "{ url: 'https://influx', database: '', usernameFile: /u, flushInterval: 1h, lookback: 1m, \
             backfill: 30s, batchPoints: 0 }",
        );
        let p = problems(&c).join("\n");
        for field in [
            "influx.url",
            "influx.database",
            "influx.passwordFile",
            "influx.lookback",
            "influx.backfill",
            "influx.batchPoints",
        ] {
            assert!(p.contains(&format!("{field}:")), "{field} missing in {p}");
        }
        assert!(p.contains("https is not supported"), "{p}");
        assert!(
            problems(&config("{ url: 'influx:8086', database: d }"))
                .join("")
                .contains("must start with http://")
        );
    }

    #[test]
    fn refuses_unknown_fields() {
        assert!(serde_yaml::from_str::<InfluxConfig>("{ url: 'http://i', database: d, bucket: b }").is_err());
    }
}
