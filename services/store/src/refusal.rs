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
    // FerretDB's SQLite backend reports a busy database as an internal error (code 1).
    let busy = message.contains("database is locked") || message.contains("SQLITE_BUSY");
    code != DUPLICATE_KEY && !TRANSIENT_CODES.contains(&code) && !busy
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
