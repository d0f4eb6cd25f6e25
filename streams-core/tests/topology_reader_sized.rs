//! Internal topics sized by the sub-topology that reads them: two sub-topologies with differently partitioned
//! inputs exchange records both ways, each topic co-partitioned with its reader.

use streams_core::*;

struct Pass;

impl Processor<String, String> for Pass {
    type KOut = String;
    type VOut = String;
    fn process(
        &mut self,
        r: Record<String, String>,
        ctx: &mut ProcessorContext<String, String>,
    ) -> Result<(), StreamsError> {
        ctx.forward(r)
    }
}

fn strings() -> SourceOptions<String, String> {
    SourceOptions::new(Serdes::string(), Serdes::string())
}

fn sink() -> SinkOptions<String, String> {
    SinkOptions::new(Serdes::string(), Serdes::string())
}

/// `left` side: reads `left` and `responses`, writes `requests`; `right` side: reads `right` and `requests`,
/// writes `responses`.
fn exchange() -> Topology {
    let mut t = Topology::new();
    t.add_reader_sized_internal_topic("requests").unwrap();
    t.add_reader_sized_internal_topic("responses").unwrap();
    t.add_source("left-in", &["left"], strings()).unwrap();
    t.add_source("responses-in", &["responses"], strings())
        .unwrap();
    t.add_processor::<String, String, _, _>("left", || Pass, &["left-in", "responses-in"])
        .unwrap();
    t.add_sink("requests-out", "requests", sink(), &["left"])
        .unwrap();
    t.add_source("right-in", &["right"], strings()).unwrap();
    t.add_source("requests-in", &["requests"], strings())
        .unwrap();
    t.add_processor::<String, String, _, _>("right", || Pass, &["right-in", "requests-in"])
        .unwrap();
    t.add_sink("responses-out", "responses", sink(), &["right"])
        .unwrap();
    t
}

#[test]
fn each_topic_follows_its_reader() {
    let t = exchange();
    let plan = t
        .partition_plan("app", |topic| match topic {
            "left" => Ok(2),
            "right" => Ok(5),
            other => panic!("asked for {other}"),
        })
        .unwrap();
    assert_eq!(plan.task_counts, vec![2, 5]);
    assert_eq!(plan.topic_partitions["app-requests"], 5);
    assert_eq!(plan.topic_partitions["app-responses"], 2);
}

#[test]
fn a_sub_topology_reading_only_reader_sized_topics_cannot_be_sized() {
    let mut t = Topology::new();
    t.add_reader_sized_internal_topic("loop").unwrap();
    t.add_source("in", &["input"], strings()).unwrap();
    t.add_sink("to-loop", "loop", sink(), &["in"]).unwrap();
    t.add_source("loop-in", &["loop"], strings()).unwrap();
    t.add_processor::<String, String, _, _>("p", || Pass, &["loop-in"])
        .unwrap();
    t.add_sink("out", "output", sink(), &["p"]).unwrap();
    match t.partition_plan("app", |_| Ok(3)) {
        Err(StreamsError::InvalidTopology(m)) => {
            assert!(m.contains("sized by their reader"), "{m}")
        }
        other => panic!("expected an invalid topology, got {other:?}"),
    }
}
