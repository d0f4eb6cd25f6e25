//! Stateless processors (`Topology::add_stateless_processor`), which a task builds into their parent where they are
//! its only child: the same topology built with plain processors gives the same records, skips and metrics, and
//! an error or a panic in a processor built into its parent names that processor, as the processing exception
//! handler scenarios of Kafka Streams' `ProcessingExceptionHandlerIntegrationTest` expect of any processor.

use std::collections::BTreeMap;
use std::time::Duration;

use streams_core::*;

/// Multiplies values by `factor`; an error on multiples of 7, a panic on multiples of 11.
struct Checked {
    factor: i64,
}

impl Processor<String, i64> for Checked {
    type KOut = String;
    type VOut = i64;
    fn process(
        &mut self,
        r: Record<String, i64>,
        ctx: &mut ProcessorContext<String, i64>,
    ) -> Result<(), StreamsError> {
        if r.value % 11 == 0 {
            panic!("value {} is divisible by 11", r.value);
        }
        if r.value % 7 == 0 {
            return Err(StreamsError::processor(format!(
                "value {} is divisible by 7",
                r.value
            )));
        }
        let v = r.value * self.factor;
        ctx.forward(r.with_value(v))
    }
}

/// Forwards records with an odd value, twice each, to every child.
struct OddTwice;

impl Processor<String, i64> for OddTwice {
    type KOut = String;
    type VOut = i64;
    fn process(
        &mut self,
        r: Record<String, i64>,
        ctx: &mut ProcessorContext<String, i64>,
    ) -> Result<(), StreamsError> {
        if r.value % 2 == 1 {
            ctx.forward(r.clone())?;
            ctx.forward(r)?;
        }
        Ok(())
    }
}

/// Adds one to the value.
struct PlusOne;

impl Processor<String, i64> for PlusOne {
    type KOut = String;
    type VOut = i64;
    fn process(
        &mut self,
        r: Record<String, i64>,
        ctx: &mut ProcessorContext<String, i64>,
    ) -> Result<(), StreamsError> {
        let v = r.value + 1;
        ctx.forward(r.with_value(v))
    }
}

fn longs() -> SinkOptions<String, i64> {
    SinkOptions::new(Serdes::string(), Serdes::i64())
}

/// `in -> pre(+1) -> checked(x3) -> out` (a chain: both built into their parent when stateless);
/// `in2 -> odd -> {plus -> a, b}` (`odd` has two children, so `plus` and the sinks stay nodes of their own);
/// `{plus, odd} -> merged -> m` (`merged` has two parents).
fn topology(stateless: bool) -> Topology {
    let mut t = Topology::new();
    let add =
        |t: &mut Topology, name: &str, parents: &[&str], p: Box<dyn Fn() -> Proc + Send + Sync>| {
            if stateless {
                t.add_stateless_processor(name, p, parents).unwrap();
            } else {
                t.add_processor(name, p, parents).unwrap();
            }
        };
    t.add_source(
        "src",
        &["in"],
        SourceOptions::new(Serdes::string(), Serdes::i64()),
    )
    .unwrap();
    add(&mut t, "pre", &["src"], Box::new(|| Proc::PlusOne(PlusOne)));
    add(
        &mut t,
        "checked",
        &["pre"],
        Box::new(|| Proc::Checked(Checked { factor: 3 })),
    );
    t.add_sink("out", "out", longs(), &["checked"]).unwrap();
    t.add_source(
        "src2",
        &["in2"],
        SourceOptions::new(Serdes::string(), Serdes::i64()),
    )
    .unwrap();
    add(
        &mut t,
        "odd",
        &["src2"],
        Box::new(|| Proc::OddTwice(OddTwice)),
    );
    add(
        &mut t,
        "plus",
        &["odd"],
        Box::new(|| Proc::PlusOne(PlusOne)),
    );
    t.add_sink("a", "a", longs(), &["plus"]).unwrap();
    t.add_sink("b", "b", longs(), &["odd"]).unwrap();
    add(
        &mut t,
        "merged",
        &["plus", "odd"],
        Box::new(|| Proc::PlusOne(PlusOne)),
    );
    t.add_sink("m", "m", longs(), &["merged"]).unwrap();
    t
}

/// One type for the processors above, so one closure type can build any of them.
enum Proc {
    Checked(Checked),
    OddTwice(OddTwice),
    PlusOne(PlusOne),
}

impl Processor<String, i64> for Proc {
    type KOut = String;
    type VOut = i64;
    fn process(
        &mut self,
        r: Record<String, i64>,
        ctx: &mut ProcessorContext<String, i64>,
    ) -> Result<(), StreamsError> {
        match self {
            Proc::Checked(p) => p.process(r, ctx),
            Proc::OddTwice(p) => p.process(r, ctx),
            Proc::PlusOne(p) => p.process(r, ctx),
        }
    }
}

type Outputs = BTreeMap<&'static str, Vec<(String, i64)>>;

fn run(stateless: bool) -> (Outputs, TaskMetricsSnapshot) {
    let d = TopologyTestDriver::builder(topology(stateless))
        .processing_handler(LogAndContinueProcessing)
        .build()
        .unwrap();
    let in1 = d.input_topic("in", Serdes::string(), Serdes::i64());
    let in2 = d.input_topic("in2", Serdes::string(), Serdes::i64());
    for v in 0..200i64 {
        in1.pipe_input(format!("k{}", v % 13), v).unwrap();
        in2.pipe_input(format!("j{}", v % 5), v).unwrap();
    }
    let mut out = BTreeMap::new();
    for topic in ["out", "a", "b", "m"] {
        let records = d
            .output_topic(topic, Serdes::string(), Serdes::i64())
            .read_key_values_to_vec()
            .unwrap();
        out.insert(topic, records);
    }
    (out, d.metrics())
}

#[test]
fn stateless_processors_give_the_records_of_plain_ones() {
    let (fused, fused_metrics) = run(true);
    let (plain, plain_metrics) = run(false);
    assert_eq!(fused, plain);
    assert_eq!(fused_metrics.processed, plain_metrics.processed);
    assert_eq!(fused_metrics.skipped_records, plain_metrics.skipped_records);
    // And against the computation itself.
    let out: Vec<(String, i64)> = (0..200i64)
        .map(|v| (format!("k{}", v % 13), v + 1))
        .filter(|(_, v)| v % 7 != 0 && v % 11 != 0)
        .map(|(k, v)| (k, v * 3))
        .collect();
    assert_eq!(fused["out"], out);
    let skipped = (0..200i64)
        .filter(|v| (v + 1) % 7 == 0 || (v + 1) % 11 == 0)
        .count() as u64;
    assert_eq!(fused_metrics.skipped_records, skipped);
    let odd: Vec<(String, i64)> = (0..200i64)
        .filter(|v| v % 2 == 1)
        .flat_map(|v| [(format!("j{}", v % 5), v), (format!("j{}", v % 5), v)])
        .collect();
    assert_eq!(fused["b"], odd);
    let a: Vec<(String, i64)> = odd.iter().map(|(k, v)| (k.clone(), v + 1)).collect();
    assert_eq!(fused["a"], a);
    // `merged` gets each odd record from `plus` (v + 1) then from `odd` (v), in that order, and adds one.
    let m: Vec<(String, i64)> = odd
        .iter()
        .flat_map(|(k, v)| [(k.clone(), v + 2), (k.clone(), v + 1)])
        .collect();
    assert_eq!(fused["m"], m);
}

#[test]
fn an_error_or_a_panic_in_a_processor_built_into_its_parent_names_it() {
    let d = TopologyTestDriver::new(topology(true)).unwrap();
    let input = d.input_topic("in", Serdes::string(), Serdes::i64());
    input.pipe_input("a".into(), 1).unwrap();
    match input.pipe_input("b".into(), 13).unwrap_err() {
        StreamsError::Processor { node, message } => {
            assert_eq!(node, "checked");
            assert_eq!(message, "value 14 is divisible by 7");
        }
        other => panic!("unexpected {other:?}"),
    }
    let d = TopologyTestDriver::new(topology(true)).unwrap();
    let err = d
        .input_topic("in", Serdes::string(), Serdes::i64())
        .pipe_input("c".into(), 21)
        .unwrap_err();
    match &err {
        StreamsError::Panic {
            processor, message, ..
        } => {
            assert_eq!(processor.as_deref(), Some("checked"));
            assert_eq!(message, "value 22 is divisible by 11");
        }
        other => panic!("unexpected {other:?}"),
    }
    // Under log-and-continue, the panic is handled as a plain processor's is: the record is skipped.
    let d = TopologyTestDriver::builder(topology(true))
        .processing_handler(LogAndContinueProcessing)
        .build()
        .unwrap();
    let input = d.input_topic("in", Serdes::string(), Serdes::i64());
    input.pipe_input("c".into(), 21).unwrap();
    input.pipe_input("d".into(), 1).unwrap();
    assert_eq!(d.metrics().skipped_records, 1);
    let out = d
        .output_topic("out", Serdes::string(), Serdes::i64())
        .read_key_values_to_vec()
        .unwrap();
    assert_eq!(out, vec![("d".to_string(), 6)]);
}

/// Schedules a punctuation on its first record.
struct Scheduling;

impl Processor<String, i64> for Scheduling {
    type KOut = String;
    type VOut = i64;
    fn process(
        &mut self,
        r: Record<String, i64>,
        ctx: &mut ProcessorContext<String, i64>,
    ) -> Result<(), StreamsError> {
        ctx.schedule(Duration::from_secs(1), PunctuationType::StreamTime)?;
        ctx.forward(r)
    }
}

#[test]
fn a_processor_built_into_its_parent_refuses_to_schedule_with_an_error_naming_it() {
    let mut t = Topology::new();
    t.add_source(
        "src",
        &["in"],
        SourceOptions::new(Serdes::string(), Serdes::i64()),
    )
    .unwrap()
    .add_stateless_processor("sched", || Scheduling, &["src"])
    .unwrap()
    .add_sink("out", "out", longs(), &["sched"])
    .unwrap();
    let d = TopologyTestDriver::new(t).unwrap();
    let err = d
        .input_topic("in", Serdes::string(), Serdes::i64())
        .pipe_input("a".into(), 1)
        .unwrap_err();
    match err {
        StreamsError::Processor { node, message } => {
            assert_eq!(node, "sched");
            assert!(
                message.contains("cannot schedule punctuations"),
                "{message}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}
