//! CSV import: header matching, typed validation and batching, streaming so
//! that memory stays bounded whatever the file size.

use crate::schema::{DatasetSchema, Field, FieldType};
use std::io::{BufRead, Read};
use std::path::Path;
use travelrec_store::{DatasetType, InteractionRow, ItemRow, LocalEventRow, RowBatch, UserRow};

/// Rows per batch handed to storage.
pub const BATCH_ROWS: usize = 8192;
/// An import stops after this many bad rows and reports them all.
const MAX_REPORTED_ERRORS: usize = 5;

const MAX_ID_CHARS: usize = 256;
const MAX_STRING_CHARS: usize = 1_000;
const MAX_TEXTUAL_CHARS: usize = 20_000;
/// Unix seconds beyond this are almost certainly milliseconds (year 5138).
const MAX_PLAUSIBLE_SECONDS: i64 = 100_000_000_000;

#[derive(Debug, Clone, PartialEq)]
pub struct ImportSummary {
    pub rows: u64,
    pub warnings: Vec<String>,
}

/// Where the reader is, for progress reporting.
#[derive(Debug, Clone, Copy)]
pub struct ReadProgress {
    pub bytes_read: u64,
    pub total_bytes: u64,
    pub rows: u64,
}

/// How the columns of a file map onto the schema.
struct ColumnMap {
    /// For each schema field, its column in the file (if present).
    columns: Vec<(Field, Option<usize>)>,
    header_len: usize,
}

/// Reads a CSV file of `dataset_type` rows, validating every row against
/// `schema`, and hands batches of valid rows to `on_batch` (which returns
/// `false` to stop). Returns an error naming file, line, column and fix for
/// the first few bad rows; rows already handed over must then be discarded by
/// the caller (imports are all-or-nothing).
pub fn read_csv(
    path: &Path,
    label: &str,
    schema: &DatasetSchema,
    dataset_type: DatasetType,
    mut on_batch: impl FnMut(RowBatch, ReadProgress) -> bool,
) -> Result<ImportSummary, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{label}: cannot open the file: {e}"))?;
    let total_bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    read_csv_from(file, total_bytes, label, schema, dataset_type, &mut on_batch)
}

pub fn read_csv_from(
    input: impl Read,
    total_bytes: u64,
    label: &str,
    schema: &DatasetSchema,
    dataset_type: DatasetType,
    on_batch: &mut dyn FnMut(RowBatch, ReadProgress) -> bool,
) -> Result<ImportSummary, String> {
    let mut reader =
        csv::ReaderBuilder::new().has_headers(true).trim(csv::Trim::All).from_reader(CrlfToLf::new(std::io::BufReader::new(input)));
    let header = reader.byte_headers().map_err(|e| format!("{label}: cannot read the header line: {}", csv_problem(&e)))?.clone();
    let (map, warnings) = map_columns(&header, schema, label)?;

    let mut errors = Vec::new();
    let mut batch = Batch::new(dataset_type);
    let mut rows = 0u64;
    let mut record = csv::ByteRecord::new();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                errors.push(format!("{label}, line {line}: {}", csv_problem(&e)));
                if errors.len() >= MAX_REPORTED_ERRORS || !matches!(e.kind(), csv::ErrorKind::UnequalLengths { .. }) {
                    break;
                }
                continue;
            }
        }
        let line = record.position().map_or(0, |p| p.line());
        match parse_row(&record, &map, dataset_type) {
            Ok(row) => {
                if errors.is_empty() {
                    batch.push(row);
                    rows += 1;
                }
            }
            Err((column, field, problem)) => {
                errors.push(format!("{label}, line {line}, column {} ({field}): {problem}", column + 1));
                if errors.len() >= MAX_REPORTED_ERRORS {
                    break;
                }
            }
        }
        if errors.is_empty() && batch.len() >= BATCH_ROWS {
            let progress = ReadProgress { bytes_read: record.position().map_or(0, |p| p.byte()), total_bytes, rows };
            if !on_batch(batch.take(), progress) {
                return Err(format!("{label}: the import was cancelled"));
            }
        }
    }
    if !errors.is_empty() {
        let more = if errors.len() >= MAX_REPORTED_ERRORS { " (stopped after the first 5 problems)" } else { "" };
        return Err(format!("{}{more}. Nothing was imported: fix the file and import it again.", errors.join("; ")));
    }
    if !batch.is_empty() && !on_batch(batch.take(), ReadProgress { bytes_read: total_bytes, total_bytes, rows }) {
        return Err(format!("{label}: the import was cancelled"));
    }
    if rows == 0 {
        return Err(format!("{label}: the file has a header but no rows; nothing was imported"));
    }
    Ok(ImportSummary { rows, warnings })
}

/// Turns CRLF line ends into LF. The csv crate reports records of CRLF files
/// one line too early (it starts a record at the previous line's `\n`), and
/// error messages must name the right line.
struct CrlfToLf<R> {
    inner: R,
    /// A CR ended the last buffer; whether it starts a CRLF is not known yet.
    pending_cr: bool,
}

impl<R: BufRead> CrlfToLf<R> {
    fn new(inner: R) -> Self {
        Self { inner, pending_cr: false }
    }
}

impl<R: BufRead> Read for CrlfToLf<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            let input = self.inner.fill_buf()?;
            if input.is_empty() {
                return Ok(if std::mem::take(&mut self.pending_cr) {
                    out[0] = b'\r';
                    1
                } else {
                    0
                });
            }
            if std::mem::take(&mut self.pending_cr) && input[0] != b'\n' {
                out[0] = b'\r';
                return Ok(1);
            }
            let (mut written, mut consumed) = (0, 0);
            while consumed < input.len() && written < out.len() {
                let byte = input[consumed];
                consumed += 1;
                if byte == b'\r' {
                    match input.get(consumed) {
                        Some(b'\n') => continue,
                        None => {
                            self.pending_cr = true;
                            break;
                        }
                        Some(_) => {}
                    }
                }
                out[written] = byte;
                written += 1;
            }
            self.inner.consume(consumed);
            if written > 0 {
                return Ok(written);
            }
        }
    }
}

fn csv_problem(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => format!(
            "found {len} fields where the header has {expected_len}; quote values that contain commas (\"a, b\") and check for missing or extra separators"
        ),
        csv::ErrorKind::Utf8 { .. } => "the text is not valid UTF-8; save the file as UTF-8".to_string(),
        csv::ErrorKind::Io(io) => format!("reading the file failed: {io}"),
        _ => e.to_string(),
    }
}

fn map_columns(header: &csv::ByteRecord, schema: &DatasetSchema, label: &str) -> Result<(ColumnMap, Vec<String>), String> {
    let names: Vec<String> = header
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            let name = String::from_utf8_lossy(raw).to_string();
            // A UTF-8 byte-order mark on the first column is not part of its name.
            if i == 0 { name.trim_start_matches('\u{feff}').trim().to_string() } else { name.trim().to_string() }
        })
        .collect();
    let header_line = names.join(",");
    for (i, name) in names.iter().enumerate() {
        if name.is_empty() {
            return Err(format!("{label}, line 1: column {} has an empty name; every column needs a header", i + 1));
        }
        if names[..i].iter().any(|n| n.eq_ignore_ascii_case(name)) {
            return Err(format!("{label}, line 1: column {name} appears twice in the header"));
        }
    }
    let mut columns = Vec::new();
    for field in &schema.fields {
        let position = names.iter().position(|n| n.eq_ignore_ascii_case(&field.name));
        if position.is_none() && !field.nullable {
            return Err(format!(
                "{label}, line 1: the header has no {} column, which the schema requires; the header is `{header_line}` (names are matched case-insensitively)",
                field.name
            ));
        }
        columns.push((field.clone(), position));
    }
    let warnings = names
        .iter()
        .filter(|n| schema.field(n).is_none())
        .map(|n| format!("{label}: column {n} is not in the dataset's schema and was ignored"))
        .collect();
    Ok((ColumnMap { columns, header_len: names.len() }, warnings))
}

/// A validated value; `None` for an empty nullable cell.
enum Value {
    Text(String),
    Int(i64),
    Real(f64),
    Bool(bool),
}

impl Value {
    fn to_text(&self) -> String {
        match self {
            Value::Text(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Real(r) => r.to_string(),
            Value::Bool(b) => b.to_string(),
        }
    }
}

type RowError = (usize, String, String);

/// Validates named field values (from PutItems, PutUsers or event
/// properties) against a schema, as a CSV row would be: names matched
/// case-insensitively (camelCase `numberOfRatings` matches `NUMBER_OF_RATINGS`),
/// types and domains checked. `skip` names fields the caller carries
/// separately (ITEM_ID, ...). Returns the fields under their schema names,
/// or a message naming the first bad one.
pub fn validate_fields(
    schema: &DatasetSchema,
    fields: &[(String, String)],
    skip: &[&str],
    what: &str,
) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::with_capacity(fields.len());
    for (name, raw) in fields {
        let field =
            schema.field(name).or_else(|| schema.field(&snake_upper(name))).filter(|f| !skip.contains(&f.name.as_str())).ok_or_else(
                || {
                    let known: Vec<&str> = schema.fields.iter().map(|f| f.name.as_str()).filter(|n| !skip.contains(n)).collect();
                    format!("{what}: unknown field `{name}`; the schema has {}", known.join(", "))
                },
            )?;
        if out.iter().any(|(n, _): &(String, String)| *n == field.name) {
            return Err(format!("{what}: field {} is given twice", field.name));
        }
        match parse_value(raw.trim().as_bytes(), field) {
            Ok(Some(value)) => out.push((field.name.clone(), value.to_text())),
            Ok(None) => {}
            Err(problem) => return Err(format!("{what}: field {}: {problem}", field.name)),
        }
    }
    for field in schema.fields.iter().filter(|f| !f.nullable && !skip.contains(&f.name.as_str())) {
        if !out.iter().any(|(n, _)| *n == field.name) {
            return Err(format!("{what}: field {} is required by the schema", field.name));
        }
    }
    Ok(out)
}

/// `numberOfRatings` → `NUMBER_OF_RATINGS`.
fn snake_upper(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

fn parse_value(raw: &[u8], field: &Field) -> Result<Option<Value>, String> {
    let text = std::str::from_utf8(raw).map_err(|_| "the text is not valid UTF-8; save the file as UTF-8".to_string())?;
    if text.is_empty() {
        return if field.nullable { Ok(None) } else { Err("is empty, but the schema requires a value".into()) };
    }
    let value = match field.field_type {
        FieldType::Int | FieldType::Long => {
            let v: i64 = text.parse().map_err(|_| format!("`{text}` is not a whole number"))?;
            if field.field_type == FieldType::Int && i32::try_from(v).is_err() {
                return Err(format!("`{text}` does not fit in an int"));
            }
            Value::Int(v)
        }
        FieldType::Float | FieldType::Double => {
            let v: f64 = text.parse().map_err(|_| format!("`{text}` is not a number"))?;
            if !v.is_finite() {
                return Err(format!("`{text}` is not a finite number"));
            }
            Value::Real(v)
        }
        FieldType::Boolean => match text.to_ascii_lowercase().as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err(format!("`{text}` is not true or false")),
        },
        FieldType::String => {
            let chars = text.chars().count();
            let limit = if field.name.ends_with("_ID") || field.name == "EVENT_TYPE" {
                MAX_ID_CHARS
            } else if field.textual {
                MAX_TEXTUAL_CHARS
            } else {
                MAX_STRING_CHARS
            };
            if field.categorical {
                if let Some(part) = text.split('|').find(|p| p.chars().count() > MAX_STRING_CHARS) {
                    return Err(format!(
                        "a value `{}…` is longer than {MAX_STRING_CHARS} characters",
                        part.chars().take(20).collect::<String>()
                    ));
                }
            } else if chars > limit {
                return Err(format!("is {chars} characters long; the limit is {limit}"));
            }
            Value::Text(text.to_string())
        }
    };
    check_domain(field, &value)?;
    Ok(Some(value))
}

/// Checks that go beyond the type: timestamps in seconds, coordinates on Earth.
fn check_domain(field: &Field, value: &Value) -> Result<(), String> {
    match (field.name.as_str(), value) {
        ("TIMESTAMP" | "CREATION_TIMESTAMP", Value::Int(t)) if *t > MAX_PLAUSIBLE_SECONDS => {
            Err(format!("{t} looks like milliseconds; TIMESTAMP must be Unix epoch seconds (divide by 1000)"))
        }
        ("TIMESTAMP" | "CREATION_TIMESTAMP", Value::Int(t)) if *t < 0 => {
            Err(format!("{t} is negative; TIMESTAMP must be Unix epoch seconds"))
        }
        ("LATITUDE", Value::Real(v)) if !(-90.0..=90.0).contains(v) => Err(format!("{v} is not a latitude (between -90 and 90)")),
        ("START_DATE" | "END_DATE", Value::Text(t)) if chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d").is_err() => {
            Err(format!("`{t}` is not a date; use YYYY-MM-DD"))
        }
        ("LONGITUDE", Value::Real(v)) if !(-180.0..=180.0).contains(v) => Err(format!("{v} is not a longitude (between -180 and 180)")),
        _ => Ok(()),
    }
}

enum Row {
    Interaction(InteractionRow),
    Item(ItemRow),
    User(UserRow),
    LocalEvent(LocalEventRow),
}

fn parse_row(record: &csv::ByteRecord, map: &ColumnMap, dataset_type: DatasetType) -> Result<Row, RowError> {
    debug_assert_eq!(record.len(), map.header_len);
    let mut values: Vec<(&str, Option<Value>)> = Vec::with_capacity(map.columns.len());
    for (field, column) in &map.columns {
        let value = match column {
            Some(c) => parse_value(&record[*c], field).map_err(|problem| (*c, field.name.clone(), problem))?,
            None => None,
        };
        values.push((field.name.as_str(), value));
    }
    let mut take_text =
        |name: &str| -> Option<String> { values.iter_mut().find(|(n, _)| *n == name).and_then(|(_, v)| v.take()).map(|v| v.to_text()) };
    let id = |v: Option<String>| v.unwrap_or_default();
    let row = match dataset_type {
        DatasetType::Interactions => {
            let user_id = id(take_text("USER_ID"));
            let item_id = id(take_text("ITEM_ID"));
            let timestamp = take_text("TIMESTAMP").and_then(|t| t.parse().ok()).unwrap_or_default();
            // Without an EVENT_TYPE column every interaction is of one kind, as in the managed service.
            let event_type = take_text("EVENT_TYPE").unwrap_or_else(|| "interaction".to_string());
            let event_value = take_text("EVENT_VALUE").and_then(|v| v.parse().ok());
            let session_id = take_text("SESSION_ID");
            Row::Interaction(InteractionRow { user_id, item_id, timestamp, event_type, event_value, session_id, fields: Vec::new() })
        }
        DatasetType::Items => Row::Item(ItemRow { item_id: id(take_text("ITEM_ID")), fields: Vec::new() }),
        DatasetType::Users => Row::User(UserRow { user_id: id(take_text("USER_ID")), fields: Vec::new() }),
        DatasetType::LocalEvents => Row::LocalEvent(LocalEventRow { local_event_id: id(take_text("LOCAL_EVENT_ID")), fields: Vec::new() }),
    };
    let rest: Vec<(String, String)> = values.into_iter().filter_map(|(n, v)| v.map(|v| (n.to_string(), v.to_text()))).collect();
    Ok(match row {
        Row::Interaction(r) => Row::Interaction(InteractionRow { fields: rest, ..r }),
        Row::Item(r) => Row::Item(ItemRow { fields: rest, ..r }),
        Row::User(r) => Row::User(UserRow { fields: rest, ..r }),
        Row::LocalEvent(r) => Row::LocalEvent(LocalEventRow { fields: rest, ..r }),
    })
}

/// Rows of one dataset type, gathered up to a batch.
struct Batch {
    rows: RowBatch,
}

impl Batch {
    fn new(dataset_type: DatasetType) -> Self {
        let rows = match dataset_type {
            DatasetType::Interactions => RowBatch::Interactions(Vec::new()),
            DatasetType::Items => RowBatch::Items(Vec::new()),
            DatasetType::Users => RowBatch::Users(Vec::new()),
            DatasetType::LocalEvents => RowBatch::LocalEvents(Vec::new()),
        };
        Self { rows }
    }

    fn push(&mut self, row: Row) {
        match (&mut self.rows, row) {
            (RowBatch::Interactions(rows), Row::Interaction(r)) => rows.push(r),
            (RowBatch::Items(rows), Row::Item(r)) => rows.push(r),
            (RowBatch::Users(rows), Row::User(r)) => rows.push(r),
            (RowBatch::LocalEvents(rows), Row::LocalEvent(r)) => rows.push(r),
            _ => unreachable!("rows are parsed for the batch's dataset type"),
        }
    }

    fn len(&self) -> usize {
        self.rows.len()
    }

    fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn take(&mut self) -> RowBatch {
        let empty = match &self.rows {
            RowBatch::Interactions(_) => RowBatch::Interactions(Vec::new()),
            RowBatch::Items(_) => RowBatch::Items(Vec::new()),
            RowBatch::Users(_) => RowBatch::Users(Vec::new()),
            RowBatch::LocalEvents(_) => RowBatch::LocalEvents(Vec::new()),
        };
        std::mem::replace(&mut self.rows, empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{DEFAULT_INTERACTIONS_SCHEMA, DEFAULT_ITEMS_SCHEMA};

    fn import(csv: &str, schema: &str, dataset_type: DatasetType) -> Result<(ImportSummary, Vec<RowBatch>), String> {
        let schema = DatasetSchema::parse(schema).unwrap();
        let mut batches = Vec::new();
        let summary = read_csv_from(csv.as_bytes(), csv.len() as u64, "test.csv", &schema, dataset_type, &mut |b, _| {
            batches.push(b);
            true
        })?;
        Ok((summary, batches))
    }

    fn interactions(csv: &str) -> Result<Vec<InteractionRow>, String> {
        let (_, batches) = import(csv, DEFAULT_INTERACTIONS_SCHEMA, DatasetType::Interactions)?;
        Ok(batches
            .into_iter()
            .flat_map(|b| match b {
                RowBatch::Interactions(r) => r,
                _ => unreachable!(),
            })
            .collect())
    }

    #[test]
    fn crlf_becomes_lf_across_chunk_boundaries() {
        let input = b"a\r\nb\r\rc\r\n\r\nd\r".repeat(1000);
        let expected: Vec<u8> = b"a\nb\r\rc\n\nd\r".repeat(1000);
        for (capacity, chunk) in [(1, 1), (2, 3), (3, 2), (7, 5), (4096, 4096)] {
            let mut reader = CrlfToLf::new(std::io::BufReader::with_capacity(capacity, &input[..]));
            let mut out = Vec::new();
            let mut buf = vec![0; chunk];
            loop {
                let n = reader.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
            }
            assert!(out == expected, "capacity {capacity}, chunk {chunk}: {:?}", String::from_utf8_lossy(&out[..40.min(out.len())]));
        }
    }

    #[test]
    fn errors_in_crlf_files_name_the_right_line() {
        let err = interactions("USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\r\n1,2,3,view\r\n1,2,x,view\r\n").unwrap_err();
        assert!(err.contains("line 3,"), "{err}");
    }

    #[test]
    fn reads_crlf_files_with_headers_in_any_case() {
        let rows = interactions("user_id,Item_Id,TIMESTAMP,event_type\r\n18,13,1667773054,watch\r\n356,228,1674582284,click\r\n").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].user_id, "18");
        assert_eq!(rows[1].event_type, "click");
        assert_eq!(rows[1].timestamp, 1674582284);
    }

    #[test]
    fn keeps_context_fields_and_a_quoted_location() {
        let rows = interactions("USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE,LOCATION,DEVICE\n1,2,3,view,\"38.7,-9.1\",mobile\n").unwrap();
        assert_eq!(rows[0].fields, vec![("LOCATION".to_string(), "38.7,-9.1".to_string()), ("DEVICE".to_string(), "mobile".to_string())]);
    }

    #[test]
    fn a_bad_row_names_file_line_column_and_fix() {
        let err = interactions("USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\n1,2,3,view\n1,2,soon,view\n").unwrap_err();
        assert!(err.contains("test.csv, line 3, column 3 (TIMESTAMP): `soon` is not a whole number"), "{err}");
        assert!(err.contains("Nothing was imported"), "{err}");
        let err = interactions("USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\n1,2,1667773054000,view\n").unwrap_err();
        assert!(err.contains("looks like milliseconds"), "{err}");
        let err = interactions("USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\n1,2,3\n").unwrap_err();
        assert!(err.contains("line 2") && err.contains("found 3 fields where the header has 4"), "{err}");
        let err = interactions("USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\n,2,3,view\n").unwrap_err();
        assert!(err.contains("column 1 (USER_ID): is empty"), "{err}");
    }

    #[test]
    fn several_bad_rows_are_reported_together() {
        let err = interactions("USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\n1,2,x,view\n1,2,3,view\n1,2,y,view\n").unwrap_err();
        assert!(err.contains("line 2") && err.contains("line 4"), "{err}");
    }

    #[test]
    fn a_missing_required_column_is_named() {
        let err = interactions("USER_ID,ITEM_ID,EVENT_TYPE\n1,2,view\n").unwrap_err();
        assert!(err.contains("no TIMESTAMP column") && err.contains("USER_ID,ITEM_ID,EVENT_TYPE"), "{err}");
    }

    #[test]
    fn unknown_columns_are_ignored_with_a_warning_and_multi_values_kept() {
        let (summary, batches) =
            import("ITEM_ID,GENRE,YEAR\n1,Adventure|Comedy,1995\n2,Drama,\n", DEFAULT_ITEMS_SCHEMA, DatasetType::Items).unwrap();
        assert_eq!(summary.rows, 2);
        assert_eq!(summary.warnings, vec!["test.csv: column YEAR is not in the dataset's schema and was ignored"]);
        let RowBatch::Items(items) = &batches[0] else { panic!() };
        assert_eq!(items[0].fields, vec![("GENRE".to_string(), "Adventure|Comedy".to_string())]);
    }

    #[test]
    fn named_fields_are_validated_like_csv_cells() {
        let schema = DatasetSchema::parse(DEFAULT_ITEMS_SCHEMA).unwrap();
        let ok = validate_fields(&schema, &[("genre".into(), "Museum".into()), ("latitude".into(), "38.7".into())], &["ITEM_ID"], "item 1")
            .unwrap();
        assert_eq!(ok, vec![("GENRE".to_string(), "Museum".to_string()), ("LATITUDE".to_string(), "38.7".to_string())]);
        let camel = validate_fields(&schema, &[("creationTimestamp".into(), "1700000000".into())], &["ITEM_ID"], "item 1").unwrap();
        assert_eq!(camel[0].0, "CREATION_TIMESTAMP");
        let err = validate_fields(&schema, &[("colour".into(), "red".into())], &["ITEM_ID"], "item 1").unwrap_err();
        assert!(err.contains("unknown field `colour`") && err.contains("GENRE"), "{err}");
        let err = validate_fields(&schema, &[("LATITUDE".into(), "200".into())], &["ITEM_ID"], "item 1").unwrap_err();
        assert!(err.contains("item 1: field LATITUDE: 200 is not a latitude"), "{err}");
        let users = DatasetSchema::parse(crate::schema::DEFAULT_USERS_SCHEMA).unwrap();
        let err = validate_fields(&users, &[], &["USER_ID"], "user u").unwrap_err();
        assert!(err.contains("AGE is required"), "{err}");
    }

    #[test]
    fn coordinates_must_be_on_earth() {
        let err = import("ITEM_ID,LATITUDE\n1,200\n", DEFAULT_ITEMS_SCHEMA, DatasetType::Items).unwrap_err();
        assert!(err.contains("200 is not a latitude"), "{err}");
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_column() {
        let rows = interactions("\u{feff}USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\n1,2,3,view\n").unwrap();
        assert_eq!(rows.len(), 1);
    }

    #[test]
    fn batches_are_bounded() {
        let mut csv = String::from("USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\n");
        for i in 0..(BATCH_ROWS * 2 + 10) {
            csv.push_str(&format!("{i},1,5,view\n"));
        }
        let (summary, batches) = import(&csv, DEFAULT_INTERACTIONS_SCHEMA, DatasetType::Interactions).unwrap();
        assert_eq!(summary.rows as usize, BATCH_ROWS * 2 + 10);
        assert_eq!(batches.len(), 3);
        assert!(batches.iter().all(|b| b.len() <= BATCH_ROWS));
    }
}
