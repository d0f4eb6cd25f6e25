//! The stream thread's record collector: every record a thread writes (sink records, changelog records) goes
//! through its one producer, and this is where delivery is tracked and waited for. Tasks see it through the
//! [`RecordCollector`](crate::task::RecordCollector) and [`ChangelogWriter`](crate::task::ChangelogWriter)
//! handles it gives out; the commit path flushes it and reads what the broker acknowledged.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::producer::Producer;

use crate::error::StreamsError;
use crate::runtime::clients::{ProducerChangelog, ProducerCollector, StreamsProducer};
use crate::runtime::kafka_error as kafka;

/// The thread's producer and what it knows of deliveries.
pub(crate) struct StreamsRecordCollector {
    producer: Arc<StreamsProducer>,
    /// How long a flush may go on without any record being acknowledged (`task.timeout.ms`).
    stall_timeout: Duration,
}

impl StreamsRecordCollector {
    pub(crate) fn new(producer: Arc<StreamsProducer>, stall_timeout: Duration) -> Self {
        StreamsRecordCollector {
            producer,
            stall_timeout,
        }
    }

    /// A collector for one task's sink records; `partitions` holds the partition counts known so far.
    pub(crate) fn task_collector(&self, partitions: HashMap<String, i32>) -> ProducerCollector {
        ProducerCollector {
            producer: self.producer.clone(),
            partitions,
            refused: None,
        }
    }

    /// The writer of the thread's changelog records.
    pub(crate) fn changelog_writer(&self) -> ProducerChangelog {
        ProducerChangelog {
            producer: self.producer.clone(),
        }
    }

    /// Serves delivery reports without waiting.
    pub(crate) fn poll(&self) {
        self.producer.poll(Duration::ZERO);
    }

    /// Waits until every record sent so far is acknowledged (or failed), then reports the first failure.
    ///
    /// A slow broker is not an error: the wait goes on as long as records keep being acknowledged, and fails
    /// only after `task.timeout.ms` without progress (each record's own `delivery.timeout.ms` still bounds it).
    pub(crate) fn flush(&self) -> Result<(), StreamsError> {
        let mut last_progress = Instant::now();
        let mut in_flight = self.producer.in_flight_count();
        loop {
            match self.producer.flush(Duration::from_secs(1)) {
                Ok(()) => break,
                Err(e) => {
                    let now = self.producer.in_flight_count();
                    if now < in_flight {
                        in_flight = now;
                        last_progress = Instant::now();
                    } else if last_progress.elapsed() >= self.stall_timeout {
                        return Err(kafka(
                            "producer flush failed",
                            format!(
                                "{e}: {now} records unacknowledged and none acknowledged for {:?} \
                                 (task.timeout.ms)",
                                self.stall_timeout
                            ),
                        ));
                    } else {
                        tracing::debug!(in_flight = now, "flush: waiting for the broker");
                    }
                }
            }
        }
        self.failure()
    }

    /// The first delivery failure the producer reported, as an error: an undelivered record would be lost.
    pub(crate) fn failure(&self) -> Result<(), StreamsError> {
        match self
            .producer
            .context()
            .failure
            .lock()
            .ok()
            .and_then(|f| f.clone())
        {
            Some(f) => Err(kafka("a record could not be delivered", f)),
            None => Ok(()),
        }
    }

    /// The highest acknowledged offset of each partition written.
    pub(crate) fn acked(&self) -> Result<HashMap<(String, i32), i64>, StreamsError> {
        self.producer
            .context()
            .acked
            .lock()
            .map(|a| a.clone())
            .map_err(|_| kafka("delivery state", "poisoned"))
    }
}
