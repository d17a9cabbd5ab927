//! Dead letters: skipped messages, kept for a person to look at and replay.
//!
//! Either a Kafka topic (the original payload, with the reason and origin in
//! headers) or a JSON-lines file (payload hex-encoded). Writing a dead letter
//! never blocks or stops ingestion: a failure to write one is logged and counted.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::event::SkipReason;
use crate::telemetry;

/// Where the message came from.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// A dead-letter destination.
pub enum DeadLetters {
    /// Not kept (skips are still counted and logged).
    Discard,
    /// Produced to a Kafka topic.
    Topic {
        /// The producer.
        producer: BaseProducer,
        /// The topic.
        topic: String,
    },
    /// Appended to a JSON-lines file.
    File {
        /// The file.
        out: BufWriter<File>,
        /// Its path, for errors.
        path: PathBuf,
    },
}

impl DeadLetters {
    /// Opens a JSON-lines dead-letter file for appending.
    pub fn file(path: PathBuf) -> std::io::Result<Self> {
        let f = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Self::File {
            out: BufWriter::new(f),
            path,
        })
    }

    /// Records one skipped message.
    pub fn record(&mut self, origin: Origin<'_>, reason: SkipReason, payload: &[u8]) {
        let result: Result<(), String> = match self {
            Self::Discard => Ok(()),
            Self::Topic { producer, topic } => {
                let partition = origin.partition.to_string();
                let offset = origin.offset.to_string();
                let headers = OwnedHeaders::new()
                    .insert(Header {
                        key: "rta-skip-reason",
                        value: Some(reason.label()),
                    })
                    .insert(Header {
                        key: "rta-source-topic",
                        value: Some(origin.topic),
                    })
                    .insert(Header {
                        key: "rta-source-partition",
                        value: Some(&partition),
                    })
                    .insert(Header {
                        key: "rta-source-offset",
                        value: Some(&offset),
                    });
                let record: BaseRecord<'_, (), [u8]> =
                    BaseRecord::to(topic).payload(payload).headers(headers);
                let r = producer.send(record).map_err(|(e, _)| e.to_string());
                producer.poll(std::time::Duration::ZERO);
                r
            }
            Self::File { out, .. } => {
                let line = serde_json::json!({
                    "reason": reason.label(),
                    "topic": origin.topic,
                    "partition": origin.partition,
                    "offset": origin.offset,
                    "payload_hex": hex::encode(payload),
                });
                writeln!(out, "{line}")
                    .and_then(|_| out.flush())
                    .map_err(|e| e.to_string())
            }
        };
        if let Err(e) = result {
            metrics::counter!(telemetry::DEAD_LETTER_FAILURES).increment(1);
            tracing::warn!(error = %e, topic = origin.topic, partition = origin.partition, offset = origin.offset, "could not write a dead letter");
        }
    }

    /// Waits (bounded) for produced dead letters to be delivered.
    pub fn flush(&mut self) {
        if let Self::Topic { producer, .. } = self {
            let _ = producer.flush(std::time::Duration::from_secs(5));
        }
    }
}
