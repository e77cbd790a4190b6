//! The operator's one error type. Variant names double as metric labels and Event reasons.
//! Each keeps what it failed at and the error that caused it (`source()`), not a string of
//! it.

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec cannot be turned into a pipeline; fixed only by editing it (not retried).
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// A Secret the spec names does not exist (yet), or lacks the key.
    #[error("{0}")]
    MissingSecret(String),
    /// A call to the Kubernetes API failed.
    #[error("Kubernetes API: {context}: {source}")]
    KubeApi {
        context: String,
        #[source]
        source: kube::Error,
    },
    /// The pipeline's Redis could not be reached or refused a command.
    #[error("Redis: {context}: {source}")]
    Redis {
        context: String,
        #[source]
        source: Cause,
    },
    /// The pipeline's MongoDB could not be reached or refused a command.
    #[error("MongoDB: {context}: {source}")]
    Storage {
        context: String,
        #[source]
        source: Cause,
    },
    /// An object could not be serialized (a bug).
    #[error("serializing {context}: {source}")]
    Serialization {
        context: String,
        #[source]
        source: Cause,
    },
    /// Adding or removing the finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

/// The error beneath one of ours: a client's, or a message for limits of our own.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

impl Error {
    /// The variant's name: the `reason` label of the error metric and the Event reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::MissingSecret(_) => "MissingSecret",
            Error::KubeApi { .. } => "KubeApi",
            Error::Redis { .. } => "Redis",
            Error::Storage { .. } => "Storage",
            Error::Serialization { .. } => "Serialization",
            Error::Finalizer(_) => "Finalizer",
        }
    }

    /// A Kubernetes API error with what was being done.
    pub fn kube(context: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let context = context.into();
        move |source| Error::KubeApi { context, source }
    }

    pub fn redis(context: impl Into<String>, source: impl Into<Cause>) -> Error {
        Error::Redis { context: context.into(), source: source.into() }
    }

    pub fn storage(context: impl Into<String>, source: impl Into<Cause>) -> Error {
        Error::Storage { context: context.into(), source: source.into() }
    }

    pub fn serialization(context: impl Into<String>, source: impl Into<Cause>) -> Error {
        Error::Serialization { context: context.into(), source: source.into() }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
