//! The store's failure: which database, and the backend's own error beneath it (SQLite's
//! today). The rest of the crate sees this type, never the backend's: a second backend
//! boxes its own errors the same way. A leaf module: `crate::error` wraps it without the
//! store and the error families importing each other.

/// A database operation failed. The message names the database; `source()` is the backend's
/// error.
#[derive(Debug, thiserror::Error)]
#[error("database {path}: {source}")]
pub struct StoreError {
    path: String,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl StoreError {
    pub(crate) fn new(
        path: &std::path::Path,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> StoreError {
        StoreError {
            path: path.display().to_string(),
            source: source.into(),
        }
    }
}
