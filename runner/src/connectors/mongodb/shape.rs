//! What JSON cannot say about a document's BSON types, learnt from the sampled documents and
//! carried in field metadata, so documents copied through SynqX come back in their types.
//!
//! Documents are read as plain JSON (see [`super::types`]): an int32 and an int64 are both
//! JSON integers; an objectId, a date, a decimal128 and a binData (of any subtype) are all
//! JSON strings. Plain JSON keeps the text useful to every other destination; extended JSON
//! would not help anyway, since its relaxed form writes int32 and int64 alike and its
//! canonical form (`{"$numberInt": "7"}`) makes the text useless outside MongoDB. So the
//! source records, for each place in the documents (a top-level field, a field of an object,
//! the items of an array), the BSON types its sampled values had ([`Shape`]); where they
//! decide what a JSON integer or string was, that decision ([`Restore`]) travels as the
//! column's field metadata, and the sink applies it.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use base64::Engine;
use mongodb::bson::{self, Bson, Document};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Field metadata of a column: the BSON type its values are written back as ([`Mark`]).
pub const BSON_TYPE: &str = "synqx.bson";
/// Field metadata of a JSON text column: what its integers and strings were, place by place
/// (a [`Restore`] as JSON).
pub const BSON_NESTED: &str = "synqx.bson.nested";

/// A BSON type as far as restoring it goes; a set of them is a bit set (`1 << kind`).
#[derive(Clone, Copy)]
enum Kind {
    Int32,
    Int64,
    Timestamp,
    String,
    ObjectId,
    Date,
    Decimal,
    BinData,
    /// Objects and arrays, one more type here: a top-level column that holds them as well
    /// as objectIds is no column of objectIds.
    Object,
    Other,
}

impl Kind {
    const fn bit(self) -> u16 {
        1 << self as u16
    }
}

const INT32: u16 = Kind::Int32.bit();
const TIMESTAMP: u16 = Kind::Timestamp.bit();
const OBJECT_ID: u16 = Kind::ObjectId.bit();
const DATE: u16 = Kind::Date.bit();
const DECIMAL: u16 = Kind::Decimal.bit();
const BIN_DATA: u16 = Kind::BinData.bit();
/// The BSON types read as JSON integers, and as JSON strings.
const INTEGERS: u16 = INT32 | Kind::Int64.bit() | TIMESTAMP;
const STRINGS: u16 = Kind::String.bit() | OBJECT_ID | DATE | DECIMAL | BIN_DATA;

/// The BSON types seen at one place of the sampled documents (nulls aside), and below it.
#[derive(Debug, Default)]
pub struct Shape {
    kinds: u16,
    /// The binData subtypes seen here.
    subtypes: Vec<u8>,
    fields: BTreeMap<String, Shape>,
    items: Option<Box<Shape>>,
}

impl Shape {
    /// Takes in the fields of a (top-level) document.
    pub fn observe_document(&mut self, document: &Document) {
        for (key, value) in document {
            self.fields.entry(key.clone()).or_default().observe(value);
        }
    }

    fn observe(&mut self, value: &Bson) {
        let kind = match value {
            Bson::Null | Bson::Undefined => return,
            Bson::Int32(_) => Kind::Int32,
            Bson::Int64(_) => Kind::Int64,
            Bson::Timestamp(_) => Kind::Timestamp,
            Bson::String(_) => Kind::String,
            Bson::ObjectId(_) => Kind::ObjectId,
            Bson::DateTime(_) => Kind::Date,
            Bson::Decimal128(_) => Kind::Decimal,
            Bson::Binary(b) => {
                let subtype = u8::from(b.subtype);
                if !self.subtypes.contains(&subtype) {
                    self.subtypes.push(subtype);
                }
                Kind::BinData
            }
            Bson::Document(d) => {
                self.observe_document(d);
                Kind::Object
            }
            Bson::Array(items) => {
                let shape = self.items.get_or_insert_with(Default::default);
                items.iter().for_each(|item| shape.observe(item));
                Kind::Object
            }
            _ => Kind::Other,
        };
        self.kinds |= kind.bit();
    }

    /// The shape of top-level column `name`: a field, or with `flatten` the child of an
    /// object that a `parent.child` column holds.
    pub fn column(&self, name: &str, flattened: bool) -> Option<&Shape> {
        self.fields.get(name).or_else(|| {
            let (parent, child) = name.split_once('.').filter(|_| flattened)?;
            self.fields.get(parent)?.fields.get(child)
        })
    }

    /// What a JSON integer here was, when every integer seen here was of one such type.
    pub fn integer(&self) -> Option<Integer> {
        match self.kinds & INTEGERS {
            INT32 => Some(Integer::Int32),
            TIMESTAMP => Some(Integer::Timestamp),
            _ => None,
        }
    }

    /// What a JSON string here was, when every string-like value seen here was of one type
    /// other than string. binData of several subtypes is written back as subtype 0.
    pub fn text(&self) -> Option<Mark> {
        match self.kinds & STRINGS {
            OBJECT_ID => Some(Mark::ObjectId),
            DATE => Some(Mark::Date),
            DECIMAL => Some(Mark::Decimal128),
            BIN_DATA => Some(Mark::BinData(match self.subtypes[..] {
                [one] => one,
                _ => 0,
            })),
            _ => None,
        }
    }

    /// The mark of a top-level text or integer column, whose cells no longer say whether
    /// they were JSON strings or numbers: only when every sampled value was of that type.
    pub fn column_mark(&self) -> Option<Mark> {
        if self.kinds & STRINGS == self.kinds {
            self.text()
        } else if self.kinds == TIMESTAMP {
            Some(Mark::Timestamp)
        } else {
            None
        }
    }

    /// What the sink needs to restore the values below this place, or `None` when JSON says
    /// it all.
    pub fn restore(&self) -> Option<Restore> {
        let restore = Restore {
            int: self.integer(),
            text: self.text(),
            fields: self
                .fields
                .iter()
                .filter_map(|(k, s)| Some((k.clone(), s.restore()?)))
                .collect(),
            items: self.items.as_ref().and_then(|s| s.restore()).map(Box::new),
        };
        (restore != Restore::default()).then_some(restore)
    }
}

/// The BSON type of a JSON integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Integer {
    Int32,
    Timestamp,
}

/// The BSON type a column's values (or a nested JSON string) are written back as:
/// `objectId`, `date`, `decimal128`, `timestamp`, `binData` (subtype 0) or `binData:04`
/// (the subtype in two hex digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    ObjectId,
    Date,
    Decimal128,
    Timestamp,
    BinData(u8),
}

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ObjectId => f.write_str("objectId"),
            Self::Date => f.write_str("date"),
            Self::Decimal128 => f.write_str("decimal128"),
            Self::Timestamp => f.write_str("timestamp"),
            Self::BinData(0) => f.write_str("binData"),
            Self::BinData(subtype) => write!(f, "binData:{subtype:02x}"),
        }
    }
}

/// A `synqx.bson_type` mark that names no BSON type SynqX writes back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadMark {
    #[error("\"{0}\": the subtype is not two hex digits")]
    Subtype(String),
    #[error(
        "\"{0}\" is none of objectId, date, decimal128, timestamp, binData, binData:<two hex digits>"
    )]
    Unknown(String),
}

impl FromStr for Mark {
    type Err = BadMark;

    fn from_str(text: &str) -> Result<Self, BadMark> {
        Ok(match text {
            "objectId" => Self::ObjectId,
            "date" => Self::Date,
            "decimal128" => Self::Decimal128,
            "timestamp" => Self::Timestamp,
            "binData" => Self::BinData(0),
            _ => match text.strip_prefix("binData:") {
                Some(hex) if hex.len() == 2 => Self::BinData(
                    u8::from_str_radix(hex, 16).map_err(|_| BadMark::Subtype(text.into()))?,
                ),
                _ => return Err(BadMark::Unknown(text.into())),
            },
        })
    }
}

impl Serialize for Mark {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mark {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// How to write back the JSON values at one place and below it: `int` says what a JSON
/// integer was, `text` what a JSON string was; absent means as JSON reads (int64, string).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Restore {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub int: Option<Integer>,
    #[serde(default, rename = "str", skip_serializing_if = "Option::is_none")]
    pub text: Option<Mark>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, Restore>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Box<Restore>>,
}

impl Restore {
    /// JSON as BSON, each value in the type this place says. A value that does not parse
    /// as the recorded type (a later document differed from the sample) stays as JSON reads.
    pub fn to_bson(value: Value, at: Option<&Restore>) -> Bson {
        match value {
            Value::Null => Bson::Null,
            Value::Bool(b) => Bson::Boolean(b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => integer(i, at.and_then(|r| r.int)),
                None => Bson::Double(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => match at.and_then(|r| r.text) {
                Some(mark) => text(s, mark),
                None => Bson::String(s),
            },
            Value::Array(items) => {
                let inner = at.and_then(|r| r.items.as_deref());
                Bson::Array(items.into_iter().map(|v| Self::to_bson(v, inner)).collect())
            }
            Value::Object(map) => Bson::Document(
                map.into_iter()
                    .map(|(k, v)| {
                        let inner = at.and_then(|r| r.fields.get(&k));
                        (k, Self::to_bson(v, inner))
                    })
                    .collect(),
            ),
        }
    }
}

/// An integer in the BSON type recorded for it, when it fits.
pub fn integer(i: i64, kind: Option<Integer>) -> Bson {
    match kind {
        Some(Integer::Int32) => i32::try_from(i).map_or(Bson::Int64(i), Bson::Int32),
        Some(Integer::Timestamp) => u64::try_from(i).map_or(Bson::Int64(i), |t| {
            Bson::Timestamp(bson::Timestamp {
                time: (t >> 32) as u32,
                increment: t as u32,
            })
        }),
        None => Bson::Int64(i),
    }
}

/// Text in the BSON type `mark` names, or the string itself when it does not parse as one.
pub fn text(s: String, mark: Mark) -> Bson {
    let parsed = match mark {
        Mark::ObjectId => bson::oid::ObjectId::parse_str(&s).ok().map(Bson::ObjectId),
        Mark::Date => chrono::DateTime::parse_from_rfc3339(&s)
            .map(|d| d.timestamp_millis())
            .or_else(|_| s.parse::<i64>())
            .ok()
            .map(|ms| Bson::DateTime(bson::DateTime::from_millis(ms))),
        Mark::Decimal128 => s.parse().ok().map(Bson::Decimal128),
        Mark::BinData(subtype) => base64::engine::general_purpose::STANDARD
            .decode(&s)
            .ok()
            .map(|bytes| {
                Bson::Binary(bson::Binary {
                    subtype: subtype.into(),
                    bytes,
                })
            }),
        Mark::Timestamp => s
            .parse::<i64>()
            .ok()
            .map(|i| integer(i, Some(Integer::Timestamp))),
    };
    parsed.unwrap_or(Bson::String(s))
}

#[cfg(test)]
mod tests {
    use mongodb::bson::doc;
    use serde_json::json;

    use super::*;

    fn uuid(i: u8) -> Bson {
        Bson::Binary(bson::Binary {
            subtype: bson::spec::BinarySubtype::Uuid,
            bytes: vec![i; 16],
        })
    }

    #[test]
    fn the_sample_decides_what_json_integers_and_strings_were() {
        let id = bson::oid::ObjectId::parse_str("65a1b2c3d4e5f60718293a4b").unwrap();
        let mut shape = Shape::default();
        for i in 0..2 {
            shape.observe_document(&doc! {
                "sub": {"n": i, "big": 1_i64 << 40, "id": id, "u": uuid(i as u8), "s": "x",
                        "at": bson::DateTime::from_millis(5), "deep": {"n": [i, i + 1]}},
                "items": [{"qty": i, "ts": Bson::Timestamp(bson::Timestamp { time: 1, increment: 2 })}],
                "mixed": [i, 1_i64 << 40],
                "blobs": [uuid(1), Bson::Binary(bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: vec![1] })],
                "plain": {"a": "b", "x": 1.5},
            });
        }
        let restore = |name: &str| {
            shape
                .column(name, false)
                .and_then(Shape::restore)
                .map(|r| serde_json::to_value(r).unwrap())
        };
        assert_eq!(
            restore("sub"),
            Some(json!({"fields": {
                "n": {"int": "int32"}, "id": {"str": "objectId"}, "u": {"str": "binData:04"},
                "at": {"str": "date"}, "deep": {"fields": {"n": {"items": {"int": "int32"}}}},
            }}))
        );
        assert_eq!(
            restore("items"),
            Some(
                json!({"items": {"fields": {"qty": {"int": "int32"}, "ts": {"int": "timestamp"}}}})
            )
        );
        // Integers of two types at one place read as int64; binData of two subtypes as 0.
        assert_eq!(restore("mixed"), None);
        assert_eq!(restore("blobs"), Some(json!({"items": {"str": "binData"}})));
        assert_eq!(restore("plain"), None);
    }

    #[test]
    fn json_comes_back_in_the_recorded_types() {
        let restore: Restore = serde_json::from_value(json!({"fields": {
            "n": {"int": "int32"}, "u": {"str": "binData:04"}, "id": {"str": "objectId"},
            "at": {"str": "date"}, "ts": {"int": "timestamp"}, "d": {"str": "decimal128"},
            "list": {"items": {"int": "int32"}},
        }}))
        .unwrap();
        let value = json!({
            "n": 7, "u": "AQEBAQEBAQEBAQEBAQEBAQ==", "id": "65a1b2c3d4e5f60718293a4b",
            "at": "2023-11-14T22:13:20.123Z", "ts": (5_i64 << 32) | 6, "d": "12.50",
            "list": [1, 1_i64 << 40], "other": 3, "s": "x",
        });
        let Bson::Document(got) = Restore::to_bson(value, Some(&restore)) else {
            panic!("not a document")
        };
        assert_eq!(
            got,
            doc! {
                "at": bson::DateTime::from_millis(1_700_000_000_123),
                "d": Bson::Decimal128("12.50".parse().unwrap()),
                "id": bson::oid::ObjectId::parse_str("65a1b2c3d4e5f60718293a4b").unwrap(),
                "list": [1_i32, 1_i64 << 40],
                "n": 7_i32,
                "other": 3_i64,
                "s": "x",
                "ts": Bson::Timestamp(bson::Timestamp { time: 5, increment: 6 }),
                "u": uuid(1),
            }
        );
        // A value that is not what the sample said stays as JSON reads it.
        assert_eq!(
            Restore::to_bson(json!("not hex"), restore.fields.get("id")),
            Bson::String("not hex".into())
        );
    }

    #[test]
    fn marks_read_as_they_are_written() {
        for mark in [
            Mark::ObjectId,
            Mark::Date,
            Mark::Decimal128,
            Mark::Timestamp,
            Mark::BinData(0),
            Mark::BinData(4),
            Mark::BinData(0x80),
        ] {
            assert_eq!(mark.to_string().parse::<Mark>(), Ok(mark));
        }
        assert_eq!(Mark::BinData(4).to_string(), "binData:04");
        assert_eq!(
            "binData:4".parse::<Mark>(),
            Err(BadMark::Unknown("binData:4".into()))
        );
        assert_eq!(
            "binData:zz".parse::<Mark>(),
            Err(BadMark::Subtype("binData:zz".into()))
        );
        let unknown = "uuid".parse::<Mark>();
        assert_eq!(unknown, Err(BadMark::Unknown("uuid".into())));
        assert!(unknown.is_err_and(|e| e.to_string().contains("\"uuid\" is none of objectId")));
    }
}
