//! The tickets and handles this server hands out, as JSON so that a person can read and write
//! them (`pyarrow.flight.Ticket(b'{"topic": "bids", "partition": 0}')`).
//!
//! - Plain Flight tickets ([`PlainTicket`]) name what to read without SQL: a topic partition's
//!   offsets, a keyed table or view's rows, or a view's changes.
//! - Flight SQL statement tickets ([`StatementTicket`]) travel inside `TicketStatementQuery`:
//!   the SQL text (or a prepared statement's handle) and the query id that cancellation names.

use serde::{Deserialize, Serialize};
use tonic::Status;

/// Most bytes of a ticket or handle this server decodes.
pub const TICKET_BYTES_MAX: usize = 1024 * 1024;

/// A plain Flight ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PlainTicket {
    /// A topic partition's log between two offsets, `[start, end)`; `end` absent: everything
    /// acknowledged when the read starts. With `compression`, the client takes IPC buffers
    /// compressed that way: sealed segments' batches are sent as stored.
    Partition {
        topic: String,
        partition: u32,
        #[serde(default)]
        start: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        end: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        compression: Option<Compression>,
    },
    /// Every row of a relation as a bounded `SELECT *` reads it (a keyed table's latest rows,
    /// a view's last committed results).
    Relation { relation: String },
    /// A view's changes, as `SUBSCRIBE` streams them (snapshot first unless `snapshot` is false).
    Subscribe {
        subscribe: String,
        #[serde(default = "default_snapshot")]
        snapshot: bool,
    },
}

/// IPC body compression a client takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compression {
    #[serde(rename = "lz4_frame")]
    Lz4Frame,
}

fn default_snapshot() -> bool {
    true
}

impl PlainTicket {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The ticket, if `bytes` is one of ours (a JSON object); `Ok(None)` if it is not JSON at
    /// all (a Flight SQL ticket).
    pub fn decode(bytes: &[u8]) -> Result<Option<Self>, Status> {
        if bytes.first() != Some(&b'{') {
            return Ok(None);
        }
        if bytes.len() > TICKET_BYTES_MAX {
            return Err(Status::invalid_argument(format!("ticket of {} bytes is over the {TICKET_BYTES_MAX}-byte limit", bytes.len())));
        }
        serde_json::from_slice(bytes).map(Some).map_err(|error| {
            Status::invalid_argument(format!(
                "malformed ticket ({error}); expected {{\"topic\": name, \"partition\": n, \"start\": offset, \"end\": offset, \"compression\": \"lz4_frame\"}}, {{\"relation\": name}} or {{\"subscribe\": view}}"
            ))
        })
    }
}

/// What a Flight SQL query ticket carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatementTicket {
    /// Names the query for cancellation.
    pub query: u64,
    /// The statement, for a statement sent as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// The prepared statement's handle, for one prepared earlier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepared: Option<u64>,
}

impl StatementTicket {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, Status> {
        if bytes.len() > TICKET_BYTES_MAX {
            return Err(Status::invalid_argument("statement handle over the size limit"));
        }
        let ticket: Self = serde_json::from_slice(bytes)
            .map_err(|error| Status::invalid_argument(format!("malformed statement ticket: {error}")))?;
        if ticket.sql.is_some() == ticket.prepared.is_some() {
            return Err(Status::invalid_argument("a statement ticket names either a statement or a prepared statement"));
        }
        Ok(ticket)
    }
}

/// A prepared statement's handle as the client holds it: its id in decimal.
pub fn encode_handle(id: u64) -> Vec<u8> {
    id.to_string().into_bytes()
}

pub fn decode_handle(bytes: &[u8]) -> Result<u64, Status> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| Status::invalid_argument("malformed prepared statement handle"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_tickets_read_back_as_written() {
        for ticket in [
            PlainTicket::Partition { topic: "bids".into(), partition: 3, start: 10, end: Some(20), compression: None },
            PlainTicket::Partition { topic: "bids".into(), partition: 0, start: 0, end: None, compression: Some(Compression::Lz4Frame) },
            PlainTicket::Relation { relation: "people".into() },
            PlainTicket::Subscribe { subscribe: "hot".into(), snapshot: false },
        ] {
            assert_eq!(PlainTicket::decode(&ticket.encode()).expect("decodes"), Some(ticket));
        }
    }

    #[test]
    fn hand_written_tickets_take_defaults() {
        let ticket = PlainTicket::decode(br#"{"topic": "bids", "partition": 1}"#).expect("decodes");
        assert_eq!(ticket, Some(PlainTicket::Partition { topic: "bids".into(), partition: 1, start: 0, end: None, compression: None }));
        let ticket = PlainTicket::decode(br#"{"topic": "bids", "partition": 1, "compression": "lz4_frame"}"#).expect("decodes");
        assert!(matches!(ticket, Some(PlainTicket::Partition { compression: Some(Compression::Lz4Frame), .. })));
        let ticket = PlainTicket::decode(br#"{"subscribe": "hot"}"#).expect("decodes");
        assert_eq!(ticket, Some(PlainTicket::Subscribe { subscribe: "hot".into(), snapshot: true }));
    }

    #[test]
    fn bad_tickets_are_refused_with_the_expected_forms() {
        for bad in [&br#"{"topic": "bids"}"#[..], br#"{"partition": 1}"#, b"{not json", br#"{"topic": 1, "partition": 0}"#, br#"{"topic": "b", "partition": 0, "compression": "zstd"}"#] {
            let error = PlainTicket::decode(bad).expect_err("refused");
            assert_eq!(error.code(), tonic::Code::InvalidArgument);
            assert!(error.message().contains("expected"), "{}", error.message());
        }
        assert_eq!(PlainTicket::decode(b"\x0a\x04abcd").expect("not ours"), None);
        assert!(StatementTicket::decode(br#"{"query": 1}"#).is_err());
        assert!(StatementTicket::decode(br#"{"query": 1, "sql": "x", "prepared": 2}"#).is_err());
        assert!(decode_handle(b"12x").is_err());
        assert_eq!(decode_handle(&encode_handle(42)).expect("handle"), 42);
    }
}
