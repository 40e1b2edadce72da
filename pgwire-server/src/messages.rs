//! Framing of protocol messages: reading frontend messages with a size limit, and building
//! backend messages into an output buffer.

use bytes::{Buf, BufMut, BytesMut};
use streamhouse_engine::arrow::datatypes::SchemaRef;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::types::pg_type;

/// A frontend message: its type byte and body (without the length word).
#[derive(Debug)]
pub struct FrontendMessage {
    pub tag: u8,
    pub body: BytesMut,
}

/// Why reading a message failed.
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed the connection.
    Closed,
    Io(std::io::Error),
    /// The length word is impossible or over the limit; the stream cannot be resynchronised.
    BadLength(i64),
}

/// Reads one regular message (type byte, length, body).
pub async fn read_message<R: AsyncRead + Unpin>(reader: &mut R, bytes_max: usize) -> Result<FrontendMessage, ReadError> {
    let tag = match reader.read_u8().await {
        Ok(tag) => tag,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(ReadError::Closed),
        Err(e) => return Err(ReadError::Io(e)),
    };
    let length = reader.read_i32().await.map_err(ReadError::Io)? as i64;
    if length < 4 || length as usize - 4 > bytes_max {
        return Err(ReadError::BadLength(length));
    }
    let mut body = BytesMut::zeroed(length as usize - 4);
    reader.read_exact(&mut body).await.map_err(ReadError::Io)?;
    Ok(FrontendMessage { tag, body })
}

/// Reads the untyped startup-phase packet (length, then body).
pub async fn read_startup_packet<R: AsyncRead + Unpin>(reader: &mut R, bytes_max: usize) -> Result<BytesMut, ReadError> {
    let length = match reader.read_i32().await {
        Ok(length) => length as i64,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(ReadError::Closed),
        Err(e) => return Err(ReadError::Io(e)),
    };
    if length < 8 || length as usize - 4 > bytes_max {
        return Err(ReadError::BadLength(length));
    }
    let mut body = BytesMut::zeroed(length as usize - 4);
    reader.read_exact(&mut body).await.map_err(ReadError::Io)?;
    Ok(body)
}

/// A malformed message body.
#[derive(Debug)]
pub struct Malformed(pub String);

/// Cursor over a message body with checked reads.
pub struct BodyReader<'a> {
    body: &'a [u8],
}

impl<'a> BodyReader<'a> {
    pub fn new(body: &'a [u8]) -> Self {
        Self { body }
    }

    fn need(&self, n: usize, what: &str) -> Result<(), Malformed> {
        if self.body.len() < n {
            Err(Malformed(format!("message too short while reading {what}")))
        } else {
            Ok(())
        }
    }

    pub fn i16(&mut self, what: &str) -> Result<i16, Malformed> {
        self.need(2, what)?;
        Ok(self.body.get_i16())
    }

    pub fn i32(&mut self, what: &str) -> Result<i32, Malformed> {
        self.need(4, what)?;
        Ok(self.body.get_i32())
    }

    pub fn u8(&mut self, what: &str) -> Result<u8, Malformed> {
        self.need(1, what)?;
        Ok(self.body.get_u8())
    }

    /// A NUL-terminated string (raw bytes; UTF-8 is checked by the caller).
    pub fn cstring(&mut self, what: &str) -> Result<&'a [u8], Malformed> {
        let end = self
            .body
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| Malformed(format!("unterminated string while reading {what}")))?;
        let value = &self.body[..end];
        self.body = &self.body[end + 1..];
        Ok(value)
    }

    pub fn bytes(&mut self, n: usize, what: &str) -> Result<&'a [u8], Malformed> {
        self.need(n, what)?;
        let value = &self.body[..n];
        self.body = &self.body[n..];
        Ok(value)
    }

}

/// Builds backend messages into a buffer.
#[derive(Default)]
pub struct Output {
    pub buffer: BytesMut,
}

impl Output {
    fn begin(&mut self, tag: u8) -> usize {
        self.buffer.put_u8(tag);
        let at = self.buffer.len();
        self.buffer.put_i32(0);
        at
    }

    fn end(&mut self, at: usize) {
        let length = (self.buffer.len() - at) as i32;
        self.buffer[at..at + 4].copy_from_slice(&length.to_be_bytes());
    }

    fn cstring(&mut self, value: &str) {
        // A NUL inside a value would end the string early; Postgres forbids them in text too.
        self.buffer.put_slice(value.replace('\0', "").as_bytes());
        self.buffer.put_u8(0);
    }

    pub fn authentication_ok(&mut self) {
        self.authentication(0, &[]);
    }

    /// `AuthenticationCleartextPassword`.
    pub fn authentication_cleartext_password(&mut self) {
        self.authentication(3, &[]);
    }

    /// `AuthenticationSASL` with the mechanisms offered.
    pub fn authentication_sasl(&mut self, mechanisms: &[&str]) {
        let mut list = Vec::new();
        for mechanism in mechanisms {
            list.extend_from_slice(mechanism.as_bytes());
            list.push(0);
        }
        list.push(0);
        self.authentication(10, &list);
    }

    /// `AuthenticationSASLContinue` (11) or `AuthenticationSASLFinal` (12) with its data.
    pub fn authentication_sasl_data(&mut self, code: i32, data: &[u8]) {
        self.authentication(code, data);
    }

    fn authentication(&mut self, code: i32, data: &[u8]) {
        let at = self.begin(b'R');
        self.buffer.put_i32(code);
        self.buffer.put_slice(data);
        self.end(at);
    }

    pub fn parameter_status(&mut self, name: &str, value: &str) {
        let at = self.begin(b'S');
        self.cstring(name);
        self.cstring(value);
        self.end(at);
    }

    pub fn backend_key_data(&mut self, process_id: i32, secret: i32) {
        let at = self.begin(b'K');
        self.buffer.put_i32(process_id);
        self.buffer.put_i32(secret);
        self.end(at);
    }

    pub fn ready_for_query(&mut self, status: u8) {
        let at = self.begin(b'Z');
        self.buffer.put_u8(status);
        self.end(at);
    }

    pub fn error(&mut self, severity: &str, code: &str, message: &str) {
        let at = self.begin(b'E');
        for (field, value) in [(b'S', severity), (b'V', severity), (b'C', code), (b'M', message)] {
            self.buffer.put_u8(field);
            self.cstring(value);
        }
        self.buffer.put_u8(0);
        self.end(at);
    }

    pub fn simple(&mut self, tag: u8) {
        let at = self.begin(tag);
        self.end(at);
    }

    pub fn command_complete(&mut self, tag: &str) {
        let at = self.begin(b'C');
        self.cstring(tag);
        self.end(at);
    }

    pub fn row_description(&mut self, schema: &SchemaRef, formats: &[i16]) {
        let at = self.begin(b'T');
        self.buffer.put_i16(schema.fields().len() as i16);
        for (index, field) in schema.fields().iter().enumerate() {
            let (type_oid, size, modifier) = pg_type(field);
            self.cstring(field.name());
            self.buffer.put_i32(0); // table OID
            self.buffer.put_i16(0); // column number
            self.buffer.put_u32(type_oid);
            self.buffer.put_i16(size);
            self.buffer.put_i32(modifier);
            self.buffer.put_i16(format_for(formats, index));
        }
        self.end(at);
    }

    pub fn parameter_description(&mut self, oids: &[u32]) {
        let at = self.begin(b't');
        self.buffer.put_i16(oids.len() as i16);
        for oid in oids {
            self.buffer.put_u32(*oid);
        }
        self.end(at);
    }

    /// Starts a DataRow; fields are added with [`Output::field`]; finish with [`Output::end_row`].
    pub fn begin_row(&mut self, columns: usize) -> usize {
        let at = self.begin(b'D');
        self.buffer.put_i16(columns as i16);
        at
    }

    pub fn null_field(&mut self) {
        self.buffer.put_i32(-1);
    }
    pub fn end_row(&mut self, at: usize) {
        self.end(at);
    }

    pub fn copy_response(&mut self, tag: u8, columns: usize) {
        let at = self.begin(tag);
        self.buffer.put_u8(0); // text
        self.buffer.put_i16(columns as i16);
        for _ in 0..columns {
            self.buffer.put_i16(0);
        }
        self.end(at);
    }

    pub fn copy_data(&mut self, data: &[u8]) {
        let at = self.begin(b'd');
        self.buffer.put_slice(data);
        self.end(at);
    }
}

/// The format code of column `index` given a Bind's result formats (none: all text; one: for
/// all; else one per column).
pub fn format_for(formats: &[i16], index: usize) -> i16 {
    match formats.len() {
        0 => 0,
        1 => formats[0],
        _ => formats.get(index).copied().unwrap_or(0),
    }
}
