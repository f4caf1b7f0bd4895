use travelrec_store::StoreError;

/// What kind of failure, which decides the HTTP status and the machine code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or names something invalid (400).
    InvalidInput,
    /// A named resource does not exist (404).
    NotFound,
    /// A resource with that name already exists (409).
    AlreadyExists,
    /// The resource exists but is not in a state that allows this (409).
    ResourceInUse,
    /// A limit was reached (429).
    LimitExceeded,
    /// The service cannot do this right now; retry later (503).
    Unavailable,
    /// A bug or an environment failure (500).
    Internal,
}

/// An error with a stable kind and a message that says what went wrong and
/// what to do about it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ServiceError {
    pub kind: ErrorKind,
    pub message: String,
    /// When the caller should try again (limits and unavailability).
    pub retry_after: Option<std::time::Duration>,
}

impl ServiceError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), retry_after: None }
    }

    pub fn with_retry_after(mut self, delay: std::time::Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn in_use(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ResourceInUse, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::AlreadyExists { .. } => ServiceError::new(ErrorKind::AlreadyExists, e.to_string()),
            StoreError::Locked { .. } | StoreError::SchemaLocked { .. } => ServiceError::new(ErrorKind::Unavailable, e.to_string()),
            other => ServiceError::internal(other.to_string()),
        }
    }
}

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;
