//! The SDK's error type: every fallible call returns [`Result<T>`](Result).
//!
//! Returning `Err` from [`Object::fetch`](crate::Object::fetch) or
//! [`Object::alarm`](crate::Object::alarm) fails the event: the host rolls back its writes and,
//! for a request, answers `500` with the error's message. Expected client mistakes (a bad body,
//! an unknown path) are better answered with an explicit [`Response`](crate::Response).

use core::fmt;

use crate::__private::bindings::dohost::object::{alarm, fetch, sql};

/// `Result` with the SDK's [`Error`] as the default error type.
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// Anything that can go wrong in an object.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A SQL statement failed.
    Sql(SqlError),
    /// A body was not the JSON that was expected, or a value could not be serialized.
    Json(String),
    /// An outbound fetch failed.
    Fetch(FetchError),
    /// Setting the alarm failed.
    Alarm(AlarmError),
    /// Anything else, including conversions of SQL values and errors from [`Error::msg`].
    Message(String),
}

impl Error {
    /// An error carrying just `message`.
    ///
    /// ```
    /// let err = dohost_sdk::Error::msg(format_args!("no player {}", 7));
    /// assert_eq!(err.to_string(), "no player 7");
    /// ```
    pub fn msg(message: impl fmt::Display) -> Self {
        Self::Message(message.to_string())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sql(e) => e.fmt(f),
            Self::Json(message) => write!(f, "invalid JSON: {message}"),
            Self::Fetch(e) => e.fmt(f),
            Self::Alarm(e) => e.fmt(f),
            Self::Message(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Sql(e) => Some(e),
            Self::Fetch(e) => Some(e),
            Self::Alarm(e) => Some(e),
            Self::Json(_) | Self::Message(_) => None,
        }
    }
}

impl From<SqlError> for Error {
    fn from(e: SqlError) -> Self {
        Self::Sql(e)
    }
}

impl From<FetchError> for Error {
    fn from(e: FetchError) -> Self {
        Self::Fetch(e)
    }
}

impl From<AlarmError> for Error {
    fn from(e: AlarmError) -> Self {
        Self::Alarm(e)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Self::Json(e.to_string())
    }
}

/// Defines an error enum mirroring a WIT variant whose cases all carry a message, with a
/// `Display` that prefixes the message with a short description of the case.
///
/// The SDK mirrors the generated types instead of re-exporting them so that they get a readable
/// `Display` and `PartialEq`; the conversion is a move of the message.
macro_rules! message_error {
    (
        $(#[$meta:meta])*
        $name:ident from $module:ident::$wit:ident {
            $( $(#[$case_meta:meta])* $case:ident => $description:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$case_meta])* $case(String), )*
        }

        impl $name {
            /// The message the host gave.
            pub fn message(&self) -> &str {
                match self {
                    $( Self::$case(message) => message, )*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $( Self::$case(message) => write!(f, concat!($description, ": {}"), message), )*
                }
            }
        }

        impl std::error::Error for $name {}

        impl From<$module::$wit> for $name {
            fn from(e: $module::$wit) -> Self {
                match e {
                    $( $module::$wit::$case(message) => Self::$case(message), )*
                }
            }
        }
    };
}

message_error! {
    /// Why a SQL statement failed; each case carries SQLite's message.
    SqlError from sql::SqlError {
        /// The query does not parse, or names a table or column that does not exist.
        Syntax => "SQL syntax error",
        /// A UNIQUE, NOT NULL, CHECK, PRIMARY KEY or FOREIGN KEY constraint failed.
        Constraint => "SQL constraint failed",
        /// The database reached the object's size limit, or the disk holding it is full (the
        /// message says which); this event's writes will be rolled back even if the handler
        /// succeeds.
        DatabaseFull => "database full",
        /// A value, statement or result is larger than the host allows.
        TooBig => "SQL value too big",
        /// The statement is not allowed for objects (ATTACH, transaction control, most PRAGMAs,
        /// VACUUM, the reserved `_do_` tables).
        AccessDenied => "SQL access denied",
        /// The parameters do not fit the statement (wrong count, for example).
        InvalidArgument => "invalid SQL argument",
        /// Anything else, including a statement interrupted by the CPU time limit.
        Other => "SQL error",
    }
}

message_error! {
    /// Why an outbound fetch failed.
    FetchError from fetch::FetchError {
        /// The host runs without outbound fetch.
        NotEnabled => "fetch is not enabled",
        /// The host's policy does not allow this destination.
        Denied => "fetch denied",
        /// The request is malformed (bad URL, method or header).
        InvalidRequest => "invalid fetch request",
        /// The host name did not resolve.
        Dns => "fetch DNS error",
        /// The connection failed.
        Connect => "fetch connection failed",
        /// No complete response within the host's timeout.
        Timeout => "fetch timed out",
        /// The response body exceeded the host's size cap.
        TooLarge => "fetch response too large",
        /// Anything else.
        Other => "fetch failed",
    }
}

message_error! {
    /// Why setting the alarm failed.
    AlarmError from alarm::AlarmError {
        /// The time is before 1970 or after year 9999.
        InvalidTime => "invalid alarm time",
        /// The host runs without alarm support.
        NotEnabled => "alarms are not enabled",
    }
}
