//! SQL values as JSON, so that every value survives the trip exactly
//! (`tests/conformance/SPEC.md`, "Typed values"):
//!
//! | value | JSON |
//! | --- | --- |
//! | NULL | `{"type": "null"}` |
//! | integer | `{"type": "integer", "value": "-9223372036854775808"}` (decimal string) |
//! | real | `{"type": "real", "value": 1.5}`; `"NaN"`, `"Infinity"`, `"-Infinity"` |
//! | text | `{"type": "text", "value": "any unicode"}` |
//! | blob | `{"type": "blob", "value": "00ff"}` (lower-case hex) |
//!
//! [`encode`] produces exactly these forms. [`decode`] accepts them and, as the conformance
//! objects always have, a few spellings more: members other than `type` and `value` are
//! ignored (so is `value` on a null), an integer may have a `+` sign and leading zeros, and a
//! real may be any JSON number. Anything else is an error, never a panic.

use serde_json::{Value as Json, json};

use crate::hex;

/// A SQL value as the conformance protocol carries it.
///
/// Equality is equality of the encoding: reals compare bit for bit (`-0.0 != 0.0`), except
/// that every NaN equals every other NaN (the encoding has one NaN). So `==` is reflexive
/// and `decode(&encode(v)) == Ok(v)` for every `v`.
#[derive(Debug, Clone)]
pub enum TypedValue {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl PartialEq for TypedValue {
    fn eq(&self, other: &Self) -> bool {
        use TypedValue::*;
        match (self, other) {
            (Null, Null) => true,
            (Integer(a), Integer(b)) => a == b,
            (Real(a), Real(b)) => a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
            (Text(a), Text(b)) => a == b,
            (Blob(a), Blob(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for TypedValue {}

/// The JSON form of `value`.
pub fn encode(value: &TypedValue) -> Json {
    match value {
        TypedValue::Null => json!({ "type": "null" }),
        TypedValue::Integer(i) => json!({ "type": "integer", "value": i.to_string() }),
        TypedValue::Real(f) if f.is_nan() => json!({ "type": "real", "value": "NaN" }),
        TypedValue::Real(f) if f.is_infinite() => {
            json!({ "type": "real", "value": if *f > 0.0 { "Infinity" } else { "-Infinity" } })
        }
        TypedValue::Real(f) => json!({ "type": "real", "value": f }),
        TypedValue::Text(t) => json!({ "type": "text", "value": t }),
        TypedValue::Blob(b) => json!({ "type": "blob", "value": hex::encode(b) }),
    }
}

/// Reads a typed value; the error says what is wrong with it.
pub fn decode(json: &Json) -> Result<TypedValue, String> {
    decode_inner(json).map_err(|why| format!("bad typed value {json}: {why}"))
}

fn decode_inner(json: &Json) -> Result<TypedValue, String> {
    let Some(ty) = json.get("type") else {
        return Err("expected an object with a \"type\"".into());
    };
    let value = json.get("value");
    let text = || {
        value
            .and_then(Json::as_str)
            .ok_or_else(|| "expected a string \"value\"".to_string())
    };
    Ok(match ty.as_str() {
        Some("null") => TypedValue::Null,
        Some("integer") => TypedValue::Integer(
            text()?
                .parse()
                .map_err(|e| format!("not a 64-bit integer ({e})"))?,
        ),
        Some("real") => TypedValue::Real(match value {
            Some(Json::String(s)) if s == "NaN" => f64::NAN,
            Some(Json::String(s)) if s == "Infinity" => f64::INFINITY,
            Some(Json::String(s)) if s == "-Infinity" => f64::NEG_INFINITY,
            Some(v) => v.as_f64().ok_or_else(|| {
                "expected a number or \"NaN\", \"Infinity\", \"-Infinity\"".to_string()
            })?,
            None => return Err("missing \"value\"".into()),
        }),
        Some("text") => TypedValue::Text(text()?.to_string()),
        Some("blob") => TypedValue::Blob(hex::decode(text()?).map_err(|e| e.to_string())?),
        _ => return Err("unknown \"type\"".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(value: TypedValue) {
        let text = encode(&value).to_string();
        let parsed: Json = serde_json::from_str(&text).unwrap();
        assert_eq!(decode(&parsed), Ok(value), "{text}");
    }

    fn rejected(json: Json) -> String {
        decode(&json).expect_err(&json.to_string())
    }

    #[test]
    fn encodes_the_spec_forms() {
        let cases = [
            (TypedValue::Null, json!({"type": "null"})),
            (
                TypedValue::Integer(i64::MIN),
                json!({"type": "integer", "value": "-9223372036854775808"}),
            ),
            (TypedValue::Real(1.5), json!({"type": "real", "value": 1.5})),
            (
                TypedValue::Real(f64::NAN),
                json!({"type": "real", "value": "NaN"}),
            ),
            (
                TypedValue::Real(f64::NEG_INFINITY),
                json!({"type": "real", "value": "-Infinity"}),
            ),
            (
                TypedValue::Text("é".into()),
                json!({"type": "text", "value": "é"}),
            ),
            (
                TypedValue::Blob(vec![0, 255]),
                json!({"type": "blob", "value": "00ff"}),
            ),
            (
                TypedValue::Blob(vec![]),
                json!({"type": "blob", "value": ""}),
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(encode(&value), expected);
            assert_eq!(decode(&expected), Ok(value));
        }
    }

    #[test]
    fn round_trips_edge_values_exactly() {
        for i in [0, -1, i64::MIN, i64::MAX, 9_007_199_254_740_993] {
            round_trip(TypedValue::Integer(i));
        }
        for f in [
            0.0,
            -0.0,
            1.5,
            0.1,
            f64::MIN_POSITIVE,
            -f64::MAX,
            f64::EPSILON,
            5e-324,
            f64::from_bits(0x000f_ffff_ffff_ffff), // the largest subnormal
            1.7976931348623157e308,
            f64::INFINITY,
            f64::NAN,
            -f64::NAN,
            f64::from_bits(0x7ff0_0000_0000_0001),
            // Parsed one ulp off without serde_json's `float_roundtrip`.
            1.0715660391465826e-75,
            -1.81996730402717e-179,
            -1.603964615428183e143,
        ] {
            round_trip(TypedValue::Real(f));
        }
        round_trip(TypedValue::Text(String::new()));
        round_trip(TypedValue::Text("line\nbreak\t\"\\\0🦀".into()));
        round_trip(TypedValue::Blob((0..=255).collect()));
    }

    #[test]
    fn equality_is_encoding_equality() {
        assert_eq!(TypedValue::Real(f64::NAN), TypedValue::Real(-f64::NAN));
        assert_ne!(TypedValue::Real(0.0), TypedValue::Real(-0.0));
        assert_ne!(TypedValue::Real(1.0), TypedValue::Integer(1));
        assert_ne!(TypedValue::Text("00".into()), TypedValue::Blob(vec![0]));
    }

    #[test]
    fn accepts_the_lenient_spellings() {
        let decoded = |json: Json| decode(&json).unwrap();
        assert_eq!(
            decoded(json!({"type": "integer", "value": "+007"})),
            TypedValue::Integer(7)
        );
        assert_eq!(
            decoded(json!({"type": "integer", "value": "-0"})),
            TypedValue::Integer(0)
        );
        assert_eq!(
            decoded(json!({"type": "real", "value": 3})),
            TypedValue::Real(3.0)
        );
        assert_eq!(
            decoded(json!({"type": "real", "value": u64::MAX})),
            TypedValue::Real(u64::MAX as f64)
        );
        assert_eq!(
            decoded(json!({"type": "null", "value": [1], "extra": true})),
            TypedValue::Null
        );
    }

    #[test]
    fn rejects_malformed_values() {
        for json in [
            json!(null),
            json!("null"),
            json!([{"type": "null"}]),
            json!({}),
            json!({"value": "1"}),
            json!({"type": 1, "value": "1"}),
            json!({"type": "NULL"}),
            json!({"type": "bool", "value": true}),
            json!({"type": "integer"}),
            json!({"type": "integer", "value": 1}),
            json!({"type": "integer", "value": ""}),
            json!({"type": "integer", "value": " 1"}),
            json!({"type": "integer", "value": "1.0"}),
            json!({"type": "integer", "value": "0x10"}),
            json!({"type": "integer", "value": "9223372036854775808"}),
            json!({"type": "integer", "value": "-9223372036854775809"}),
            json!({"type": "real"}),
            json!({"type": "real", "value": null}),
            json!({"type": "real", "value": "1.5"}),
            json!({"type": "real", "value": "nan"}),
            json!({"type": "real", "value": "inf"}),
            json!({"type": "text"}),
            json!({"type": "text", "value": 1}),
            json!({"type": "blob"}),
            json!({"type": "blob", "value": [0]}),
            json!({"type": "blob", "value": "0"}),
            json!({"type": "blob", "value": "abc"}),
            json!({"type": "blob", "value": "FF"}),
            json!({"type": "blob", "value": "+f"}),
            json!({"type": "blob", "value": "0g"}),
            json!({"type": "blob", "value": "00 "}),
            json!({"type": "blob", "value": "é"}),
        ] {
            rejected(json);
        }
        assert_eq!(
            rejected(json!({"type": "blob", "value": "0A"})),
            r#"bad typed value {"type":"blob","value":"0A"}: hex is lower-case (0-9, a-f); found 'A'"#
        );
    }
}
