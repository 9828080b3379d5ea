//! Filling a load's staging table. Two paths, chosen once per load from what the server says
//! about a stage:
//! - **stage**: batches are written as Parquet files of up to [`PART_BYTES`], each `PUT` to a
//!   temporary stage and uploaded to the presigned URL the server returns, then one
//!   `COPY INTO … MATCH_BY_COLUMN_NAME` (an asynchronous query) loads them all;
//! - **bind**: multi-row `INSERT`s with array bindings, when the stage wants client-side
//!   encryption or a cloud SDK upload (S3, Azure, GCS without a presigned URL), which this
//!   version does not implement.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use serde_json::Value;

use super::bind;
use super::connect::{Failure, Kind, Session};
use super::query::{BindValue, Binding};
use super::sql::{ROW_COLUMN, Table, ident, stored_name};

/// Size of one staged Parquet file before it is uploaded.
pub const PART_BYTES: usize = 64 * 1024 * 1024;
/// Values sent in one `INSERT` with array bindings (rows x columns), to keep requests small.
const BIND_VALUES: usize = 200_000;

/// How staged rows reach the staging table.
enum Path {
    Stage {
        name: String,
        writer: Option<Box<ArrowWriter<Vec<u8>>>>,
        parts: u32,
    },
    Bind,
}

/// Fills one staging table.
pub struct Loader<'a> {
    session: &'a Session,
    staging: Table,
    /// The staged schema: the written columns under their stored names (nested values as JSON
    /// text) and the row order.
    schema: SchemaRef,
    path: Path,
    next_row: u64,
}

impl<'a> Loader<'a> {
    /// Creates the temporary stage and asks the server how files reach it.
    pub async fn start(
        session: &'a Session,
        staging: Table,
        written: &[Field],
    ) -> Result<Self, Failure> {
        let mut fields: Vec<Field> = written
            .iter()
            .map(|f| Field::new(stored_name(f.name()), staged_type(f.data_type()), true))
            .collect();
        fields.push(Field::new(ROW_COLUMN, DataType::Int64, false));
        let schema = Arc::new(Schema::new(fields));
        let stage = Table::temporary(&format!("{}_FILES", staging.name));
        session
            .query(&format!("CREATE TEMPORARY STAGE {}", stage.sql()), &[])
            .await?;
        let name = format!("@{}", stage.sql());
        let probe = session.query(&put_command(&name, 1), &[]).await?;
        let path = match upload_target(&probe.other) {
            Ok(_) if session.settings().stage_files => Path::Stage {
                name,
                writer: None,
                parts: 0,
            },
            _ => Path::Bind,
        };
        Ok(Self {
            session,
            staging,
            schema,
            path,
            next_row: 0,
        })
    }

    /// The session the load runs in.
    pub fn session(&self) -> &'a Session {
        self.session
    }

    /// Stages one batch of the written columns (in the order given to `start`).
    pub async fn push(&mut self, batch: &RecordBatch) -> Result<(), Failure> {
        let staged = self.staged_batch(batch)?;
        match &mut self.path {
            Path::Bind => insert(self.session, &self.staging, &self.schema, &staged).await,
            Path::Stage { writer, .. } => {
                let w = match writer {
                    Some(w) => w,
                    None => writer.insert(Box::new(parquet_writer(&self.schema)?)),
                };
                w.write(&staged).map_err(|e| {
                    Failure::protocol(format!("writing a staged Parquet file failed: {e}"))
                })?;
                if w.bytes_written() + w.in_progress_size() >= PART_BYTES {
                    self.upload().await?;
                }
                Ok(())
            }
        }
    }

    /// Uploads what is left and loads the staged files; returns the rows staged.
    pub async fn finish(mut self) -> Result<u64, Failure> {
        self.upload().await?;
        if let Path::Stage { name, parts, .. } = &self.path
            && *parts > 0
        {
            let copy = format!(
                "COPY INTO {} FROM {name} FILE_FORMAT = (TYPE = PARQUET) MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE PURGE = TRUE",
                self.staging.sql()
            );
            self.session.query_async(&copy, &[]).await?;
        }
        Ok(self.next_row)
    }

    /// The batch as staged: stored names, nested values as JSON text, and the row order.
    fn staged_batch(&mut self, batch: &RecordBatch) -> Result<RecordBatch, Failure> {
        let rows = batch.num_rows();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns() + 1);
        for array in batch.columns() {
            columns.push(match array.data_type() {
                t if staged_type(t) == DataType::Utf8 && is_nested(t) => {
                    let binding =
                        bind::column(array).map_err(|e| Failure::protocol(e.to_string()))?;
                    let text = match binding.value {
                        BindValue::Many(v) => v,
                        BindValue::One(v) => vec![v],
                    };
                    Arc::new(StringArray::from(text)) as ArrayRef
                }
                _ => array.clone(),
            });
        }
        let first = self.next_row as i64;
        columns.push(Arc::new(Int64Array::from_iter_values(
            first..first + rows as i64,
        )));
        self.next_row += rows as u64;
        RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| Failure::protocol(format!("staging a batch failed: {e}")))
    }

    /// Closes the current Parquet file and sends it to the stage.
    async fn upload(&mut self) -> Result<(), Failure> {
        let Path::Stage {
            name,
            writer,
            parts,
        } = &mut self.path
        else {
            return Ok(());
        };
        let Some(w) = writer.take() else {
            return Ok(());
        };
        let bytes = w
            .into_inner()
            .map_err(|e| Failure::protocol(format!("closing a staged Parquet file failed: {e}")))?;
        *parts += 1;
        let answer = self.session.query(&put_command(name, *parts), &[]).await?;
        let url = upload_target(&answer.other).map_err(|e| Failure::protocol(e.to_string()))?;
        let settings = self.session.settings();
        let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
        let response = self
            .session
            .http
            .put(url)
            .header(
                "x-goog-meta-sfc-digest",
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, digest),
            )
            .header("Content-Type", "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .map_err(|e| super::connect::transport(settings, "stage upload", &e))?;
        if !response.status().is_success() {
            // The URL is presigned: the message never shows it.
            return Err(Failure {
                kind: Kind::Protocol,
                code: None,
                message: format!(
                    "{}: uploading a staged file failed with HTTP {}",
                    settings.at(),
                    response.status()
                ),
            });
        }
        Ok(())
    }
}

/// One `INSERT … VALUES (?, …)` with array bindings per slice of rows.
async fn insert(
    session: &Session,
    staging: &Table,
    schema: &SchemaRef,
    staged: &RecordBatch,
) -> Result<(), Failure> {
    let names: Vec<String> = schema.fields().iter().map(|f| ident(f.name())).collect();
    let marks = vec!["?"; names.len()].join(", ");
    let sql = format!(
        "INSERT INTO {} ({}) VALUES ({marks})",
        staging.sql(),
        names.join(", ")
    );
    let step = (BIND_VALUES / names.len().max(1)).max(1);
    let mut offset = 0;
    while offset < staged.num_rows() {
        let slice = staged.slice(offset, step.min(staged.num_rows() - offset));
        let bindings = slice
            .columns()
            .iter()
            .zip(schema.fields())
            .map(|(a, f)| {
                bind::column(a)
                    .map_err(|e| Failure::protocol(format!("column \"{}\": {e}", f.name())))
            })
            .collect::<Result<Vec<Binding>, _>>()?;
        session.query(&sql, &bindings).await?;
        offset += slice.num_rows();
    }
    Ok(())
}

fn put_command(stage: &str, part: u32) -> String {
    // The local path is only a name: the file is uploaded from memory.
    format!(
        "PUT 'file:///synqx/part-{part:05}.parquet' {stage} AUTO_COMPRESS = FALSE SOURCE_COMPRESSION = NONE OVERWRITE = TRUE"
    )
}

/// Why this client cannot upload to the stage a PUT answer describes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum UploadError {
    #[error("the PUT answer has no stageInfo")]
    NoStageInfo,
    #[error("the {location} stage wants client-side encryption")]
    Encrypted { location: String },
    #[error("the {location} stage offers no presigned upload URL")]
    NoPresignedUrl { location: String },
}

/// The presigned URL a PUT answer offers, or why this client cannot upload there.
fn upload_target(
    answer: &std::collections::BTreeMap<String, Value>,
) -> Result<String, UploadError> {
    let info = answer.get("stageInfo").ok_or(UploadError::NoStageInfo)?;
    let location = info
        .get("locationType")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    if answer
        .get("encryptionMaterial")
        .is_some_and(|m| !m.is_null())
    {
        return Err(UploadError::Encrypted {
            location: location.to_string(),
        });
    }
    match info.get("presignedUrl").and_then(Value::as_str) {
        Some(url) if location == "GCS" && !url.is_empty() => Ok(url.to_string()),
        _ => Err(UploadError::NoPresignedUrl {
            location: location.to_string(),
        }),
    }
}

fn is_nested(t: &DataType) -> bool {
    matches!(
        t,
        DataType::List(_)
            | DataType::LargeList(_)
            | DataType::FixedSizeList(..)
            | DataType::Struct(_)
            | DataType::Map(..)
    )
}

/// The type a column is staged as: nested values as JSON text, the rest unchanged.
fn staged_type(t: &DataType) -> DataType {
    if is_nested(t) {
        DataType::Utf8
    } else {
        t.clone()
    }
}

fn parquet_writer(schema: &SchemaRef) -> Result<ArrowWriter<Vec<u8>>, Failure> {
    crate::connectors::warehouse::parquet_writer(schema)
        .map_err(|e| Failure::protocol(format!("starting a staged Parquet file failed: {e}")))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    fn answer(v: Value) -> BTreeMap<String, Value> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn only_unencrypted_presigned_stages_take_files() {
        let presigned = answer(
            json!({"command": "UPLOAD", "stageInfo": {"locationType": "GCS",
            "presignedUrl": "http://127.0.0.1:1/fs_bucket/x"}, "src_locations": ["/synqx/part-00001.parquet"]}),
        );
        assert_eq!(
            upload_target(&presigned).unwrap(),
            "http://127.0.0.1:1/fs_bucket/x"
        );
        // What a real S3-hosted account answers: credentials and an encryption key.
        let s3 = answer(
            json!({"command": "UPLOAD", "stageInfo": {"locationType": "S3", "location": "bucket/path/",
            "creds": {"AWS_KEY_ID": "k", "AWS_SECRET_KEY": "s", "AWS_TOKEN": "t"}},
            "encryptionMaterial": {"queryStageMasterKey": "a2V5", "queryId": "q", "smkId": 1}}),
        );
        assert_eq!(
            upload_target(&s3).unwrap_err().to_string(),
            "the S3 stage wants client-side encryption"
        );
        let gcs_token = answer(
            json!({"stageInfo": {"locationType": "GCS", "creds": {"GCS_ACCESS_TOKEN": "t"}}}),
        );
        assert_eq!(
            upload_target(&gcs_token),
            Err(UploadError::NoPresignedUrl {
                location: "GCS".into()
            })
        );
    }

    #[test]
    fn put_names_a_part_and_never_compresses_it_again() {
        assert_eq!(
            put_command("@\"DB\".\"S\".\"X\"", 3),
            "PUT 'file:///synqx/part-00003.parquet' @\"DB\".\"S\".\"X\" AUTO_COMPRESS = FALSE SOURCE_COMPRESSION = NONE OVERWRITE = TRUE"
        );
    }
}
