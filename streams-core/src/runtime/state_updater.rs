//! The state updater: restores the stores of a stream thread's new tasks on a thread of its own, with its own
//! restore consumer, while the stream thread keeps polling (so a long restoration never exceeds
//! `max.poll.interval.ms`) and keeps processing the tasks that are ready.
//!
//! The stream thread hands over a task id; the updater opens the task's stores, plans where each changelog
//! partition's reading starts and ends, and reads every planned partition of every task it holds at once
//! ([`BulkRestore`]); it hands back each task's opened stores with the changelog offsets they reached as soon
//! as all of its partitions are read. A job can be cancelled (its partitions were reassigned elsewhere): the
//! updater stops it between two steps, flushes what it restored and checkpoints it, so the next restoration of
//! the task resumes from there.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::error::StreamsError;
use crate::processor::TaskId;
use crate::runtime::bulk_restore::{BulkJob, BulkRestore, StandbyProgress};
use crate::runtime::checkpoint;
use crate::runtime::clients::{client_config, client_error};
use crate::runtime::config::ClientKind;
use crate::runtime::restore::{retrying, ChangelogRestorer, StateRestoreListener};
use crate::runtime::security::StreamsClientContext;
use crate::runtime::thread::ThreadContext;
use crate::state_manager::StateManager;

/// A task's stores, restored.
pub(crate) struct RestoredTask {
    pub state: StateManager,
    /// The next changelog offset of each logged store's partition: where restoration stopped.
    pub positions: BTreeMap<(String, i32), i64>,
    /// Records applied.
    pub restored: u64,
}

/// What the updater reports about one job.
pub(crate) struct RestoreOutcome {
    pub task: TaskId,
    /// The job's number, as returned by [`StateUpdater::add`].
    pub job: u64,
    /// `Ok(None)`: the job was cancelled.
    pub result: Result<Option<RestoredTask>, StreamsError>,
}

struct Job {
    task: TaskId,
    number: u64,
    cancel: Arc<AtomicBool>,
    listener: Arc<dyn StateRestoreListener>,
    standby: Option<StandbyProgress>,
}

enum Command {
    Restore(Job),
    Shutdown,
}

/// Handle on a stream thread's state updater.
pub(crate) struct StateUpdater {
    commands: Sender<Command>,
    outcomes: Receiver<RestoreOutcome>,
    handle: Option<JoinHandle<()>>,
    next_job: u64,
}

/// A job submitted to the updater: cancel it by setting the flag.
pub(crate) struct PendingRestore {
    pub job: u64,
    pub cancel: Arc<AtomicBool>,
}

impl StateUpdater {
    /// Starts the updater of stream thread `thread`. `on_fatal` receives errors the restore consumer's client
    /// reports (refused credentials and the like). `step_time` bounds each poll: how long a cancelled job may
    /// wait to be stopped.
    pub(crate) fn start(
        ctx: Arc<ThreadContext>,
        thread: &str,
        step_time: Duration,
        on_fatal: impl Fn(StreamsError) + Send + Sync + 'static,
    ) -> Result<StateUpdater, StreamsError> {
        let app = &ctx.config.application_id;
        let mut rc = client_config(&ctx.config, ClientKind::RestoreConsumer);
        rc.set("group.id", format!("{app}-restore"))
            .set("client.id", format!("{thread}-restore-consumer"))
            .set("enable.auto.commit", "false")
            // Partitions at their end say so: that ends their restoration without waiting.
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest");
        if !ctx
            .config
            .client_properties(ClientKind::RestoreConsumer)
            .contains_key("fetch.wait.max.ms")
        {
            // A fetch of partitions at their end comes back after this wait (tansu always waits it out): the
            // last step of every restoration.
            rc.set("fetch.wait.max.ms", "100");
        }
        let restore_context = StreamsClientContext::new(
            &ctx.config,
            ClientKind::RestoreConsumer,
            format!("restore consumer {thread}-restore-consumer"),
        )
        .on_fatal(on_fatal);
        let consumer: BaseConsumer<StreamsClientContext> = rc
            .create_with_context(restore_context)
            .map_err(|e| client_error(&ctx.config, ClientKind::RestoreConsumer, e))?;
        // Stores restored from their source topic stop at the application's committed offset, read through a
        // consumer of the application's group that never joins it.
        let offsets_reader = if ctx.topology.has_source_changelogs() {
            let mut oc = client_config(&ctx.config, ClientKind::RestoreConsumer);
            oc.set("group.id", app)
                .set("client.id", format!("{thread}-committed-offsets-reader"))
                .set("enable.auto.commit", "false");
            let context = StreamsClientContext::new(
                &ctx.config,
                ClientKind::RestoreConsumer,
                format!("committed offsets reader {thread}"),
            );
            Some(
                oc.create_with_context::<_, BaseConsumer<StreamsClientContext>>(context)
                    .map_err(|e| client_error(&ctx.config, ClientKind::RestoreConsumer, e))?,
            )
        } else {
            None
        };
        let (commands, command_rx) = mpsc::channel();
        let (outcome_tx, outcomes) = mpsc::channel();
        let name = format!("{thread}-StateUpdater");
        let handle = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let span = tracing::info_span!("state_updater", thread = %name);
                let _enter = span.enter();
                run(
                    &ctx,
                    step_time,
                    &consumer,
                    offsets_reader.as_ref(),
                    &command_rx,
                    &outcome_tx,
                );
            })
            .map_err(|source| StreamsError::Io {
                path: format!("{thread}-StateUpdater"),
                source,
            })?;
        Ok(StateUpdater {
            commands,
            outcomes,
            handle: Some(handle),
            next_job: 0,
        })
    }

    /// Queues the restoration of `task`'s stores.
    pub(crate) fn add(
        &mut self,
        task: TaskId,
        listener: Arc<dyn StateRestoreListener>,
    ) -> Result<PendingRestore, StreamsError> {
        self.queue(task, listener, None)
    }

    /// Queues standby task `task`: its stores are restored, then follow their changelogs until the job is
    /// cancelled; it reports an outcome only when cancelled or failed.
    /// `progress` is kept up to date with where each of its partitions stands.
    pub(crate) fn add_standby(
        &mut self,
        task: TaskId,
        progress: StandbyProgress,
    ) -> Result<PendingRestore, StreamsError> {
        self.queue(
            task,
            Arc::new(crate::runtime::restore::NoopRestoreListener),
            Some(progress),
        )
    }

    fn queue(
        &mut self,
        task: TaskId,
        listener: Arc<dyn StateRestoreListener>,
        standby: Option<StandbyProgress>,
    ) -> Result<PendingRestore, StreamsError> {
        self.next_job += 1;
        let cancel = Arc::new(AtomicBool::new(false));
        self.commands
            .send(Command::Restore(Job {
                task,
                number: self.next_job,
                cancel: cancel.clone(),
                listener,
                standby,
            }))
            .map_err(|_| StreamsError::processor("the state updater stopped"))?;
        Ok(PendingRestore {
            job: self.next_job,
            cancel,
        })
    }

    /// The outcomes reported since the last call.
    pub(crate) fn drain(&self) -> Vec<RestoreOutcome> {
        self.outcomes.try_iter().collect()
    }

    /// Stops the updater (cancel the pending jobs first) and closes the stores of outcomes nobody took.
    pub(crate) fn shutdown(&mut self) {
        let _ = self.commands.send(Command::Shutdown);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        for o in self.outcomes.try_iter() {
            if let Ok(Some(r)) = o.result {
                r.state.close();
            }
        }
    }
}

impl Drop for StateUpdater {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn run(
    ctx: &Arc<ThreadContext>,
    step_time: Duration,
    consumer: &BaseConsumer<StreamsClientContext>,
    offsets_reader: Option<&BaseConsumer<StreamsClientContext>>,
    commands: &Receiver<Command>,
    outcomes: &Sender<RestoreOutcome>,
) {
    let mut queue: VecDeque<Job> = VecDeque::new();
    let mut bulk = BulkRestore::new(Some(ctx.aborted.clone()), ctx.config.task_timeout)
        .with_step_time(step_time);
    loop {
        // Take every waiting command; block only when there is nothing to do. Woken from idle, take what
        // follows within a few milliseconds too: the tasks of one assignment arrive one after another, and are
        // planned and read together.
        let mut woken = false;
        loop {
            let next = if queue.is_empty() && bulk.is_empty() {
                match commands.recv_timeout(Duration::from_millis(500)) {
                    Ok(c) => {
                        woken = true;
                        Some(c)
                    }
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => {
                        bulk.suspend_all(consumer);
                        return;
                    }
                }
            } else if woken {
                commands.recv_timeout(Duration::from_millis(5)).ok()
            } else {
                commands.try_recv().ok()
            };
            match next {
                Some(Command::Restore(job)) => queue.push_back(job),
                Some(Command::Shutdown) => {
                    bulk.suspend_all(consumer);
                    return;
                }
                None => break,
            }
        }
        // Cancelled restorations end first: a task cancelled and queued again needs its stores closed.
        for outcome in bulk.end_cancelled() {
            let failed = outcome.result.is_err();
            let _ = outcomes.send(outcome);
            if failed {
                bulk.suspend_all(consumer);
                return;
            }
        }
        // Plan every waiting task; their partitions join those being read.
        while let Some(job) = queue.pop_front() {
            let planned = if job.cancel.load(Ordering::Relaxed) {
                Ok(Err(RestoreOutcome {
                    task: job.task,
                    job: job.number,
                    result: Ok(None),
                }))
            } else {
                plan_task(ctx, consumer, offsets_reader, job)
            };
            match planned {
                Ok(Ok(bulk_job)) => {
                    let (task, number) = (bulk_job.task, bulk_job.number);
                    if let Err(e) = bulk.add(bulk_job) {
                        let _ = outcomes.send(RestoreOutcome {
                            task,
                            job: number,
                            result: Err(e),
                        });
                        bulk.suspend_all(consumer);
                        return;
                    }
                }
                Ok(Err(outcome)) | Err(outcome) => {
                    let failed = outcome.result.is_err();
                    let _ = outcomes.send(outcome);
                    if failed {
                        // The stream thread fails on this error; nothing more to restore.
                        bulk.suspend_all(consumer);
                        return;
                    }
                }
            }
        }
        if bulk.is_empty() {
            continue;
        }
        for outcome in bulk.step(consumer) {
            let failed = outcome.result.is_err();
            let _ = outcomes.send(outcome);
            if failed {
                bulk.suspend_all(consumer);
                return;
            }
        }
    }
}

/// The application's committed offsets of partition `partition` of `topics`.
fn committed_offsets(
    ctx: &ThreadContext,
    reader: &BaseConsumer<StreamsClientContext>,
    topics: &[String],
    partition: i32,
) -> Result<BTreeMap<(String, i32), i64>, StreamsError> {
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        tpl.add_partition(t, partition);
    }
    let committed = retrying(
        "cannot read the committed offsets of the source topics restored from",
        ctx.config.task_timeout,
        || reader.committed_offsets(tpl.clone(), Duration::from_secs(10)),
    )?;
    Ok(committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some(((e.topic().to_string(), e.partition()), o)),
            _ => None,
        })
        .collect())
}

/// Opens the stores of one task and plans their restoration: `Ok(Ok(job))` to read, `Ok(Err(outcome))` when the
/// job ends here (cancelled while planning), `Err(outcome)` when it failed.
#[allow(clippy::result_large_err)]
fn plan_task(
    ctx: &ThreadContext,
    consumer: &BaseConsumer<StreamsClientContext>,
    offsets_reader: Option<&BaseConsumer<StreamsClientContext>>,
    job: Job,
) -> Result<Result<BulkJob, RestoreOutcome>, RestoreOutcome> {
    let id = job.task;
    let fail = |e: StreamsError| RestoreOutcome {
        task: id,
        job: job.number,
        result: Err(e),
    };
    let span = tracing::info_span!("restore", task = %id);
    let _enter = span.enter();
    let env = ctx.store_env();
    let task_dir = env.state_dir.join(id.to_string());
    let sources: Vec<String> = ctx.subs[id.subtopology]
        .stores
        .iter()
        .filter_map(|s| ctx.topology.source_changelog_of(s))
        .collect();
    let committed = match offsets_reader {
        Some(reader) if !sources.is_empty() => {
            committed_offsets(ctx, reader, &sources, id.partition).map_err(fail)?
        }
        _ => BTreeMap::new(),
    };
    let mut restorer = ChangelogRestorer {
        consumer,
        checkpoint: checkpoint::read(&task_dir).map_err(fail)?,
        listener: job.listener.clone(),
        positions: BTreeMap::new(),
        plans: Vec::new(),
        timeout: ctx.config.task_timeout,
        committed,
    };
    let sub = &ctx.subs[id.subtopology];
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        StateManager::open(&ctx.topology, sub, id, &env, Some(&mut restorer))
    }))
    .unwrap_or_else(|payload| {
        Err(StreamsError::Panic {
            thread: std::thread::current()
                .name()
                .unwrap_or("state updater")
                .to_string(),
            task: Some(id),
            processor: None,
            message: crate::error::panic_message(&*payload),
        })
    });
    match opened {
        Ok(mut state) => Ok(Ok(BulkJob {
            task: id,
            number: job.number,
            cancel: job.cancel,
            listener: job.listener,
            state: {
                if let Some(progress) = &job.standby {
                    // A standby's stores are read by stale queries while it writes them.
                    state.stores = progress.share(std::mem::take(&mut state.stores));
                }
                state
            },
            checkpoint: restorer.checkpoint,
            positions: restorer.positions,
            plans: restorer.plans,
            progress: job.standby,
        })),
        Err(_) if job.cancel.load(Ordering::Relaxed) => {
            tracing::info!(task = %id, "restoration cancelled");
            Ok(Err(RestoreOutcome {
                task: id,
                job: job.number,
                result: Ok(None),
            }))
        }
        Err(e) => Err(fail(e)),
    }
}
