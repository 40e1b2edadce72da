//! A deterministic Nexmark event generator: persons, auctions and bids in the proportions of
//! the benchmark (1 : 3 : 46 in every 50 events), event times advancing by a fixed step from a
//! fixed base time, values from a linear congruential sequence — the same events on every run.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::BATCH_ROWS;

/// 2024-01-01 00:00:00 UTC in microseconds.
pub const BASE_TIME_US: i64 = 1_704_067_200_000_000;
/// Event time between two consecutive events (100 k events per second of event time).
pub const EVENT_STEP_US: i64 = 10;

const FIRST_PERSON_ID: i64 = 1000;
const FIRST_AUCTION_ID: i64 = 1000;
/// Bids and auctions refer to one of the most recent persons / auctions.
const HOT_WINDOW: i64 = 100;

const CHANNELS: [&str; 6] = ["Google", "Facebook", "Baidu", "Apple", "channel-1", "channel-2"];
const STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
const CITIES: [&str; 6] = ["Phoenix", "Los Angeles", "Boise", "Portland", "Seattle", "Cheyenne"];

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, None)
}

pub fn person_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("email_address", DataType::Utf8, false),
        Field::new("credit_card", DataType::Utf8, false),
        Field::new("city", DataType::Utf8, false),
        Field::new("state", DataType::Utf8, false),
        Field::new("date_time", timestamp(), false),
        Field::new("extra", DataType::Utf8, false),
    ]))
}

pub fn auction_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("item_name", DataType::Utf8, false),
        Field::new("description", DataType::Utf8, false),
        Field::new("initial_bid", DataType::Int64, false),
        Field::new("reserve", DataType::Int64, false),
        Field::new("date_time", timestamp(), false),
        Field::new("expires", timestamp(), false),
        Field::new("seller", DataType::Int64, false),
        Field::new("category", DataType::Int64, false),
        Field::new("extra", DataType::Utf8, false),
    ]))
}

/// The micro benchmarks' bid columns ([`crate::bid_schema`]), then `extra`.
pub fn bid_schema() -> SchemaRef {
    let mut fields: Vec<Field> = crate::bid_schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("extra", DataType::Utf8, false));
    Arc::new(Schema::new(fields))
}

/// The three streams: name and schema.
pub fn streams() -> [(&'static str, SchemaRef); 3] {
    [("person", person_schema()), ("auction", auction_schema()), ("bid", bid_schema())]
}

/// `CREATE TOPIC` for a stream, its columns written from its Arrow schema, with a watermark on
/// `date_time`.
pub fn create_topic(name: &str, schema: &Schema) -> String {
    let columns: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| {
            let sql_type = match f.data_type() {
                DataType::Int64 => "BIGINT",
                DataType::Utf8 => "TEXT",
                DataType::Timestamp(TimeUnit::Microsecond, None) => "TIMESTAMP",
                other => unreachable!("the generator has no {other} column"),
            };
            format!("{} {sql_type} NOT NULL", f.name())
        })
        .collect();
    format!(
        "CREATE TOPIC {name} ({}, WATERMARK FOR date_time AS date_time - INTERVAL '4 seconds')",
        columns.join(", ")
    )
}

/// Generated events, per stream, in event-time order.
#[derive(Debug, Default)]
pub struct NexmarkEvents {
    pub person: Vec<RecordBatch>,
    pub auction: Vec<RecordBatch>,
    pub bid: Vec<RecordBatch>,
}

struct Random(u64);

impl Random {
    fn next(&mut self) -> i64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as i64
    }
}

/// A recent id: one of the last [`HOT_WINDOW`] created (ids start at `first`).
fn recent(random: &mut Random, first: i64, created: i64) -> i64 {
    let window = created.clamp(1, HOT_WINDOW);
    first + (created - 1).max(0) - random.next() % window
}

/// `events` events: per 50, one person, three auctions, 46 bids.
pub fn generate(events: usize) -> NexmarkEvents {
    let mut random = Random(0x9E37_79B9_7F4A_7C15);
    let mut persons: Vec<(i64, String, String, String, String, String, i64)> = Vec::new();
    let mut auctions: Vec<(i64, String, String, i64, i64, i64, i64, i64, i64)> = Vec::new();
    let mut bids: Vec<(i64, i64, i64, String, String, i64)> = Vec::new();
    let mut out = NexmarkEvents::default();
    let (mut person_count, mut auction_count) = (0i64, 0i64);
    for index in 0..events as i64 {
        let time = BASE_TIME_US + index * EVENT_STEP_US;
        match index % 50 {
            0 => {
                let id = FIRST_PERSON_ID + person_count;
                person_count += 1;
                let state = random.next() as usize % STATES.len();
                persons.push((
                    id,
                    format!("person {id}"),
                    format!("p{id}@example.com"),
                    format!("{:016}", random.next() % 10_000_000_000_000_000),
                    CITIES[state].to_string(),
                    STATES[state].to_string(),
                    time,
                ));
            }
            1..=3 => {
                let id = FIRST_AUCTION_ID + auction_count;
                auction_count += 1;
                let initial = 100 + random.next() % 10_000;
                let seller = recent(&mut random, FIRST_PERSON_ID, person_count);
                auctions.push((
                    id,
                    format!("item {id}"),
                    format!("description of item {id}"),
                    initial,
                    initial + random.next() % 100_000,
                    time,
                    time + (2 + random.next() % 20) * 1_000_000,
                    seller,
                    10 + random.next() % 5,
                ));
            }
            _ => {
                let auction = recent(&mut random, FIRST_AUCTION_ID, auction_count);
                let bidder = recent(&mut random, FIRST_PERSON_ID, person_count);
                let price = 1 + random.next() % 10_000_000;
                let channel = CHANNELS[random.next() as usize % CHANNELS.len()].to_string();
                let url = format!(
                    "https://www.nexmark.com/dir{}/sub{}/leaf{}/item.htm?query=1&channel_id={}",
                    random.next() % 10,
                    random.next() % 10,
                    random.next() % 10,
                    random.next() % 1000
                );
                bids.push((auction, bidder, price, channel, url, time));
            }
        }
        if persons.len() == BATCH_ROWS || index as usize + 1 == events {
            out.person.extend(person_batch(std::mem::take(&mut persons)));
        }
        if auctions.len() == BATCH_ROWS || index as usize + 1 == events {
            out.auction.extend(auction_batch(std::mem::take(&mut auctions)));
        }
        if bids.len() == BATCH_ROWS || index as usize + 1 == events {
            out.bid.extend(bid_batch(std::mem::take(&mut bids)));
        }
    }
    out
}

fn texts(values: Vec<String>) -> ArrayRef {
    Arc::new(StringArray::from(values))
}

fn person_batch(rows: Vec<(i64, String, String, String, String, String, i64)>) -> Option<RecordBatch> {
    if rows.is_empty() {
        return None;
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
        texts(rows.iter().map(|r| r.1.clone()).collect()),
        texts(rows.iter().map(|r| r.2.clone()).collect()),
        texts(rows.iter().map(|r| r.3.clone()).collect()),
        texts(rows.iter().map(|r| r.4.clone()).collect()),
        texts(rows.iter().map(|r| r.5.clone()).collect()),
        Arc::new(TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.6))),
        texts(vec![String::new(); rows.len()]),
    ];
    Some(RecordBatch::try_new(person_schema(), columns).expect("person columns match"))
}

fn auction_batch(rows: Vec<(i64, String, String, i64, i64, i64, i64, i64, i64)>) -> Option<RecordBatch> {
    if rows.is_empty() {
        return None;
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
        texts(rows.iter().map(|r| r.1.clone()).collect()),
        texts(rows.iter().map(|r| r.2.clone()).collect()),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.3))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.4))),
        Arc::new(TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.5))),
        Arc::new(TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.6))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.7))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.8))),
        texts(vec![String::new(); rows.len()]),
    ];
    Some(RecordBatch::try_new(auction_schema(), columns).expect("auction columns match"))
}

fn bid_batch(rows: Vec<(i64, i64, i64, String, String, i64)>) -> Option<RecordBatch> {
    if rows.is_empty() {
        return None;
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
        texts(rows.iter().map(|r| r.3.clone()).collect()),
        texts(rows.iter().map(|r| r.4.clone()).collect()),
        Arc::new(TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.5))),
        texts(vec![String::new(); rows.len()]),
    ];
    Some(RecordBatch::try_new(bid_schema(), columns).expect("bid columns match"))
}
