use std::path::PathBuf;
use std::time::Duration;

/// Why a server of the local stack could not be started or used.
///
/// `Debug` prints the same text as `Display`, so `.expect("...")` in a test shows the
/// readable message, log tail included.
#[derive(thiserror::Error)]
pub enum Error {
    #[error(
        "{name} not found at {}: build the local stack with `make env` (tests/env/build-stack.sh)",
        path.display()
    )]
    MissingBinary { name: String, path: PathBuf },

    #[error("could not start {name} ({}): {source}", binary.display())]
    Spawn { name: String, binary: PathBuf, source: std::io::Error },

    #[error("{name} exited before it was ready ({status}); last lines of {}:\n{tail}", log.display())]
    Exited { name: String, status: String, log: PathBuf, tail: String },

    #[error("{name} was not ready after {waited:?} (last check: {last_check}); last lines of {}:\n{tail}", log.display())]
    NotReady { name: String, waited: Duration, last_check: String, log: PathBuf, tail: String },

    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },

    #[error("generating certificates: {0}")]
    Certificates(#[from] rcgen::Error),

    #[error("{context}: {message}")]
    Client { context: String, message: String },

    #[error(
        "PULSE_TEST_BACKEND={value:?} is not a FerretDB backend: use `sqlite` (the default) or `postgresql`"
    )]
    UnknownBackend { value: String },
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// The result of every fallible testkit call.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }

    pub(crate) fn client(context: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Error::Client { context: context.into(), message: message.to_string() }
    }
}
