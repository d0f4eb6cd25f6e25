//! An embedded Kafka broker for development and tests: librdkafka's mock cluster, in-process, on real TCP.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use crate::error::StreamsError;

enum Command {
    CreateTopic {
        name: String,
        partitions: i32,
        reply: mpsc::Sender<Result<(), String>>,
    },
    Fault {
        fault: Fault,
        reply: mpsc::Sender<Result<(), String>>,
    },
    Stop,
}

/// A failure the embedded broker can be told to show, for testing how an application copes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Fault {
    /// The broker stops answering (connections are closed and refused) until [`Fault::BrokerUp`].
    BrokerDown,
    /// The broker answers again.
    BrokerUp,
    /// The next requests of one kind fail, one error per request, in order.
    RequestErrors {
        /// The request kind (Produce, Fetch, OffsetCommit, JoinGroup, ...).
        api: RDKafkaApiKey,
        /// The errors to answer with.
        errors: Vec<RDKafkaRespErr>,
    },
    /// Every answer is delayed by this much (zero removes the delay).
    RoundTripTime(Duration),
}

/// Creates topics on an [`EmbeddedKafka`] from any thread.
#[derive(Clone, Debug)]
pub struct EmbeddedAdmin {
    commands: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::CreateTopic {
                name, partitions, ..
            } => write!(f, "CreateTopic({name}, {partitions})"),
            Command::Fault { fault, .. } => write!(f, "Fault({fault:?})"),
            Command::Stop => write!(f, "Stop"),
        }
    }
}

impl EmbeddedAdmin {
    /// Makes the broker show `fault`; see [`EmbeddedKafka::inject`].
    pub fn inject(&self, fault: Fault) -> Result<(), StreamsError> {
        let (reply, answer) = mpsc::channel();
        let gone = || StreamsError::Config {
            key: "bootstrap.servers".into(),
            message: "the embedded broker has stopped".into(),
        };
        self.commands
            .send(Command::Fault { fault, reply })
            .map_err(|_| gone())?;
        answer
            .recv()
            .map_err(|_| gone())?
            .map_err(|message| StreamsError::Config {
                key: "embedded broker fault".into(),
                message,
            })
    }
    /// Creates `topic` with `partitions` partitions (an existing topic is left as it is).
    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), StreamsError> {
        let (reply, answer) = mpsc::channel();
        let gone = || StreamsError::Config {
            key: "bootstrap.servers".into(),
            message: "the embedded broker has stopped".into(),
        };
        self.commands
            .send(Command::CreateTopic {
                name: topic.to_string(),
                partitions,
                reply,
            })
            .map_err(|_| gone())?;
        answer
            .recv()
            .map_err(|_| gone())?
            .map_err(|message| StreamsError::Config {
                key: format!("topic {topic}"),
                message,
            })
    }
}

/// librdkafka's mock cluster, running on its own thread, reachable at [`EmbeddedKafka::bootstrap_servers`].
///
/// It is meant for demos and tests, with known limits: it keeps only the newest few MiB of each partition
/// (a lagging consumer loses records and a large changelog cannot be fully restored), does not compact, has no
/// transactions isolation, does not answer CreateTopics (use [`EmbeddedKafka::create_topic`]), auto-creates
/// unknown topics with 4 partitions, and its first group rebalance takes about 3 s. Starting one logs a warning
/// saying so.
///
/// ```no_run
/// use streams_core::runtime::EmbeddedKafka;
///
/// let kafka = EmbeddedKafka::start().unwrap();
/// kafka.create_topic("orders", 3).unwrap();
/// println!("bootstrap.servers = {}", kafka.bootstrap_servers());
/// ```
pub struct EmbeddedKafka {
    bootstrap: String,
    admin: EmbeddedAdmin,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for EmbeddedKafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedKafka")
            .field("bootstrap", &self.bootstrap)
            .finish()
    }
}

impl EmbeddedKafka {
    /// Starts a one-broker mock cluster.
    pub fn start() -> Result<Self, StreamsError> {
        let (commands, inbox) = mpsc::channel::<Command>();
        let (ready, started) = mpsc::channel::<Result<String, String>>();
        let thread = std::thread::Builder::new()
            .name("embedded-kafka".into())
            .spawn(move || {
                let cluster = match MockCluster::new(1) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = ready.send(Ok(cluster.bootstrap_servers()));
                while let Ok(cmd) = inbox.recv() {
                    match cmd {
                        Command::CreateTopic {
                            name,
                            partitions,
                            reply,
                        } => {
                            let r = cluster
                                .create_topic(&name, partitions, 1)
                                .map_err(|e| e.to_string());
                            let _ = reply.send(r);
                        }
                        Command::Fault { fault, reply } => {
                            let r = match fault {
                                Fault::BrokerDown => cluster.broker_down(1),
                                Fault::BrokerUp => cluster.broker_up(1),
                                Fault::RequestErrors { api, errors } => {
                                    cluster.request_errors(api, &errors);
                                    Ok(())
                                }
                                Fault::RoundTripTime(delay) => {
                                    cluster.broker_round_trip_time(1, delay)
                                }
                            };
                            let _ = reply.send(r.map_err(|e| e.to_string()));
                        }
                        Command::Stop => break,
                    }
                }
            })
            .map_err(|source| StreamsError::Io {
                path: "embedded-kafka thread".into(),
                source,
            })?;
        let bootstrap = started
            .recv()
            .map_err(|_| StreamsError::Config {
                key: "embedded broker".into(),
                message: "the mock cluster thread ended before starting".into(),
            })?
            .map_err(|message| StreamsError::Config {
                key: "embedded broker".into(),
                message,
            })?;
        tracing::warn!(
            bootstrap = %bootstrap,
            "embedded broker (librdkafka mock cluster) started: for demos and tests only; it keeps only the \
             newest ~5 MiB per partition (lagging consumers and large changelog restores lose data), does not \
             compact, and auto-creates unknown topics with 4 partitions"
        );
        Ok(EmbeddedKafka {
            bootstrap,
            admin: EmbeddedAdmin { commands },
            thread: Some(thread),
        })
    }

    /// The `bootstrap.servers` to give clients.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), StreamsError> {
        self.admin.create_topic(topic, partitions)
    }

    /// A handle that creates topics from other threads.
    pub fn admin(&self) -> EmbeddedAdmin {
        self.admin.clone()
    }

    /// Makes the broker show `fault` (fault-injection tests: a broker going down and coming back, failing
    /// requests, a slow network).
    ///
    /// ```no_run
    /// use streams_core::runtime::{EmbeddedKafka, Fault};
    ///
    /// let kafka = EmbeddedKafka::start().unwrap();
    /// kafka.inject(Fault::BrokerDown).unwrap();
    /// // ... the application retries ...
    /// kafka.inject(Fault::BrokerUp).unwrap();
    /// ```
    pub fn inject(&self, fault: Fault) -> Result<(), StreamsError> {
        self.admin.inject(fault)
    }
}

impl Drop for EmbeddedKafka {
    fn drop(&mut self) {
        let _ = self.admin.commands.send(Command::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
