//! Converting columns to the types of a schema, row by row where values do not convert.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StringBuilder, new_null_array};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::util::display::array_value_to_string;

use crate::error::{Context, Error, Result};

/// Longest value quoted in a message; longer ones are cut.
const MAX_QUOTED: usize = 80;

/// A column converted to its type, and the rows whose value did not convert (they are null in
/// the result).
pub struct Converted {
    pub array: ArrayRef,
    pub failed: Vec<usize>,
}

/// Casts `array` to `to`. Casting is vectorised; the rows that failed are found afterwards by
/// comparing null counts, so the common case costs nothing extra.
pub fn convert(array: &ArrayRef, to: &DataType) -> Result<Converted, ArrowError> {
    if array.data_type() == to {
        return Ok(Converted {
            array: array.clone(),
            failed: Vec::new(),
        });
    }
    let options = CastOptions {
        safe: true,
        ..Default::default()
    };
    let out = cast_with_options(array.as_ref(), to, &options)?;
    let failed = if out.null_count() == array.null_count() {
        Vec::new()
    } else {
        (0..array.len())
            .filter(|&i| array.is_valid(i) && out.is_null(i))
            .collect()
    };
    Ok(Converted { array: out, failed })
}

/// A value of an array as text, for the rejected file (never for a message).
pub fn value_text(array: &dyn Array, row: usize) -> String {
    array_value_to_string(array, row).unwrap_or_else(|_| "?".into())
}

/// A name quoted for a message, cut to a readable length.
pub fn quote(text: &str) -> String {
    if text.chars().count() <= MAX_QUOTED {
        return format!("\"{text}\"");
    }
    let cut: String = text.chars().take(MAX_QUOTED).collect();
    format!("\"{cut}…\"")
}

/// `batch` with the columns of `extra` after its own.
pub fn with_columns(
    batch: &RecordBatch,
    extra: Vec<(Field, ArrayRef)>,
) -> Result<RecordBatch, ArrowError> {
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut columns = batch.columns().to_vec();
    for (field, column) in extra {
        fields.push(field);
        columns.push(column);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

/// Rearranges a batch into `target`: columns by name, cast where the type differs, null where
/// the batch lacks them; columns not in `target` are dropped.
pub fn project(batch: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    if batch.schema().fields() == target.fields() {
        return Ok(batch.clone());
    }
    let columns = target
        .fields()
        .iter()
        .map(|field| match batch.schema().index_of(field.name()) {
            Ok(i) => {
                let column = batch.column(i);
                if column.data_type() == field.data_type() {
                    Ok(column.clone())
                } else {
                    arrow::compute::cast(column.as_ref(), field.data_type()).map_err(|e| {
                        ArrowError::CastError(format!("column \"{}\": {e}", field.name()))
                    })
                }
            }
            Err(_) => Ok(new_null_array(field.data_type(), batch.num_rows())),
        })
        .collect::<Result<Vec<_>, ArrowError>>()?;
    RecordBatch::try_new(target.clone(), columns)
}

/// A nested column (struct, list, map) as JSON text, for formats that hold only scalars.
pub fn nested_as_json(field: &arrow::datatypes::FieldRef, array: &ArrayRef) -> Result<ArrayRef> {
    use arrow::json::writer::{EncoderOptions, make_encoder};
    let options = EncoderOptions::default();
    let mut encoder = make_encoder(field, array.as_ref(), &options)
        .context(|| format!("encoding column \"{}\" as JSON", field.name()))?;
    let mut out = StringBuilder::with_capacity(array.len(), array.len() * 16);
    let mut buffer = Vec::new();
    for row in 0..array.len() {
        if encoder.is_null(row) {
            out.append_null();
            continue;
        }
        buffer.clear();
        encoder.encode(row, &mut buffer);
        let text = std::str::from_utf8(&buffer).map_err(|e| {
            Error::Config(format!(
                "column \"{}\": JSON encoding produced invalid text: {e}",
                field.name()
            ))
        })?;
        out.append_value(text);
    }
    Ok(Arc::new(out.finish()))
}

#[cfg(test)]
mod tests {
    use arrow::array::{AsArray, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    #[test]
    fn failed_rows_are_the_non_null_values_that_did_not_convert() {
        let input: ArrayRef = Arc::new(StringArray::from(vec![
            Some("1"),
            None,
            Some("x"),
            Some("4"),
        ]));
        let out = convert(&input, &DataType::Int64).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.failed, vec![2]);
        assert_eq!(
            out.array
                .as_primitive::<arrow::datatypes::Int64Type>()
                .value(3),
            4
        );
        assert_eq!(value_text(input.as_ref(), 2), "x");
        assert_eq!(quote(&"a".repeat(100)).chars().count(), MAX_QUOTED + 3);
    }

    #[test]
    fn projection_reorders_casts_and_fills_nulls() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec!["x", "y"])),
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let target = Arc::new(Schema::new(vec![
            Field::new("c", DataType::Boolean, true),
            Field::new("a", DataType::Utf8, true),
        ]));
        let out = project(&batch, &target).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.column(0).null_count(), 2);
        assert_eq!(out.column(1).as_string::<i32>().value(1), "2");
    }
}
