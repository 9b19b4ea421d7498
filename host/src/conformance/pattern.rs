//! Expected-value patterns of conformance cases, and matching JSON against them.
//!
//! A pattern is JSON. Objects match as subsets (every expected key must be present and match;
//! extra keys are allowed), arrays element by element with the same length, scalars by
//! equality. An object whose keys start with `$` is a matcher instead:
//!
//! | matcher | matches |
//! | --- | --- |
//! | `{"$any": true}` | anything, including a missing value |
//! | `{"$type": "string"}` | a value of that JSON type (`string`, `number`, `integer`, `boolean`, `array`, `object`, `null`) |
//! | `{"$gte": 3}`, `{"$lte": 9}` | a number in range (both may be given) |
//! | `{"$contains": "text"}` | a string containing the text |
//! | `{"$len": 2}` | an array or string of that length |
//! | `{"$id": true}` | 64 lower-case hex digits (an object ID) |
//! | `{"$capture": "name"}` | anything; remembers it as `${name}` for later steps |
//! | `{"$not": PATTERN}` | anything PATTERN does not match |
//! | `{"$hexJson": PATTERN}` | a hex string whose bytes are JSON matching PATTERN |

use std::collections::HashMap;

use serde_json::Value as Json;

/// Variables captured so far in a case.
pub type Vars = HashMap<String, Json>;

/// Matches `actual` against `expected`; on mismatch, says where and how.
pub fn matches(expected: &Json, actual: Option<&Json>, vars: &mut Vars) -> Result<(), String> {
    match_at("$", expected, actual, vars)
}

fn match_at(
    path: &str,
    expected: &Json,
    actual: Option<&Json>,
    vars: &mut Vars,
) -> Result<(), String> {
    let mismatch = |what: &str| {
        Err(format!(
            "{path}: expected {what}, got {}",
            actual.map_or("nothing".into(), short)
        ))
    };
    if let Json::Object(map) = expected
        && map.keys().any(|k| k.starts_with('$'))
    {
        for (key, arg) in map {
            let ok = match (key.as_str(), actual) {
                ("$any", _) => true,
                ("$capture", Some(value)) => {
                    if let Some(name) = arg.as_str() {
                        vars.insert(name.to_string(), value.clone());
                    }
                    true
                }
                ("$type", Some(value)) => {
                    type_name(value) == arg.as_str().unwrap_or("")
                        || (arg == "number" && value.is_number())
                }
                ("$gte", Some(value)) => value
                    .as_f64()
                    .zip(arg.as_f64())
                    .is_some_and(|(v, a)| v >= a),
                ("$lte", Some(value)) => value
                    .as_f64()
                    .zip(arg.as_f64())
                    .is_some_and(|(v, a)| v <= a),
                ("$contains", Some(Json::String(s))) => s.contains(arg.as_str().unwrap_or("")),
                ("$len", Some(Json::String(s))) => arg.as_u64() == Some(s.chars().count() as u64),
                ("$len", Some(Json::Array(a))) => arg.as_u64() == Some(a.len() as u64),
                ("$id", Some(Json::String(s))) => {
                    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                }
                ("$not", _) => match_at(path, arg, actual, &mut vars.clone()).is_err(),
                ("$hexJson", Some(Json::String(s))) => {
                    let decoded = hex::decode(s)
                        .ok()
                        .and_then(|b| serde_json::from_slice::<Json>(&b).ok());
                    match decoded {
                        Some(inner) => {
                            match_at(&format!("{path}(hex JSON)"), arg, Some(&inner), vars)?;
                            true
                        }
                        None => false,
                    }
                }
                _ => false,
            };
            if !ok {
                return mismatch(&format!("{key} {}", short(arg)));
            }
        }
        return Ok(());
    }
    let Some(actual) = actual else {
        return mismatch(&short(expected));
    };
    match (expected, actual) {
        (Json::Object(want), Json::Object(got)) => {
            for (key, value) in want {
                match_at(&format!("{path}.{key}"), value, got.get(key), vars)?;
            }
            Ok(())
        }
        (Json::Array(want), Json::Array(got)) => {
            if want.len() != got.len() {
                return mismatch(&format!("{} element(s)", want.len()));
            }
            for (i, (w, g)) in want.iter().zip(got).enumerate() {
                match_at(&format!("{path}[{i}]"), w, Some(g), vars)?;
            }
            Ok(())
        }
        (Json::Number(want), Json::Number(got)) => {
            let equal = match (want.as_i64(), got.as_i64()) {
                (Some(a), Some(b)) => a == b,
                _ => want.as_f64() == got.as_f64(),
            };
            if equal {
                Ok(())
            } else {
                mismatch(&short(expected))
            }
        }
        _ if expected == actual => Ok(()),
        _ => mismatch(&short(expected)),
    }
}

fn type_name(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

/// Compact JSON, cut to a readable length.
fn short(value: &Json) -> String {
    let text = value.to_string();
    if text.chars().count() > 160 {
        format!("{}...", text.chars().take(160).collect::<String>())
    } else {
        text
    }
}

/// Replaces `${name}` in every string inside `value` with the captured variable (its string
/// form, or its JSON text).
pub fn substitute(value: &Json, vars: &Vars) -> Json {
    match value {
        Json::String(s) => Json::String(substitute_str(s, vars)),
        Json::Array(a) => Json::Array(a.iter().map(|v| substitute(v, vars)).collect()),
        Json::Object(m) => Json::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), substitute(v, vars)))
                .collect(),
        ),
        other => other.clone(),
    }
}

pub fn substitute_str(text: &str, vars: &Vars) -> String {
    let mut out = text.to_string();
    for (name, value) in vars {
        let replacement = match value {
            Json::String(s) => s.clone(),
            other => other.to_string(),
        };
        out = out.replace(&format!("${{{name}}}"), &replacement);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(expected: Json, actual: Json) -> Result<(), String> {
        matches(&expected, Some(&actual), &mut Vars::new())
    }

    #[test]
    fn subsets_and_matchers() {
        assert!(check(json!({"a": 1}), json!({"a": 1, "b": 2})).is_ok());
        assert!(
            check(json!({"a": 1}), json!({"a": 2}))
                .unwrap_err()
                .contains("$.a")
        );
        assert!(check(json!([1, 2]), json!([1])).is_err());
        assert!(check(json!({"n": {"$gte": 2, "$lte": 3}}), json!({"n": 3})).is_ok());
        assert!(check(json!({"n": {"$gte": 4}}), json!({"n": 3})).is_err());
        assert!(check(json!({"$type": "integer"}), json!(3)).is_ok());
        assert!(check(json!({"$not": {"$type": "null"}}), json!(3)).is_ok());
        assert!(check(json!({"x": {"$any": true}}), json!({})).is_ok());
        assert!(check(json!(1.0), json!(1)).is_ok());
        let mut vars = Vars::new();
        matches(
            &json!({"id": {"$capture": "id"}}),
            Some(&json!({"id": "ab"})),
            &mut vars,
        )
        .unwrap();
        assert_eq!(substitute_str("/_id/${id}/x", &vars), "/_id/ab/x");
    }
}
