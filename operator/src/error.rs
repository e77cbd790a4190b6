//! The operator's one error type. Variant names double as metric labels and Event reasons.

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
    #[error("Redis: {context}: {message}")]
    Redis { context: String, message: String },
    /// The pipeline's MongoDB could not be reached or refused a command.
    #[error("MongoDB: {context}: {message}")]
    Storage { context: String, message: String },
    /// An object could not be serialized (a bug).
    #[error("serializing {context}: {message}")]
    Serialization { context: String, message: String },
    /// Adding or removing the finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
}

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

    pub fn redis(context: impl Into<String>, e: impl std::fmt::Display) -> Error {
        Error::Redis { context: context.into(), message: e.to_string() }
    }

    pub fn storage(context: impl Into<String>, e: impl std::fmt::Display) -> Error {
        Error::Storage { context: context.into(), message: e.to_string() }
    }

    pub fn serialization(context: impl Into<String>, e: impl std::fmt::Display) -> Error {
        Error::Serialization { context: context.into(), message: e.to_string() }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
