//! Canonical JSON: the exact bytes that are hashed into the log.
//!
//! The form follows RFC 8785 (JCS) for everything an audit entry can hold:
//! object members sorted by the UTF-16 code units of their keys, no
//! whitespace, strings escaped the way `serde_json` escapes them (which is
//! the JCS escaping), and integers written in plain decimal. Floating-point
//! numbers are rejected rather than normalised, because two implementations
//! that print a float differently would hash the same entry differently;
//! scores are therefore stored as integers per million.

use serde_json::Value;

/// Why a value has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalJsonError {
    #[error("floating-point number at `{path}` is not allowed in audit entries; use an integer")]
    FloatNotAllowed { path: String },
    #[error("value could not be converted to json: {0}")]
    Serialize(String),
}

/// Serialises any value to canonical JSON.
pub fn to_canonical_json<T: serde::Serialize>(value: &T) -> Result<String, CanonicalJsonError> {
    let value = serde_json::to_value(value)
        .map_err(|error| CanonicalJsonError::Serialize(error.to_string()))?;
    canonical_json_of_value(&value)
}

/// Writes a JSON value in canonical form.
pub fn canonical_json_of_value(value: &Value) -> Result<String, CanonicalJsonError> {
    let mut out = String::with_capacity(256);
    write_value(value, &mut out).map_err(|reversed_path| CanonicalJsonError::FloatNotAllowed {
        path: render_path(reversed_path),
    })?;
    Ok(out)
}

/// Writes the members of a JSON object, sorted, without the surrounding
/// braces, split around the key `split_key`: members whose key sorts before
/// it go to the first string, the rest to the second. The writer uses this to
/// insert the entry's position without serialising the entry again.
pub(crate) fn canonical_members_split(
    object: &serde_json::Map<String, Value>,
    split_key: &str,
) -> Result<(String, String), CanonicalJsonError> {
    let mut before = String::with_capacity(256);
    let mut after = String::with_capacity(64);
    for (key, value) in sorted_members(object) {
        let target = if utf16_cmp(key, split_key).is_lt() {
            &mut before
        } else {
            &mut after
        };
        if !target.is_empty() {
            target.push(',');
        }
        write_string(key, target);
        target.push(':');
        write_value(value, target).map_err(|mut reversed_path| {
            reversed_path.push(key.clone());
            CanonicalJsonError::FloatNotAllowed {
                path: render_path(reversed_path),
            }
        })?;
    }
    Ok((before, after))
}

fn render_path(mut reversed_path: Vec<String>) -> String {
    reversed_path.reverse();
    if reversed_path.is_empty() {
        "$".to_owned()
    } else {
        format!("$.{}", reversed_path.join("."))
    }
}

fn utf16_cmp(left: &str, right: &str) -> std::cmp::Ordering {
    left.encode_utf16().cmp(right.encode_utf16())
}

fn sorted_members(object: &serde_json::Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut members: Vec<(&String, &Value)> = object.iter().collect();
    members.sort_by(|(left, _), (right, _)| utf16_cmp(left, right));
    members
}

fn write_string(text: &str, out: &mut String) {
    // Serialising a plain string cannot fail; the fallback keeps the function
    // total without a panic path.
    match serde_json::to_string(text) {
        Ok(escaped) => out.push_str(&escaped),
        Err(_) => out.push_str("\"\""),
    }
}

/// Writes `value`; on a float, returns the path to it with the innermost
/// segment first.
fn write_value(value: &Value, out: &mut String) -> Result<(), Vec<String>> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(number) => {
            if let Some(integer) = number.as_i64() {
                out.push_str(&integer.to_string());
            } else if let Some(integer) = number.as_u64() {
                out.push_str(&integer.to_string());
            } else {
                return Err(Vec::new());
            }
        }
        Value::String(text) => write_string(text, out),
        Value::Array(items) => {
            out.push('[');
            for (position, item) in items.iter().enumerate() {
                if position > 0 {
                    out.push(',');
                }
                write_value(item, out).map_err(|mut path| {
                    path.push(position.to_string());
                    path
                })?;
            }
            out.push(']');
        }
        Value::Object(object) => {
            out.push('{');
            for (position, (key, item)) in sorted_members(object).into_iter().enumerate() {
                if position > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_value(item, out).map_err(|mut path| {
                    path.push(key.clone());
                    path
                })?;
            }
            out.push('}');
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(input: Value, expected: &str) {
        assert_eq!(canonical_json_of_value(&input).unwrap(), expected);
    }

    #[test]
    fn canonical_form_table() {
        check(
            json!({"b": 1, "a": [true, null, "x"]}),
            r#"{"a":[true,null,"x"],"b":1}"#,
        );
        check(json!({"z": {"y": 2, "x": -3}}), r#"{"z":{"x":-3,"y":2}}"#);
        check(
            json!("line\nbreak \u{1} \"q\" é"),
            "\"line\\nbreak \\u0001 \\\"q\\\" é\"",
        );
        check(json!(18446744073709551615u64), "18446744073709551615");
        check(json!({}), "{}");
        // JCS orders by UTF-16 code units: U+FF61 sorts after U+1F600, whose
        // surrogates start at 0xD83D, even though its UTF-8 bytes sort first.
        check(
            json!({"\u{ff61}": 1, "\u{1f600}": 2}),
            "{\"\u{1f600}\":2,\"\u{ff61}\":1}",
        );
    }

    #[test]
    fn floats_are_rejected_with_their_path() {
        let error = canonical_json_of_value(&json!({"payload": {"scores": [1, 0.5]}})).unwrap_err();
        assert_eq!(
            error,
            CanonicalJsonError::FloatNotAllowed {
                path: "$.payload.scores.1".to_owned()
            }
        );
        assert!(canonical_json_of_value(&json!(1.0)).is_err());
    }

    #[test]
    fn split_members_reassemble_to_the_canonical_form() {
        let object = json!({"time": "t", "kind": "k", "action": "a", "zeta": 1.5});
        let Value::Object(mut object) = object else {
            unreachable!()
        };
        assert!(canonical_members_split(&object, "index").is_err());
        object.remove("zeta");
        let (before, after) = canonical_members_split(&object, "index").unwrap();
        assert_eq!(before, r#""action":"a""#);
        assert_eq!(after, r#""kind":"k","time":"t""#);
        object.insert("index".to_owned(), json!(7));
        assert_eq!(
            canonical_json_of_value(&Value::Object(object)).unwrap(),
            format!("{{{before},\"index\":7,{after}}}")
        );
    }
}
