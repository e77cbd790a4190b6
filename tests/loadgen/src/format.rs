//! The wire format of the bodies: Pulse's native `/v1/batch`, or what the Segment and
//! PostHog SDKs send to ingest's compat endpoints (`--format segment|posthog`), so the
//! compat path is measured with the same generator.

use std::io::Write;

/// Which API the load goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WireFormat {
    /// `POST /v1/batch`, Bearer write key.
    Native,
    /// `POST /compat/segment/v1/batch` as segment-analytics-python sends it (context,
    /// integrations, ISO timestamps, sentAt); the write key as a Bearer token.
    Segment,
    /// `POST /compat/posthog/batch/` as posthog-python sends it (`api_key` in the body,
    /// `$lib` properties, ISO timestamps, sent_at).
    Posthog,
}

impl WireFormat {
    /// The endpoint's path.
    pub fn path(self) -> &'static str {
        match self {
            WireFormat::Native => "/v1/batch",
            WireFormat::Segment => "/compat/segment/v1/batch",
            WireFormat::Posthog => "/compat/posthog/batch/",
        }
    }

    /// The body up to the first event.
    pub fn open(self, json: &mut Vec<u8>, api_key: &str) {
        match self {
            WireFormat::Posthog => {
                json.extend_from_slice(b"{\"api_key\":");
                json.extend_from_slice(serde_json::Value::from(api_key).to_string().as_bytes());
                json.extend_from_slice(b",\"batch\":[");
            }
            WireFormat::Native | WireFormat::Segment => json.extend_from_slice(b"{\"batch\":["),
        }
    }

    /// The start of an event, up to the opening quote of its id.
    pub fn event_start(self) -> &'static [u8] {
        match self {
            WireFormat::Native => b"{\"event_id\":\"",
            WireFormat::Segment => b"{\"type\":\"track\",\"messageId\":\"",
            WireFormat::Posthog => b"{\"uuid\":\"",
        }
    }

    /// The rest of an event after its id (closing quote included).
    pub fn event_rest(
        self,
        json: &mut Vec<u8>,
        event: &serde_json::Value,
        user: &str,
        timestamp_ms: i64,
        mut properties: serde_json::Value,
    ) {
        // Writing into a Vec cannot fail.
        let _ = match self {
            WireFormat::Native => write!(
                json,
                "\",\"event\":{event},\"distinct_id\":\"{user}\",\"timestamp\":{timestamp_ms},\"properties\":{properties}}}"
            ),
            WireFormat::Segment => write!(
                json,
                "\",\"event\":{event},\"userId\":\"{user}\",\"anonymousId\":null,\"timestamp\":\"{}\",\"properties\":{properties},\"integrations\":{{}},\"context\":{{\"library\":{{\"name\":\"analytics-python\",\"version\":\"2.4.0\"}}}}}}",
                iso(timestamp_ms)
            ),
            WireFormat::Posthog => {
                properties["$lib"] = "posthog-python".into();
                properties["$lib_version"] = "7.91.1".into();
                write!(
                    json,
                    "\",\"event\":{event},\"distinct_id\":\"{user}\",\"timestamp\":\"{}\",\"properties\":{properties}}}",
                    iso(timestamp_ms)
                )
            }
        };
    }

    /// The end of the body, after the last event; `now_ms` is the SDK's send time.
    pub fn close(self, json: &mut Vec<u8>, now_ms: i64) {
        let _ = match self {
            WireFormat::Native => write!(json, "]}}"),
            WireFormat::Segment => write!(json, "],\"sentAt\":\"{}\"}}", iso(now_ms)),
            WireFormat::Posthog => {
                write!(json, "],\"historical_migration\":false,\"sent_at\":\"{}\"}}", iso(now_ms))
            }
        };
    }
}

/// Epoch milliseconds as RFC 3339 in UTC with milliseconds, as the SDKs write it
/// (days to civil date: Howard Hinnant's algorithm).
pub fn iso(ms: i64) -> String {
    let (days, in_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, milli) = (in_day / 3_600_000, in_day / 60_000 % 60, in_day / 1_000 % 60, in_day % 1_000);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}+00:00")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_matches_known_instants() {
        assert_eq!(iso(0), "1970-01-01T00:00:00.000+00:00");
        assert_eq!(iso(1_750_000_000_123), "2025-06-15T15:06:40.123+00:00");
        assert_eq!(iso(951_782_400_000), "2000-02-29T00:00:00.000+00:00");
        assert_eq!(iso(1_795_999_999_999), "2026-11-30T00:53:19.999+00:00");
    }

    #[test]
    fn each_format_writes_valid_json_with_its_fields() {
        for (format, id, user) in [
            (WireFormat::Native, "event_id", "distinct_id"),
            (WireFormat::Segment, "messageId", "userId"),
            (WireFormat::Posthog, "uuid", "distinct_id"),
        ] {
            let mut json = Vec::new();
            format.open(&mut json, "k1");
            json.extend_from_slice(format.event_start());
            json.extend_from_slice(b"id-1");
            format.event_rest(
                &mut json,
                &"signup".into(),
                "user-1",
                1_750_000_000_000,
                serde_json::json!({ "plan": "pro" }),
            );
            format.close(&mut json, 1_750_000_001_000);
            let body: serde_json::Value = serde_json::from_slice(&json).expect("valid JSON");
            let event = &body["batch"][0];
            assert_eq!(
                (event[id].as_str(), event[user].as_str()),
                (Some("id-1"), Some("user-1")),
                "{format:?}"
            );
            assert_eq!(event["properties"]["plan"], "pro");
            if format == WireFormat::Posthog {
                assert_eq!(body["api_key"], "k1");
            }
        }
    }
}
