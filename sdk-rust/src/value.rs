//! SQL values: [`Value`], conversions into it for parameters ([`Params`]) and out of it for
//! results ([`FromValue`]).

use crate::{Error, Result};

/// A SQLite value: `Null`, `Integer(i64)`, `Real(f64)`, `Text(String)` or `Blob(Vec<u8>)`.
///
/// Build one with `From` (`Value::from(3)`, `Value::from("x")`, `Value::from(None::<i64>)`) and
/// read one with [`FromValue`] or the `as_*` accessors.
pub use crate::__private::bindings::dohost::object::sql::Value;

impl Value {
    /// Whether this is `Null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Self::Null)
    }

    /// The integer, if this is `Integer`.
    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Self::Integer(i) => Some(*i),
            _ => None,
        }
    }

    /// The number, if this is `Real` or `Integer` (converted).
    pub fn as_real(&self) -> Option<f64> {
        match self {
            Self::Real(r) => Some(*r),
            Self::Integer(i) => Some(*i as f64),
            _ => None,
        }
    }

    /// The text, if this is `Text`.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text(s) => Some(s),
            _ => None,
        }
    }

    /// The bytes, if this is `Blob`.
    pub fn as_blob(&self) -> Option<&[u8]> {
        match self {
            Self::Blob(b) => Some(b),
            _ => None,
        }
    }

    /// SQLite's name for this value's type: `null`, `integer`, `real`, `text` or `blob`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Integer(_) => "integer",
            Self::Real(_) => "real",
            Self::Text(_) => "text",
            Self::Blob(_) => "blob",
        }
    }
}

// Structural equality; like `f64`, `Real(NaN)` is not equal to itself.
impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Null, Self::Null) => true,
            (Self::Integer(a), Self::Integer(b)) => a == b,
            (Self::Real(a), Self::Real(b)) => a == b,
            (Self::Text(a), Self::Text(b)) => a == b,
            (Self::Blob(a), Self::Blob(b)) => a == b,
            _ => false,
        }
    }
}

macro_rules! from_integer {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Self::Integer(i64::from(v))
            }
        }
    )*};
}
from_integer!(i8, i16, i32, i64, u8, u16, u32);

impl From<bool> for Value {
    /// `true` is stored as `1`, `false` as `0`, as SQLite does.
    fn from(v: bool) -> Self {
        Self::Integer(i64::from(v))
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Self::Real(v)
    }
}

impl From<f32> for Value {
    fn from(v: f32) -> Self {
        Self::Real(f64::from(v))
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Self::Text(v.to_owned())
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Self::Text(v.clone())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Self::Text(v)
    }
}

impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Self::Blob(v.to_vec())
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Self::Blob(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    /// `None` becomes `Null`.
    fn from(v: Option<T>) -> Self {
        v.map_or(Self::Null, Into::into)
    }
}

impl From<&Value> for Value {
    fn from(v: &Value) -> Self {
        v.clone()
    }
}

/// The parameters of a query, bound to its `?` placeholders in order.
///
/// Implemented for `()` (no parameters), tuples of up to 12 values of types that convert
/// `Into<Value>`, arrays, slices and `Vec`s of such values.
///
/// ```no_run
/// # fn demo(sql: dohost_sdk::Sql) -> dohost_sdk::Result<()> {
/// use dohost_sdk::Value;
/// sql.exec("DELETE FROM players", ())?;
/// sql.exec("INSERT INTO players (id, name) VALUES (?, ?)", ("p1", "Ada"))?;
/// sql.exec("SELECT * FROM players WHERE id IN (?, ?)", ["p1", "p2"])?;
/// sql.exec("SELECT * FROM players WHERE id = ?", vec![Value::from("p1")])?;
/// # Ok(()) }
/// ```
pub trait Params {
    /// The values, in placeholder order.
    fn into_values(self) -> Vec<Value>;
}

impl Params for () {
    fn into_values(self) -> Vec<Value> {
        Vec::new()
    }
}

impl<T: Into<Value>> Params for Vec<T> {
    fn into_values(self) -> Vec<Value> {
        self.into_iter().map(Into::into).collect()
    }
}

impl<T: Into<Value>, const N: usize> Params for [T; N] {
    fn into_values(self) -> Vec<Value> {
        self.into_iter().map(Into::into).collect()
    }
}

impl<T: Clone + Into<Value>> Params for &[T] {
    fn into_values(self) -> Vec<Value> {
        self.iter().cloned().map(Into::into).collect()
    }
}

macro_rules! tuple_params {
    ($($name:ident)+) => {
        impl<$($name: Into<Value>),+> Params for ($($name,)+) {
            #[allow(non_snake_case)]
            fn into_values(self) -> Vec<Value> {
                let ($($name,)+) = self;
                vec![$($name.into()),+]
            }
        }
    };
}
tuple_params!(A);
tuple_params!(A B);
tuple_params!(A B C);
tuple_params!(A B C D);
tuple_params!(A B C D E);
tuple_params!(A B C D E F);
tuple_params!(A B C D E F G);
tuple_params!(A B C D E F G H);
tuple_params!(A B C D E F G H I);
tuple_params!(A B C D E F G H I J);
tuple_params!(A B C D E F G H I J K);
tuple_params!(A B C D E F G H I J K L);

/// Conversion from a SQL [`Value`], used by [`Row::get`](crate::Row::get).
///
/// Conversions are strict, like SQLite's column types in STRICT tables: an `i64` needs an
/// `Integer`, a `String` needs `Text`. Exceptions: `f64` accepts `Integer` too, `bool` reads
/// `Integer` (0 is false, anything else true), and `Option<T>` reads `Null` as `None`.
pub trait FromValue: Sized {
    /// Convert `value`, or explain why it does not fit.
    fn from_value(value: &Value) -> Result<Self>;
}

fn mismatch(expected: &str, value: &Value) -> Error {
    Error::Message(format!("expected {expected}, got {}", value.type_name()))
}

impl FromValue for Value {
    fn from_value(value: &Value) -> Result<Self> {
        Ok(value.clone())
    }
}

impl FromValue for i64 {
    fn from_value(value: &Value) -> Result<Self> {
        value.as_integer().ok_or_else(|| mismatch("integer", value))
    }
}

macro_rules! from_value_integer {
    ($($t:ty),*) => {$(
        impl FromValue for $t {
            fn from_value(value: &Value) -> Result<Self> {
                let i = i64::from_value(value)?;
                <$t>::try_from(i).map_err(|_| {
                    Error::Message(format!("integer {i} does not fit in {}", stringify!($t)))
                })
            }
        }
    )*};
}
from_value_integer!(i8, i16, i32, u8, u16, u32, u64, usize, isize);

impl FromValue for f64 {
    fn from_value(value: &Value) -> Result<Self> {
        value.as_real().ok_or_else(|| mismatch("real", value))
    }
}

impl FromValue for bool {
    fn from_value(value: &Value) -> Result<Self> {
        Ok(i64::from_value(value)? != 0)
    }
}

impl FromValue for String {
    fn from_value(value: &Value) -> Result<Self> {
        value
            .as_text()
            .map(str::to_owned)
            .ok_or_else(|| mismatch("text", value))
    }
}

impl FromValue for Vec<u8> {
    fn from_value(value: &Value) -> Result<Self> {
        value
            .as_blob()
            .map(<[u8]>::to_vec)
            .ok_or_else(|| mismatch("blob", value))
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> Result<Self> {
        match value {
            Value::Null => Ok(None),
            value => T::from_value(value).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_convert_in_order() {
        let values = (1, "a", None::<i64>, true, 2.5, vec![1u8]).into_values();
        assert_eq!(
            values,
            vec![
                Value::Integer(1),
                Value::Text("a".into()),
                Value::Null,
                Value::Integer(1),
                Value::Real(2.5),
                Value::Blob(vec![1]),
            ]
        );
        assert!(().into_values().is_empty());
        assert_eq!(["x", "y"].into_values().len(), 2);
    }

    #[test]
    fn from_value_is_strict_but_helpful() {
        assert_eq!(i64::from_value(&Value::Integer(7)).ok(), Some(7));
        assert!(i64::from_value(&Value::Text("7".into())).is_err());
        assert!(u8::from_value(&Value::Integer(300)).is_err());
        assert_eq!(f64::from_value(&Value::Integer(2)).ok(), Some(2.0));
        assert_eq!(bool::from_value(&Value::Integer(0)).ok(), Some(false));
        assert_eq!(Option::<String>::from_value(&Value::Null).ok(), Some(None));
        let err = String::from_value(&Value::Integer(1))
            .err()
            .map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("expected text, got integer"));
    }
}
