//! Errors that cross the plugin boundary as values.

use std::fmt;

use abi_stable::StableAbi;
use abi_stable::std_types::RString;

/// What kind of failure a [`PluginError`] reports.
///
/// A plain integer with named constants (not an enum), so that a newer plugin can report a code
/// an older host does not know without breaking the ABI.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub u32);

impl ErrorCode {
    /// The configuration is invalid.
    pub const CONFIG: Self = Self(1);
    /// A connection to an external system failed.
    pub const CONNECTION: Self = Self(2);
    /// Something the configuration names does not exist (file, table, column…).
    pub const NOT_FOUND: Self = Self(3);
    /// Reading or writing failed.
    pub const IO: Self = Self(4);
    /// The data could not be decoded, converted or represented.
    pub const DATA: Self = Self(5);
    /// The operation is not supported by this component.
    pub const UNSUPPORTED: Self = Self(6);
    /// The plugin panicked; the message carries the panic message.
    pub const PANIC: Self = Self(7);
    /// The operation was cancelled.
    pub const CANCELLED: Self = Self(8);
    /// A bug or an unexpected state inside the plugin.
    pub const INTERNAL: Self = Self(9);

    /// A short lowercase name of the code (`config`, `io`, …; `code <n>` when unknown).
    pub fn name(self) -> String {
        match self {
            Self::CONFIG => "config".into(),
            Self::CONNECTION => "connection".into(),
            Self::NOT_FOUND => "not found".into(),
            Self::IO => "io".into(),
            Self::DATA => "data".into(),
            Self::UNSUPPORTED => "unsupported".into(),
            Self::PANIC => "panic".into(),
            Self::CANCELLED => "cancelled".into(),
            Self::INTERNAL => "internal".into(),
            Self(n) => format!("code {n}"),
        }
    }
}

impl fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ErrorCode({})", self.name())
    }
}

/// An error returned by a plugin: a [`code`](ErrorCode) and a message.
///
/// Every entry point of the ABI returns errors as this value; a panic inside a plugin becomes a
/// `PluginError` with [`ErrorCode::PANIC`] instead of unwinding into the host.
#[repr(C)]
#[derive(StableAbi, Clone, PartialEq, Eq)]
pub struct PluginError {
    code: ErrorCode,
    message: RString,
}

impl PluginError {
    /// A new error with a code and a message.
    pub fn new(code: ErrorCode, message: impl fmt::Display) -> Self {
        Self {
            code,
            message: RString::from(message.to_string()),
        }
    }

    /// A configuration error.
    pub fn config(message: impl fmt::Display) -> Self {
        Self::new(ErrorCode::CONFIG, message)
    }

    /// A connection error.
    pub fn connection(message: impl fmt::Display) -> Self {
        Self::new(ErrorCode::CONNECTION, message)
    }

    /// Something named in the configuration does not exist.
    pub fn not_found(message: impl fmt::Display) -> Self {
        Self::new(ErrorCode::NOT_FOUND, message)
    }

    /// An I/O error.
    pub fn io(message: impl fmt::Display) -> Self {
        Self::new(ErrorCode::IO, message)
    }

    /// A data error (decoding, conversion, representation).
    pub fn data(message: impl fmt::Display) -> Self {
        Self::new(ErrorCode::DATA, message)
    }

    /// An unsupported operation.
    pub fn unsupported(message: impl fmt::Display) -> Self {
        Self::new(ErrorCode::UNSUPPORTED, message)
    }

    /// An internal error.
    pub fn internal(message: impl fmt::Display) -> Self {
        Self::new(ErrorCode::INTERNAL, message)
    }

    /// The error's code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The error's message.
    pub fn message(&self) -> &str {
        self.message.as_str()
    }

    /// Prefixes the message with context: `"{context}: {message}"`.
    pub fn context(self, context: impl fmt::Display) -> Self {
        Self {
            code: self.code,
            message: RString::from(format!("{context}: {}", self.message)),
        }
    }
}

impl fmt::Debug for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginError")
            .field("code", &self.code)
            .field("message", &self.message.as_str())
            .finish()
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PluginError {}

impl From<arrow_schema::ArrowError> for PluginError {
    fn from(e: arrow_schema::ArrowError) -> Self {
        Self::data(e)
    }
}

impl From<std::io::Error> for PluginError {
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::NotFound => Self::not_found(e),
            _ => Self::io(e),
        }
    }
}

/// `Result` with [`PluginError`].
pub type Result<T, E = PluginError> = std::result::Result<T, E>;
