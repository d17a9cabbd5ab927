//! Producing test events into a Kafka-protocol broker (the mock cluster).

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

pub fn producer(brokers: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer")
}

/// Queues one message keyed by `key`; when the local queue is full, serves
/// delivery reports and retries.
pub fn send(p: &BaseProducer, topic: &str, key: u64, payload: &[u8]) {
    let key = key.to_string();
    let mut record = BaseRecord::to(topic).key(&key).payload(payload);
    loop {
        match p.send(record) {
            Ok(()) => break,
            Err((_, r)) => {
                p.poll(Duration::from_millis(10));
                record = r;
            }
        }
    }
}

pub fn flush(p: &BaseProducer) {
    p.flush(Duration::from_secs(30))
        .expect("all events delivered");
}
