//! The pipeline's write keys (see [`pulse_keys`], shared with the query API's read keys).

pub use pulse_keys::{KeyError, KeyRing};
