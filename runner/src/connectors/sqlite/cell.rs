//! Values as SQLite hands them over, and their conversions to Arrow values.

use arrow::datatypes::DataType;
use sqlx::sqlite::SqliteRow;
use sqlx::{Decode, Row, Sqlite, TypeInfo, ValueRef};

/// Why a stored value cannot be read; the caller names the row and column.
#[derive(Debug, thiserror::Error)]
pub(super) enum ReadError {
    #[error(transparent)]
    Column(#[from] sqlx::Error),
    #[error("cannot read a {class} value: {source}")]
    Decode {
        class: &'static str,
        #[source]
        source: sqlx::error::BoxDynError,
    },
}

/// A value as SQLite stored it.
#[derive(Clone, Copy, Debug)]
pub(super) enum Cell<'r> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'r str),
    Blob(&'r [u8]),
}

impl Cell<'_> {
    /// Reads column `i` of a row in its storage class.
    pub(super) fn read(row: &SqliteRow, i: usize) -> Result<Cell<'_>, ReadError> {
        let raw = row.try_get_raw(i)?;
        if raw.is_null() {
            return Ok(Cell::Null);
        }
        // A non-NULL value's type is its storage class, whatever the column declares.
        let class = match raw.type_info().name() {
            "INTEGER" => "INTEGER",
            "REAL" => "REAL",
            "TEXT" => "TEXT",
            _ => "BLOB",
        };
        let decoded = match class {
            "INTEGER" => <i64 as Decode<Sqlite>>::decode(raw).map(Cell::Int),
            "REAL" => <f64 as Decode<Sqlite>>::decode(raw).map(Cell::Real),
            "TEXT" => <&str as Decode<Sqlite>>::decode(raw).map(Cell::Text),
            _ => <&[u8] as Decode<Sqlite>>::decode(raw).map(Cell::Blob),
        };
        decoded.map_err(|source| ReadError::Decode { class, source })
    }

    /// The Arrow type of a column whose declared type says nothing, from its first value.
    pub(super) fn inferred_type(self) -> DataType {
        match self {
            Cell::Int(_) => DataType::Int64,
            Cell::Real(_) => DataType::Float64,
            Cell::Blob(_) => DataType::Binary,
            Cell::Null | Cell::Text(_) => DataType::Utf8,
        }
    }

    /// The value as text, for the rejected file (never for a message).
    pub(super) fn as_text(self) -> String {
        match self {
            Cell::Null => "NULL".to_string(),
            Cell::Int(v) => v.to_string(),
            Cell::Real(v) => format!("{v:?}"),
            Cell::Text(s) => s.to_string(),
            Cell::Blob(b) => format!("blob of {} bytes", b.len()),
        }
    }

    pub(super) fn json(self) -> serde_json::Value {
        match self {
            Cell::Null => serde_json::Value::Null,
            Cell::Int(v) => v.into(),
            Cell::Real(v) => {
                serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into)
            }
            Cell::Text(s) => s.into(),
            Cell::Blob(b) => b
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect::<String>()
                .into(),
        }
    }
}

pub(super) fn integer(cell: Cell<'_>) -> Option<i64> {
    match cell {
        Cell::Int(v) => Some(v),
        // 2^63 as f64 is exact, so the range check is exact too.
        Cell::Real(f)
            if f.fract() == 0.0
                && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f) =>
        {
            Some(f as i64)
        }
        Cell::Text(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub(super) fn unsigned(cell: Cell<'_>) -> Option<u64> {
    match cell {
        Cell::Text(s) => s.trim().parse().ok(),
        other => integer(other).and_then(|v| u64::try_from(v).ok()),
    }
}

pub(super) fn real(cell: Cell<'_>) -> Option<f64> {
    match cell {
        Cell::Int(v) => Some(v as f64),
        Cell::Real(f) => Some(f),
        Cell::Text(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub(super) fn boolean(cell: Cell<'_>) -> Option<bool> {
    match cell {
        Cell::Int(0) => Some(false),
        Cell::Int(1) => Some(true),
        Cell::Real(f) if f == 0.0 || f == 1.0 => Some(f == 1.0),
        Cell::Text(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "t" | "1" => Some(true),
            "false" | "f" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

pub(super) fn text(cell: Cell<'_>) -> Option<std::borrow::Cow<'_, str>> {
    match cell {
        Cell::Text(s) => Some(s.into()),
        Cell::Int(v) => Some(v.to_string().into()),
        Cell::Real(f) => Some(format!("{f:?}").into()),
        Cell::Blob(b) => std::str::from_utf8(b).ok().map(Into::into),
        Cell::Null => None,
    }
}

pub(super) fn bytes(cell: Cell<'_>) -> Option<&[u8]> {
    match cell {
        Cell::Blob(b) => Some(b),
        Cell::Text(s) => Some(s.as_bytes()),
        _ => None,
    }
}

pub(super) fn time_text(cell: Cell<'_>, parse: fn(&str) -> Option<i64>) -> Option<i64> {
    match cell {
        Cell::Text(s) => parse(s),
        _ => None,
    }
}
