//! When a task with several input partitions may process (`max.task.idle.ms`, Kafka Streams' semantics since
//! KIP-695). A task picks the queued record with the lowest timestamp across its partitions; if one partition
//! has nothing queued, processing the others could go out of timestamp order (a join would miss its match), so:
//!
//! - with idling disabled (`max.task.idle.ms = -1`) the task always processes what it has;
//! - a partition whose lag is unknown (nothing fetched yet) makes the task wait;
//! - a partition with records on the broker not yet polled (lag > 0) makes the task wait for them;
//! - a partition known to be caught up (lag 0) makes the task wait `max.task.idle.ms` of wall-clock time for new
//!   data, then it processes anyway ("enforced processing", logged and counted). With the default 0 it does not
//!   wait at all.

/// `max.task.idle.ms` value that disables waiting.
pub(crate) const IDLE_DISABLED: i64 = -1;

/// What a task knows about one of its input partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InputState {
    /// Records are queued locally.
    Buffered,
    /// Nothing queued; `lag` is how many records the broker holds beyond what was polled (`None`: not known yet).
    Empty { lag: Option<i64> },
}

/// The idling state of one task.
#[derive(Debug, Clone)]
pub(crate) struct IdleState {
    max_idle_ms: i64,
    /// Per input: the wall-clock time until which the task waits for it (set when it is first seen caught up
    /// and empty; cleared when it has data or lag again).
    deadlines: Vec<Option<i64>>,
    /// How many times processing went ahead without every partition buffered.
    pub enforced: u64,
}

impl IdleState {
    pub(crate) fn new(max_idle_ms: i64, inputs: usize) -> IdleState {
        IdleState {
            max_idle_ms,
            deadlines: vec![None; inputs],
            enforced: 0,
        }
    }

    /// Whether idling is disabled (the task always processes what it has).
    pub(crate) fn disabled(&self) -> bool {
        self.max_idle_ms == IDLE_DISABLED
    }

    /// Whether the task may process at wall-clock time `now`, given the state of each input.
    pub(crate) fn ready(&mut self, now: i64, inputs: &[InputState]) -> bool {
        if self.disabled() {
            return true;
        }
        let mut any_buffered = false;
        let mut gave_up = false;
        for (i, state) in inputs.iter().enumerate() {
            match *state {
                InputState::Buffered => {
                    self.deadlines[i] = None;
                    any_buffered = true;
                }
                InputState::Empty { lag: None } | InputState::Empty { lag: Some(1..) } => {
                    self.deadlines[i] = None;
                    return false;
                }
                InputState::Empty { lag: Some(_) } => {
                    let deadline =
                        *self.deadlines[i].get_or_insert(now.saturating_add(self.max_idle_ms));
                    if now < deadline {
                        return false;
                    }
                    gave_up = true;
                }
            }
        }
        if !gave_up {
            return true;
        }
        if !any_buffered {
            return false;
        }
        self.enforced += 1;
        if self.max_idle_ms > 0 {
            tracing::info!(
                max_task_idle_ms = self.max_idle_ms,
                "processing although some partitions have nothing buffered: records may be processed out of \
                 timestamp order"
            );
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use InputState::*;

    // Scenarios from Kafka's PartitionGroupTest (two partitions; the first holds records).

    /// PartitionGroupTest.shouldNeverWaitIfIdlingIsDisabled
    #[test]
    fn never_waits_when_idling_is_disabled() {
        let mut s = IdleState::new(IDLE_DISABLED, 2);
        assert!(s.ready(0, &[Buffered, Empty { lag: None }]));
        assert!(s.ready(0, &[Buffered, Empty { lag: Some(1) }]));
    }

    /// PartitionGroupTest.shouldBeReadyIfAllPartitionsAreBuffered
    #[test]
    fn ready_when_every_partition_is_buffered() {
        let mut s = IdleState::new(0, 2);
        assert!(s.ready(0, &[Buffered, Buffered]));
        assert_eq!(s.enforced, 0);
    }

    /// PartitionGroupTest.shouldWaitForFetchesWhenMetadataIsIncomplete
    #[test]
    fn waits_for_a_fetch_when_the_lag_is_unknown() {
        let mut s = IdleState::new(0, 2);
        assert!(!s.ready(0, &[Buffered, Empty { lag: None }]));
        // Once fetched and caught up, the default (0) processes at once.
        assert!(s.ready(0, &[Buffered, Empty { lag: Some(0) }]));
        assert_eq!(s.enforced, 1);
    }

    /// PartitionGroupTest.shouldWaitForPollWhenLagIsNonzero
    #[test]
    fn waits_for_records_the_broker_holds() {
        let mut s = IdleState::new(0, 2);
        assert!(!s.ready(0, &[Buffered, Empty { lag: Some(1) }]));
        assert!(!s.ready(1_000_000, &[Buffered, Empty { lag: Some(1) }]));
    }

    /// PartitionGroupTest.shouldIdleAsSpecifiedWhenLagIsZero (max.task.idle.ms = 1)
    #[test]
    fn idles_as_configured_when_caught_up() {
        let mut s = IdleState::new(1, 2);
        assert!(!s.ready(0, &[Buffered, Empty { lag: Some(0) }]));
        assert!(s.ready(1, &[Buffered, Empty { lag: Some(0) }]));
        // The deadline stays where it was set: still past at time 2.
        assert!(s.ready(2, &[Buffered, Empty { lag: Some(0) }]));
        assert_eq!(s.enforced, 2);
        // Data arriving on the partition resets its deadline.
        assert!(s.ready(3, &[Buffered, Buffered]));
        assert!(!s.ready(3, &[Buffered, Empty { lag: Some(0) }]));
    }

    #[test]
    fn nothing_buffered_is_never_ready() {
        let mut s = IdleState::new(0, 2);
        assert!(!s.ready(5, &[Empty { lag: Some(0) }, Empty { lag: Some(0) }]));
    }
}
