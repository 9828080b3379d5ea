//! Multi-row prepared INSERTs whose parameters are bound straight from Arrow arrays.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Date32Array, Decimal128Array,
    Float64Array, Int64Array, RecordBatch, StringArray, StringBuilder, Time64MicrosecondArray,
    TimestampMicrosecondArray, UInt64Array,
};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Field, FieldRef, Float64Type, Int64Type,
    Time64MicrosecondType, TimestampMicrosecondType, UInt64Type,
};
use arrow::error::ArrowError;
use arrow::json::writer::{EncoderOptions, make_encoder};
use sqlx::sqlite::{SqliteArguments, SqliteConnection};
use sqlx::{Arguments, AssertSqlSafe, Encode, SqlSafeStr, SqlStr, Sqlite, Type};

use super::quote;
use super::types::{Storage, format_date, format_decimal, format_time, format_timestamp};
use crate::connectors::formats::convert::value_text;
use crate::connectors::sql::ddl::identifiers;
use crate::error::{BadRow, Context, Error, Result};

/// SQLite's limit of bound parameters in one statement (`SQLITE_MAX_VARIABLE_NUMBER`).
const MAX_PARAMETERS: usize = 32_766;
/// Rows per statement at most: longer statements only take longer to parse.
const MAX_ROWS: usize = 1_000;

/// A source column that is written.
#[derive(Clone, Debug)]
pub(super) struct InsertColumn {
    /// Position in the input schema.
    pub index: usize,
    pub name: String,
    pub storage: Storage,
}

/// Inserts batches into one table, optionally merging by key.
pub(super) struct Inserter<'a> {
    at: &'a str,
    columns: &'a [InsertColumn],
    prefix: String,
    suffix: String,
    rows_per_statement: usize,
    /// The statement of a full chunk, shared so every chunk reuses one prepared statement.
    full: SqlStr,
}

impl<'a> Inserter<'a> {
    /// `target` is the qualified table; with `key`, rows whose key exists update it.
    pub(super) fn new(
        at: &'a str,
        target: &str,
        columns: &'a [InsertColumn],
        key: Option<&[String]>,
    ) -> Self {
        let names: Vec<String> = columns.iter().map(|c| quote(&c.name)).collect();
        let prefix = format!("INSERT INTO {target} ({}) VALUES ", names.join(", "));
        let suffix = match key {
            None => String::new(),
            Some(key) => {
                let updates: Vec<String> = columns
                    .iter()
                    .filter(|c| !key.iter().any(|k| super::same_name(k, &c.name)))
                    .map(|c| format!("{0} = excluded.{0}", quote(&c.name)))
                    .collect();
                let action = if updates.is_empty() {
                    "DO NOTHING".to_string()
                } else {
                    format!("DO UPDATE SET {}", updates.join(", "))
                };
                format!(" ON CONFLICT ({}) {action}", identifiers(key, quote))
            }
        };
        let rows_per_statement = (MAX_PARAMETERS / columns.len().max(1)).clamp(1, MAX_ROWS);
        let mut inserter = Self {
            at,
            columns,
            prefix,
            suffix,
            rows_per_statement,
            full: SqlStr::from_static(""),
        };
        let full: Arc<str> = inserter.sql(rows_per_statement).into();
        inserter.full = AssertSqlSafe(full).into_sql_str();
        inserter
    }

    fn sql(&self, rows: usize) -> String {
        let tuple = format!("({})", vec!["?"; self.columns.len()].join(", "));
        format!(
            "{}{}{}",
            self.prefix,
            vec![tuple.as_str(); rows].join(", "),
            self.suffix
        )
    }

    /// Inserts a batch; `before` is the number of rows written before it, for messages.
    pub(super) async fn insert(
        &self,
        conn: &mut SqliteConnection,
        batch: &RecordBatch,
        before: u64,
    ) -> Result<()> {
        let at = self.at;
        let mut arrays = Vec::with_capacity(self.columns.len());
        for column in self.columns {
            let array = batch.columns().get(column.index).ok_or_else(|| {
                Error::Config(format!(
                    "{at}: a batch has no column \"{}\" although its schema does",
                    column.name
                ))
            })?;
            let array = normalize(array, column.storage)
                .context(|| format!("{at}, column \"{}\": converting for SQLite", column.name))?;
            arrays.push(array);
        }
        let values = arrays
            .iter()
            .zip(self.columns)
            .map(|(array, column)| {
                Values::new(array, column.storage).ok_or_else(|| {
                    Error::Config(format!(
                        "{at}, column \"{}\": unexpected array type {}",
                        column.name,
                        array.data_type()
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let total = batch.num_rows();
        let mut start = 0;
        while start < total {
            let rows = (total - start).min(self.rows_per_statement);
            let mut args = SqliteArguments::default();
            for row in start..start + rows {
                for ((value, column), array) in values.iter().zip(self.columns).zip(&arrays) {
                    value.bind(&mut args, row).map_err(|reason| {
                        Error::from(
                            BadRow::new(
                                format!("{at}, row {}", before + row as u64 + 1),
                                reason.to_string(),
                            )
                            .column(&column.name)
                            .value(value_text(array.as_ref(), row)),
                        )
                    })?;
                }
            }
            // Only full chunks recur; a statement for the last, shorter one is not cached.
            let (sql, persistent) = if rows == self.rows_per_statement {
                (self.full.clone(), true)
            } else {
                (AssertSqlSafe(self.sql(rows)).into_sql_str(), false)
            };
            sqlx::query_with(sql, args)
                .persistent(persistent)
                .execute(&mut *conn)
                .await
                .context(|| {
                    let first = before + start as u64 + 1;
                    format!("{at}: writing rows {first} to {}", first + rows as u64 - 1)
                })?;
            start += rows;
        }
        Ok(())
    }
}

/// The array cast to the type its storage binds from; nested values become JSON text.
fn normalize(array: &ArrayRef, storage: Storage) -> Result<ArrayRef, ArrowError> {
    let options = CastOptions {
        safe: false,
        ..Default::default()
    };
    let array = match array.data_type() {
        DataType::Dictionary(_, value) => cast_with_options(array, value, &options)?,
        _ => array.clone(),
    };
    if storage == Storage::Json {
        return json_text(&array);
    }
    let target = storage.arrow_type();
    let same = match (array.data_type(), &target) {
        // Only the instants matter; they are written in UTC whatever the zone.
        (DataType::Timestamp(unit, Some(_)), DataType::Timestamp(target_unit, Some(_))) => {
            unit == target_unit
        }
        (actual, target) => actual == target,
    };
    if same {
        Ok(array)
    } else {
        cast_with_options(&array, &target, &options)
    }
}

/// Each value of a nested array as JSON text.
fn json_text(array: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    let field: FieldRef = Arc::new(Field::new("value", array.data_type().clone(), true));
    let options = EncoderOptions::default().with_explicit_nulls(true);
    let mut encoder = make_encoder(&field, array.as_ref(), &options)?;
    let mut out = StringBuilder::new();
    let mut buf = Vec::new();
    for i in 0..array.len() {
        if array.is_null(i) {
            out.append_null();
            continue;
        }
        buf.clear();
        encoder.encode(i, &mut buf);
        let text = std::str::from_utf8(&buf).map_err(|e| ArrowError::JsonError(e.to_string()))?;
        out.append_value(text);
    }
    Ok(Arc::new(out.finish()))
}

/// A normalized array, typed for binding.
enum Values<'a> {
    Boolean(&'a BooleanArray),
    Integer(&'a Int64Array),
    UInt64(&'a UInt64Array),
    Real(&'a Float64Array),
    Decimal(&'a Decimal128Array, i8),
    Text(&'a StringArray),
    Blob(&'a BinaryArray),
    Date(&'a Date32Array),
    Time(&'a Time64MicrosecondArray),
    Timestamp(&'a TimestampMicrosecondArray, bool),
}

impl<'a> Values<'a> {
    fn new(array: &'a ArrayRef, storage: Storage) -> Option<Self> {
        Some(match storage {
            Storage::Boolean => Self::Boolean(array.as_boolean_opt()?),
            Storage::Integer => Self::Integer(array.as_primitive_opt::<Int64Type>()?),
            Storage::UInt64 => Self::UInt64(array.as_primitive_opt::<UInt64Type>()?),
            Storage::Real => Self::Real(array.as_primitive_opt::<Float64Type>()?),
            Storage::Decimal(_, scale) => {
                Self::Decimal(array.as_primitive_opt::<Decimal128Type>()?, scale)
            }
            Storage::Text | Storage::Json => Self::Text(array.as_string_opt::<i32>()?),
            Storage::Blob => Self::Blob(array.as_binary_opt::<i32>()?),
            Storage::Date => Self::Date(array.as_primitive_opt::<Date32Type>()?),
            Storage::Time => Self::Time(array.as_primitive_opt::<Time64MicrosecondType>()?),
            Storage::Timestamp { utc } => {
                Self::Timestamp(array.as_primitive_opt::<TimestampMicrosecondType>()?, utc)
            }
        })
    }

    /// Binds the value of `row`; the error says why it cannot be stored.
    fn bind(&self, args: &mut SqliteArguments, row: usize) -> Result<(), BindError> {
        match self {
            Self::Boolean(a) => add(args, a.is_valid(row).then(|| a.value(row))),
            Self::Integer(a) => add(args, a.is_valid(row).then(|| a.value(row))),
            Self::UInt64(a) => {
                let value = match a.is_valid(row).then(|| a.value(row)) {
                    Some(v) => Some(i64::try_from(v).map_err(|_| BindError::AboveInteger)?),
                    None => None,
                };
                add(args, value)
            }
            Self::Real(a) => add(args, a.is_valid(row).then(|| a.value(row))),
            Self::Decimal(a, scale) => add(
                args,
                a.is_valid(row)
                    .then(|| format_decimal(a.value(row), *scale)),
            ),
            Self::Text(a) => add(args, a.is_valid(row).then(|| a.value(row))),
            Self::Blob(a) => add(args, a.is_valid(row).then(|| a.value(row))),
            Self::Date(a) => add(
                args,
                text(a.is_valid(row).then(|| a.value(row)), format_date, "date")?,
            ),
            Self::Time(a) => add(
                args,
                text(a.is_valid(row).then(|| a.value(row)), format_time, "time")?,
            ),
            Self::Timestamp(a, utc) => {
                let format = |v| format_timestamp(v, *utc);
                add(
                    args,
                    text(a.is_valid(row).then(|| a.value(row)), format, "timestamp")?,
                )
            }
        }
    }
}

/// Why a value cannot be bound; the caller names the row and column.
#[derive(Debug, thiserror::Error)]
enum BindError {
    #[error("the value is above the largest SQLite INTEGER, {}", i64::MAX)]
    AboveInteger,
    /// `value` is the Arrow value: days or microseconds.
    #[error("value {value} is out of the range of a {what}")]
    OutOfRange { value: i64, what: &'static str },
    #[error(transparent)]
    Encode(sqlx::error::BoxDynError),
}

fn add<'q, T: Encode<'q, Sqlite> + Type<Sqlite>>(
    args: &mut SqliteArguments,
    value: T,
) -> Result<(), BindError> {
    Arguments::add(args, value).map_err(BindError::Encode)
}

fn text<T: Into<i64> + Copy>(
    value: Option<T>,
    format: impl Fn(T) -> Option<String>,
    what: &'static str,
) -> Result<Option<String>, BindError> {
    match value {
        None => Ok(None),
        Some(v) => format(v).map(Some).ok_or(BindError::OutOfRange {
            value: v.into(),
            what,
        }),
    }
}
