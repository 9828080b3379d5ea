//! Where the records are in a response body: the body itself when it is an array; else the
//! first array of objects under one of the usual keys (`data`, `items`, `results`, `records`,
//! `value`, `entries`, looking one object deeper under each, as in `{"data": {"items": […]}}`);
//! else the only array of objects at the top level. `recordsPath` (a JSON pointer) says
//! exactly where instead.

use serde_json::Value;

use crate::connectors::formats::jsonl::kind_of;

/// Keys that usually hold the records, in the order they are tried.
pub const RECORD_KEYS: [&str; 6] = ["data", "items", "results", "records", "value", "entries"];

/// Why a response has no records where they were looked for; the message says what it holds,
/// so the user can set `recordsPath`. The caller names the page.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordsError {
    /// `path` as [`RecordsPath::describe`] shows it; `found` as [`kind_of`] names it.
    #[error("{path} holds {found}, not an array of records")]
    NotAnArray { path: String, found: &'static str },
    #[error("recordsPath \"{pointer}\" is not in the response (top-level keys: {top_keys})")]
    Missing { pointer: String, top_keys: String },
    #[error("the response is {found}, not a JSON object or array")]
    NotObjectOrArray { found: &'static str },
    #[error(
        "no array of records in the response (top-level keys: {top_keys}); set recordsPath to the JSON pointer of the records, e.g. /result/items"
    )]
    NoRecords { top_keys: String },
    #[error(
        "the response has several arrays of objects ({}); set recordsPath to the one that holds the records, e.g. /{}",
        keys.join(", "),
        keys[0]
    )]
    SeveralArrays { keys: Vec<String> },
}

/// Where the records of a page were found, as a JSON pointer (`""` is the body).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordsPath(pub String);

impl RecordsPath {
    /// The records of a body at this path. A page without the path has no records (the last
    /// page of some APIs leaves the key out); a path that holds something other than an array
    /// is an error.
    pub fn records<'a>(&self, body: &'a Value) -> Result<&'a [Value], RecordsError> {
        match body.pointer(&self.0) {
            None | Some(Value::Null) => Ok(&[]),
            Some(Value::Array(items)) => Ok(items),
            Some(other) => Err(RecordsError::NotAnArray {
                path: self.describe(),
                found: kind_of(other),
            }),
        }
    }

    /// The path as a message shows it.
    pub fn describe(&self) -> String {
        if self.0.is_empty() {
            "the response body".to_string()
        } else {
            format!("\"{}\"", self.0)
        }
    }
}

/// Finds the records of the first page: `explicit` when given, else by the rules of this
/// module. The error says what the body holds, so the user can set `recordsPath`.
pub fn locate(body: &Value, explicit: Option<&str>) -> Result<RecordsPath, RecordsError> {
    if let Some(pointer) = explicit.filter(|p| !p.is_empty()) {
        return match body.pointer(pointer) {
            Some(Value::Array(_)) => Ok(RecordsPath(pointer.to_string())),
            Some(other) => Err(RecordsError::NotAnArray {
                path: format!("recordsPath \"{pointer}\""),
                found: kind_of(other),
            }),
            None => Err(RecordsError::Missing {
                pointer: pointer.to_string(),
                top_keys: top_keys(body),
            }),
        };
    }
    if body.is_array() {
        return Ok(RecordsPath(String::new()));
    }
    let Value::Object(map) = body else {
        return Err(RecordsError::NotObjectOrArray {
            found: kind_of(body),
        });
    };
    for key in RECORD_KEYS {
        match map.get(key) {
            Some(v) if is_records(v) => return Ok(RecordsPath(pointer_of(&[key]))),
            Some(Value::Object(inner)) => {
                for inner_key in RECORD_KEYS {
                    if inner.get(inner_key).is_some_and(is_records) {
                        return Ok(RecordsPath(pointer_of(&[key, inner_key])));
                    }
                }
            }
            _ => {}
        }
    }
    let arrays: Vec<&String> = map
        .iter()
        .filter(|(_, v)| is_records(v) && v.as_array().is_some_and(|a| !a.is_empty()))
        .map(|(k, _)| k)
        .collect();
    match arrays.as_slice() {
        [only] => Ok(RecordsPath(pointer_of(&[only.as_str()]))),
        [] => Err(RecordsError::NoRecords {
            top_keys: top_keys(body),
        }),
        several => Err(RecordsError::SeveralArrays {
            keys: several.iter().map(|k| k.to_string()).collect(),
        }),
    }
}

/// An array whose elements are all objects (an empty array qualifies: the records of an
/// empty page).
fn is_records(value: &Value) -> bool {
    value
        .as_array()
        .is_some_and(|items| items.iter().all(Value::is_object))
}

/// A JSON pointer of plain keys, escaped as RFC 6901 says.
pub fn pointer_of(keys: &[&str]) -> String {
    keys.iter()
        .map(|k| format!("/{}", k.replace('~', "~0").replace('/', "~1")))
        .collect()
}

fn top_keys(body: &Value) -> String {
    match body {
        Value::Object(map) if !map.is_empty() => map
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", "),
        Value::Object(_) => "none".to_string(),
        other => format!("none, the body is {}", kind_of(other)),
    }
}
