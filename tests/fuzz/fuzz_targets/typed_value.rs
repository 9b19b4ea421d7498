//! The typed-value JSON codec, two ways on every input:
//! - the input as JSON text: `decode` never panics, and what it accepts survives
//!   encode -> text -> parse -> decode;
//! - the input as the choices of an arbitrary `TypedValue` (any f64 bit pattern, any text,
//!   any bytes): encode -> text -> parse -> decode gives it back exactly (reals bit for bit,
//!   -0.0 included; NaN as NaN).

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use dohost_wire::{TypedValue, decode, encode};
use libfuzzer_sys::fuzz_target;
use serde_json::Value as Json;

fuzz_target!(|data: &[u8]| {
    if let Ok(json) = serde_json::from_slice::<Json>(data) {
        if let Ok(value) = decode(&json) {
            assert_round_trips(&value);
        }
    }
    if let Ok(value) = arbitrary_value(&mut Unstructured::new(data)) {
        assert_round_trips(&value);
    }
});

/// encode -> JSON text -> parse -> decode is the identity (`TypedValue`'s `==` compares
/// reals bit for bit, with every NaN equal).
fn assert_round_trips(value: &TypedValue) {
    let text = encode(value).to_string();
    let parsed: Json = serde_json::from_str(&text).expect("encode produces valid JSON");
    let decoded = decode(&parsed).expect("decode accepts what encode produces");
    assert_eq!(&decoded, value, "via {text}");
    if let (TypedValue::Real(a), TypedValue::Real(b)) = (&decoded, value) {
        assert!(
            a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
            "{a:?} != {b:?}"
        );
    }
}

fn arbitrary_value(u: &mut Unstructured) -> arbitrary::Result<TypedValue> {
    Ok(match u.int_in_range(0..=4)? {
        0 => TypedValue::Null,
        1 => TypedValue::Integer(i64::arbitrary(u)?),
        2 => TypedValue::Real(f64::from_bits(u64::arbitrary(u)?)),
        3 => TypedValue::Text(String::arbitrary(u)?),
        _ => TypedValue::Blob(Vec::arbitrary(u)?),
    })
}
