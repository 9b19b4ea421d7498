//! Serde deserializers for rows and values, behind [`Row::deserialize`](crate::Row::deserialize).
//!
//! A row deserializes as a map from column name to value (for structs and maps), as a sequence
//! of values (for tuples), or, when it has exactly one column, as that column's value (so
//! `SELECT count(*)` reads straight into an `i64`).

use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{self, IntoDeserializer, Visitor};
use serde::forward_to_deserialize_any;

use crate::{Error, Value};

impl de::Error for Error {
    fn custom<T: core::fmt::Display>(msg: T) -> Self {
        Self::Message(msg.to_string())
    }
}

/// Deserializes one row; see the module docs.
pub(crate) struct RowDeserializer<'a> {
    columns: &'a [String],
    values: &'a [Value],
}

impl<'a> RowDeserializer<'a> {
    pub(crate) fn new(columns: &'a [String], values: &'a [Value]) -> Self {
        Self { columns, values }
    }

    fn single(&self) -> Result<ValueDeserializer<'a>, Error> {
        match self.values {
            [value] => Ok(ValueDeserializer(value)),
            values => Err(Error::Message(format!(
                "expected a row of one column for a single value, got {} columns",
                values.len()
            ))),
        }
    }
}

/// Forwards the listed `deserialize_*` methods to the row's only column.
macro_rules! forward_to_single_column {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.single()?.$method(visitor)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for RowDeserializer<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let entries = self
            .columns
            .iter()
            .map(String::as_str)
            .zip(self.values.iter().map(ValueDeserializer));
        let mut map = MapDeserializer::new(entries);
        let value = visitor.visit_map(&mut map)?;
        map.end()?;
        Ok(value)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let mut seq = SeqDeserializer::new(self.values.iter().map(ValueDeserializer));
        let value = visitor.visit_seq(&mut seq)?;
        seq.end()?;
        Ok(value)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.single()?.deserialize_enum(name, variants, visitor)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.single()?.deserialize_unit_struct(name, visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    forward_to_single_column! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_str
        deserialize_string deserialize_bytes deserialize_byte_buf deserialize_option
        deserialize_unit deserialize_identifier
    }
}

/// Deserializes one value: `Null` as unit or `None`, `Integer` as any integer, float or `bool`,
/// `Real` as a float, `Text` as a string or unit enum variant, `Blob` as bytes or a `Vec<u8>`.
#[derive(Clone, Copy)]
pub(crate) struct ValueDeserializer<'a>(&'a Value);

impl<'de> de::Deserializer<'de> for ValueDeserializer<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Integer(i) => visitor.visit_i64(*i),
            Value::Real(r) => visitor.visit_f64(*r),
            Value::Text(s) => visitor.visit_str(s),
            Value::Blob(b) => visitor.visit_bytes(b),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Integer(i) => visitor.visit_bool(*i != 0),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            // `Vec<u8>` asks for a sequence, not bytes.
            Value::Blob(b) => {
                let mut seq = SeqDeserializer::<_, Error>::new(b.iter().copied());
                let value = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(value)
            }
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Value::Text(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            _ => self.deserialize_any(visitor),
        }
    }

    forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct tuple tuple_struct map struct identifier ignored_any
    }
}

impl<'de> IntoDeserializer<'de, Error> for ValueDeserializer<'_> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    fn de<T: serde::de::DeserializeOwned>(columns: &[&str], values: &[Value]) -> Result<T, Error> {
        let columns: Vec<String> = columns.iter().map(|c| (*c).to_owned()).collect();
        T::deserialize(RowDeserializer::new(&columns, values))
    }

    #[test]
    fn single_column_reads_as_a_value() {
        assert_eq!(de::<i64>(&["n"], &[Value::Integer(3)]).ok(), Some(3));
        assert_eq!(de::<Option<i64>>(&["n"], &[Value::Null]).ok(), Some(None));
        assert!(de::<i64>(&["a", "b"], &[Value::Integer(1), Value::Integer(2)]).is_err());
    }

    #[test]
    fn struct_fields_convert() {
        #[derive(Deserialize, Debug, PartialEq)]
        #[serde(rename_all = "lowercase")]
        enum Kind {
            Red,
        }
        #[derive(Deserialize, Debug, PartialEq)]
        struct Thing {
            flag: bool,
            score: f64,
            data: Vec<u8>,
            note: Option<String>,
            kind: Kind,
        }
        let thing = de::<Thing>(
            &["flag", "score", "data", "note", "kind", "extra"],
            &[
                Value::Integer(1),
                Value::Integer(2),
                Value::Blob(vec![1, 2]),
                Value::Null,
                Value::Text("red".into()),
                Value::Null,
            ],
        );
        assert_eq!(
            thing.ok(),
            Some(Thing {
                flag: true,
                score: 2.0,
                data: vec![1, 2],
                note: None,
                kind: Kind::Red,
            })
        );
    }
}
