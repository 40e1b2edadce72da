//! COPY in Postgres' text and CSV formats: an incremental decoder for `COPY … FROM STDIN` that
//! turns the bytes of CopyData messages into Arrow batches of a topic's schema, and the encoder
//! for `COPY … TO STDOUT`.

use arrow::array::{new_null_array, ArrayRef};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use crate::text::input::parse_column;
use crate::text::output::write_text;
use crate::{EngineError, Result};

/// Rows gathered before they are converted into one Arrow batch.
const COPY_BATCH_ROWS: usize = 8192;

/// What becomes of each parsed batch while the COPY goes on (on the parse worker for a large
/// COPY): for a topic, its storage encoding, so that the end of a COPY is only the durable write.
pub type BatchStep<O> = std::sync::Arc<dyn Fn(RecordBatch) -> Result<O> + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CopyFormat {
    #[default]
    Text,
    Csv,
}

/// COPY options as given in the statement.
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    pub format: CopyFormat,
    pub delimiter: Option<char>,
    pub null: Option<String>,
    pub header: bool,
    pub quote: Option<char>,
    pub escape: Option<char>,
}

impl CopyOptions {
    pub fn delimiter(&self) -> u8 {
        self.delimiter.map(|c| c as u8).unwrap_or(match self.format {
            CopyFormat::Text => b'\t',
            CopyFormat::Csv => b',',
        })
    }

    pub fn null_string(&self) -> &str {
        self.null.as_deref().unwrap_or(match self.format {
            CopyFormat::Text => "\\N",
            CopyFormat::Csv => "",
        })
    }

    fn quote(&self) -> u8 {
        self.quote.map(|c| c as u8).unwrap_or(b'"')
    }

    fn escape(&self) -> u8 {
        self.escape.map(|c| c as u8).unwrap_or_else(|| self.quote())
    }

    /// Checks the combination the way Postgres does.
    pub fn validate(&self) -> Result<()> {
        let single_byte = |c: Option<char>, what: &str| match c {
            Some(c) if !c.is_ascii() => Err(EngineError::InvalidParameter(format!("COPY {what} must be a single one-byte character"))),
            _ => Ok(()),
        };
        single_byte(self.delimiter, "delimiter")?;
        single_byte(self.quote, "quote")?;
        single_byte(self.escape, "escape")?;
        if self.format == CopyFormat::Text && (self.quote.is_some() || self.escape.is_some()) {
            return Err(EngineError::InvalidParameter("COPY QUOTE and ESCAPE are available only in CSV mode".into()));
        }
        if matches!(self.delimiter, Some('\r' | '\n' | '\\')) {
            return Err(EngineError::InvalidParameter("COPY delimiter cannot be newline, carriage return or backslash".into()));
        }
        Ok(())
    }
}

/// Turns COPY input bytes into batches. Feed it every CopyData payload, then call
/// [`CopyDecoder::finish`].
/// The fields of one input column for the batch being built: their text back to back, so a
/// field costs no allocation of its own.
#[derive(Default)]
struct FieldBuffer {
    text: String,
    /// End of each field in `text`; `None` for a NULL.
    ends: Vec<Option<usize>>,
}

impl FieldBuffer {
    fn push(&mut self, value: Option<&str>) {
        match value {
            Some(value) => {
                self.text.push_str(value);
                self.ends.push(Some(self.text.len()));
            }
            None => self.ends.push(None),
        }
    }

    fn values(&self) -> Vec<Option<&str>> {
        let mut start = 0;
        self.ends
            .iter()
            .map(|end| {
                end.map(|end| {
                    let value = &self.text[start..end];
                    start = end;
                    value
                })
            })
            .collect()
    }

    /// An empty buffer with room for as much as `other` holds.
    fn with_capacity(other: &FieldBuffer) -> Self {
        Self { text: String::with_capacity(other.text.len()), ends: Vec::with_capacity(other.ends.len()) }
    }
}

/// What turning gathered fields into a batch needs; shared with the parse worker.
struct BatchParser {
    /// Target schema of the topic (user columns).
    schema: SchemaRef,
    /// For each input field, the index of its column in `schema`.
    targets: Vec<usize>,
    table: String,
}

/// A batch's worth of gathered fields, with the input line of each row.
struct Gathered {
    fields: Vec<FieldBuffer>,
    row_lines: Vec<u64>,
}

/// A thread that parses gathered batches while the decoder splits the next records: on a large
/// COPY the two take about the same time, so a second core halves the wait. Results come back
/// in order.
struct ParseWorker<O> {
    jobs: std::sync::mpsc::SyncSender<Gathered>,
    results: std::sync::mpsc::Receiver<Result<O>>,
}

/// Gathered batches in flight to the parse worker (bounds the memory they hold).
const PARSE_JOBS_QUEUED_MAX: usize = 2;

pub struct CopyDecoder<O: Send + 'static = RecordBatch> {
    options: CopyOptions,
    parser: std::sync::Arc<BatchParser>,
    step: BatchStep<O>,
    /// Started at the first full batch, so small COPYs parse on the calling thread.
    worker: Option<ParseWorker<O>>,
    pending: Vec<u8>,
    /// Fields gathered per input column, for the batch being built.
    fields: Vec<FieldBuffer>,
    /// Input line of the first row of the batch being built, and of each row in it.
    row_lines: Vec<u64>,
    line: u64,
    header_pending: bool,
    finished_by_marker: bool,
    batches: Vec<O>,
    rows: u64,
    bytes: u64,
    bytes_max: u64,
}

impl CopyDecoder<RecordBatch> {
    /// `columns` names the input fields in order (empty: every column of the topic).
    pub fn new(table: &str, schema: SchemaRef, columns: &[String], options: CopyOptions, bytes_max: u64) -> Result<Self> {
        CopyDecoder::with_step(table, schema, columns, options, bytes_max, std::sync::Arc::new(Ok))
    }
}

impl<O: Send + 'static> CopyDecoder<O> {
    /// A decoder that passes each parsed batch through `step`.
    pub fn with_step(table: &str, schema: SchemaRef, columns: &[String], options: CopyOptions, bytes_max: u64, step: BatchStep<O>) -> Result<Self> {
        let targets = if columns.is_empty() {
            (0..schema.fields().len()).collect()
        } else {
            columns
                .iter()
                .map(|c| {
                    schema.index_of(c).map_err(|_| {
                        EngineError::UndefinedColumn(format!("column \"{c}\" of relation \"{table}\" does not exist"))
                    })
                })
                .collect::<Result<Vec<_>>>()?
        };
        for (index, field) in schema.fields().iter().enumerate() {
            if !field.is_nullable() && !targets.contains(&index) {
                return Err(EngineError::NotNullViolation(format!(
                    "null value in column \"{}\" of relation \"{table}\" violates not-null constraint",
                    field.name()
                )));
            }
        }
        Ok(Self {
            header_pending: options.header,
            options,
            fields: (0..targets.len()).map(|_| FieldBuffer::default()).collect(),
            parser: std::sync::Arc::new(BatchParser { schema, targets, table: table.to_string() }),
            step,
            worker: None,
            pending: Vec::new(),
            row_lines: Vec::new(),
            line: 0,
            finished_by_marker: false,
            batches: Vec::new(),
            rows: 0,
            bytes: 0,
            bytes_max,
        })
    }

    /// Rows decoded so far.
    pub fn rows(&self) -> u64 {
        self.rows + self.row_lines.len() as u64
    }

    /// Consumes one chunk of input.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<()> {
        self.bytes += chunk.len() as u64;
        if self.bytes > self.bytes_max {
            return Err(EngineError::ProgramLimitExceeded(format!(
                "COPY input exceeds copy_bytes_max ({} bytes); split it into several COPY statements",
                self.bytes_max
            )));
        }
        if self.finished_by_marker {
            return Ok(());
        }
        self.pending.extend_from_slice(chunk);
        // Records are read in place; `pending` is lent out while they are consumed.
        let data = std::mem::take(&mut self.pending);
        let mut start = 0;
        let mut outcome = Ok(());
        while let Some(end) = record_end(&self.options, &data, start) {
            let record = &data[start..end];
            start = end + 1;
            outcome = self.consume_record(record);
            if outcome.is_err() || self.finished_by_marker {
                break;
            }
        }
        self.pending = data;
        self.pending.drain(..start);
        outcome
    }

    /// Ends the input and returns every batch (passed through the step), in input order.
    pub fn finish(mut self) -> Result<Vec<O>> {
        if !self.finished_by_marker && !self.pending.is_empty() {
            // An unterminated quoted field is reported by the CSV splitter.
            let record = std::mem::take(&mut self.pending);
            self.consume_record(&record)?;
        }
        self.flush()?;
        if let Some(worker) = self.worker.take() {
            drop(worker.jobs);
            for result in worker.results {
                self.batches.push(result?);
            }
        }
        Ok(self.batches)
    }

    fn error_at(&self, line: u64, column: Option<usize>, message: String) -> EngineError {
        self.parser.error_at(line, column, message)
    }

    /// Hands the gathered rows to the parse worker (started on the first full batch), or parses
    /// them here; collects the batches parsed so far.
    fn flush(&mut self) -> Result<()> {
        let rows = self.row_lines.len();
        if rows == 0 {
            return Ok(());
        }
        let fresh = self.fields.iter().map(FieldBuffer::with_capacity).collect();
        let gathered = Gathered {
            fields: std::mem::replace(&mut self.fields, fresh),
            row_lines: std::mem::replace(&mut self.row_lines, Vec::with_capacity(rows)),
        };
        self.rows += rows as u64;
        if self.worker.is_none() && rows >= COPY_BATCH_ROWS {
            self.worker = ParseWorker::start(self.parser.clone(), self.step.clone());
        }
        let Some(worker) = &self.worker else {
            let batch = (self.step)(self.parser.parse(&gathered)?)?;
            self.batches.push(batch);
            return Ok(());
        };
        if let Err(std::sync::mpsc::SendError(gathered)) = worker.jobs.send(gathered) {
            // The worker is gone (it only stops when the decoder drops it): parse here.
            self.batches.push((self.step)(self.parser.parse(&gathered)?)?);
        }
        while let Ok(result) = worker.results.try_recv() {
            self.batches.push(result?);
        }
        Ok(())
    }

    fn consume_record(&mut self, record: &[u8]) -> Result<()> {
        self.line += 1;
        let record = record.strip_suffix(b"\r").unwrap_or(record);
        if self.header_pending {
            self.header_pending = false;
            return Ok(());
        }
        // `\.` alone on a line ends the data, in CSV too (unless quoted, which it is not here).
        if record == b"\\." {
            self.finished_by_marker = true;
            return Ok(());
        }
        if record.is_empty() && self.parser.targets.len() != 1 {
            return Err(self.error_at(self.line, None, format!("missing data: expected {} columns", self.parser.targets.len())));
        }
        let text = std::str::from_utf8(record)
            .map_err(|_| self.error_at(self.line, None, "invalid byte sequence for encoding \"UTF8\"".into()))?;
        // Fast path: nothing to unquote or unescape, so fields are slices of the record, split at
        // the (ASCII) delimiter, which never falls inside a UTF-8 sequence.
        let special = match self.options.format {
            CopyFormat::Text => b'\\',
            CopyFormat::Csv => self.options.quote(),
        };
        if memchr::memchr(special, record).is_none() {
            let delimiter = self.options.delimiter();
            let null = self.options.null_string();
            let columns = self.fields.len();
            let mut start = 0;
            let mut count = 0;
            // Fields are taken as they are found; a record with too many or too few fails the
            // whole COPY, so what it left in the buffers is never used.
            for end in memchr::memchr_iter(delimiter, record).chain([record.len()]) {
                let Some(buffer) = self.fields.get_mut(count) else {
                    count = columns + 1 + memchr::memchr_iter(delimiter, &record[start..]).count();
                    break;
                };
                let value = &text[start..end];
                start = end + 1;
                buffer.push((value != null).then_some(value));
                count += 1;
            }
            self.check_field_count(count)?;
        } else {
            let values = match self.options.format {
                CopyFormat::Text => self.split_text(text)?,
                CopyFormat::Csv => self.split_csv(text)?,
            };
            self.check_field_count(values.len())?;
            for (column, value) in values.iter().enumerate() {
                self.fields[column].push(value.as_deref());
            }
        }
        self.row_lines.push(self.line);
        if self.row_lines.len() >= COPY_BATCH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn check_field_count(&self, count: usize) -> Result<()> {
        if count == self.parser.targets.len() {
            return Ok(());
        }
        let message = if count < self.parser.targets.len() {
            format!("missing data for column: expected {} columns, got {}", self.parser.targets.len(), count)
        } else {
            format!("extra data after last expected column: expected {} columns, got {}", self.parser.targets.len(), count)
        };
        Err(self.error_at(self.line, None, message))
    }

    fn split_text(&self, record: &str) -> Result<Vec<Option<String>>> {
        let delimiter = self.options.delimiter() as char;
        let null = self.options.null_string();
        let mut values = Vec::with_capacity(self.parser.targets.len());
        for raw in record.split(delimiter) {
            if raw == null {
                values.push(None);
                continue;
            }
            if !raw.contains('\\') {
                values.push(Some(raw.to_string()));
                continue;
            }
            let mut value = String::with_capacity(raw.len());
            let mut chars = raw.chars().peekable();
            while let Some(c) = chars.next() {
                if c != '\\' {
                    value.push(c);
                    continue;
                }
                match chars.next() {
                    Some('b') => value.push('\u{8}'),
                    Some('f') => value.push('\u{c}'),
                    Some('n') => value.push('\n'),
                    Some('r') => value.push('\r'),
                    Some('t') => value.push('\t'),
                    Some('v') => value.push('\u{b}'),
                    Some('x') => {
                        let mut code = 0u32;
                        let mut digits = 0;
                        while digits < 2 {
                            match chars.peek().and_then(|c| c.to_digit(16)) {
                                Some(d) => {
                                    code = code * 16 + d;
                                    chars.next();
                                    digits += 1;
                                }
                                None => break,
                            }
                        }
                        if digits == 0 {
                            value.push('x');
                        } else {
                            value.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                        }
                    }
                    Some(d @ '0'..='7') => {
                        let mut code = d.to_digit(8).unwrap_or(0);
                        for _ in 0..2 {
                            match chars.peek().and_then(|c| c.to_digit(8)) {
                                Some(next) => {
                                    code = code * 8 + next;
                                    chars.next();
                                }
                                None => break,
                            }
                        }
                        value.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                    }
                    Some(other) => value.push(other),
                    None => value.push('\\'),
                }
            }
            values.push(Some(value));
        }
        Ok(values)
    }

    fn split_csv(&self, record: &str) -> Result<Vec<Option<String>>> {
        let delimiter = self.options.delimiter() as char;
        let quote = self.options.quote() as char;
        let escape = self.options.escape() as char;
        let null = self.options.null_string();
        let mut values = Vec::with_capacity(self.parser.targets.len());
        let mut chars = record.chars().peekable();
        loop {
            let mut value = String::new();
            let mut raw = String::new();
            loop {
                match chars.peek().copied() {
                    None => break,
                    Some(c) if c == delimiter => break,
                    Some(c) if c == quote => {
                        chars.next();
                        // Inside quotes until the closing quote.
                        loop {
                            match chars.next() {
                                None => {
                                    return Err(self.error_at(self.line, Some(values.len()), "unterminated CSV quoted field".into()))
                                }
                                Some(c) if c == escape && escape != quote && matches!(chars.peek(), Some(&n) if n == quote || n == escape) => {
                                    value.push(chars.next().unwrap_or(c));
                                }
                                Some(c) if c == quote => {
                                    if escape == quote && chars.peek() == Some(&quote) {
                                        chars.next();
                                        value.push(quote);
                                    } else {
                                        break;
                                    }
                                }
                                Some(c) => value.push(c),
                            }
                        }
                        raw.push('"');
                    }
                    Some(c) => {
                        chars.next();
                        value.push(c);
                        raw.push(c);
                    }
                }
            }
            let was_quoted = raw.contains('"');
            values.push(if !was_quoted && value == null { None } else { Some(value) });
            match chars.next() {
                Some(_) => continue, // the delimiter
                None => break,
            }
        }
        Ok(values)
    }
}

impl<O: Send + 'static> ParseWorker<O> {
    /// `None` if no thread can be started (the caller then parses on its own thread).
    fn start(parser: std::sync::Arc<BatchParser>, step: BatchStep<O>) -> Option<Self> {
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Gathered>(PARSE_JOBS_QUEUED_MAX);
        let (done, results) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new().name("streamhouse-copy".into()).spawn(move || {
            for gathered in queue {
                if done.send(parser.parse(&gathered).and_then(|batch| step(batch))).is_err() {
                    return;
                }
            }
        });
        spawned.ok().map(|_| Self { jobs, results })
    }
}

impl BatchParser {
    fn error_at(&self, line: u64, column: Option<usize>, message: String) -> EngineError {
        let column_part = column
            .and_then(|c| self.targets.get(c))
            .map(|&t| format!(", column {}", self.schema.field(t).name()))
            .unwrap_or_default();
        let text = format!("{message} (COPY {}, line {line}{column_part})", self.table);
        if message.starts_with("invalid input syntax") || message.starts_with("malformed") || message.starts_with("invalid hexadecimal") {
            EngineError::InvalidText(text)
        } else if message.starts_with("missing data") || message.starts_with("extra data") || message.starts_with("unterminated CSV") {
            // PostgreSQL's bad_copy_file_format.
            EngineError::Sqlstate { code: "22P04", message: text }
        } else if message.starts_with("invalid byte sequence") {
            EngineError::Sqlstate { code: "22021", message: text }
        } else if message.contains("not-null") {
            EngineError::NotNullViolation(text)
        } else {
            EngineError::DataException(text)
        }
    }

    /// Converts gathered fields into a batch of the topic's schema.
    fn parse(&self, gathered: &Gathered) -> Result<RecordBatch> {
        let rows = gathered.row_lines.len();
        let mut columns: Vec<ArrayRef> = self
            .schema
            .fields()
            .iter()
            .map(|f| new_null_array(f.data_type(), rows))
            .collect();
        for (input, &target) in self.targets.iter().enumerate() {
            let field = self.schema.field(target);
            let values = gathered.fields[input].values();
            if !field.is_nullable() {
                if let Some(row) = values.iter().position(Option::is_none) {
                    return Err(self.error_at(
                        gathered.row_lines[row],
                        Some(input),
                        format!("null value in column \"{}\" violates not-null constraint", field.name()),
                    ));
                }
            }
            columns[target] = parse_column(&values, field.data_type()).map_err(|e| {
                let line = gathered.row_lines.get(e.row).or(gathered.row_lines.last()).copied().unwrap_or(0);
                self.error_at(line, Some(input), e.message)
            })?;
        }
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

/// Position of the newline that ends the record starting at `start`, if it is complete.
fn record_end(options: &CopyOptions, data: &[u8], start: usize) -> Option<usize> {
    let newline = memchr::memchr(b'\n', &data[start..])?;
    match options.format {
        CopyFormat::Text => Some(start + newline),
        // Without a quote before the first newline, that newline ends the record.
        CopyFormat::Csv if memchr::memchr(options.quote(), &data[start..start + newline]).is_none() => Some(start + newline),
        CopyFormat::Csv => {
            let quote = options.quote();
            let escape = options.escape();
            let mut in_quotes = false;
            let mut index = start;
            while index < data.len() {
                let byte = data[index];
                if in_quotes {
                    if byte == escape && escape != quote && matches!(data.get(index + 1), Some(&b) if b == quote || b == escape) {
                        index += 2;
                        continue;
                    }
                    if byte == quote {
                        in_quotes = false;
                    }
                } else if byte == quote {
                    in_quotes = true;
                } else if byte == b'\n' {
                    return Some(index);
                }
                index += 1;
            }
            None
        }
    }
}

/// Writes batches as COPY text or CSV rows.
pub struct CopyEncoder {
    options: CopyOptions,
}

impl CopyEncoder {
    pub fn new(options: CopyOptions) -> Self {
        Self { options }
    }

    /// The header line, when the options ask for one.
    pub fn header(&self, schema: &SchemaRef) -> Option<Vec<u8>> {
        if !self.options.header {
            return None;
        }
        let delimiter = self.options.delimiter() as char;
        let names: Vec<String> = schema.fields().iter().map(|f| self.quote_csv(f.name())).collect();
        let mut line = names.join(&delimiter.to_string());
        line.push('\n');
        Some(line.into_bytes())
    }

    fn quote_csv(&self, value: &str) -> String {
        if self.options.format != CopyFormat::Csv {
            return value.to_string();
        }
        let quote = self.options.quote() as char;
        let escape = self.options.escape() as char;
        let delimiter = self.options.delimiter() as char;
        let needs = value.is_empty()
            || value == self.options.null_string()
            || value.contains([delimiter, quote, '\n', '\r'])
            || value.starts_with(' ')
            || value.ends_with(' ');
        if !needs {
            return value.to_string();
        }
        let mut out = String::with_capacity(value.len() + 2);
        out.push(quote);
        for c in value.chars() {
            if c == quote || c == escape {
                out.push(escape);
            }
            out.push(c);
        }
        out.push(quote);
        out
    }

    /// Encodes every row of a batch, one line each.
    pub fn encode(&self, batch: &RecordBatch) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(batch.get_array_memory_size());
        for row in 0..batch.num_rows() {
            out.extend_from_slice(&self.encode_row(batch, row)?);
        }
        Ok(out)
    }

    /// Encodes one row as one line (Postgres sends each row in a CopyData message of its own,
    /// and clients rely on it).
    pub fn encode_row(&self, batch: &RecordBatch, row: usize) -> Result<Vec<u8>> {
        let delimiter = self.options.delimiter() as char;
        let mut out = String::new();
        let mut value = String::new();
        for (index, column) in batch.columns().iter().enumerate() {
            if index > 0 {
                out.push(delimiter);
            }
            value.clear();
            if !write_text(column, row, &mut value)? {
                out.push_str(self.options.null_string());
                continue;
            }
            match self.options.format {
                CopyFormat::Csv => out.push_str(&self.quote_csv(&value)),
                CopyFormat::Text => {
                    for c in value.chars() {
                        match c {
                            '\\' => out.push_str("\\\\"),
                            '\n' => out.push_str("\\n"),
                            '\r' => out.push_str("\\r"),
                            '\t' if delimiter == '\t' => out.push_str("\\t"),
                            c if c == delimiter => {
                                out.push('\\');
                                out.push(c);
                            }
                            c => out.push(c),
                        }
                    }
                }
            }
        }
        out.push('\n');
        Ok(out.into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use arrow::array::{Array, AsArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]))
    }

    fn decode(options: CopyOptions, chunks: &[&str]) -> Result<Vec<RecordBatch>> {
        let mut decoder = CopyDecoder::new("t", schema(), &[], options, 1 << 24)?;
        for chunk in chunks {
            decoder.feed(chunk.as_bytes())?;
        }
        decoder.finish()
    }

    #[test]
    fn text_format_with_escapes_nulls_and_split_chunks() {
        let batches = decode(CopyOptions::default(), &["1\ta\\tb\n2\t\\N\n3", "\tc\\\\d\n\\.\n"]).unwrap();
        let batch = &batches[0];
        assert_eq!(batch.column(0).as_primitive::<Int64Type>(), &Int64Array::from(vec![1, 2, 3]));
        let names = batch.column(1).as_string::<i32>();
        assert_eq!(names.value(0), "a\tb");
        assert!(names.is_null(1));
        assert_eq!(names.value(2), "c\\d");
    }

    #[test]
    fn csv_with_header_quotes_and_embedded_newlines() {
        let options = CopyOptions { format: CopyFormat::Csv, header: true, ..Default::default() };
        let batches = decode(options, &["id,name\n1,\"x, \"\"y\"\"\"\n2,\n3,\"\"\n4,\"multi\nline\"\n"]).unwrap();
        let names = batches[0].column(1).as_string::<i32>();
        assert_eq!(names.value(0), "x, \"y\"");
        assert!(names.is_null(1));
        assert_eq!(names.value(2), "");
        assert_eq!(names.value(3), "multi\nline");
    }

    #[test]
    fn errors_name_line_and_column() {
        let options = CopyOptions { format: CopyFormat::Csv, header: true, ..Default::default() };
        let error = decode(options, &["id,name\n1,a\nx,b\n"]).unwrap_err();
        assert_eq!(error.sqlstate(), "22P02");
        let message = error.to_string();
        assert!(message.contains("line 3") && message.contains("column id"), "{message}");
        let error = decode(CopyOptions::default(), &["1\ta\textra\n"]).unwrap_err();
        assert!(error.to_string().contains("extra data after last expected column: expected 2 columns, got 3"), "{error}");
        let error = decode(CopyOptions::default(), &["1\ta\n2\tb\tc\td\n"]).unwrap_err();
        assert!(error.to_string().contains("expected 2 columns, got 4") && error.to_string().contains("line 2"), "{error}");
        let error = decode(CopyOptions::default(), &["1\n"]).unwrap_err();
        assert!(error.to_string().contains("missing data for column: expected 2 columns, got 1"), "{error}");
        let error = decode(CopyOptions::default(), &["\\N\ta\n"]).unwrap_err();
        assert_eq!(error.sqlstate(), "23502");
    }

    #[test]
    fn large_input_parses_on_the_worker_in_order_and_reports_later_errors_by_line() {
        let rows = 3 * COPY_BATCH_ROWS + 5;
        let csv: String = (0..rows).map(|i| format!("{i},n{i}\n")).collect();
        let options = CopyOptions { format: CopyFormat::Csv, ..Default::default() };
        // Fed in pieces that cut records, as CopyData messages do.
        let pieces: Vec<&str> = csv.as_bytes().chunks(65_521).map(|c| std::str::from_utf8(c).unwrap()).collect();
        let batches = decode(options.clone(), &pieces).unwrap();
        let ids: Vec<i64> = batches.iter().flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec()).collect();
        assert_eq!(ids, (0..rows as i64).collect::<Vec<_>>());

        let bad_line = 2 * COPY_BATCH_ROWS + 17;
        let broken: String = (1..=rows).map(|line| if line == bad_line { "x,y\n".to_string() } else { format!("{line},n\n") }).collect();
        let error = decode(options, &[broken.as_str()]).unwrap_err();
        assert_eq!(error.sqlstate(), "22P02");
        assert!(error.to_string().contains(&format!("line {bad_line},")), "{error}");
    }

    #[test]
    fn encoder_round_trips_through_decoder() {
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(arrow::array::StringArray::from(vec![Some("tab\there, \"q\"\nnl"), None])),
            ],
        )
        .unwrap();
        for format in [CopyFormat::Text, CopyFormat::Csv] {
            let options = CopyOptions { format, ..Default::default() };
            let bytes = CopyEncoder::new(options.clone()).encode(&batch).unwrap();
            let text = String::from_utf8(bytes).unwrap();
            let decoded = decode(options, &[&text]).unwrap();
            assert_eq!(decoded[0], batch, "{format:?}: {text}");
        }
    }
}
