//! Errors and the one place they become exit codes.
//!
//! Two families: [`InputError`] is bad input an operator must fix (configuration, secret
//! reference, seed file, usage): exit 2, and it always names the file and, where it
//! applies, the line and the key. Everything else is a runtime failure: exit 1.

use std::process::ExitCode;

/// Bad input: names the file, and the line and key where they apply. Never holds a secret.
/// Shown as `FILE[:LINE][: key `KEY`]: MESSAGE`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}{}: {message}", at_line(*.line), in_key(.key.as_deref()))]
pub struct InputError {
    pub file: String,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

impl InputError {
    pub fn new(file: impl Into<String>, message: impl Into<String>) -> Self {
        InputError {
            file: file.into(),
            line: None,
            key: None,
            message: message.into(),
        }
    }

    pub fn line(mut self, line: usize) -> Self {
        self.line = Some(line);
        self
    }

    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }
}

fn at_line(line: Option<usize>) -> String {
    line.map(|n| format!(":{n}")).unwrap_or_default()
}

fn in_key(key: Option<&str>) -> String {
    key.map(|k| format!(": key `{k}`")).unwrap_or_default()
}

/// Whether retrying can help. The retry policy depends on nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// Network failure, timeout, 408, 429, 5xx: back off and try again.
    Temporary,
    /// The server said no (`invalid_grant`, other 4xx): retrying the same request is useless.
    Permanent,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Input(#[from] InputError),
    /// A runtime failure with a message safe to log (never a secret).
    #[error("{0}")]
    Runtime(String),
    /// A database operation failed (a runtime failure: exit 1).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Error {
    pub fn runtime(message: impl Into<String>) -> Self {
        Error::Runtime(message.into())
    }

    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Input(_) => ExitCode::from(2),
            _ => ExitCode::from(1),
        }
    }
}

/// A database operation failed. The message names the database; `source()` is the backend's
/// own error (SQLite's today), boxed, so that no backend type leaves `store`: a second
/// backend boxes its errors the same way.
#[derive(Debug, thiserror::Error)]
#[error("database {path}: {source}")]
pub struct StoreError {
    path: String,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl StoreError {
    /// `database`: the file, or the PostgreSQL URL without its password.
    pub(crate) fn new(
        database: impl std::fmt::Display,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> StoreError {
        StoreError {
            path: database.to_string(),
            source: source.into(),
        }
    }
}
