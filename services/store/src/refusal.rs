//! Telling a store's refusal of a document (it will refuse it again, whatever the retries)
//! from a transient failure (the network, a failover, a busy server).

use mongodb::error::{Error, ErrorKind, WriteFailure};

use crate::DUPLICATE_KEY;

/// Server codes that say "not now" rather than "not this": network, elections,
/// shutdowns, time limits, lock and write conflicts, lost authorization, a full disk.
const TRANSIENT_CODES: [i32; 22] = [
    6, 7, 13, 18, 24, 46, 50, 64, 89, 91, 112, 189, 262, 8000, 9001, 10107, 11600, 11601, 11602, 13435,
    13436, 14031,
];

/// Whether `e` is the store refusing what was sent, not a transient failure. A duplicate
/// key is neither: it means "already there".
pub fn is_refusal(e: &Error) -> bool {
    if e.contains_label("RetryableWriteError") || e.contains_label("TransientTransactionError") {
        return false;
    }
    match e.kind.as_ref() {
        // The driver could not encode the document (e.g. a NUL in a key, too large).
        ErrorKind::BsonSerialization(_) | ErrorKind::InvalidArgument { .. } => true,
        // The driver reports some documents it cannot encode (a NUL in a key) this way.
        ErrorKind::InvalidResponse { message, .. } => message.contains("malformed value"),
        ErrorKind::Command(c) => refused_code(c.code, &c.message),
        ErrorKind::Write(WriteFailure::WriteError(w)) => refused_code(w.code, &w.message),
        ErrorKind::InsertMany(failure) => {
            failure.write_concern_error.is_none()
                && failure.write_errors.as_ref().is_some_and(|w| {
                    w.iter().any(|w| w.code != DUPLICATE_KEY && refused_code(w.code, &w.message))
                })
        }
        _ => false,
    }
}

fn refused_code(code: i32, message: &str) -> bool {
    code != DUPLICATE_KEY && !TRANSIENT_CODES.contains(&code) && !backend_fault(message)
}

/// Whether FerretDB's message (it reports its backend's failures as an internal error,
/// code 1) is about the backend rather than the document: a busy SQLite database, a table
/// its catalogue lost ([`damaged_catalogue`]), or a PostgreSQL error outside the classes
/// that judge data: 22 (a data exception, e.g. a NUL in a string), 23 (a constraint) and 54
/// (a program limit, e.g. a row too large). Setting events aside for a fault of the store
/// would fail every event while it lasts; retried, they wait in Redis until it is repaired.
fn backend_fault(message: &str) -> bool {
    let busy = message.contains("database is locked") || message.contains("SQLITE_BUSY");
    let about_data = |class: &str| matches!(class, "22" | "23" | "54");
    busy || damaged_catalogue_message(message) || sqlstate(message).is_some_and(|s| !about_data(&s[..2]))
}

/// The SQLSTATE that FerretDB's PostgreSQL backend quotes, as in `... (SQLSTATE 42P07)`.
fn sqlstate(message: &str) -> Option<&str> {
    let at = message.find("SQLSTATE ")? + "SQLSTATE ".len();
    let code = message.get(at..at + 5)?;
    code.bytes().all(|b| b.is_ascii_alphanumeric()).then_some(code)
}

/// Whether `e` says FerretDB's catalogue lacks a table its backend has: FerretDB 1.x creates
/// a collection's table and then records it, so stopped in between it can never create that
/// collection again (`relation ... already exists`). Only the repair in docs/operations.md
/// ("A collection FerretDB cannot create") ends it; until then the events wait in Redis.
pub fn damaged_catalogue(e: &Error) -> bool {
    let message = match e.kind.as_ref() {
        ErrorKind::Command(c) => &c.message,
        ErrorKind::Write(WriteFailure::WriteError(w)) => &w.message,
        ErrorKind::InsertMany(failure) => match failure.write_errors.as_deref() {
            Some([first, ..]) => &first.message,
            _ => return false,
        },
        _ => return false,
    };
    damaged_catalogue_message(message)
}

fn damaged_catalogue_message(message: &str) -> bool {
    // PostgreSQL: `relation "events_1a2b3c4d" already exists`; SQLite: `table "..." already exists`.
    (message.contains("relation ") || message.contains("table ")) && message.contains("already exists")
}

/// What the store said, for the failed-event record: the code and message, not the
/// document.
pub fn describe(e: &Error) -> String {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => format!("store error {} ({}): {}", c.code, c.code_name, c.message),
        ErrorKind::Write(WriteFailure::WriteError(w)) => format!("store error {}: {}", w.code, w.message),
        ErrorKind::BsonSerialization(_)
        | ErrorKind::InvalidArgument { .. }
        | ErrorKind::InvalidResponse { .. } => {
            format!("the document cannot be encoded: {e}")
        }
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_exception_is_a_refusal_and_a_backend_fault_is_not() {
        let nul = "ERROR: unsupported Unicode escape sequence (SQLSTATE 22P05)";
        assert!(refused_code(1, nul));
        let too_large = "ERROR: index row size 3056 exceeds btree version 4 maximum 2704 (SQLSTATE 54000)";
        assert!(refused_code(1, too_large));
        let lost_table = r#"ERROR: relation "events_a1b2c3d4" already exists (SQLSTATE 42P07)"#;
        assert!(!refused_code(1, lost_table));
        let disk_full = "ERROR: could not extend file: No space left on device (SQLSTATE 53100)";
        assert!(!refused_code(1, disk_full));
        let gone = "FATAL: terminating connection due to administrator command (SQLSTATE 57P01)";
        assert!(!refused_code(1, gone));
        assert!(!refused_code(1, "database is locked (5) (SQLITE_BUSY)"));
        assert!(!refused_code(1, r#"SQL logic error: table "events_a1b2c3d4" already exists (1)"#));
        // No SQLSTATE and nothing the backend is known to say: the document, as before.
        assert!(refused_code(2, "invalid key"));
        assert!(!refused_code(DUPLICATE_KEY, "E11000 duplicate key"));
    }

    #[test]
    fn only_a_table_the_catalogue_lost_needs_the_repair() {
        assert!(damaged_catalogue_message(
            r#"ERROR: relation "bucket_users_20261206_0badf00d" already exists (SQLSTATE 42P07)"#
        ));
        assert!(!damaged_catalogue_message("E11000 duplicate key error: _id already exists"));
        assert_eq!(sqlstate("boom (SQLSTATE 42P07)"), Some("42P07"));
        assert_eq!(sqlstate("boom (SQLSTATE 4"), None);
        assert_eq!(sqlstate("no state"), None);
    }
}
