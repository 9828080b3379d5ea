//! What every file connector must do, written once: scenarios that write to and read from a
//! lake through the connector and check the result through it and around it. A connector's
//! tests implement [`Lake`] for a lake of their store and declare a test for each scenario with
//! [`lake_tests!`]; what only one store does (S3's multipart uploads, a local file's
//! modification time) stays in that connector's tests.

use std::ops::Deref;

use arrow::array::RecordBatch;
use synqx_api::pipeline::{Destination, Source as SourceSpec};

use super::{id_values, ok};
use crate::connectors::tests::Harness;
use crate::engine::WriteOutcome;

pub(crate) mod read;
pub(crate) mod write;

/// A lake: the connector opened on it (its source and sink, through `Deref`), and access to
/// its files that goes around the connector, to set up what a test reads and to see what a
/// write left behind.
pub(crate) trait Lake: Deref<Target = Harness> {
    /// Where the connection's files are, as a read that finds none names it.
    fn location(&self) -> String;

    /// Puts a file below the connection's root, as another program would.
    async fn put(&self, relative: &str, contents: impl Into<Vec<u8>>);

    /// The contents of a file below the root.
    async fn bytes(&self, relative: &str) -> Vec<u8>;

    /// The size of a file below the root, as the store reports it.
    async fn size(&self, relative: &str) -> u64;

    /// Every file below the root, relative to it and sorted, hidden ones included.
    async fn files(&self) -> Vec<String>;

    /// Everything a write that does not commit must leave as it found it, in a form that
    /// compares and prints: every file (also outside the root) and what the store keeps of
    /// writes under way, such as S3's unfinished multipart uploads.
    async fn snapshot(&self) -> Vec<String>;

    /// Whether a write has staged something that dropping it must clean up. Not async: it is
    /// asked between polls of the write.
    fn staging(&self) -> bool;

    async fn text(&self, relative: &str) -> String {
        String::from_utf8_lossy(&self.bytes(relative).await).into_owned()
    }

    /// Writes one batch, which must succeed.
    async fn write_batch(&self, destination: Destination, batch: RecordBatch) -> WriteOutcome {
        ok(self
            .write(destination, batch.schema(), vec![Ok(batch)])
            .await)
    }

    /// The `id` column of every row a read of `source` yields, which must succeed.
    async fn read_ids(&self, source: SourceSpec) -> Vec<Option<i64>> {
        id_values(&ok(self.read(source).await).1)
    }
}

/// Declares, in the module that invokes it, one test for each scenario of `read` or `write`,
/// each on a fresh lake made by `$lake`, under the test attribute `$test` that the
/// connector's tests need. A scenario added to a group here runs for every file connector.
macro_rules! lake_tests {
    (#[$test:meta] $lake:expr => read) => {
        $crate::connectors::formats::tests::lakes::lake_tests!(#[$test] $lake => read::{
            folders_read_every_matching_file_sorted_and_globs_match_names,
            no_matching_file_names_the_pattern_and_where_it_looked,
            gzip_files_are_decompressed_by_extension_or_option,
            column_overrides_and_csv_options_apply,
            later_files_may_add_columns_but_not_change_parquet_types,
            malformed_rows_fail_the_read_or_are_skipped_into_the_rejected_file,
            batches_follow_the_byte_budget,
            incremental_reads_keep_rows_above_the_cursor,
            parquet_folders_read_with_the_types_of_their_footers,
        });
    };
    (#[$test:meta] $lake:expr => write) => {
        $crate::connectors::formats::tests::lakes::lake_tests!(#[$test] $lake => write::{
            csv_round_trips_every_scalar_type,
            jsonl_round_trips_scalars_and_nested_values,
            parquet_round_trips_with_zstd_and_snappy,
            gzip_folders_write_csv_gz_parts,
            parts_rotate_when_they_reach_the_file_size,
            appends_add_part_files_and_extend_single_text_files,
            unsupported_destinations_are_refused_with_the_reason,
            a_failed_overwrite_leaves_the_old_data_and_no_temporaries,
            a_dropped_write_leaves_the_old_data_and_removes_its_temporaries,
            schema_evolution_of_folder_appends,
            appending_columns_to_a_single_csv_rewrites_its_header,
            an_empty_overwrite_keeps_the_columns,
        });
    };
    (#[$test:meta] $lake:expr => $group:ident::{ $($scenario:ident),+ $(,)? }) => {
        $(
            #[$test]
            async fn $scenario() {
                $crate::connectors::formats::tests::lakes::$group::$scenario(&$lake).await;
            }
        )+
    };
}
pub(crate) use lake_tests;
