//! What an FQN selects, and the compression and CSV options.

use super::super::*;

#[test]
fn fqns_select_files_folders_and_globs() {
    let file = Selection::parse("./raw/orders.csv").unwrap_or_else(|e| panic!("{e}"));
    assert!(file.accepts("raw/orders.csv"));
    assert!(!file.accepts("raw/orders.csv.bak"));

    let folder = Selection::parse("raw/orders/").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(folder.base(), "raw/orders/");
    assert!(folder.accepts("raw/orders/2024/a.csv"));
    assert!(!folder.accepts("raw/orders/.part-1.csv.synqx-tmp"));
    assert!(!folder.accepts("raw/orders/_SUCCESS"));
    assert!(!folder.accepts("raw/ordersx/a.csv"));

    let glob = Selection::parse("raw/*/o*.csv").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(glob.base(), "raw/");
    assert!(glob.accepts("raw/2024/orders.csv"));
    assert!(!glob.accepts("raw/2024/01/orders.csv"));
    let deep = Selection::parse("raw/**/*.csv").unwrap_or_else(|e| panic!("{e}"));
    assert!(deep.accepts("raw/2024/01/orders.csv"));
    assert!(!deep.accepts("raw/2024/.hidden/orders.csv"));

    assert!(matches!(Selection::parse("/"), Ok(Selection::Folder(p)) if p.is_empty()));
    assert!(Selection::parse("../etc/passwd").is_err());
}

#[test]
fn compression_follows_the_option_then_the_name() {
    assert_eq!(gzipped(None, FileFormat::Csv, "a.csv.GZ").ok(), Some(true));
    assert_eq!(gzipped(None, FileFormat::Csv, "a.csv").ok(), Some(false));
    assert_eq!(
        gzipped(Some(Compression::Gzip), FileFormat::Jsonl, "a.jsonl").ok(),
        Some(true)
    );
    assert_eq!(
        gzipped(Some(Compression::Gzip), FileFormat::Parquet, "a.parquet").ok(),
        Some(false)
    );
    assert!(gzipped(Some(Compression::Zstd), FileFormat::Csv, "a.csv").is_err());
    assert!(gzipped(None, FileFormat::Csv, "a.csv.zst").is_err());
}

#[test]
fn csv_delimiters_are_one_character() {
    let opts = |d: &str| CsvOptions {
        delimiter: Some(d.into()),
        header: Some(false),
    };
    assert_eq!(
        CsvSettings::from_options(Some(&opts(";"))).ok(),
        Some(CsvSettings {
            delimiter: b';',
            header: false
        })
    );
    assert_eq!(
        CsvSettings::from_options(Some(&opts("\\t")))
            .map(|s| s.delimiter)
            .ok(),
        Some(b'\t')
    );
    assert!(CsvSettings::from_options(Some(&opts(";;"))).is_err());
    assert!(CsvSettings::from_options(Some(&opts("\""))).is_err());
    assert_eq!(
        CsvSettings::from_options(None).ok(),
        Some(CsvSettings::default())
    );
}
