//! `named(Named)` names the processor of the next operator on every DSL handle, as Kafka Streams' `Named`
//! argument does; names carry into the topology description, derived names follow Kafka's patterns, and invalid or
//! duplicate names are reported by `build`.

use std::time::Duration;

use streams_dsl::*;

fn n(name: &str) -> Named {
    Named::as_name(name)
}

/// The processor names of a topology's description, in order of appearance.
fn processors(description: &str) -> Vec<String> {
    description
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Processor: "))
        .map(|l| l.split_whitespace().next().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn every_stream_operator_takes_the_pending_name() {
    let b = StreamsBuilder::new();
    let s = b.stream::<String, i64>("in", Consumed::with(Serdes::string(), Serdes::i64()));
    let other = b.stream::<String, i64>("in2", Consumed::with(Serdes::string(), Serdes::i64()));
    let t = b.table::<String, i64>(
        "table",
        Consumed::with(Serdes::string(), Serdes::i64()),
        Materialized::new(),
    );
    let g = b.global_table::<String, i64>(
        "global",
        Consumed::with(Serdes::string(), Serdes::i64()),
        Materialized::as_store("global-store"),
    );
    let filtered = s.named(n("f")).filter(|_, v| *v > 0);
    let not = filtered.named(n("fn")).filter_not(|_, v| *v > 100);
    let mapped = not.named(n("m")).map_values(|v| v * 2);
    let mapped = mapped.named(n("mk")).map(|k, v| (k, v));
    let flat = mapped.named(n("fm")).flat_map_values(|_, v| vec![v]);
    let keyed = flat.named(n("sk")).select_key(|k, _| k.clone());
    let peeked = keyed.named(n("p")).peek(|_, _| {});
    let merged = peeked.named(n("mg")).merge(&other);
    merged.named(n("fe")).foreach(|_, _| {});
    let joined = merged
        .named(n("stj"))
        .join(&t, |a: &i64, b: &i64| a + b, Joined::new());
    let gj = joined
        .named(n("gj"))
        .join_global(&g, |k, _| k.clone(), |a, b| a + b);
    let ssj = gj.named(n("ssj")).join_stream(
        &other,
        |a: &i64, b: &i64| a + b,
        JoinWindows::of_time_difference_with_no_grace(Duration::from_secs(1)),
        StreamJoined::with(Serdes::string(), Serdes::i64(), Serdes::i64()),
    );
    ssj.named(n("sink")).to("out", Produced::new());
    let description = b.build().unwrap().describe().to_string();
    let names = processors(&description);
    for expected in [
        "f",
        "fn",
        "m",
        "mk",
        "fm",
        "sk",
        "p",
        "mg",
        "fe",
        "stj",
        "gj",
        "ssj-this-join",
        "ssj-other-join",
        "ssj-merge",
    ] {
        assert!(
            names.iter().any(|p| p == expected),
            "no processor {expected} in {names:?}"
        );
    }
    assert!(description.contains("Sink: sink"), "{description}");
}

#[test]
fn table_and_aggregation_operators_take_the_pending_name() {
    let b = StreamsBuilder::new();
    let t = b.table::<String, i64>(
        "table",
        Consumed::with(Serdes::string(), Serdes::i64()),
        Materialized::new(),
    );
    let t2 = b.table::<String, i64>(
        "table2",
        Consumed::with(Serdes::string(), Serdes::i64()),
        Materialized::new(),
    );
    let f = t.named(n("tf")).filter(|_, v| *v > 0);
    let m = f.named(n("tm")).map_values(|v| v + 1);
    let j = m.named(n("ttj")).join(&t2, |a, b| a + b);
    j.named(n("ts")).to_stream().to("out", Produced::new());
    j.group_by(|k, v| (k.clone(), *v), Grouped::new())
        .named(n("tagg"))
        .count(Materialized::new());
    let s = b.stream::<String, i64>("in", Consumed::with(Serdes::string(), Serdes::i64()));
    s.group_by_key(Grouped::new())
        .named(n("sagg"))
        .count(Materialized::new());
    s.group_by_key(Grouped::new())
        .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_secs(60)))
        .named(n("wagg"))
        .count(Materialized::new());
    s.group_by_key(Grouped::new())
        .windowed_by(SlidingWindows::of_time_difference_with_no_grace(
            Duration::from_secs(60),
        ))
        .named(n("slagg"))
        .count(Materialized::new());
    s.group_by_key(Grouped::new())
        .windowed_by(SessionWindows::of_inactivity_gap_with_no_grace(
            Duration::from_secs(60),
        ))
        .named(n("sesagg"))
        .count(Materialized::new());
    let names = processors(&b.build().unwrap().describe().to_string());
    for expected in [
        "tf",
        "tm",
        "ttj-join-this",
        "ttj-join-other",
        "ttj",
        "ts",
        "tagg",
        "sagg",
        "wagg",
        "slagg",
        "sesagg",
    ] {
        assert!(
            names.iter().any(|p| p == expected),
            "no processor {expected} in {names:?}"
        );
    }
}

#[test]
fn without_names_processors_keep_generated_names() {
    let b = StreamsBuilder::new();
    let s = b.stream::<String, i64>("in", Consumed::with(Serdes::string(), Serdes::i64()));
    s.filter(|_, v| *v > 0).to("out", Produced::new());
    let names = processors(&b.build().unwrap().describe().to_string());
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].starts_with("KSTREAM-FILTER-"), "{names:?}");
}

#[test]
fn a_name_applies_to_one_operator_and_the_records_still_flow() {
    let b = StreamsBuilder::new();
    b.stream::<String, i64>("in", Consumed::with(Serdes::string(), Serdes::i64()))
        .named(n("positive"))
        .filter(|_, v| *v > 0)
        .map_values(|v| v * 10)
        .to("out", Produced::with(Serdes::string(), Serdes::i64()));
    let topology = b.build().unwrap();
    let names = processors(&topology.describe().to_string());
    assert_eq!(names[0], "positive");
    assert!(names[1].starts_with("KSTREAM-MAPVALUES-"), "{names:?}");
    let d = TopologyTestDriver::new(topology).unwrap();
    let input = d.input_topic("in", Serdes::string(), Serdes::i64());
    for (k, v) in [("a", 1), ("b", -1), ("c", 3)] {
        input.pipe_input(k.to_string(), v).unwrap();
    }
    let out = d
        .output_topic("out", Serdes::string(), Serdes::i64())
        .read_key_values_to_vec()
        .unwrap();
    assert_eq!(out, vec![("a".to_string(), 10), ("c".to_string(), 30)]);
}

#[test]
fn invalid_and_duplicate_names_are_reported_by_build() {
    let b = StreamsBuilder::new();
    b.stream::<String, i64>("in", Consumed::new())
        .named(n("bad name!"))
        .filter(|_, _| true);
    let err = b.build().unwrap_err().to_string();
    assert!(err.contains("bad name!"), "{err}");

    let b = StreamsBuilder::new();
    let s = b
        .stream::<String, i64>("in", Consumed::new())
        .named(n("twice"));
    s.filter(|_, _| true);
    s.filter(|_, _| false);
    let err = b.build().unwrap_err().to_string();
    assert!(err.contains("twice"), "{err}");
}
