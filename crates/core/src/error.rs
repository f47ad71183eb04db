//! The one error type of sluice-core: it says who is at fault and whether a retry can help.

use std::fmt;

/// Who is at fault when a sync fails. Drives the CLI's exit code and the advice it prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The configuration or the command line is wrong (exit code 2).
    Config,
    /// Credentials are missing, invalid, expired or lack a permission (exit code 3).
    Auth,
    /// The source's API misbehaved or could not be reached (exit code 4).
    Upstream,
    /// The destination could not be read or written (exit code 5).
    Destination,
    /// A bug in sluice or a plugin (exit code 1).
    Internal,
    /// The run was interrupted (Ctrl-C) at a consistent point (exit code 130).
    Cancelled,
}

impl ErrorKind {
    /// The process exit code the CLI uses for this kind of failure.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::Config => 2,
            ErrorKind::Auth => 3,
            ErrorKind::Upstream => 4,
            ErrorKind::Destination => 5,
            ErrorKind::Internal => 1,
            ErrorKind::Cancelled => 130,
        }
    }

    /// The kind's name in machine-readable output (run summaries, the server's run history):
    /// `config`, `auth`, `upstream`, `destination`, `internal` or `cancelled`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::Auth => "auth",
            ErrorKind::Upstream => "upstream",
            ErrorKind::Destination => "destination",
            ErrorKind::Internal => "internal",
            ErrorKind::Cancelled => "cancelled",
        }
    }

    /// A short lower-case label, used as the prefix of one-line error messages.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::Config => "config error",
            ErrorKind::Auth => "auth error",
            ErrorKind::Upstream => "upstream API error",
            ErrorKind::Destination => "destination error",
            ErrorKind::Internal => "internal error",
            ErrorKind::Cancelled => "cancelled",
        }
    }
}

/// A sluice error: a kind (who is at fault), a one-line message, whether retrying can help, and
/// an optional cause.
///
/// Messages must never contain secrets: build them from names and sanitized values only.
#[derive(Debug, thiserror::Error)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    retryable: bool,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind`; retryable defaults to `true` for upstream errors only.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            retryable: kind == ErrorKind::Upstream,
            source: None,
        }
    }
    /// A configuration error.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }
    /// An authentication or authorization error.
    pub fn auth(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Auth, message)
    }
    /// An error of the source's API.
    pub fn upstream(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Upstream, message)
    }
    /// An error of the destination.
    pub fn destination(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Destination, message)
    }
    /// A bug.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
    /// The run was cancelled.
    pub fn cancelled() -> Self {
        Self::new(
            ErrorKind::Cancelled,
            "interrupted; the destination holds the last committed checkpoint",
        )
    }
    /// Sets whether retrying the same operation can help.
    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }
    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }
    /// Prefixes the message with context, keeping kind and cause.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
    /// Who is at fault.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// Whether retrying may succeed.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
    /// The message without the kind prefix.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        self.kind.exit_code()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.label(), self.message)?;
        if let Some(source) = &self.source {
            let cause = source.to_string();
            if !cause.is_empty() && !self.message.contains(&cause) {
                write!(f, " ({cause})")?;
            }
        }
        Ok(())
    }
}

impl From<arrow::error::ArrowError> for Error {
    fn from(e: arrow::error::ArrowError) -> Self {
        Error::internal("arrow").with_source(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_cli_contract() {
        assert_eq!(Error::config("x").exit_code(), 2);
        assert_eq!(Error::auth("x").exit_code(), 3);
        assert_eq!(Error::upstream("x").exit_code(), 4);
        assert_eq!(Error::destination("x").exit_code(), 5);
        assert_eq!(Error::internal("x").exit_code(), 1);
    }

    #[test]
    fn display_is_one_line_with_kind_and_cause() {
        let io = std::io::Error::other("disk full");
        let e = Error::destination("writing opportunity").with_source(io);
        assert_eq!(
            e.to_string(),
            "destination error: writing opportunity (disk full)"
        );
        assert!(!e.to_string().contains('\n'));
        assert!(Error::upstream("x").is_retryable());
        assert!(!Error::auth("x").is_retryable());
    }
}
