//! When an event happened, from the times a client SDK sends: the event time on the
//! client's clock, corrected by how far that clock is off, measured as the difference
//! between the client's send time and the server's receive time. Pure, so the rule can be
//! tested without a server. docs/compat.md states it for each format.

use pulse_core::event::{ErrorCode, EventError};
use serde_json::Value;

/// A client time as sent: a field name (for errors) and its value.
pub type ClientTime<'a> = (&'a str, &'a Value);

/// Epoch milliseconds of an RFC 3339 string (with an offset) or an integer of epoch ms.
pub fn epoch_ms(field: &str, value: &Value) -> Result<i64, EventError> {
    let invalid = |message: &str| EventError {
        code: ErrorCode::InvalidTimestamp,
        field: field.to_string(),
        message: message.to_string(),
    };
    match value {
        Value::String(s) => s.trim().parse::<jiff::Timestamp>().map(|t| t.as_millisecond()).map_err(|_| {
            invalid("must be ISO 8601 / RFC 3339 with an offset (e.g. 2026-11-24T10:00:00.000Z) or integer epoch milliseconds")
        }),
        Value::Number(n) => {
            pulse_core::event::integer_millis(n).ok_or_else(|| invalid("epoch milliseconds must be an integer"))
        }
        other => Err(EventError {
            code: ErrorCode::InvalidType,
            field: field.to_string(),
            message: format!("must be a string, not {}", super::type_name(other)),
        }),
    }
}

/// A send time, parsed (once per request for a batch's), or `None` when absent or null.
pub fn send_time(field: &str, value: Option<&Value>) -> Option<Result<i64, EventError>> {
    value.filter(|v| !v.is_null()).map(|v| epoch_ms(field, v))
}

/// The event time in epoch ms, or `None` when the client sent none (ingest then uses the
/// receive time). With both an event time and a send time, the client's clock skew is
/// removed: `received_at - (sent_at - event_time)`; that is Segment's documented rule
/// (`timestamp = receivedAt - (sentAt - originalTimestamp)`) and PostHog's. (Segment
/// messages are refused for any unreadable time they carry, used or not.)
pub fn corrected(
    event_time: Option<ClientTime<'_>>,
    sent_at: Option<Result<i64, EventError>>,
    received_at: i64,
) -> Result<Option<i64>, EventError> {
    let Some((field, value)) = event_time.filter(|(_, v)| !v.is_null()) else { return Ok(None) };
    let at = epoch_ms(field, value)?;
    match sent_at.transpose()? {
        None => Ok(Some(at)),
        Some(sent) => Ok(Some(received_at.saturating_sub(sent.saturating_sub(at)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RECEIVED: i64 = 1_790_000_000_000;

    #[test]
    fn a_fast_client_clock_is_corrected() {
        // The client's clock is 10 minutes ahead: it says the event happened at 10:00 and was
        // sent at 10:00:05, while the server received it at its 09:50:05.
        let ts = json!("2026-11-24T10:00:00Z");
        let sent = json!("2026-11-24T10:00:05Z");
        let received = "2026-11-24T09:50:05Z".parse::<jiff::Timestamp>().expect("ts").as_millisecond();
        let at =
            corrected(Some(("timestamp", &ts)), send_time("sentAt", Some(&sent)), received).expect("valid");
        assert_eq!(at, Some(received - 5_000), "5 s before the receive time, on the server's clock");
    }

    #[test]
    fn without_a_send_time_the_event_time_is_kept() {
        let ts = json!("2026-09-21T10:00:00.250+02:00");
        assert_eq!(
            corrected(Some(("timestamp", &ts)), None, RECEIVED).expect("valid"),
            Some(1_789_984_800_250 - 7_200_000)
        );
        let ms = json!(1_789_000_000_123i64);
        assert_eq!(
            corrected(Some(("timestamp", &ms)), send_time("sentAt", Some(&Value::Null)), RECEIVED)
                .expect("valid"),
            Some(1_789_000_000_123)
        );
    }

    #[test]
    fn without_an_event_time_there_is_none() {
        let sent = json!("2026-11-24T10:00:05Z");
        assert_eq!(corrected(None, send_time("sentAt", Some(&sent)), RECEIVED).expect("valid"), None);
        assert_eq!(corrected(Some(("timestamp", &Value::Null)), None, RECEIVED).expect("valid"), None);
    }

    #[test]
    fn bad_times_name_their_field() {
        let bad = json!("yesterday");
        let ok = json!("2026-11-24T10:00:00Z");
        let e = corrected(Some(("originalTimestamp", &bad)), None, RECEIVED).expect_err("refused");
        assert_eq!((e.code, e.field.as_str()), (ErrorCode::InvalidTimestamp, "originalTimestamp"));
        let e = corrected(Some(("timestamp", &ok)), send_time("sentAt", Some(&bad)), RECEIVED)
            .expect_err("refused");
        assert_eq!((e.code, e.field.as_str()), (ErrorCode::InvalidTimestamp, "sentAt"));
        let e = corrected(Some(("timestamp", &json!(true))), None, RECEIVED).expect_err("refused");
        assert_eq!((e.code, e.field.as_str()), (ErrorCode::InvalidType, "timestamp"));
        let no_offset = json!("2026-11-24T10:00:00");
        assert_eq!(
            corrected(Some(("timestamp", &no_offset)), None, RECEIVED).expect_err("refused").code,
            ErrorCode::InvalidTimestamp
        );
    }
}
