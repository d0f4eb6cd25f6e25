//! Task placement with high availability: a port of Kafka Streams' KIP-441 assignor
//! (`HighAvailabilityTaskAssignor`, with `TaskMovement`, `ConstrainedPrioritySet`, `DefaultStandbyTaskAssignor`
//! and `ClientState.computeTaskLags`), **without rack awareness**: it behaves as Kafka does with
//! `rack.aware.assignment.strategy = none` and no `rack.aware.assignment.tags`. The algorithm, its orderings and
//! the scenarios the tests transcribe are written down in `docs/design/kip-441-notes.md`.
//!
//! Given each client's (instance's) thread count and the offset sums it reports for the stateful tasks it has
//! state for, [`assign`] decides which client runs each task (the actives), which ones keep copies (the standbys,
//! warm-ups included), and whether a follow-up probing rebalance is needed:
//!
//! 1. Stateful actives are dealt round-robin over the clients, then balanced per thread. This ignores where they
//!    ran before.
//! 2. `num_standby_replicas` standbys of every stateful task go to the least-loaded clients not holding it, and
//!    are balanced per thread.
//! 3. An active on a client that is not caught up (lag above `acceptable_recovery_lag`) moves to a caught-up
//!    client (one holding a standby first, the least loaded otherwise) or, with none, to the most caught-up one.
//!    The client it leaves keeps a warm-up copy while the budget of `max_warmup_replicas` lasts. Standbys move
//!    the same way. Any such move asks for a probing rebalance.
//! 4. Stateless tasks go, one by one, to the client with the fewest actives per thread.
//!
//! The previous assignment reaches the algorithm only through the lags: a task's previous running active reports
//! [`LATEST_OFFSET`], which always counts as caught up.
//!
//! # Ordering of clients
//!
//! Every tie between clients is broken by the client's order. Kafka orders its process ids (UUIDs) with
//! `UUID.compareTo`, which compares the two 64-bit halves as **signed** longs. Here clients are keyed by a
//! string and ordered as strings (byte-wise). For two canonical UUID strings the orders differ when the first
//! bit of either half is set (Kafka puts `8…` before `1…`), so the same inputs can break ties differently than a
//! Kafka leader would. The placement stays deterministic: every instance computing it gets the same result.
//!
//! Everything else is kept: `BTreeMap`/`BTreeSet` wherever Kafka uses a `TreeMap`/`TreeSet`, loads compared as
//! `f64` as Kafka compares `double`s, and the movement queue polled in the exact order of
//! `java.util.PriorityQueue` (see [`JavaPriorityQueue`]).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::processor::TaskId;

/// The offset sum a client reports for a task it runs as a RUNNING active (Kafka's `Task.LATEST_OFFSET`). It is
/// also the lag [`task_lags`] gives such a task, and a client with that lag always counts as caught up.
pub(crate) const LATEST_OFFSET: i64 = -2;

/// The offset sum of a task whose offsets are not known (Kafka's `SubscriptionInfo.UNKNOWN_OFFSET_SUM`), and the
/// lag [`task_lags`] gives it. A client with that lag is not caught up (unless the acceptable recovery lag is
/// unbounded), yet sorts first by lag.
pub(crate) const UNKNOWN_OFFSET_SUM: i64 = -3;

/// Kafka's default `acceptable.recovery.lag`.
pub(crate) const DEFAULT_ACCEPTABLE_RECOVERY_LAG: u64 = 10_000;

/// Kafka's default `max.warmup.replicas`.
pub(crate) const DEFAULT_MAX_WARMUP_REPLICAS: usize = 2;

/// Kafka's default `num.standby.replicas`.
pub(crate) const DEFAULT_NUM_STANDBY_REPLICAS: usize = 0;

/// Settings of one assignment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AssignmentConfigs {
    /// The largest lag (in records, summed over the task's changelogs) at which a client counts as caught up on a
    /// task (`acceptable.recovery.lag`). `i64::MAX` (Kafka's `Long.MAX_VALUE`) or more means every client is
    /// caught up on every task.
    pub acceptable_recovery_lag: u64,
    /// How many warm-up replicas one assignment may create, over all clients and tasks (`max.warmup.replicas`).
    /// At least 1.
    pub max_warmup_replicas: usize,
    /// Standby replicas per stateful task (`num.standby.replicas`).
    pub num_standby_replicas: usize,
}

impl Default for AssignmentConfigs {
    /// Kafka's defaults: recovery lag 10 000, 2 warm-ups, no standbys.
    fn default() -> Self {
        Self {
            acceptable_recovery_lag: DEFAULT_ACCEPTABLE_RECOVERY_LAG,
            max_warmup_replicas: DEFAULT_MAX_WARMUP_REPLICAS,
            num_standby_replicas: DEFAULT_NUM_STANDBY_REPLICAS,
        }
    }
}

/// What one client (instance, keyed by its process id string) brings: its thread count and the offset sums it
/// reports.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientInput {
    /// The number of stream threads of the client. Must be at least 1.
    pub capacity: usize,
    /// Per task the client has state for: the sum of its checkpointed changelog offsets, or [`LATEST_OFFSET`]
    /// for a task it runs as a running active, or [`UNKNOWN_OFFSET_SUM`]. Other negative values are invalid.
    pub offset_sums: BTreeMap<TaskId, i64>,
}

/// What one client is given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ClientAssignment {
    /// The tasks the client runs.
    pub active: BTreeSet<TaskId>,
    /// The tasks the client keeps a copy of: standby replicas and warm-ups alike.
    pub standby: BTreeSet<TaskId>,
}

/// The role in which a client holds a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The client runs the task.
    Active,
    /// The client keeps a copy of the task's state.
    Standby,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Active => "active",
            Role::Standby => "standby",
        })
    }
}

/// Why [`assign`] could not assign. The first group is bad input; the second reports an inconsistency inside the
/// algorithm (Kafka's `IllegalArgumentException`/`IllegalStateException`), which valid input never causes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AssignError {
    /// A client has no threads: every load divides by the capacity.
    #[error("client {client} has capacity 0 (every client needs at least one stream thread)")]
    ZeroCapacity {
        /// The client.
        client: String,
    },
    /// `max_warmup_replicas` is 0; Kafka's config validation requires at least 1.
    #[error("max.warmup.replicas must be at least 1")]
    ZeroMaxWarmupReplicas,
    /// There are tasks but no client to run them.
    #[error("{tasks} tasks to assign but no clients")]
    NoClients {
        /// The number of tasks.
        tasks: usize,
    },
    /// A task has an end offset sum (so is stateful) but is not among all tasks.
    #[error("stateful task {task} is not among the tasks to assign")]
    StatefulTaskNotInAllTasks {
        /// The task.
        task: TaskId,
    },
    /// A task's end offset sum is negative (Kafka uses another assignor when end offsets are unknown).
    #[error("task {task} has a negative end offset sum {end_offset_sum}")]
    NegativeEndOffsetSum {
        /// The task.
        task: TaskId,
        /// Its end offset sum.
        end_offset_sum: i64,
    },
    /// A client reports a negative offset sum other than the two sentinels.
    #[error("client {client} reports offset sum {offset_sum} for task {task} (only -2 and -3 may be negative)")]
    InvalidOffsetSum {
        /// The client.
        client: String,
        /// The task.
        task: TaskId,
        /// The offset sum reported.
        offset_sum: i64,
    },
    /// Internal: a task was given to a client that already holds it.
    #[error("task {task} is already assigned to client {client}")]
    AlreadyAssigned {
        /// The client.
        client: String,
        /// The task.
        task: TaskId,
    },
    /// Internal: a task was taken from a client that does not hold it in that role.
    #[error("task {task} is not assigned as {role} to client {client}")]
    NotAssigned {
        /// The client.
        client: String,
        /// The task.
        task: TaskId,
        /// The role it was expected in.
        role: Role,
    },
    /// Internal: the lag of a client for a task that is not stateful was asked for.
    #[error("client {client} has no lag for task {task}")]
    UnknownLag {
        /// The client.
        client: String,
        /// The task.
        task: TaskId,
    },
    /// Internal: a task has no caught-up set or lag order.
    #[error("no caught-up clients or lag order computed for task {task}")]
    UninitializedTask {
        /// The task.
        task: TaskId,
    },
    /// Internal: a scheduled movement found no more caught-up client.
    #[error("task {task} was scheduled to move to a more caught-up client but none exists")]
    NoMoreCaughtUpClient {
        /// The task.
        task: TaskId,
    },
}

/// The lag of each client for each stateful task, as ClientState.computeTaskLags does (end_offset_sums: per
/// stateful task, the sum of its changelogs' end offsets).
///
/// For every task of `end_offset_sums`, with `offset` the client's offset sum for it (0 when it reports none):
/// [`LATEST_OFFSET`] and [`UNKNOWN_OFFSET_SUM`] stay as they are; an offset beyond the end (corrupted state,
/// restored from scratch) gives the end offset sum; otherwise the lag is `end - offset`. So a client without state
/// for a task lags by the whole end offset sum. Tasks the client reports that are not in `end_offset_sums` are
/// ignored. The subtraction saturates (Kafka's would wrap) for invalid negative offset sums, which [`assign`]
/// rejects beforehand.
pub(crate) fn task_lags(
    input: &ClientInput,
    end_offset_sums: &BTreeMap<TaskId, i64>,
) -> BTreeMap<TaskId, i64> {
    end_offset_sums
        .iter()
        .map(|(&task, &end_offset_sum)| {
            let offset_sum = input.offset_sums.get(&task).copied().unwrap_or(0);
            let lag = if offset_sum == LATEST_OFFSET || offset_sum == UNKNOWN_OFFSET_SUM {
                offset_sum
            } else if end_offset_sum < offset_sum {
                tracing::warn!(
                    %task,
                    end_offset_sum,
                    offset_sum,
                    "task's end offset sum is below the client's offset sum: its state is probably corrupted and \
                     would be restored from scratch; the assignor counts the whole end offset sum as its lag"
                );
                end_offset_sum
            } else {
                end_offset_sum.saturating_sub(offset_sum)
            };
            (task, lag)
        })
        .collect()
}

/// The assignment and whether a probing rebalance is needed. Clients are ordered by their key, as strings.
///
/// `end_offset_sums` has one entry per stateful task (its keys are the stateful tasks); every other task of
/// `all_tasks` is stateless and gets an active only. Every client of `clients` is in the result, with empty sets
/// when it is given nothing. Ties between clients follow the order of their keys as strings, where Kafka compares
/// process-id UUIDs as signed longs (see the module documentation).
///
/// The second value is true when some active or standby had to move to a more caught-up client: the group should
/// rebalance again (Kafka: after `probing.rebalance.interval.ms`) to move tasks back once their warm-ups catch up.
///
/// Errors on invalid input: a client with capacity 0, `max_warmup_replicas == 0`, tasks without clients, a
/// stateful task missing from `all_tasks`, a negative end offset sum, or a negative offset sum other than
/// [`LATEST_OFFSET`] and [`UNKNOWN_OFFSET_SUM`].
pub(crate) fn assign(
    clients: &BTreeMap<String, ClientInput>,
    all_tasks: &BTreeSet<TaskId>,
    end_offset_sums: &BTreeMap<TaskId, i64>,
    configs: AssignmentConfigs,
) -> Result<(BTreeMap<String, ClientAssignment>, bool), AssignError> {
    if configs.max_warmup_replicas == 0 {
        return Err(AssignError::ZeroMaxWarmupReplicas);
    }
    for (&task, &end_offset_sum) in end_offset_sums {
        if !all_tasks.contains(&task) {
            return Err(AssignError::StatefulTaskNotInAllTasks { task });
        }
        if end_offset_sum < 0 {
            return Err(AssignError::NegativeEndOffsetSum {
                task,
                end_offset_sum,
            });
        }
    }
    for (client, input) in clients {
        if input.capacity == 0 {
            return Err(AssignError::ZeroCapacity {
                client: client.clone(),
            });
        }
        for (&task, &offset_sum) in &input.offset_sums {
            if offset_sum < 0 && offset_sum != LATEST_OFFSET && offset_sum != UNKNOWN_OFFSET_SUM {
                return Err(AssignError::InvalidOffsetSum {
                    client: client.clone(),
                    task,
                    offset_sum,
                });
            }
        }
    }
    if clients.is_empty() && !all_tasks.is_empty() {
        return Err(AssignError::NoClients {
            tasks: all_tasks.len(),
        });
    }

    let mut states: Vec<ClientState> = clients
        .iter()
        .map(|(client, input)| {
            ClientState::new(
                client.clone(),
                input.capacity,
                task_lags(input, end_offset_sums),
            )
        })
        .collect();
    let stateful: BTreeSet<TaskId> = end_offset_sums.keys().copied().collect();
    let probing_rebalance_needed = assign_tasks(&mut states, all_tasks, &stateful, configs)?;
    tracing::debug!(
        clients = states.len(),
        tasks = all_tasks.len(),
        stateful = stateful.len(),
        probing_rebalance_needed,
        "decided on task assignment"
    );
    let assignment = states
        .into_iter()
        .map(|state| {
            (
                state.id,
                ClientAssignment {
                    active: state.active,
                    standby: state.standby,
                },
            )
        })
        .collect();
    Ok((assignment, probing_rebalance_needed))
}

/// Per stateful task, the clients (by index in key order) caught up on it.
type CaughtUp = BTreeMap<TaskId, BTreeSet<usize>>;

/// Per stateful task, every client (by index in key order) by (lag, client order).
type ByLag = BTreeMap<TaskId, Vec<usize>>;

/// One client during an assignment (Kafka's `ClientState`, reduced to what the algorithm reads). Clients are
/// identified by their index in key order, which is their order for every tie-break.
#[derive(Debug, Clone)]
struct ClientState {
    id: String,
    capacity: usize,
    active: BTreeSet<TaskId>,
    standby: BTreeSet<TaskId>,
    lags: BTreeMap<TaskId, i64>,
}

impl ClientState {
    fn new(id: impl Into<String>, capacity: usize, lags: BTreeMap<TaskId, i64>) -> Self {
        Self {
            id: id.into(),
            capacity,
            active: BTreeSet::new(),
            standby: BTreeSet::new(),
            lags,
        }
    }

    fn tasks(&self, role: Role) -> &BTreeSet<TaskId> {
        match role {
            Role::Active => &self.active,
            Role::Standby => &self.standby,
        }
    }

    /// Gives the task in `role`; a client never holds a task twice, in either role.
    fn assign(&mut self, role: Role, task: TaskId) -> Result<(), AssignError> {
        if self.has_assigned_task(task) {
            return Err(AssignError::AlreadyAssigned {
                client: self.id.clone(),
                task,
            });
        }
        match role {
            Role::Active => self.active.insert(task),
            Role::Standby => self.standby.insert(task),
        };
        Ok(())
    }

    fn unassign(&mut self, role: Role, task: TaskId) -> Result<(), AssignError> {
        let removed = match role {
            Role::Active => self.active.remove(&task),
            Role::Standby => self.standby.remove(&task),
        };
        if removed {
            Ok(())
        } else {
            Err(AssignError::NotAssigned {
                client: self.id.clone(),
                task,
                role,
            })
        }
    }

    fn assign_active(&mut self, task: TaskId) -> Result<(), AssignError> {
        self.assign(Role::Active, task)
    }

    fn assign_standby(&mut self, task: TaskId) -> Result<(), AssignError> {
        self.assign(Role::Standby, task)
    }

    fn unassign_active(&mut self, task: TaskId) -> Result<(), AssignError> {
        self.unassign(Role::Active, task)
    }

    fn unassign_standby(&mut self, task: TaskId) -> Result<(), AssignError> {
        self.unassign(Role::Standby, task)
    }

    fn has_assigned_task(&self, task: TaskId) -> bool {
        self.active.contains(&task) || self.standby.contains(&task)
    }

    fn has_standby_task(&self, task: TaskId) -> bool {
        self.standby.contains(&task)
    }

    fn assigned_task_count(&self) -> usize {
        self.active.len() + self.standby.len()
    }

    /// Actives per thread.
    fn active_task_load(&self) -> f64 {
        self.active.len() as f64 / self.capacity as f64
    }

    /// Actives and standbys per thread.
    fn assigned_task_load(&self) -> f64 {
        self.assigned_task_count() as f64 / self.capacity as f64
    }

    fn lag_for(&self, task: TaskId) -> Result<i64, AssignError> {
        self.lags
            .get(&task)
            .copied()
            .ok_or_else(|| AssignError::UnknownLag {
                client: self.id.clone(),
                task,
            })
    }
}

/// Kafka's `HighAvailabilityTaskAssignor.assign` on clients whose lags are known and who hold nothing yet.
fn assign_tasks(
    states: &mut [ClientState],
    all_tasks: &BTreeSet<TaskId>,
    stateful: &BTreeSet<TaskId>,
    configs: AssignmentConfigs,
) -> Result<bool, AssignError> {
    assign_active_stateful_tasks(states, stateful)?;
    assign_standby_replica_tasks(states, stateful, configs.num_standby_replicas)?;

    // One budget for both kinds of movements; it keeps going down past zero, as Kafka's counter does.
    let mut remaining_warmup_replicas =
        i64::try_from(configs.max_warmup_replicas).unwrap_or(i64::MAX);
    let caught_up = tasks_to_caught_up_clients(stateful, states, configs.acceptable_recovery_lag)?;
    let by_lag = tasks_to_clients_by_lag(stateful, states)?;
    // The standbys created as warm-ups for moved actives: the standby movements leave them in place.
    let mut warmups: BTreeMap<usize, BTreeSet<TaskId>> = BTreeMap::new();

    let active_movements = assign_active_task_movements(
        &caught_up,
        &by_lag,
        states,
        &mut warmups,
        &mut remaining_warmup_replicas,
    )?;
    let standby_movements = assign_standby_task_movements(
        &caught_up,
        &by_lag,
        states,
        &mut remaining_warmup_replicas,
        &warmups,
    )?;

    let stateless: BTreeSet<TaskId> = all_tasks.difference(stateful).copied().collect();
    assign_stateless_active_tasks(states, &stateless)?;

    Ok(active_movements + standby_movements > 0)
}

/// Step 1: stateful actives round-robin over the clients in order, then balanced per thread. Not sticky.
fn assign_active_stateful_tasks(
    states: &mut [ClientState],
    stateful: &BTreeSet<TaskId>,
) -> Result<(), AssignError> {
    if states.is_empty() {
        return if stateful.is_empty() {
            Ok(())
        } else {
            Err(AssignError::NoClients {
                tasks: stateful.len(),
            })
        };
    }
    let clients = states.len();
    for (i, &task) in stateful.iter().enumerate() {
        states[i % clients].assign_active(task)?;
    }
    balance_tasks_over_threads(states, Role::Active)
}

/// Moves tasks of `role` from more to less loaded clients (load = actives and standbys per thread) until no move
/// improves a pair: full passes over (source, destination) in client order, the source's tasks in task order.
fn balance_tasks_over_threads(states: &mut [ClientState], role: Role) -> Result<(), AssignError> {
    let clients = states.len();
    let mut keep_balancing = true;
    while keep_balancing {
        keep_balancing = false;
        for source in 0..clients {
            for destination in 0..clients {
                if source == destination {
                    continue;
                }
                let source_tasks: Vec<TaskId> =
                    states[source].tasks(role).iter().copied().collect();
                let mut candidates = source_tasks.into_iter();
                while should_move_a_task(&states[source], &states[destination]) {
                    let Some(task) = candidates.next() else { break };
                    if !states[destination].has_assigned_task(task) {
                        states[source].unassign(role, task)?;
                        states[destination].assign(role, task)?;
                        keep_balancing = true;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Whether moving one task from `source` to `destination` strictly lowers their skew in load per thread without
/// reversing it.
fn should_move_a_task(source: &ClientState, destination: &ClientState) -> bool {
    let skew = source.assigned_task_load() - destination.assigned_task_load();
    if skew <= 0.0 {
        return false;
    }
    let proposed_destination =
        (destination.assigned_task_count() as f64 + 1.0) / destination.capacity as f64;
    let proposed_source = (source.assigned_task_count() as f64 - 1.0) / source.capacity as f64;
    let proposed_skew = proposed_source - proposed_destination;
    if proposed_skew < 0.0 {
        return false;
    }
    proposed_skew < skew
}

/// Step 2: the standbys (Kafka's `DefaultStandbyTaskAssignor`), then balanced per thread.
fn assign_standby_replica_tasks(
    states: &mut [ClientState],
    stateful: &BTreeSet<TaskId>,
    num_standby_replicas: usize,
) -> Result<(), AssignError> {
    if num_standby_replicas == 0 {
        return Ok(());
    }
    assign_standbys_to_least_loaded_clients(states, stateful, num_standby_replicas)?;
    balance_tasks_over_threads(states, Role::Standby)
}

/// For each stateful task in order, up to `num_standby_replicas` times: a standby to the least-loaded client not
/// holding the task. With too few clients the task gets fewer standbys (a warning, no error).
fn assign_standbys_to_least_loaded_clients(
    states: &mut [ClientState],
    stateful: &BTreeSet<TaskId>,
    num_standby_replicas: usize,
) -> Result<(), AssignError> {
    let mut clients_by_task_load = ConstrainedPrioritySet::<[ClientState]>::new(
        |states, client, task| !states[client].has_assigned_task(task),
        |states, client| states[client].assigned_task_load(),
    );
    clients_by_task_load.offer_all(0..states.len());
    for &task in stateful {
        let mut remaining = num_standby_replicas;
        while remaining > 0 {
            let Some(client) = clients_by_task_load.poll_any(states, task) else {
                break;
            };
            states[client].assign_standby(task)?;
            remaining -= 1;
            clients_by_task_load.offer(client);
        }
        if remaining > 0 {
            tracing::warn!(
                %task,
                missing = remaining,
                wanted = num_standby_replicas,
                "not enough clients for all standby replicas of the task: add instances to keep the requested \
                 number of standby replicas"
            );
        }
    }
    Ok(())
}

/// Per stateful task, the clients caught up on it, in client order: lag [`LATEST_OFFSET`], or an unbounded
/// acceptable lag, or `0 <= lag <= acceptable_recovery_lag`.
fn tasks_to_caught_up_clients(
    stateful: &BTreeSet<TaskId>,
    states: &[ClientState],
    acceptable_recovery_lag: u64,
) -> Result<CaughtUp, AssignError> {
    let unbounded = acceptable_recovery_lag >= i64::MAX as u64;
    let mut result = BTreeMap::new();
    for &task in stateful {
        let mut caught_up = BTreeSet::new();
        for (client, state) in states.iter().enumerate() {
            let lag = state.lag_for(task)?;
            let acceptable = u64::try_from(lag).is_ok_and(|lag| lag <= acceptable_recovery_lag);
            if lag == LATEST_OFFSET || unbounded || acceptable {
                caught_up.insert(client);
            }
        }
        result.insert(task, caught_up);
    }
    Ok(result)
}

/// Per stateful task, every client by (lag, client order). The negative sentinels come first, -3 before -2.
fn tasks_to_clients_by_lag(
    stateful: &BTreeSet<TaskId>,
    states: &[ClientState],
) -> Result<ByLag, AssignError> {
    let mut result = BTreeMap::new();
    for &task in stateful {
        let mut by_lag = states
            .iter()
            .enumerate()
            .map(|(client, state)| state.lag_for(task).map(|lag| (lag, client)))
            .collect::<Result<Vec<_>, _>>()?;
        by_lag.sort_unstable();
        result.insert(task, by_lag.into_iter().map(|(_, client)| client).collect());
    }
    Ok(result)
}

/// Whether `client` is caught up on `task`.
fn task_is_caught_up_on_client(
    task: TaskId,
    client: usize,
    caught_up: &CaughtUp,
) -> Result<bool, AssignError> {
    caught_up
        .get(&task)
        .map(|clients| clients.contains(&client))
        .ok_or(AssignError::UninitializedTask { task })
}

/// Whether `client` is not caught up on `task` and the first client by lag has a strictly smaller lag.
fn task_is_not_caught_up_on_client_and_other_more_caught_up_clients_exist(
    task: TaskId,
    client: usize,
    states: &[ClientState],
    caught_up: &CaughtUp,
    by_lag: &ByLag,
) -> Result<bool, AssignError> {
    let clients_by_lag = by_lag
        .get(&task)
        .ok_or(AssignError::UninitializedTask { task })?;
    if task_is_caught_up_on_client(task, client, caught_up)? {
        return Ok(false);
    }
    let &most_caught_up = clients_by_lag
        .first()
        .ok_or(AssignError::UninitializedTask { task })?;
    Ok(states[most_caught_up].lag_for(task)? < states[client].lag_for(task)?)
}

/// A planned move of `task` away from `destination` (named so because the warm-up goes to it, for the task to
/// come back later).
#[derive(Debug, Clone, Copy)]
struct TaskMovement {
    task: TaskId,
    destination: usize,
    num_caught_up_clients: usize,
}

impl TaskMovement {
    fn new(task: TaskId, destination: usize, caught_up: &CaughtUp) -> Self {
        let num_caught_up_clients = caught_up.get(&task).map_or(0, BTreeSet::len);
        Self {
            task,
            destination,
            num_caught_up_clients,
        }
    }

    /// Tasks with the fewest caught-up clients first, then by task.
    fn priority(a: &Self, b: &Self) -> Ordering {
        a.num_caught_up_clients
            .cmp(&b.num_caught_up_clients)
            .then(a.task.cmp(&b.task))
    }
}

/// The set of caught-up clients, least loaded (actives and standbys per thread) first.
fn caught_up_clients_by_task_load(
    caught_up: &CaughtUp,
) -> ConstrainedPrioritySet<'_, [ClientState]> {
    ConstrainedPrioritySet::<[ClientState]>::new(
        move |_, client, task| {
            caught_up
                .get(&task)
                .is_some_and(|clients| clients.contains(&client))
        },
        |states, client| states[client].assigned_task_load(),
    )
}

/// Step 3 for actives (Kafka's `TaskMovement.assignActiveTaskMovements`): every active on a client that is not
/// caught up, while a client with a smaller lag exists, moves. Returns the number of movements scheduled.
fn assign_active_task_movements(
    caught_up: &CaughtUp,
    by_lag: &ByLag,
    states: &mut [ClientState],
    warmups: &mut BTreeMap<usize, BTreeSet<TaskId>>,
    remaining_warmup_replicas: &mut i64,
) -> Result<usize, AssignError> {
    let mut caught_up_clients = caught_up_clients_by_task_load(caught_up);
    let mut movements = JavaPriorityQueue::new(TaskMovement::priority);
    for client in 0..states.len() {
        for &task in &states[client].active {
            if task_is_not_caught_up_on_client_and_other_more_caught_up_clients_exist(
                task, client, states, caught_up, by_lag,
            )? {
                movements.add(TaskMovement::new(task, client, caught_up));
            }
        }
        caught_up_clients.offer(client);
    }

    let movements_needed = movements.len();
    while let Some(movement) = movements.poll() {
        let moved = try_to_swap_standby_and_active_on_caught_up_client(
            states,
            &mut caught_up_clients,
            movement,
        )? || try_to_move_active_to_caught_up_client_and_try_to_warm_up(
            states,
            warmups,
            remaining_warmup_replicas,
            &mut caught_up_clients,
            movement,
        )? || try_to_move_active_to_most_caught_up_client(
            by_lag,
            states,
            warmups,
            remaining_warmup_replicas,
            &mut caught_up_clients,
            movement,
        )?;
        if !moved {
            return Err(AssignError::NoMoreCaughtUpClient {
                task: movement.task,
            });
        }
    }
    Ok(movements_needed)
}

/// Step 3 for standbys (Kafka's `TaskMovement.assignStandbyTaskMovements`): a standby (not a warm-up of step 3's
/// actives) on a client that is not caught up moves to the least-loaded caught-up client without the task, or to
/// the most caught-up one ranking before it. Returns the number of standbys moved.
fn assign_standby_task_movements(
    caught_up: &CaughtUp,
    by_lag: &ByLag,
    states: &mut [ClientState],
    remaining_warmup_replicas: &mut i64,
    warmups: &BTreeMap<usize, BTreeSet<TaskId>>,
) -> Result<usize, AssignError> {
    let mut caught_up_clients = caught_up_clients_by_task_load(caught_up);
    let mut movements = JavaPriorityQueue::new(TaskMovement::priority);
    for destination in 0..states.len() {
        for &task in &states[destination].standby {
            let is_warmup = warmups
                .get(&destination)
                .is_some_and(|tasks| tasks.contains(&task));
            if !is_warmup
                && task_is_not_caught_up_on_client_and_other_more_caught_up_clients_exist(
                    task,
                    destination,
                    states,
                    caught_up,
                    by_lag,
                )?
            {
                movements.add(TaskMovement::new(task, destination, caught_up));
            }
        }
        caught_up_clients.offer(destination);
    }

    let mut movements_done = 0;
    while let Some(movement) = movements.poll() {
        let task = movement.task;
        let eligible =
            |states: &[ClientState], client: usize| !states[client].has_assigned_task(task);
        let mut source = caught_up_clients.poll(states, task, eligible);
        if source.is_none() {
            source = most_caught_up_eligible_client(
                by_lag,
                |client| eligible(states, client),
                task,
                movement.destination,
            )?;
        }
        // Without a source, no client without the task is more caught up: the standby stays where it is.
        if let Some(source) = source {
            move_standby_and_try_to_warm_up(
                remaining_warmup_replicas,
                task,
                source,
                movement.destination,
                states,
            )?;
            caught_up_clients.offer_all([source, movement.destination]);
            movements_done += 1;
        }
    }
    Ok(movements_done)
}

/// A caught-up client holding a standby of the task takes over the active; the old owner keeps a standby. Uses no
/// warm-up.
fn try_to_swap_standby_and_active_on_caught_up_client(
    states: &mut [ClientState],
    caught_up_clients: &mut ConstrainedPrioritySet<'_, [ClientState]>,
    movement: TaskMovement,
) -> Result<bool, AssignError> {
    let task = movement.task;
    let Some(source) = caught_up_clients.poll(states, task, |states, client| {
        states[client].has_standby_task(task)
    }) else {
        return Ok(false);
    };
    swap_standby_and_active(task, source, movement.destination, states)?;
    caught_up_clients.offer_all([source, movement.destination]);
    Ok(true)
}

/// The least-loaded caught-up client takes over the active; the old owner keeps a warm-up if the budget allows.
fn try_to_move_active_to_caught_up_client_and_try_to_warm_up(
    states: &mut [ClientState],
    warmups: &mut BTreeMap<usize, BTreeSet<TaskId>>,
    remaining_warmup_replicas: &mut i64,
    caught_up_clients: &mut ConstrainedPrioritySet<'_, [ClientState]>,
    movement: TaskMovement,
) -> Result<bool, AssignError> {
    let Some(source) = caught_up_clients.poll_any(states, movement.task) else {
        return Ok(false);
    };
    move_active_and_try_to_warm_up(
        remaining_warmup_replicas,
        movement.task,
        source,
        movement.destination,
        states,
        warmups,
    )?;
    caught_up_clients.offer_all([source, movement.destination]);
    Ok(true)
}

/// With no caught-up client: the most caught-up client ranking before the owner takes over the active, by a swap
/// if it holds a standby, otherwise with a warm-up left behind if the budget allows.
fn try_to_move_active_to_most_caught_up_client(
    by_lag: &ByLag,
    states: &mut [ClientState],
    warmups: &mut BTreeMap<usize, BTreeSet<TaskId>>,
    remaining_warmup_replicas: &mut i64,
    caught_up_clients: &mut ConstrainedPrioritySet<'_, [ClientState]>,
    movement: TaskMovement,
) -> Result<bool, AssignError> {
    let task = movement.task;
    let Some(source) =
        most_caught_up_eligible_client(by_lag, |_| true, task, movement.destination)?
    else {
        return Ok(false);
    };
    if states[source].has_standby_task(task) {
        swap_standby_and_active(task, source, movement.destination, states)?;
    } else {
        move_active_and_try_to_warm_up(
            remaining_warmup_replicas,
            task,
            source,
            movement.destination,
            states,
            warmups,
        )?;
    }
    caught_up_clients.offer_all([source, movement.destination]);
    Ok(true)
}

/// The first client by lag that meets `eligible`, looking only at clients ranking before `destination`.
fn most_caught_up_eligible_client(
    by_lag: &ByLag,
    eligible: impl Fn(usize) -> bool,
    task: TaskId,
    destination: usize,
) -> Result<Option<usize>, AssignError> {
    let clients = by_lag
        .get(&task)
        .ok_or(AssignError::UninitializedTask { task })?;
    Ok(clients
        .iter()
        .copied()
        .take_while(|&client| client != destination)
        .find(|&client| eligible(client)))
}

/// Takes one from the warm-up budget and tells whether there was any left. The budget goes below zero.
fn take_warmup(remaining_warmup_replicas: &mut i64) -> bool {
    let had_some = *remaining_warmup_replicas > 0;
    *remaining_warmup_replicas = remaining_warmup_replicas.saturating_sub(1);
    had_some
}

fn move_active_and_try_to_warm_up(
    remaining_warmup_replicas: &mut i64,
    task: TaskId,
    source: usize,
    destination: usize,
    states: &mut [ClientState],
    warmups: &mut BTreeMap<usize, BTreeSet<TaskId>>,
) -> Result<(), AssignError> {
    states[source].assign_active(task)?;
    let warmups_of_destination = warmups.entry(destination).or_default();
    states[destination].unassign_active(task)?;
    if take_warmup(remaining_warmup_replicas) {
        states[destination].assign_standby(task)?;
        warmups_of_destination.insert(task);
    }
    Ok(())
}

fn move_standby_and_try_to_warm_up(
    remaining_warmup_replicas: &mut i64,
    task: TaskId,
    source: usize,
    destination: usize,
    states: &mut [ClientState],
) -> Result<(), AssignError> {
    states[source].assign_standby(task)?;
    // With budget left, the destination keeps its copy as a warm-up.
    if !take_warmup(remaining_warmup_replicas) {
        states[destination].unassign_standby(task)?;
    }
    Ok(())
}

fn swap_standby_and_active(
    task: TaskId,
    source: usize,
    destination: usize,
    states: &mut [ClientState],
) -> Result<(), AssignError> {
    states[source].unassign_standby(task)?;
    states[source].assign_active(task)?;
    states[destination].unassign_active(task)?;
    states[destination].assign_standby(task)
}

/// Step 4: each stateless task in order to the client with the fewest actives per thread (standbys not counted).
fn assign_stateless_active_tasks(
    states: &mut [ClientState],
    stateless: &BTreeSet<TaskId>,
) -> Result<(), AssignError> {
    let mut clients_by_active_load = ConstrainedPrioritySet::<[ClientState]>::new(
        |_, _, _| true,
        |states, client| states[client].active_task_load(),
    );
    clients_by_active_load.offer_all(0..states.len());
    for &task in stateless {
        let client =
            clients_by_active_load
                .poll_any(states, task)
                .ok_or(AssignError::NoClients {
                    tasks: stateless.len(),
                })?;
        states[client].assign_active(task)?;
        clients_by_active_load.offer(client);
    }
    Ok(())
}

/// Whether a client (by index) may take a task, given the state `S`.
type Constraint<'a, S> = Box<dyn Fn(&S, usize, TaskId) -> bool + 'a>;

/// The weight of a client (by index), given the state `S`.
type Weight<'a, S> = Box<dyn Fn(&S, usize) -> f64 + 'a>;

/// Kafka's `ConstrainedPrioritySet`: the clients offered and not polled since, polled least weight first (ties by
/// client order) among those meeting a constraint. A polled client leaves the set until it is offered again.
///
/// Kafka keeps a heap whose comparator reads the weights when it runs. Every client whose weight changes is
/// offered again (removed and re-inserted) before the next poll, and (weight, client) is a total order, so the
/// heap always yields the minimum: a scan over the members at poll time gives the same answers. The weights are
/// read from the state `S` passed to [`ConstrainedPrioritySet::poll`].
struct ConstrainedPrioritySet<'a, S: ?Sized> {
    constraint: Constraint<'a, S>,
    weight: Weight<'a, S>,
    members: BTreeSet<usize>,
}

impl<'a, S: ?Sized> ConstrainedPrioritySet<'a, S> {
    fn new(
        constraint: impl Fn(&S, usize, TaskId) -> bool + 'a,
        weight: impl Fn(&S, usize) -> f64 + 'a,
    ) -> Self {
        Self {
            constraint: Box::new(constraint),
            weight: Box::new(weight),
            members: BTreeSet::new(),
        }
    }

    /// Adds the client, once: offering a member again only refreshes its weight, which is read at poll time.
    fn offer(&mut self, client: usize) {
        self.members.insert(client);
    }

    fn offer_all(&mut self, clients: impl IntoIterator<Item = usize>) {
        for client in clients {
            self.offer(client);
        }
    }

    /// Removes and returns the least-weight member meeting the constraint for `task` and `extra`, or `None`.
    fn poll(
        &mut self,
        state: &S,
        task: TaskId,
        extra: impl Fn(&S, usize) -> bool,
    ) -> Option<usize> {
        let mut best: Option<(f64, usize)> = None;
        for &client in &self.members {
            if !(self.constraint)(state, client, task) || !extra(state, client) {
                continue;
            }
            let weight = (self.weight)(state, client);
            // Members are visited in client order: on equal weights the first one stays.
            if best.is_none_or(|(best_weight, _)| weight.total_cmp(&best_weight) == Ordering::Less)
            {
                best = Some((weight, client));
            }
        }
        let (_, client) = best?;
        self.members.remove(&client);
        Some(client)
    }

    /// [`ConstrainedPrioritySet::poll`] without an extra constraint.
    fn poll_any(&mut self, state: &S, task: TaskId) -> Option<usize> {
        self.poll(state, task, |_, _| true)
    }
}

/// A binary min-heap that adds and polls as `java.util.PriorityQueue` does (sift up on add; on poll, the last
/// element sifts down from the root, preferring the left child on ties and stopping at the first child not
/// smaller). Elements comparing equal thus leave in Kafka's order, which is not insertion order: the standby
/// movements can hold several movements of one task (one per copy that is not caught up), and which of them is
/// polled first decides which copy is kept as a warm-up.
struct JavaPriorityQueue<T> {
    heap: Vec<T>,
    compare: fn(&T, &T) -> Ordering,
}

impl<T: Copy> JavaPriorityQueue<T> {
    fn new(compare: fn(&T, &T) -> Ordering) -> Self {
        Self {
            heap: Vec::new(),
            compare,
        }
    }

    fn len(&self) -> usize {
        self.heap.len()
    }

    fn add(&mut self, element: T) {
        let mut k = self.heap.len();
        self.heap.push(element);
        while k > 0 {
            let parent = (k - 1) / 2;
            let above = self.heap[parent];
            if (self.compare)(&element, &above) != Ordering::Less {
                break;
            }
            self.heap[k] = above;
            k = parent;
        }
        self.heap[k] = element;
    }

    fn poll(&mut self) -> Option<T> {
        let first = *self.heap.first()?;
        let Some(last) = self.heap.pop() else {
            return Some(first);
        };
        let n = self.heap.len();
        if n > 0 {
            let mut k = 0;
            let half = n / 2;
            while k < half {
                let mut child = 2 * k + 1;
                let right = child + 1;
                if right < n
                    && (self.compare)(&self.heap[child], &self.heap[right]) == Ordering::Greater
                {
                    child = right;
                }
                let below = self.heap[child];
                if (self.compare)(&last, &below) != Ordering::Greater {
                    break;
                }
                self.heap[k] = below;
                k = child;
            }
            self.heap[k] = last;
        }
        Some(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // ---------------------------------------------------------------------------------------------------------
    // Helpers

    /// The end offset sum the transcribed scenarios give every stateful task, so that any lag up to it can be
    /// expressed as an offset sum (`END - lag`).
    const END: i64 = i64::MAX;
    /// Kafka's `Long.MAX_VALUE` lag: the client has no state for the task.
    const LAG_MAX: i64 = i64::MAX;

    fn t(subtopology: usize, partition: i32) -> TaskId {
        TaskId {
            subtopology,
            partition,
        }
    }

    fn set<const N: usize>(tasks: [TaskId; N]) -> BTreeSet<TaskId> {
        tasks.into_iter().collect()
    }

    /// Tasks `a_b` for `a < subtopologies` and `b < partitions`.
    fn grid(subtopologies: usize, partitions: i32) -> BTreeSet<TaskId> {
        (0..subtopologies)
            .flat_map(|s| (0..partitions).map(move |p| t(s, p)))
            .collect()
    }

    /// The nine tasks 0_0..2_2.
    fn nine_tasks() -> BTreeSet<TaskId> {
        grid(3, 3)
    }

    /// Kafka's `Config(L, W, S)` of the notes: acceptable recovery lag, max warm-ups, standbys.
    fn config(
        acceptable_recovery_lag: u64,
        max_warmup_replicas: usize,
        num_standby_replicas: usize,
    ) -> AssignmentConfigs {
        AssignmentConfigs {
            acceptable_recovery_lag,
            max_warmup_replicas,
            num_standby_replicas,
        }
    }

    /// A client with the given lags, as offset sums against end offset sums of [`END`]. Sentinels are reported
    /// as they are; tasks left out lag by [`LAG_MAX`].
    fn client(capacity: usize, lags: impl IntoIterator<Item = (TaskId, i64)>) -> ClientInput {
        let offset_sums = lags
            .into_iter()
            .map(|(task, lag)| match lag {
                LATEST_OFFSET | UNKNOWN_OFFSET_SUM => (task, lag),
                lag => (task, END - lag),
            })
            .collect();
        ClientInput {
            capacity,
            offset_sums,
        }
    }

    /// A client with the same lag on every given task.
    fn uniform(capacity: usize, tasks: &BTreeSet<TaskId>, lag: i64) -> ClientInput {
        client(capacity, tasks.iter().map(|&task| (task, lag)))
    }

    /// Kafka's `getMockClientWithPreviousCaughtUpTasks`: capacity 1, lag 0 on `caught_up`, `LAG_MAX` elsewhere.
    fn mock(caught_up: &BTreeSet<TaskId>) -> ClientInput {
        uniform(1, caught_up, 0)
    }

    struct Outcome {
        clients: BTreeMap<String, ClientInput>,
        assignment: BTreeMap<String, ClientAssignment>,
        probing: bool,
        /// Standbys beyond `min(#clients - 1, num_standby_replicas)` per stateful task, summed.
        warmups: usize,
    }

    impl Outcome {
        fn active(&self, client: &str) -> &BTreeSet<TaskId> {
            &self.assignment[client].active
        }

        fn standby(&self, client: &str) -> &BTreeSet<TaskId> {
            &self.assignment[client].standby
        }

        fn assigned_count(&self, client: &str) -> usize {
            self.active(client).len() + self.standby(client).len()
        }

        fn capacity(&self, client: &str) -> usize {
            self.clients[client].capacity
        }

        fn assert_client(&self, client: &str, active: &[TaskId], standby: &[TaskId]) {
            let active: BTreeSet<TaskId> = active.iter().copied().collect();
            let standby: BTreeSet<TaskId> = standby.iter().copied().collect();
            assert_eq!(self.active(client), &active, "actives of {client}");
            assert_eq!(self.standby(client), &standby, "standbys of {client}");
        }
    }

    fn to_clients(clients: Vec<(&str, ClientInput)>) -> BTreeMap<String, ClientInput> {
        clients
            .into_iter()
            .map(|(id, input)| (id.to_owned(), input))
            .collect()
    }

    /// Assigns with end offset sums of [`END`] and checks the invariants on the result.
    fn run(
        clients: Vec<(&str, ClientInput)>,
        all: &BTreeSet<TaskId>,
        stateful: &BTreeSet<TaskId>,
        configs: AssignmentConfigs,
    ) -> Outcome {
        let ends = stateful.iter().map(|&task| (task, END)).collect();
        run_with_ends(to_clients(clients), all, &ends, configs)
    }

    fn run_with_ends(
        clients: BTreeMap<String, ClientInput>,
        all: &BTreeSet<TaskId>,
        ends: &BTreeMap<TaskId, i64>,
        configs: AssignmentConfigs,
    ) -> Outcome {
        let (assignment, probing) =
            assign(&clients, all, ends, configs).expect("assignment failed");
        let outcome = Outcome {
            clients,
            assignment,
            probing,
            warmups: 0,
        };
        let stateful: BTreeSet<TaskId> = ends.keys().copied().collect();
        let warmups = check_invariants(&outcome, all, &stateful, configs);
        Outcome { warmups, ..outcome }
    }

    /// The invariants of the notes (section 4.7) that hold for every input: every client is in the result; no
    /// client holds a task twice; only known tasks, no standby of a stateless task; every task exactly one active;
    /// every stateful task `min(#clients - 1, standbys)` standbys plus warm-ups, at most `max_warmup_replicas`
    /// warm-ups in all, and none without a probing rebalance.
    fn check_invariants(
        outcome: &Outcome,
        all: &BTreeSet<TaskId>,
        stateful: &BTreeSet<TaskId>,
        configs: AssignmentConfigs,
    ) -> usize {
        let assignment = &outcome.assignment;
        assert_eq!(
            assignment.keys().collect::<Vec<_>>(),
            outcome.clients.keys().collect::<Vec<_>>(),
            "every client is in the result"
        );
        let mut actives: BTreeMap<TaskId, usize> = BTreeMap::new();
        let mut standbys: BTreeMap<TaskId, usize> = BTreeMap::new();
        for (client, given) in assignment {
            assert!(
                given.active.is_disjoint(&given.standby),
                "client {client} holds a task twice: {given:?}"
            );
            for task in &given.active {
                assert!(
                    all.contains(task),
                    "client {client} runs unknown task {task}"
                );
                *actives.entry(*task).or_default() += 1;
            }
            for task in &given.standby {
                assert!(
                    stateful.contains(task),
                    "client {client} has a standby of stateless or unknown task {task}"
                );
                *standbys.entry(*task).or_default() += 1;
            }
        }
        for task in all {
            assert_eq!(
                actives.get(task),
                Some(&1),
                "task {task} must have exactly one active"
            );
        }
        let base = assignment
            .len()
            .saturating_sub(1)
            .min(configs.num_standby_replicas);
        let mut warmups = 0;
        for task in stateful {
            let count = standbys.get(task).copied().unwrap_or(0);
            assert!(
                count >= base,
                "task {task} has {count} standbys, fewer than {base}"
            );
            warmups += count - base;
        }
        assert!(
            warmups <= configs.max_warmup_replicas,
            "{warmups} warm-ups, more than {}",
            configs.max_warmup_replicas
        );
        if !outcome.probing {
            assert_eq!(warmups, 0, "warm-ups without a probing rebalance");
        }
        warmups
    }

    /// Kafka's `AssignmentTestUtils.assertValidAssignment(numStandbys, maxWarmups, stateful, stateless, ...)`:
    /// each task is held by exactly `min(#clients, 1 + standbys)` clients (stateless: 1), except at most
    /// `max_warmups` tasks (in task order) held by one more.
    fn assert_valid_assignment(
        num_standbys: usize,
        max_warmups: usize,
        stateful: &BTreeSet<TaskId>,
        stateless: &BTreeSet<TaskId>,
        outcome: &Outcome,
    ) {
        let mut holders: BTreeMap<TaskId, BTreeSet<&str>> = stateful
            .iter()
            .chain(stateless)
            .map(|&task| (task, BTreeSet::new()))
            .collect();
        for (client, given) in &outcome.assignment {
            for task in &given.active {
                holders
                    .get_mut(task)
                    .unwrap_or_else(|| panic!("extra active task {task} on {client}"))
                    .insert(client);
            }
            for task in &given.standby {
                assert!(
                    !stateless.contains(task),
                    "standby of stateless task {task} on {client}"
                );
                holders
                    .get_mut(task)
                    .unwrap_or_else(|| panic!("extra standby task {task} on {client}"))
                    .insert(client);
            }
        }
        let mut remaining_warmups = max_warmups;
        let clients = outcome.assignment.len();
        let misassigned: Vec<_> = holders
            .iter()
            .filter(|(task, holders)| {
                let standbys = if stateless.contains(task) {
                    0
                } else {
                    num_standbys
                };
                let expected = clients.min(1 + standbys);
                if holders.len() == expected {
                    false
                } else if holders.len() == expected + 1 && remaining_warmups > 0 {
                    remaining_warmups -= 1;
                    false
                } else {
                    true
                }
            })
            .collect();
        assert!(
            misassigned.is_empty(),
            "over- or under-assigned tasks: {misassigned:?}"
        );
    }

    fn spread(loads: impl Iterator<Item = f64>) -> f64 {
        let loads: Vec<f64> = loads.collect();
        let max = loads.iter().copied().fold(f64::MIN, f64::max);
        let min = loads.iter().copied().fold(f64::MAX, f64::min);
        max - min
    }

    /// Kafka's `assertBalancedActiveAssignment`: actives per thread within 1.0 over all clients.
    fn assert_balanced_active_assignment(outcome: &Outcome) {
        let diff = spread(
            outcome
                .assignment
                .keys()
                .map(|c| outcome.active(c).len() as f64 / outcome.capacity(c) as f64),
        );
        assert!(
            diff <= 1.0,
            "active load per thread differs by {diff}: {:?}",
            outcome.assignment
        );
    }

    /// Kafka's `assertBalancedStatefulAssignment`: stateful tasks (active or standby) per thread within 1.0.
    fn assert_balanced_stateful_assignment(stateful: &BTreeSet<TaskId>, outcome: &Outcome) {
        let diff = spread(outcome.assignment.iter().map(|(c, given)| {
            let held = given
                .active
                .iter()
                .chain(&given.standby)
                .filter(|task| stateful.contains(task))
                .count();
            held as f64 / outcome.capacity(c) as f64
        }));
        assert!(
            diff <= 1.0,
            "stateful load per thread differs by {diff}: {:?}",
            outcome.assignment
        );
    }

    /// Kafka's `analyzeTaskAssignmentBalance(..).skewedSubtopologies()`: the subtopologies with actives whose
    /// active count per client spreads by more than `skew`.
    fn skewed_subtopologies(outcome: &Outcome, skew: usize) -> BTreeSet<usize> {
        let subtopologies: BTreeSet<usize> = outcome
            .assignment
            .values()
            .flat_map(|given| given.active.iter().map(|task| task.subtopology))
            .collect();
        subtopologies
            .into_iter()
            .filter(|&subtopology| {
                let counts: Vec<usize> = outcome
                    .assignment
                    .values()
                    .map(|given| {
                        given
                            .active
                            .iter()
                            .filter(|task| task.subtopology == subtopology)
                            .count()
                    })
                    .collect();
                let max = counts.iter().copied().max().unwrap_or(0);
                let min = counts.iter().copied().min().unwrap_or(0);
                max - min > skew
            })
            .collect()
    }

    /// Kafka's `assertBalancedTasks(states, skew)`.
    fn assert_balanced_tasks(outcome: &Outcome, skew: usize) {
        let skewed = skewed_subtopologies(outcome, skew);
        assert!(
            skewed.is_empty(),
            "skewed subtopologies {skewed:?}: {:?}",
            outcome.assignment
        );
    }

    /// The checks the even-distribution tests share: valid without standbys, balanced actives and stateful tasks,
    /// balanced subtopologies.
    fn assert_evenly_balanced(
        stateful: &BTreeSet<TaskId>,
        stateless: &BTreeSet<TaskId>,
        outcome: &Outcome,
    ) {
        assert_valid_assignment(0, 0, stateful, stateless, outcome);
        assert_balanced_active_assignment(outcome);
        assert_balanced_stateful_assignment(stateful, outcome);
        assert_balanced_tasks(outcome, 1);
    }

    // ---------------------------------------------------------------------------------------------------------
    // HighAvailabilityTaskAssignorTest

    /// Kafka: HighAvailabilityTaskAssignorTest.shouldBeStickyForActiveAndStandbyTasksWhileWarmingUp
    #[test]
    fn should_be_sticky_for_active_and_standby_tasks_while_warming_up() {
        let all = nine_tasks();
        let o = run(
            vec![
                ("P1", uniform(1, &all, 0)),
                ("P2", uniform(1, &all, 10)),
                ("P3", uniform(1, &all, LAG_MAX)),
            ],
            &all,
            &all,
            config(11, 2, 1),
        );
        assert_eq!(o.assigned_count("P1"), 9);
        assert_eq!(o.assigned_count("P2"), 9);
        assert_eq!(o.assigned_count("P3"), 2);
        assert!(o.probing);
        // Derived (notes 3.1, HA-1).
        o.assert_client(
            "P1",
            &[t(0, 0), t(0, 2), t(1, 0), t(2, 0), t(2, 2)],
            &[t(0, 1), t(1, 1), t(1, 2), t(2, 1)],
        );
        o.assert_client(
            "P2",
            &[t(0, 1), t(1, 1), t(1, 2), t(2, 1)],
            &[t(0, 0), t(0, 2), t(1, 0), t(2, 0), t(2, 2)],
        );
        o.assert_client("P3", &[], &[t(0, 1), t(0, 2)]);
    }

    /// Kafka: HighAvailabilityTaskAssignorTest.shouldSkipWarmupsWhenAcceptableLagIsMax
    #[test]
    fn should_skip_warmups_when_acceptable_lag_is_max() {
        let all = nine_tasks();
        let o = run(
            vec![
                ("P1", uniform(1, &all, 0)),
                ("P2", uniform(1, &all, LAG_MAX)),
                ("P3", uniform(1, &all, LAG_MAX)),
            ],
            &all,
            &all,
            config(i64::MAX as u64, 1, 1),
        );
        for c in ["P1", "P2", "P3"] {
            assert_eq!(o.assigned_count(c), 6, "{c}");
        }
        assert!(!o.probing);
        // Derived (notes 3.1, HA-2).
        o.assert_client(
            "P1",
            &[t(0, 0), t(1, 0), t(2, 0)],
            &[t(0, 2), t(2, 1), t(2, 2)],
        );
        o.assert_client(
            "P2",
            &[t(0, 1), t(1, 1), t(2, 1)],
            &[t(0, 0), t(1, 2), t(2, 0)],
        );
        o.assert_client(
            "P3",
            &[t(0, 2), t(1, 2), t(2, 2)],
            &[t(0, 1), t(1, 0), t(1, 1)],
        );
    }

    /// The nine tasks on three clients of the given capacity, all lagging by 10, with Config(0, 1, 0).
    fn nine_tasks_on_three_clients(capacity: usize) -> Outcome {
        let all = nine_tasks();
        let o = run(
            vec![
                ("P1", uniform(capacity, &all, 10)),
                ("P2", uniform(capacity, &all, 10)),
                ("P3", uniform(capacity, &all, 10)),
            ],
            &all,
            &all,
            config(0, 1, 0),
        );
        assert!(!o.probing);
        assert_evenly_balanced(&all, &BTreeSet::new(), &o);
        // Derived: no client is caught up and the lags are equal, so the round-robin stays.
        o.assert_client("P1", &[t(0, 0), t(1, 0), t(2, 0)], &[]);
        o.assert_client("P2", &[t(0, 1), t(1, 1), t(2, 1)], &[]);
        o.assert_client("P3", &[t(0, 2), t(1, 2), t(2, 2)], &[]);
        o
    }

    /// Kafka: HighAvailabilityTaskAssignorTest.shouldAssignActiveStatefulTasksEvenlyOverClientsWhereNumberOfClientsIntegralDivisorOfNumberOfTasks
    #[test]
    fn should_assign_active_stateful_tasks_evenly_over_clients_where_number_of_clients_integral_divisor_of_number_of_tasks(
    ) {
        nine_tasks_on_three_clients(1);
    }

    /// Kafka: HighAvailabilityTaskAssignorTest.shouldAssignActiveStatefulTasksEvenlyOverClientsWhereNumberOfThreadsIntegralDivisorOfNumberOfTasks
    #[test]
    fn should_assign_active_stateful_tasks_evenly_over_clients_where_number_of_threads_integral_divisor_of_number_of_tasks(
    ) {
        nine_tasks_on_three_clients(3);
    }

    /// Kafka: HighAvailabilityTaskAssignorTest.shouldAssignActiveStatefulTasksEvenlyOverClientsAndStreamThreadsWithEqualStreamThreadsPerClientAsTasks
    #[test]
    fn should_assign_active_stateful_tasks_evenly_over_clients_and_stream_threads_with_equal_stream_threads_per_client_as_tasks(
    ) {
        nine_tasks_on_three_clients(9);
    }

    /// Kafka: HighAvailabilityTaskAssignorTest.shouldAssignActiveStatefulTasksEvenlyOverClientsWhereNumberOfClientsNotIntegralDivisorOfNumberOfTasks
    #[test]
    fn should_assign_active_stateful_tasks_evenly_over_clients_where_number_of_clients_not_integral_divisor_of_number_of_tasks(
    ) {
        let all = nine_tasks();
        let o = run(
            vec![("P1", uniform(1, &all, 10)), ("P2", uniform(1, &all, 10))],
            &all,
            &all,
            config(0, 1, 0),
        );
        assert!(!o.probing);
        assert_evenly_balanced(&all, &BTreeSet::new(), &o);
        // Derived.
        o.assert_client("P1", &[t(0, 0), t(0, 2), t(1, 1), t(2, 0), t(2, 2)], &[]);
        o.assert_client("P2", &[t(0, 1), t(1, 0), t(1, 2), t(2, 1)], &[]);
    }

    /// Kafka: HighAvailabilityTaskAssignorTest.shouldAssignActiveStatefulTasksEvenlyOverUnevenlyDistributedStreamThreads
    #[test]
    fn should_assign_active_stateful_tasks_evenly_over_unevenly_distributed_stream_threads() {
        let all = grid(2, 3);
        let o = run(
            vec![
                ("P1", uniform(1, &all, 10)),
                ("P2", uniform(2, &all, 10)),
                ("P3", uniform(3, &all, 10)),
            ],
            &all,
            &all,
            config(0, 1, 0),
        );
        assert!(!o.probing);
        assert_eq!(o.active("P1").len(), 1);
        assert_eq!(o.active("P2").len(), 2);
        assert_eq!(o.active("P3").len(), 3);
        assert_valid_assignment(0, 0, &all, &BTreeSet::new(), &o);
        assert_balanced_active_assignment(&o);
        assert_balanced_stateful_assignment(&all, &o);
        assert!(
            !skewed_subtopologies(&o, 1).is_empty(),
            "Kafka expects a skewed subtopology here"
        );
        // Derived.
        o.assert_client("P1", &[t(1, 0)], &[]);
        o.assert_client("P2", &[t(0, 1), t(1, 1)], &[]);
        o.assert_client("P3", &[t(0, 0), t(0, 2), t(1, 2)], &[]);
    }

    /// Kafka: HighAvailabilityTaskAssignorTest.shouldAssignActiveStatefulTasksEvenlyOverClientsWithMoreClientsThanTasks
    #[test]
    fn should_assign_active_stateful_tasks_evenly_over_clients_with_more_clients_than_tasks() {
        let all = set([t(0, 0), t(0, 1)]);
        let o = run(
            vec![
                ("P1", uniform(1, &all, 10)),
                ("P2", uniform(1, &all, 10)),
                ("P3", uniform(1, &all, 10)),
            ],
            &all,
            &all,
            config(0, 1, 0),
        );
        assert!(!o.probing);
        assert_evenly_balanced(&all, &BTreeSet::new(), &o);
        // Derived.
        o.assert_client("P1", &[t(0, 0)], &[]);
        o.assert_client("P2", &[t(0, 1)], &[]);
        o.assert_client("P3", &[], &[]);
    }

    /// Kafka: HighAvailabilityTaskAssignorTest.shouldAssignWarmUpTasksIfStatefulActiveTasksBalancedOverStreamThreadsButNotOverClients
    #[test]
    fn should_assign_warm_up_tasks_if_stateful_active_tasks_balanced_over_stream_threads_but_not_over_clients(
    ) {
        let all = grid(2, 2);
        let o = run(
            vec![
                ("P1", uniform(5, &all, 0)),
                ("P2", uniform(5, &all, LAG_MAX)),
                ("P3", uniform(5, &all, LAG_MAX)),
            ],
            &all,
            &all,
            config(0, 2, 0),
        );
        assert!(o.probing);
        assert!(!o.standby("P2").is_empty());
        assert!(!o.standby("P3").is_empty());
        assert_valid_assignment(0, 2, &all, &BTreeSet::new(), &o);
        // Derived.
        o.assert_client("P1", &[t(0, 0), t(0, 1), t(1, 0), t(1, 1)], &[]);
        o.assert_client("P2", &[], &[t(0, 1)]);
        o.assert_client("P3", &[], &[t(1, 0)]);
    }

    /// Kafka: HighAvailabilityTaskAssignorTest.shouldEvenlyAssignActiveStatefulTasksIfClientsAreWarmedUpToBalanceTaskOverClients
    #[test]
    fn should_evenly_assign_active_stateful_tasks_if_clients_are_warmed_up_to_balance_task_over_clients(
    ) {
        let all = grid(2, 2);
        let o = run(
            vec![
                ("P1", uniform(5, &all, 0)),
                ("P2", client(5, [(t(0, 1), 0)])),
                ("P3", client(5, [(t(1, 0), 0)])),
            ],
            &all,
            &all,
            config(0, 2, 0),
        );
        assert!(!o.probing);
        assert_evenly_balanced(&all, &BTreeSet::new(), &o);
        // Derived: the round-robin already puts every task on a caught-up client.
        o.assert_client("P1", &[t(0, 0), t(1, 1)], &[]);
        o.assert_client("P2", &[t(0, 1)], &[]);
        o.assert_client("P3", &[t(1, 0)], &[]);
    }

    /// Kafka: HighAvailabilityTaskAssignorTest.shouldAssignActiveStatefulTasksEvenlyOverStreamThreadsButBestEffortOverClients
    #[test]
    fn should_assign_active_stateful_tasks_evenly_over_stream_threads_but_best_effort_over_clients()
    {
        let all = nine_tasks();
        let o = run(
            vec![("P1", uniform(6, &all, 10)), ("P2", uniform(3, &all, 10))],
            &all,
            &all,
            config(0, 1, 0),
        );
        assert!(!o.probing);
        assert_eq!(o.active("P1").len(), 6);
        assert_eq!(o.active("P2").len(), 3);
        assert_valid_assignment(0, 0, &all, &BTreeSet::new(), &o);
        assert_balanced_active_assignment(&o);
        assert_balanced_stateful_assignment(&all, &o);
        // Derived.
        o.assert_client(
            "P1",
            &[t(0, 0), t(0, 1), t(0, 2), t(1, 1), t(2, 0), t(2, 2)],
            &[],
        );
        o.assert_client("P2", &[t(1, 0), t(1, 2), t(2, 1)], &[]);
    }

    /// Kafka: HighAvailabilityTaskAssignorTest.shouldComputeNewAssignmentIfThereAreUnassignedActiveTasks
    #[test]
    fn should_compute_new_assignment_if_there_are_unassigned_active_tasks() {
        let all = set([t(0, 0), t(0, 1)]);
        let stateful = set([t(0, 0)]);
        let o = run(
            vec![("P1", client(1, [(t(0, 0), 0)]))],
            &all,
            &stateful,
            config(100, 2, 0),
        );
        assert!(!o.probing);
        assert_eq!(o.active("P1").len(), 2);
        assert!(o.standby("P1").is_empty());
        assert_evenly_balanced(&stateful, &set([t(0, 1)]), &o);
    }

    /// Kafka: HighAvailabilityTaskAssignorTest.shouldComputeNewAssignmentIfThereAreUnassignedStandbyTasks
    #[test]
    fn should_compute_new_assignment_if_there_are_unassigned_standby_tasks() {
        let all = set([t(0, 0)]);
        let o = run(
            vec![
                ("P1", client(1, [(t(0, 0), 0)])),
                ("P2", client(1, [(t(0, 0), 0)])),
            ],
            &all,
            &all,
            config(100, 2, 1),
        );
        assert!(!o.standby("P2").is_empty());
        assert!(!o.probing);
        assert_valid_assignment(1, 0, &all, &BTreeSet::new(), &o);
        assert_balanced_active_assignment(&o);
        assert_balanced_stateful_assignment(&all, &o);
        assert_balanced_tasks(&o, 1);
        // Derived.
        o.assert_client("P1", &[t(0, 0)], &[]);
        o.assert_client("P2", &[], &[t(0, 0)]);
    }

    /// Kafka: HighAvailabilityTaskAssignorTest.shouldComputeNewAssignmentIfActiveTasksWasNotOnCaughtUpClient
    #[test]
    fn should_compute_new_assignment_if_active_tasks_was_not_on_caught_up_client() {
        let all = set([t(0, 0), t(0, 1)]);
        let stateful = set([t(0, 0)]);
        let o = run(
            vec![
                ("P1", client(1, [(t(0, 0), 500)])),
                ("P2", client(1, [(t(0, 0), 0)])),
            ],
            &all,
            &stateful,
            config(100, 2, 0),
        );
        assert_eq!(o.active("P1"), &set([t(0, 1)]));
        assert_eq!(o.active("P2"), &set([t(0, 0)]));
        assert!(o.probing);
        assert_valid_assignment(0, 1, &stateful, &set([t(0, 1)]), &o);
        assert_balanced_active_assignment(&o);
        assert_balanced_stateful_assignment(&stateful, &o);
        assert_balanced_tasks(&o, 1);
        // Derived: P1 keeps a warm-up of the task it lost.
        o.assert_client("P1", &[t(0, 1)], &[t(0, 0)]);
        o.assert_client("P2", &[t(0, 0)], &[]);
    }

    /// Kafka: HighAvailabilityTaskAssignorTest.shouldAssignToMostCaughtUpIfActiveTasksWasNotOnCaughtUpClient
    #[test]
    fn should_assign_to_most_caught_up_if_active_tasks_was_not_on_caught_up_client() {
        let all = set([t(0, 0)]);
        let o = run(
            vec![
                ("P1", client(1, [(t(0, 0), LAG_MAX)])),
                ("P2", client(1, [(t(0, 0), 1000)])),
                ("P3", client(1, [(t(0, 0), 500)])),
            ],
            &all,
            &all,
            config(100, 2, 1),
        );
        o.assert_client("P1", &[], &[t(0, 0)]); // warm-up
        o.assert_client("P2", &[], &[t(0, 0)]); // standby
        o.assert_client("P3", &[t(0, 0)], &[]);
        assert!(o.probing);
        assert_valid_assignment(1, 1, &all, &BTreeSet::new(), &o);
        assert_balanced_active_assignment(&o);
        assert_balanced_stateful_assignment(&all, &o);
        assert_balanced_tasks(&o, 1);
    }

    /// Kafka: HighAvailabilityTaskAssignorTest.shouldAssignStandbysForStatefulTasks
    #[test]
    fn should_assign_standbys_for_stateful_tasks() {
        let all = set([t(0, 0), t(0, 1)]);
        let o = run(
            vec![("P1", mock(&set([t(0, 0)]))), ("P2", mock(&set([t(0, 1)])))],
            &all,
            &all,
            config(100, 2, 1),
        );
        o.assert_client("P1", &[t(0, 0)], &[t(0, 1)]);
        o.assert_client("P2", &[t(0, 1)], &[t(0, 0)]);
        assert!(!o.probing);
    }

    /// Kafka: HighAvailabilityTaskAssignorTest.shouldNotAssignStandbysForStatelessTasks
    #[test]
    fn should_not_assign_standbys_for_stateless_tasks() {
        let all = set([t(0, 0), t(0, 1)]);
        let o = run(
            vec![
                ("P1", mock(&BTreeSet::new())),
                ("P2", mock(&BTreeSet::new())),
            ],
            &all,
            &BTreeSet::new(),
            config(100, 2, 1),
        );
        assert_eq!(o.active("P1").len(), 1);
        assert_eq!(o.active("P2").len(), 1);
        assert!(o.standby("P1").is_empty() && o.standby("P2").is_empty());
        assert!(!o.probing);
        // Derived.
        o.assert_client("P1", &[t(0, 0)], &[]);
        o.assert_client("P2", &[t(0, 1)], &[]);
    }

    /// Kafka: HighAvailabilityTaskAssignorTest.shouldAssignWarmupReplicasEvenIfNoStandbyReplicasConfigured
    #[test]
    fn should_assign_warmup_replicas_even_if_no_standby_replicas_configured() {
        let all = set([t(0, 0), t(0, 1)]);
        let o = run(
            vec![("P1", mock(&all)), ("P2", mock(&BTreeSet::new()))],
            &all,
            &all,
            config(100, 2, 0),
        );
        assert_eq!(o.active("P1"), &all);
        assert_eq!(o.standby("P2").len(), 1);
        assert!(o.standby("P1").is_empty());
        assert!(o.active("P2").is_empty());
        assert!(o.probing);
        // Derived: the round-robin had given 0_1 to P2, which keeps it as a warm-up.
        assert_eq!(o.standby("P2"), &set([t(0, 1)]));
    }

    /// Kafka: HighAvailabilityTaskAssignorTest.shouldNotAssignMoreThanMaxWarmupReplicas
    #[test]
    fn should_not_assign_more_than_max_warmup_replicas() {
        let all = grid(1, 4);
        let o = run(
            vec![("P1", mock(&all)), ("P2", mock(&BTreeSet::new()))],
            &all,
            &all,
            config(100, 1, 0),
        );
        assert_eq!(o.active("P1"), &all);
        assert_eq!(o.standby("P2").len(), 1);
        assert!(o.standby("P1").is_empty());
        assert!(o.active("P2").is_empty());
        assert!(o.probing);
        // Derived: only the first movement in queue order (0_1) gets the single warm-up.
        assert_eq!(o.standby("P2"), &set([t(0, 1)]));
    }

    /// Kafka: HighAvailabilityTaskAssignorTest.shouldNotAssignWarmupAndStandbyToTheSameClient
    #[test]
    fn should_not_assign_warmup_and_standby_to_the_same_client() {
        let all = grid(1, 4);
        let o = run(
            vec![("P1", mock(&all)), ("P2", mock(&BTreeSet::new()))],
            &all,
            &all,
            config(100, 1, 1),
        );
        o.assert_client("P1", &[t(0, 0), t(0, 1), t(0, 2), t(0, 3)], &[]);
        o.assert_client("P2", &[], &[t(0, 0), t(0, 1), t(0, 2), t(0, 3)]);
        assert!(o.probing);
    }

    /// Kafka: HighAvailabilityTaskAssignorTest.shouldNotAssignAnyStandbysWithInsufficientCapacity
    #[test]
    fn should_not_assign_any_standbys_with_insufficient_capacity() {
        let all = set([t(0, 0), t(0, 1)]);
        let o = run(vec![("P1", mock(&all))], &all, &all, config(100, 2, 1));
        o.assert_client("P1", &[t(0, 0), t(0, 1)], &[]);
        assert!(!o.probing);
    }

    /// Kafka: HighAvailabilityTaskAssignorTest.shouldAssignActiveTasksToNotCaughtUpClientIfNoneExist
    #[test]
    fn should_assign_active_tasks_to_not_caught_up_client_if_none_exist() {
        let all = set([t(0, 0), t(0, 1)]);
        let o = run(
            vec![("P1", mock(&BTreeSet::new()))],
            &all,
            &all,
            config(100, 2, 1),
        );
        o.assert_client("P1", &[t(0, 0), t(0, 1)], &[]);
        assert!(!o.probing);
    }

    /// Kafka: HighAvailabilityTaskAssignorTest.shouldNotAssignMoreThanMaxWarmupReplicasWithStandbys
    #[test]
    fn should_not_assign_more_than_max_warmup_replicas_with_standbys() {
        let all = grid(1, 4);
        let o = run(
            vec![
                ("P1", mock(&all)),
                ("P2", mock(&BTreeSet::new())),
                ("P3", mock(&BTreeSet::new())),
            ],
            &all,
            &all,
            config(100, 2, 1),
        );
        assert!(o.probing);
        assert_valid_assignment(1, 2, &all, &BTreeSet::new(), &o);
        // Derived.
        o.assert_client("P1", &[t(0, 0), t(0, 1), t(0, 2), t(0, 3)], &[]);
        o.assert_client("P2", &[], &[t(0, 0), t(0, 1), t(0, 2), t(0, 3)]);
        o.assert_client("P3", &[], &[t(0, 1), t(0, 2)]);
    }

    /// Kafka: HighAvailabilityTaskAssignorTest.shouldDistributeStatelessTasksToBalanceTotalTaskLoad
    #[test]
    fn should_distribute_stateless_tasks_to_balance_total_task_load() {
        let stateful = grid(1, 4);
        let stateless = set([t(1, 0), t(1, 1), t(1, 2)]);
        let all: BTreeSet<TaskId> = stateful.union(&stateless).copied().collect();
        let o = run(
            vec![("P1", mock(&stateful)), ("P2", mock(&BTreeSet::new()))],
            &all,
            &stateful,
            config(100, 2, 1),
        );
        assert!(o.probing);
        assert_valid_assignment(1, 2, &stateful, &stateless, &o);
        assert_balanced_active_assignment(&o);
        assert_balanced_stateful_assignment(&stateful, &o);
        assert!(
            !skewed_subtopologies(&o, 1).is_empty(),
            "Kafka expects skewed subtopologies here"
        );
        // Derived.
        o.assert_client("P1", &[t(0, 0), t(0, 1), t(0, 2), t(0, 3)], &[]);
        o.assert_client(
            "P2",
            &[t(1, 0), t(1, 1), t(1, 2)],
            &[t(0, 0), t(0, 1), t(0, 2), t(0, 3)],
        );
    }

    /// Kafka: HighAvailabilityTaskAssignorTest.shouldDistributeStatefulActiveTasksToAllClients
    #[test]
    fn should_distribute_stateful_active_tasks_to_all_clients() {
        let all = set([
            t(0, 0),
            t(0, 1),
            t(0, 2),
            t(0, 3),
            t(1, 0),
            t(1, 1),
            t(1, 2),
            t(1, 3),
            t(2, 0),
        ]);
        let o = run(
            vec![
                ("P1", uniform(100, &all, 0)),
                ("P2", uniform(50, &all, 0)),
                ("P3", uniform(1, &all, 0)),
            ],
            &all,
            &all,
            config(100, 2, 0),
        );
        for c in ["P1", "P2", "P3"] {
            assert!(!o.active(c).is_empty(), "{c}");
        }
        assert!(!o.probing);
        // Derived.
        o.assert_client(
            "P1",
            &[t(0, 0), t(0, 1), t(0, 2), t(0, 3), t(1, 1), t(1, 2)],
            &[],
        );
        o.assert_client("P2", &[t(1, 0), t(1, 3)], &[]);
        o.assert_client("P3", &[t(2, 0)], &[]);
    }

    /// Kafka: HighAvailabilityTaskAssignorTest.shouldReturnFalseIfPreviousAssignmentIsReused
    #[test]
    fn should_return_false_if_previous_assignment_is_reused() {
        let all = grid(1, 4);
        let previous1 = set([t(0, 0), t(0, 2)]);
        let previous2 = set([t(0, 1), t(0, 3)]);
        let o = run(
            vec![("P1", mock(&previous1)), ("P2", mock(&previous2))],
            &all,
            &all,
            config(100, 2, 0),
        );
        assert!(!o.probing);
        assert_eq!(o.active("P1"), &previous1);
        assert_eq!(o.active("P2"), &previous2);
    }

    /// Kafka: HighAvailabilityTaskAssignorTest.shouldReturnFalseIfNoWarmupTasksAreAssigned
    #[test]
    fn should_return_false_if_no_warmup_tasks_are_assigned() {
        let all = grid(1, 4);
        let o = run(
            vec![
                ("P1", mock(&BTreeSet::new())),
                ("P2", mock(&BTreeSet::new())),
            ],
            &all,
            &BTreeSet::new(),
            config(100, 2, 0),
        );
        assert!(!o.probing);
        assert!(o.standby("P1").is_empty() && o.standby("P2").is_empty());
    }

    /// Kafka: HighAvailabilityTaskAssignorTest.shouldReturnTrueIfWarmupTasksAreAssigned
    #[test]
    fn should_return_true_if_warmup_tasks_are_assigned() {
        let all = set([t(0, 0), t(0, 1)]);
        let o = run(
            vec![("P1", mock(&all)), ("P2", mock(&BTreeSet::new()))],
            &all,
            &all,
            config(100, 2, 0),
        );
        assert!(o.probing);
        assert_eq!(o.standby("P2").len(), 1);
    }

    /// The seven stateless tasks of the stateless distribution tests.
    fn seven_stateless_tasks() -> BTreeSet<TaskId> {
        set([
            t(0, 0),
            t(0, 1),
            t(0, 2),
            t(0, 3),
            t(1, 0),
            t(1, 1),
            t(1, 2),
        ])
    }

    fn distribute_stateless(clients: Vec<(&str, ClientInput)>) -> Outcome {
        let all = seven_stateless_tasks();
        let o = run(clients, &all, &BTreeSet::new(), config(0, 1, 0));
        assert_valid_assignment(0, 0, &BTreeSet::new(), &all, &o);
        assert_balanced_active_assignment(&o);
        assert!(!o.probing);
        o
    }

    fn assert_seven_stateless_over_equal_clients(o: &Outcome) {
        // Derived.
        o.assert_client("P1", &[t(0, 0), t(0, 3), t(1, 2)], &[]);
        o.assert_client("P2", &[t(0, 1), t(1, 0)], &[]);
        o.assert_client("P3", &[t(0, 2), t(1, 1)], &[]);
    }

    /// Kafka: HighAvailabilityTaskAssignorTest.shouldDistributeStatelessTasksEvenlyOverClientsWithEqualStreamThreadsPerClientAsTasksAndNoStatefulTasks
    #[test]
    fn should_distribute_stateless_tasks_evenly_over_clients_with_equal_stream_threads_per_client_as_tasks_and_no_stateful_tasks(
    ) {
        let o = distribute_stateless(vec![
            ("P1", client(7, [])),
            ("P2", client(7, [])),
            ("P3", client(7, [])),
        ]);
        assert_seven_stateless_over_equal_clients(&o);
    }

    /// Kafka: HighAvailabilityTaskAssignorTest.shouldDistributeStatelessTasksEvenlyOverClientsWithLessStreamThreadsPerClientAsTasksAndNoStatefulTasks
    #[test]
    fn should_distribute_stateless_tasks_evenly_over_clients_with_less_stream_threads_per_client_as_tasks_and_no_stateful_tasks(
    ) {
        let o = distribute_stateless(vec![
            ("P1", client(2, [])),
            ("P2", client(2, [])),
            ("P3", client(2, [])),
        ]);
        assert_seven_stateless_over_equal_clients(&o);
    }

    /// Kafka: HighAvailabilityTaskAssignorTest.shouldDistributeStatelessTasksEvenlyOverClientsWithUnevenlyDistributedStreamThreadsAndNoStatefulTasks
    #[test]
    fn should_distribute_stateless_tasks_evenly_over_clients_with_unevenly_distributed_stream_threads_and_no_stateful_tasks(
    ) {
        let o = distribute_stateless(vec![
            ("P1", client(1, [])),
            ("P2", client(2, [])),
            ("P3", client(3, [])),
        ]);
        // Derived.
        o.assert_client("P1", &[t(0, 0), t(1, 2)], &[]);
        o.assert_client("P2", &[t(0, 1), t(1, 0)], &[]);
        o.assert_client("P3", &[t(0, 2), t(0, 3), t(1, 1)], &[]);
    }

    /// Kafka: HighAvailabilityTaskAssignorTest.shouldDistributeStatelessTasksEvenlyWithPreviousAssignmentAndNoStatefulTasks
    #[test]
    fn should_distribute_stateless_tasks_evenly_with_previous_assignment_and_no_stateful_tasks() {
        // P1 ran all seven before; stateless tasks report no offsets that matter, so this is ignored.
        let previous = seven_stateless_tasks()
            .into_iter()
            .map(|task| (task, LATEST_OFFSET));
        let o = distribute_stateless(vec![
            ("P1", client(3, previous)),
            ("P2", client(3, [])),
            ("P3", client(3, [])),
        ]);
        assert_seven_stateless_over_equal_clients(&o);
    }

    // ---------------------------------------------------------------------------------------------------------
    // TaskMovementTest: assign_active_task_movements on given caught-up sets and lag orders.

    /// Kafka's `getClientStateWithActiveAssignment`: capacity 1, lag 0 on `caught_up` and 10 000 on the rest of
    /// `all`, and `active` already assigned.
    fn client_with_actives(
        id: &str,
        active: &[TaskId],
        caught_up: &[TaskId],
        all: &BTreeSet<TaskId>,
    ) -> ClientState {
        let lags = all
            .iter()
            .map(|task| (*task, if caught_up.contains(task) { 0 } else { 10_000 }))
            .collect();
        client_with_lags(id, active, lags)
    }

    /// Kafka's `getClientStateWithLags`.
    fn client_with_lags(id: &str, active: &[TaskId], lags: BTreeMap<TaskId, i64>) -> ClientState {
        let mut state = ClientState::new(id, 1, lags);
        state.active.extend(active.iter().copied());
        state
    }

    fn clients_per_task<const N: usize>(entries: [(TaskId, Vec<usize>); N]) -> ByLag {
        entries.into_iter().collect()
    }

    fn caught_up_per_task<const N: usize>(entries: [(TaskId, Vec<usize>); N]) -> CaughtUp {
        entries
            .into_iter()
            .map(|(task, clients)| (task, clients.into_iter().collect()))
            .collect()
    }

    const P1: usize = 0;
    const P2: usize = 1;
    const P3: usize = 2;

    /// Runs the active movements; returns their count and the warm-ups recorded.
    fn active_movements(
        caught_up: &CaughtUp,
        by_lag: &ByLag,
        states: &mut [ClientState],
        max_warmup_replicas: i64,
    ) -> (usize, BTreeMap<usize, BTreeSet<TaskId>>) {
        let mut warmups = BTreeMap::new();
        let mut remaining = max_warmup_replicas;
        let count =
            assign_active_task_movements(caught_up, by_lag, states, &mut warmups, &mut remaining)
                .expect("movements failed");
        warmups.retain(|_, tasks: &mut BTreeSet<TaskId>| !tasks.is_empty());
        (count, warmups)
    }

    fn assert_state(state: &ClientState, active: &[TaskId], standby: &[TaskId]) {
        assert_eq!(
            state.active,
            active.iter().copied().collect(),
            "actives of {}",
            state.id
        );
        assert_eq!(
            state.standby,
            standby.iter().copied().collect(),
            "standbys of {}",
            state.id
        );
    }

    fn six_tasks_on_three_clients(caught_up: &[TaskId]) -> Vec<ClientState> {
        let all = grid(2, 3);
        vec![
            client_with_actives("P1", &[t(0, 0), t(1, 0)], caught_up, &all),
            client_with_actives("P2", &[t(0, 1), t(1, 1)], caught_up, &all),
            client_with_actives("P3", &[t(0, 2), t(1, 2)], caught_up, &all),
        ]
    }

    /// Kafka: TaskMovementTest.shouldAssignTasksToClientsAndReturnFalseWhenAllClientsCaughtUp
    #[test]
    fn should_assign_tasks_to_clients_and_return_false_when_all_clients_caught_up() {
        let all = grid(2, 3);
        let all_list: Vec<TaskId> = all.iter().copied().collect();
        let mut states = six_tasks_on_three_clients(&all_list);
        let caught_up = all
            .iter()
            .map(|&task| (task, [P1, P2, P3].into_iter().collect()))
            .collect();
        let by_lag = all.iter().map(|&task| (task, vec![P1, P2, P3])).collect();
        let (count, _) = active_movements(&caught_up, &by_lag, &mut states, i32::MAX.into());
        assert_eq!(count, 0);
    }

    /// Kafka: TaskMovementTest.shouldAssignAllTasksToClientsAndReturnFalseIfNoClientsAreCaughtUp
    #[test]
    fn should_assign_all_tasks_to_clients_and_return_false_if_no_clients_are_caught_up() {
        let all = grid(2, 3);
        let mut states = six_tasks_on_three_clients(&[]);
        let caught_up = all.iter().map(|&task| (task, BTreeSet::new())).collect();
        let by_lag = all.iter().map(|&task| (task, vec![P1, P2, P3])).collect();
        let (count, _) = active_movements(&caught_up, &by_lag, &mut states, i32::MAX.into());
        assert_eq!(count, 0);
    }

    /// The inputs of TaskMovementTest's warm-up tests: each client runs a task another one is caught up on.
    fn crossed_clients() -> (Vec<ClientState>, CaughtUp, ByLag) {
        let all = grid(1, 3);
        let states = vec![
            client_with_actives("P1", &[t(0, 0)], &[t(0, 0)], &all),
            client_with_actives("P2", &[t(0, 1)], &[t(0, 2)], &all),
            client_with_actives("P3", &[t(0, 2)], &[t(0, 1)], &all),
        ];
        let caught_up = caught_up_per_task([
            (t(0, 0), vec![P1]),
            (t(0, 1), vec![P3]),
            (t(0, 2), vec![P2]),
        ]);
        let by_lag = clients_per_task([
            (t(0, 0), vec![P1, P2, P3]),
            (t(0, 1), vec![P3, P1, P2]),
            (t(0, 2), vec![P2, P1, P3]),
        ]);
        (states, caught_up, by_lag)
    }

    /// Kafka: TaskMovementTest.shouldMoveTasksToCaughtUpClientsAndAssignWarmupReplicasInTheirPlace
    #[test]
    fn should_move_tasks_to_caught_up_clients_and_assign_warmup_replicas_in_their_place() {
        let (mut states, caught_up, by_lag) = crossed_clients();
        let (count, warmups) = active_movements(&caught_up, &by_lag, &mut states, i32::MAX.into());
        assert_eq!(count, 2);
        assert_state(&states[P1], &[t(0, 0)], &[]);
        assert_state(&states[P2], &[t(0, 2)], &[t(0, 1)]);
        assert_state(&states[P3], &[t(0, 1)], &[t(0, 2)]);
        // Derived.
        assert_eq!(
            warmups,
            BTreeMap::from([(P2, set([t(0, 1)])), (P3, set([t(0, 2)]))])
        );
    }

    /// Kafka: TaskMovementTest.shouldMoveTasksToMostCaughtUpClientsAndAssignWarmupReplicasInTheirPlace
    #[test]
    fn should_move_tasks_to_most_caught_up_clients_and_assign_warmup_replicas_in_their_place() {
        let lags = |entries: [(TaskId, i64); 3]| entries.into_iter().collect::<BTreeMap<_, _>>();
        let mut states = vec![
            client_with_lags(
                "P1",
                &[t(0, 0)],
                lags([(t(0, 0), 10_000), (t(0, 1), 20_000), (t(0, 2), 30_000)]),
            ),
            client_with_lags(
                "P2",
                &[t(0, 1)],
                lags([(t(0, 2), 10_000), (t(0, 0), 20_000), (t(0, 1), 30_000)]),
            ),
            client_with_lags(
                "P3",
                &[t(0, 2)],
                lags([(t(0, 1), 10_000), (t(0, 2), 20_000), (t(0, 0), 30_000)]),
            ),
        ];
        // The most caught-up client for 0_1 already holds a standby of it.
        states[P3].assign_standby(t(0, 1)).expect("standby");
        let caught_up =
            caught_up_per_task([(t(0, 0), vec![]), (t(0, 1), vec![]), (t(0, 2), vec![])]);
        let by_lag = clients_per_task([
            (t(0, 0), vec![P1, P2, P3]),
            (t(0, 1), vec![P3, P1, P2]),
            (t(0, 2), vec![P2, P3, P1]),
        ]);
        let (count, warmups) = active_movements(&caught_up, &by_lag, &mut states, i32::MAX.into());
        assert_eq!(count, 2);
        assert_state(&states[P1], &[t(0, 0)], &[]);
        assert_state(&states[P2], &[t(0, 2)], &[t(0, 1)]);
        assert_state(&states[P3], &[t(0, 1)], &[t(0, 2)]);
        // Derived: 0_1 was a swap, only 0_2 left a warm-up.
        assert_eq!(warmups, BTreeMap::from([(P3, set([t(0, 2)]))]));
    }

    /// Kafka: TaskMovementTest.shouldOnlyGetUpToMaxWarmupReplicasAndReturnTrue
    #[test]
    fn should_only_get_up_to_max_warmup_replicas_and_return_true() {
        let (mut states, caught_up, by_lag) = crossed_clients();
        let (count, _) = active_movements(&caught_up, &by_lag, &mut states, 1);
        assert_eq!(count, 2);
        assert_state(&states[P1], &[t(0, 0)], &[]);
        assert_state(&states[P2], &[t(0, 2)], &[t(0, 1)]);
        assert_state(&states[P3], &[t(0, 1)], &[]);
    }

    /// Kafka: TaskMovementTest.shouldNotCountPreviousStandbyTasksTowardsMaxWarmupReplicas
    #[test]
    fn should_not_count_previous_standby_tasks_towards_max_warmup_replicas() {
        let all = set([t(0, 0)]);
        let mut states = vec![
            client_with_actives("P1", &[], &[t(0, 0)], &all),
            client_with_actives("P2", &[t(0, 0)], &[], &all),
        ];
        states[P1].assign_standby(t(0, 0)).expect("standby");
        let caught_up = caught_up_per_task([(t(0, 0), vec![P1])]);
        let by_lag = clients_per_task([(t(0, 0), vec![P1, P2])]);
        let (count, _) = active_movements(&caught_up, &by_lag, &mut states, 0);
        assert_eq!(count, 1);
        assert_state(&states[P1], &[t(0, 0)], &[]);
        assert_state(&states[P2], &[], &[t(0, 0)]);
    }

    // ---------------------------------------------------------------------------------------------------------
    // ClientStateTest, lag parts

    fn ends<const N: usize>(entries: [(TaskId, i64); N]) -> BTreeMap<TaskId, i64> {
        entries.into_iter().collect()
    }

    fn offsets<const N: usize>(entries: [(TaskId, i64); N]) -> ClientInput {
        ClientInput {
            capacity: 0,
            offset_sums: entries.into_iter().collect(),
        }
    }

    /// Kafka: ClientStateTest.shouldComputeTaskLags
    #[test]
    fn should_compute_task_lags() {
        let lags = task_lags(
            &offsets([(t(0, 1), 0), (t(0, 2), 100)]),
            &ends([(t(0, 1), 500), (t(0, 2), 100)]),
        );
        assert_eq!(lags, ends([(t(0, 1), 500), (t(0, 2), 0)]));
    }

    /// Kafka: ClientStateTest.shouldReturnEndOffsetSumForLagOfTaskWeDidNotPreviouslyOwn
    #[test]
    fn should_return_end_offset_sum_for_lag_of_task_we_did_not_previously_own() {
        assert_eq!(
            task_lags(&offsets([]), &ends([(t(0, 1), 500)])),
            ends([(t(0, 1), 500)])
        );
    }

    /// Kafka: ClientStateTest.shouldReturnLatestOffsetForLagOfPreviousActiveRunningTask
    #[test]
    fn should_return_latest_offset_for_lag_of_previous_active_running_task() {
        let lags = task_lags(
            &offsets([(t(0, 1), LATEST_OFFSET)]),
            &ends([(t(0, 1), 500)]),
        );
        assert_eq!(lags, ends([(t(0, 1), LATEST_OFFSET)]));
    }

    /// Kafka: ClientStateTest.shouldReturnUnknownOffsetSumForLagOfTaskWithUnknownOffset
    #[test]
    fn should_return_unknown_offset_sum_for_lag_of_task_with_unknown_offset() {
        let lags = task_lags(
            &offsets([(t(0, 1), UNKNOWN_OFFSET_SUM)]),
            &ends([(t(0, 1), 500)]),
        );
        assert_eq!(lags, ends([(t(0, 1), UNKNOWN_OFFSET_SUM)]));
    }

    /// Kafka: ClientStateTest.shouldReturnEndOffsetSumIfOffsetSumIsGreaterThanEndOffsetSum
    #[test]
    fn should_return_end_offset_sum_if_offset_sum_is_greater_than_end_offset_sum() {
        assert_eq!(
            task_lags(&offsets([(t(0, 1), 5)]), &ends([(t(0, 1), 1)])),
            ends([(t(0, 1), 1)])
        );
    }

    /// Kafka: ClientStateTest.shouldThrowIllegalStateExceptionOnLagForUnknownTask (an error here)
    #[test]
    fn should_throw_illegal_state_exception_on_lag_for_unknown_task() {
        let state = ClientState::new(
            "c1",
            0,
            task_lags(&offsets([(t(0, 1), 0)]), &ends([(t(0, 1), 500)])),
        );
        assert_eq!(state.lag_for(t(0, 1)), Ok(500));
        assert_eq!(
            state.lag_for(t(0, 2)),
            Err(AssignError::UnknownLag {
                client: "c1".into(),
                task: t(0, 2)
            })
        );
    }

    /// Kafka: ClientStateTest.shouldNotTryToLookupTasksThatWerePreviouslyAssignedButNoLongerExist (without named
    /// topologies: a reported task the assignor does not know gets no lag)
    #[test]
    fn should_not_try_to_lookup_tasks_that_were_previously_assigned_but_no_longer_exist() {
        let lags = task_lags(
            &offsets([(t(0, 0), 0), (t(1, 0), 0)]),
            &ends([(t(0, 0), 10)]),
        );
        assert_eq!(lags, ends([(t(0, 0), 10)]));
    }

    fn refuses(first: Role, second: Role) {
        let mut state = ClientState::new("c1", 1, BTreeMap::new());
        state.assign(first, t(0, 1)).expect("first assignment");
        assert_eq!(
            state.assign(second, t(0, 1)),
            Err(AssignError::AlreadyAssigned {
                client: "c1".into(),
                task: t(0, 1)
            })
        );
    }

    /// Kafka: ClientStateTest.shouldRefuseActiveAndStandbyTask
    #[test]
    fn should_refuse_active_and_standby_task() {
        refuses(Role::Active, Role::Standby);
    }

    /// Kafka: ClientStateTest.shouldRefuseStandbyAndActiveTask
    #[test]
    fn should_refuse_standby_and_active_task() {
        refuses(Role::Standby, Role::Active);
    }

    /// Kafka: ClientStateTest.shouldRefuseDoubleActiveTask
    #[test]
    fn should_refuse_double_active_task() {
        refuses(Role::Active, Role::Active);
    }

    /// Kafka: ClientStateTest.shouldRefuseDoubleStandbyTask
    #[test]
    fn should_refuse_double_standby_task() {
        refuses(Role::Standby, Role::Standby);
    }

    // ---------------------------------------------------------------------------------------------------------
    // ConstrainedPrioritySetTest: the state is each client's weight.

    const DUMMY_TASK: TaskId = TaskId {
        subtopology: 0,
        partition: 0,
    };

    fn weighted<'a>(constraint: impl Fn(usize) -> bool + 'a) -> ConstrainedPrioritySet<'a, [f64]> {
        ConstrainedPrioritySet::new(
            move |_, client, _| constraint(client),
            |weights: &[f64], client| weights[client],
        )
    }

    /// Kafka: ConstrainedPrioritySetTest.shouldReturnOnlyClient
    #[test]
    fn should_return_only_client() {
        let weights = [1.0];
        let mut queue = weighted(|_| true);
        queue.offer_all([P1]);
        assert_eq!(queue.poll_any(&weights, DUMMY_TASK), Some(P1));
        assert_eq!(queue.poll_any(&weights, DUMMY_TASK), None);
    }

    /// Kafka: ConstrainedPrioritySetTest.shouldReturnNull
    #[test]
    fn should_return_null() {
        let weights = [1.0];
        let mut queue = weighted(|_| false);
        queue.offer_all([P1]);
        assert_eq!(queue.poll_any(&weights, DUMMY_TASK), None);
    }

    /// Kafka: ConstrainedPrioritySetTest.shouldReturnLeastLoadedClient
    #[test]
    fn should_return_least_loaded_client() {
        let weights = [3.0, 2.0, 1.0];
        let mut queue = weighted(|_| true);
        queue.offer_all([P1, P2, P3]);
        assert_eq!(queue.poll_any(&weights, DUMMY_TASK), Some(P3));
        assert_eq!(queue.poll_any(&weights, DUMMY_TASK), Some(P2));
        assert_eq!(queue.poll_any(&weights, DUMMY_TASK), Some(P1));
        assert_eq!(queue.poll_any(&weights, DUMMY_TASK), None);
    }

    /// Kafka: ConstrainedPrioritySetTest.shouldNotRetainDuplicates
    #[test]
    fn should_not_retain_duplicates() {
        let weights = [1.0];
        let mut queue = weighted(|_| true);
        queue.offer_all([P1]);
        queue.offer(P1);
        assert_eq!(queue.poll_any(&weights, DUMMY_TASK), Some(P1));
        assert_eq!(queue.poll_any(&weights, DUMMY_TASK), None);
    }

    /// Kafka: ConstrainedPrioritySetTest.shouldOnlyReturnValidClients
    #[test]
    fn should_only_return_valid_clients() {
        let weights = [1.0, 1.0];
        let mut queue = weighted(|client| client == P1);
        queue.offer_all([P1, P2]);
        assert_eq!(queue.poll_any(&weights, DUMMY_TASK), Some(P1));
        assert_eq!(queue.poll_any(&weights, DUMMY_TASK), None);
    }

    /// Kafka: ConstrainedPrioritySetTest.shouldApplyPollFilter
    #[test]
    fn should_apply_poll_filter() {
        let weights = [1.0, 1.0];
        let mut queue = weighted(|_| true);
        queue.offer_all([P1, P2]);
        assert_eq!(
            queue.poll(&weights, DUMMY_TASK, |_, client| client == P1),
            Some(P1)
        );
        assert_eq!(
            queue.poll(&weights, DUMMY_TASK, |_, client| client == P1),
            None
        );
        assert_eq!(queue.poll_any(&weights, DUMMY_TASK), Some(P2));
        assert_eq!(queue.poll_any(&weights, DUMMY_TASK), None);
    }

    /// Not in Kafka: elements comparing equal leave a `java.util.PriorityQueue` in the order its sifts give, not
    /// in insertion order (on poll the last element replaces the root and stays there against an equal child).
    #[test]
    fn java_priority_queue_polls_equal_elements_in_java_order() {
        let by_rank = |a: &(u8, char), b: &(u8, char)| a.0.cmp(&b.0);
        let drain = |queue: &mut JavaPriorityQueue<(u8, char)>| {
            std::iter::from_fn(|| queue.poll())
                .map(|(_, name)| name)
                .collect::<Vec<char>>()
        };

        let mut queue = JavaPriorityQueue::new(by_rank);
        for element in [(1, 'a'), (1, 'b'), (1, 'c')] {
            queue.add(element);
        }
        // [a, b, c]; poll a, c moves to the root and stays against b: [c, b].
        assert_eq!(drain(&mut queue), ['a', 'c', 'b']);

        let mut queue = JavaPriorityQueue::new(by_rank);
        for element in [(1, 'a'), (1, 'b'), (1, 'c'), (0, 'z')] {
            queue.add(element);
        }
        // z rises to the root: [z, a, c, b]; poll z, b moves to the root and stays: [b, a, c]; poll b, c moves to
        // the root and stays: [c, a].
        assert_eq!(drain(&mut queue), ['z', 'b', 'c', 'a']);
    }

    // ---------------------------------------------------------------------------------------------------------
    // Derived scenarios of the notes (3.4): not in Kafka, golden values from a stripped copy of Kafka's code.

    /// Not in Kafka: notes 3.4 X1, a balanced previous assignment that differs from the round-robin comes back,
    /// with warm-ups and a probing rebalance.
    #[test]
    fn derived_balanced_previous_assignment_not_matching_round_robin() {
        let all = grid(1, 4);
        let o = run(
            vec![
                ("P1", mock(&set([t(0, 0), t(0, 1)]))),
                ("P2", mock(&set([t(0, 2), t(0, 3)]))),
            ],
            &all,
            &all,
            config(100, 2, 0),
        );
        o.assert_client("P1", &[t(0, 0), t(0, 1)], &[t(0, 2)]);
        o.assert_client("P2", &[t(0, 2), t(0, 3)], &[t(0, 1)]);
        assert!(o.probing);
    }

    /// Not in Kafka: notes 3.4 X2, a standby moves to a caught-up client and the old copy stays as a warm-up.
    #[test]
    fn derived_standby_moves_to_caught_up_client() {
        let all = set([t(0, 0)]);
        let o = run(
            vec![
                ("P1", client(1, [(t(0, 0), LATEST_OFFSET)])),
                ("P2", client(1, [(t(0, 0), LAG_MAX)])),
                ("P3", client(1, [(t(0, 0), 50)])),
            ],
            &all,
            &all,
            config(100, 2, 1),
        );
        o.assert_client("P1", &[t(0, 0)], &[]);
        o.assert_client("P2", &[], &[t(0, 0)]);
        o.assert_client("P3", &[], &[t(0, 0)]);
        assert!(o.probing);
    }

    /// Not in Kafka: notes 3.4 X3, with acceptable lag 0 a lag of 0 is as caught up as a running active.
    #[test]
    fn derived_latest_offset_and_zero_lag_are_both_caught_up() {
        let all = set([t(0, 0), t(0, 1)]);
        let o = run(
            vec![
                ("P1", uniform(1, &all, 0)),
                ("P2", uniform(1, &all, LATEST_OFFSET)),
            ],
            &all,
            &all,
            config(0, 2, 0),
        );
        o.assert_client("P1", &[t(0, 0)], &[]);
        o.assert_client("P2", &[t(0, 1)], &[]);
        assert!(!o.probing);
    }

    /// Not in Kafka: notes 3.4 X4, stateful and stateless tasks with standbys on three caught-up clients.
    #[test]
    fn derived_mixed_workload() {
        let stateful = grid(1, 3);
        let all: BTreeSet<TaskId> = stateful
            .iter()
            .copied()
            .chain([t(1, 0), t(1, 1), t(1, 2)])
            .collect();
        let o = run(
            vec![
                ("P1", uniform(1, &stateful, 0)),
                ("P2", uniform(1, &stateful, 0)),
                ("P3", uniform(1, &stateful, 0)),
            ],
            &all,
            &stateful,
            config(100, 2, 1),
        );
        o.assert_client("P1", &[t(0, 0), t(1, 0)], &[t(0, 2)]);
        o.assert_client("P2", &[t(0, 1), t(1, 1)], &[t(0, 0)]);
        o.assert_client("P3", &[t(0, 2), t(1, 2)], &[t(0, 1)]);
        assert!(!o.probing);
    }

    /// Not in Kafka: notes 3.4 X5, an unknown offset sum sorts as the most caught up although it is not caught up.
    #[test]
    fn derived_unknown_offset_sum_sorts_as_most_caught_up() {
        let all = set([t(0, 0)]);
        let o = run(
            vec![
                ("P1", client(1, [(t(0, 0), 1000)])),
                ("P2", client(1, [(t(0, 0), UNKNOWN_OFFSET_SUM)])),
            ],
            &all,
            &all,
            config(100, 2, 0),
        );
        o.assert_client("P1", &[], &[t(0, 0)]);
        o.assert_client("P2", &[t(0, 0)], &[]);
        assert!(o.probing);
    }

    // ---------------------------------------------------------------------------------------------------------
    // Input errors

    fn assign_error(
        clients: Vec<(&str, ClientInput)>,
        all: &BTreeSet<TaskId>,
        ends: &BTreeMap<TaskId, i64>,
        configs: AssignmentConfigs,
    ) -> AssignError {
        assign(&to_clients(clients), all, ends, configs).expect_err("assignment should fail")
    }

    #[test]
    fn zero_capacity_is_an_error() {
        let all = set([t(0, 0)]);
        let error = assign_error(
            vec![("P1", client(1, [])), ("P2", client(0, []))],
            &all,
            &ends([]),
            config(0, 1, 0),
        );
        assert_eq!(
            error,
            AssignError::ZeroCapacity {
                client: "P2".into()
            }
        );
    }

    #[test]
    fn zero_max_warmup_replicas_is_an_error() {
        let error = assign_error(
            vec![("P1", client(1, []))],
            &BTreeSet::new(),
            &ends([]),
            config(0, 0, 0),
        );
        assert_eq!(error, AssignError::ZeroMaxWarmupReplicas);
    }

    #[test]
    fn tasks_without_clients_are_an_error_and_nothing_without_clients_is_not() {
        let all = set([t(0, 0), t(0, 1)]);
        let error = assign_error(vec![], &all, &ends([(t(0, 0), 5)]), config(0, 1, 0));
        assert_eq!(error, AssignError::NoClients { tasks: 2 });
        let (assignment, probing) = assign(
            &BTreeMap::new(),
            &BTreeSet::new(),
            &BTreeMap::new(),
            AssignmentConfigs::default(),
        )
        .expect("empty");
        assert!(assignment.is_empty() && !probing);
    }

    #[test]
    fn invalid_offsets_are_errors() {
        let all = set([t(0, 0)]);
        let error = assign_error(
            vec![("P1", client(1, []))],
            &all,
            &ends([(t(0, 1), 5)]),
            config(0, 1, 0),
        );
        assert_eq!(
            error,
            AssignError::StatefulTaskNotInAllTasks { task: t(0, 1) }
        );
        let error = assign_error(
            vec![("P1", client(1, []))],
            &all,
            &ends([(t(0, 0), -3)]),
            config(0, 1, 0),
        );
        assert_eq!(
            error,
            AssignError::NegativeEndOffsetSum {
                task: t(0, 0),
                end_offset_sum: -3
            }
        );
        let input = ClientInput {
            capacity: 1,
            offset_sums: [(t(0, 0), -1)].into_iter().collect(),
        };
        let error = assign_error(
            vec![("P1", input)],
            &all,
            &ends([(t(0, 0), 5)]),
            config(0, 1, 0),
        );
        assert_eq!(
            error,
            AssignError::InvalidOffsetSum {
                client: "P1".into(),
                task: t(0, 0),
                offset_sum: -1
            }
        );
    }

    /// An acceptable lag beyond Kafka's `Long.MAX_VALUE` is unbounded too: even an unknown offset sum is caught up.
    #[test]
    fn acceptable_lag_above_long_max_is_unbounded() {
        let all = set([t(0, 0)]);
        let o = run(
            vec![
                ("P1", client(1, [(t(0, 0), UNKNOWN_OFFSET_SUM)])),
                ("P2", client(1, [(t(0, 0), 0)])),
            ],
            &all,
            &all,
            config(u64::MAX, 1, 0),
        );
        o.assert_client("P1", &[t(0, 0)], &[]);
        assert!(!o.probing);
    }

    // ---------------------------------------------------------------------------------------------------------
    // Random inputs

    /// xorshift64: a small deterministic generator for the property test.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Not in Kafka as such (modelled on HighAvailabilityTaskAssignorTest.shouldAssignRandomInput, without racks):
    /// random clients, capacities, offsets and configs always give a result meeting the invariants, the same result
    /// twice. When all clients are interchangeable (same capacity, same lags), nothing moves: no probing, actives
    /// spread within one per client, and each subtopology's actives too.
    #[test]
    fn random_inputs_keep_the_invariants() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let (mut probing_rounds, mut warmup_rounds) = (0, 0);
        for round in 0..600 {
            let interchangeable = round % 4 == 0;
            let num_clients = 1 + rng.below(6) as usize;
            let subtopologies = 1 + rng.below(3) as usize;
            let partitions = 1 + rng.below(5) as i32;
            let all = grid(subtopologies, partitions);
            let stateful_subtopologies: Vec<bool> =
                (0..subtopologies).map(|_| rng.below(3) != 0).collect();
            let mut ends = BTreeMap::new();
            for &task in &all {
                if stateful_subtopologies[task.subtopology] {
                    ends.insert(task, rng.below(1000) as i64);
                }
            }
            let shared_capacity = 1 + rng.below(4) as usize;
            let mut clients = BTreeMap::new();
            for i in 0..num_clients {
                let mut input = ClientInput {
                    capacity: if interchangeable {
                        shared_capacity
                    } else {
                        1 + rng.below(4) as usize
                    },
                    offset_sums: BTreeMap::new(),
                };
                if !interchangeable {
                    for &task in ends.keys() {
                        let offset_sum = match rng.below(6) {
                            0 => continue,
                            1 => LATEST_OFFSET,
                            2 => UNKNOWN_OFFSET_SUM,
                            _ => rng.below(1200) as i64,
                        };
                        input.offset_sums.insert(task, offset_sum);
                    }
                }
                clients.insert(format!("p{i:02}"), input);
            }
            let configs = config(
                [0, 100, 500, i64::MAX as u64, u64::MAX][rng.below(5) as usize],
                1 + rng.below(3) as usize,
                rng.below(4) as usize,
            );

            let again = assign(&clients, &all, &ends, configs);
            let o = run_with_ends(clients, &all, &ends, configs);
            assert_eq!(
                again,
                Ok((o.assignment.clone(), o.probing)),
                "round {round}: not deterministic"
            );
            if interchangeable {
                assert!(
                    !o.probing,
                    "round {round}: interchangeable clients need no probing"
                );
                let counts: Vec<usize> = o
                    .assignment
                    .values()
                    .map(|given| given.active.len())
                    .collect();
                let spread = counts.iter().max().unwrap_or(&0) - counts.iter().min().unwrap_or(&0);
                assert!(spread <= 1, "round {round}: active counts {counts:?}");
                assert_balanced_tasks(&o, 1);
            }
            probing_rounds += usize::from(o.probing);
            warmup_rounds += usize::from(o.warmups > 0);
        }
        // The inputs do exercise the movements and the warm-up budget.
        assert!(
            probing_rounds >= 100,
            "only {probing_rounds} rounds with movements"
        );
        assert!(
            warmup_rounds >= 50,
            "only {warmup_rounds} rounds with warm-ups"
        );
    }
}
