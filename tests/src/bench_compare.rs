//! The benchmark suite's `--compare OLD.json`: every figure of a run beside the same figure of an earlier run's
//! `suite.json`.
//!
//! Both reports are flattened into figures named by their path, where an element of a list is named by what
//! identifies it (its data set and workload) rather than its position, so rows added or removed between the
//! runs do not shift the others. Only numbers present in both are compared.

use std::collections::BTreeMap;

use serde_json::Value;

/// Fields that name a row of a list; the first ones present make its name.
const IDENTITY: [&str; 2] = ["set", "workload"];

/// Figures that say how much, not how fast or how big: not compared.
const NOT_FIGURES: [&str; 4] = ["keys", "value_bytes", "partitions", "cores"];

/// Every number of `v`, by path.
pub fn flatten(v: &Value) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    walk(v, String::new(), &mut out);
    out
}

fn walk(v: &Value, path: String, out: &mut BTreeMap<String, f64>) {
    match v {
        Value::Number(n) => {
            if let Some(x) = n.as_f64() {
                out.insert(path, x);
            }
        }
        Value::Object(m) => {
            for (k, child) in m {
                if NOT_FIGURES.contains(&k.as_str()) {
                    continue;
                }
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk(child, p, out);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let name: Vec<&str> = IDENTITY
                    .iter()
                    .filter_map(|f| item.get(*f).and_then(Value::as_str))
                    .collect();
                let name = if name.is_empty() {
                    i.to_string()
                } else {
                    name.join("/")
                };
                walk(item, format!("{path}[{name}]"), out);
            }
        }
        _ => {}
    }
}

/// A Markdown table of every figure found in both reports: old, new and new / old.
pub fn table(old: &Value, new: &Value) -> String {
    let (a, b) = (flatten(old), flatten(new));
    let mut md = String::from("| figure | old | new | new / old |\n|---|---|---|---|\n");
    let mut shown = 0;
    for (path, new_v) in &b {
        let Some(old_v) = a.get(path) else { continue };
        let ratio = if *old_v != 0.0 {
            format!("{:.2}x", new_v / old_v)
        } else {
            "-".into()
        };
        md.push_str(&format!(
            "| {path} | {} | {} | {ratio} |\n",
            short(*old_v),
            short(*new_v)
        ));
        shown += 1;
    }
    let only_old = a.keys().filter(|k| !b.contains_key(*k)).count();
    let only_new = b.keys().filter(|k| !a.contains_key(*k)).count();
    md.push_str(&format!(
        "\n{shown} figures compared; {only_old} only in the old report, {only_new} only in the new one.\n"
    ));
    md
}

fn short(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else if x.abs() >= 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.4}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_are_matched_by_name_not_position() {
        let old = json!({"workloads": [
            {"set": "s", "workload": "count", "ours": {"wall_s": 2.0}},
            {"set": "s", "workload": "join", "ours": {"wall_s": 4.0}},
        ]});
        let new = json!({"workloads": [
            {"set": "s", "workload": "join", "ours": {"wall_s": 1.0}},
        ]});
        let t = table(&old, &new);
        assert!(
            t.contains("| workloads[s/join].ours.wall_s | 4 | 1 | 0.25x |"),
            "{t}"
        );
        assert!(!t.contains("count"), "{t}");
        assert!(
            t.contains("1 figures compared; 1 only in the old report, 0 only in the new one"),
            "{t}"
        );
    }
}
