//! Standby replicas (`num.standby.replicas`): with one replica, the instance that takes over a leaving
//! instance's tasks restores almost nothing (its standby copies followed the changelogs); without, it restores
//! their whole changelogs. Either way every count is right afterwards. The key metadata names the standby.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use streams_dsl::streams_core::runtime::{
    HostInfo, KafkaStreams, QueryServer, State, StoreQueryParameters,
};
use streams_dsl::*;
use tests::{
    close_all, counting_partitions, describe_instance, local_page_counts, page_counts_topology,
    wait_until, wait_until_reporting, Broker, CountingRestores,
};

const VISITS: usize = 20_000;
const PAGES: usize = 4_000;

/// Produces `n` visits (user -> page) spread over `pages` pages to `visits`; returns the count of each page.
fn produce_visits(bootstrap: &str, n: usize, pages: usize) -> BTreeMap<String, i64> {
    let mut expected = BTreeMap::new();
    tests::produce_visits(bootstrap, 0, n, pages, &mut expected);
    expected
}

/// What the failover showed: records B restored when it took A's tasks, and how many keys those tasks held.
struct Failover {
    restored: u64,
    keys_moved: u64,
    /// Of the queries for the moved keys made during the failover, the share answered (when measured).
    answered: Option<f64>,
}

fn failover(broker: &Broker, replicas: usize) -> Failover {
    let app = format!("standby-{replicas}");
    broker.create_topic("visits", 3);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let start = |dir: &std::path::Path, server: &str, restored: &Arc<AtomicU64>| {
        let (mut config, admin) = broker.config(&app, dir);
        config.set("application.server", server).unwrap();
        config
            .set("num.standby.replicas", &replicas.to_string())
            .unwrap();
        let s = KafkaStreams::new(page_counts_topology(), (config, admin)).unwrap();
        s.set_restore_listener(CountingRestores(restored.clone()));
        s.start().unwrap();
        s
    };
    let (restored_a, restored_b) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let a = start(dir_a.path(), "127.0.0.1:18101", &restored_a);
    let b = start(dir_b.path(), "127.0.0.1:18102", &restored_b);
    wait_until("both instances to run", Duration::from_secs(60), || {
        a.state() == State::Running
            && b.state() == State::Running
            && !counting_partitions(&a).is_empty()
            && !counting_partitions(&b).is_empty()
    });
    let expected = produce_visits(&broker.bootstrap(), VISITS, PAGES);
    wait_until_reporting(
        "both instances to hold every count",
        Duration::from_secs(120),
        || {
            let mut merged = local_page_counts(&a);
            merged.extend(local_page_counts(&b));
            merged == expected
        },
        || format!("A: {}; B: {}", describe_instance(&a), describe_instance(&b)),
    );
    // Settled: the counting tasks split between the two (a rebalance may still have been under way).
    wait_until(
        "the counting tasks to be split between A and B",
        Duration::from_secs(60),
        || {
            let (on_a, on_b) = (counting_partitions(&a), counting_partitions(&b));
            a.state() == State::Running
                && b.state() == State::Running
                && !on_a.is_empty()
                && !on_b.is_empty()
                && on_a.is_disjoint(&on_b)
                && on_a.len() + on_b.len() == 3
        },
    );
    let moved = counting_partitions(&a);
    // The changelog of A's counting tasks holds at least one record per key they count.
    let keys_moved = local_page_counts(&a).len() as u64;
    assert!(
        keys_moved > 0,
        "A counts nothing: {}",
        describe_instance(&a)
    );
    if replicas > 0 {
        // B keeps a standby of each of A's counting tasks (and A of B's), caught up with the changelog.
        wait_until_reporting(
            "B's standbys of A's tasks to catch up",
            Duration::from_secs(60),
            || {
                let lags = b.standby_lags();
                let Some(parts) = lags.get("page-counts") else {
                    return false;
                };
                moved.iter().all(|p| {
                    parts
                        .get(p)
                        .is_some_and(|l| l.offset_lag == 0 && l.end_offset_position > 0)
                })
            },
            || format!("B's standby lags: {:?}; A runs {moved:?}", b.standby_lags()),
        );
        assert!(
            b.standby_lags()["page-counts"]
                .keys()
                .all(|p| !counting_partitions(&b).contains(p)),
            "a standby on the instance running its task"
        );
        // The key metadata names B as the standby of a key A owns.
        wait_until(
            "the metadata to name B as a standby",
            Duration::from_secs(30),
            || {
                expected.keys().any(|page| {
                    let m = a
                        .query_metadata_for_key("page-counts", page, &Serdes::string())
                        .unwrap();
                    m.active.as_ref().and_then(|i| i.host.clone())
                        == HostInfo::parse("127.0.0.1:18101")
                        && m.standbys
                            .iter()
                            .any(|s| s.host == HostInfo::parse("127.0.0.1:18102"))
                })
            },
        );
    } else {
        assert!(b.standby_lags().is_empty());
    }

    // A leaves; B takes its tasks, restoring from its standby copies when it has them.
    let before = restored_b.load(std::sync::atomic::Ordering::Relaxed);
    assert!(a.close(Duration::from_secs(30)));
    wait_until_reporting(
        "B to run every counting task and hold every count",
        Duration::from_secs(120),
        || {
            b.state() == State::Running
                && counting_partitions(&b).len() == 3
                && local_page_counts(&b) == expected
        },
        || describe_instance(&b),
    );
    let restored = restored_b.load(std::sync::atomic::Ordering::Relaxed) - before;
    assert!(b.close(Duration::from_secs(30)));
    println!(
        "num.standby.replicas={replicas}: B restored {restored} records taking over A's tasks, which held {keys_moved} keys"
    );
    Failover {
        restored,
        keys_moved,
        answered: None,
    }
}

/// Runs a failover scenario without standbys, then with `replicas`: without, the instances taking over read
/// the moved tasks' changelog partitions from the start (at least one record per key); with, at most 1% of
/// that.
fn compare(broker: fn() -> Broker, scenario: fn(&Broker, usize) -> Failover, replicas: usize) {
    let without = scenario(&broker(), 0);
    let with = scenario(&broker(), replicas);
    assert!(
        without.restored >= without.keys_moved,
        "without standbys: restored {} records for {} keys",
        without.restored,
        without.keys_moved
    );
    assert!(
        with.restored * 100 <= with.keys_moved,
        "with a standby: restored {} records for {} keys",
        with.restored,
        with.keys_moved
    );
    // Queries during the failover: without standbys the moved keys are gone until restored; with, the copies
    // answer throughout, through the handover of each to its new active task too (the stores stay open and
    // readable: before they did, every handover cost ~350 ms of misses, 5-9% of the queries).
    if let (Some(without), Some(with)) = (without.answered, with.answered) {
        assert!(
            with >= 0.99 && with > without,
            "queries answered during the failover: {:.1}% with standbys, {:.1}% without",
            with * 100.0,
            without * 100.0
        );
    }
}

#[test]
fn a_standby_spares_the_restore_when_its_task_moves_on_the_embedded_broker() {
    compare(Broker::embedded, failover, 1);
}

#[test]
fn a_standby_spares_the_restore_when_its_task_moves_on_tansu() {
    compare(Broker::tansu, failover, 1);
}

fn stale_view(s: &KafkaStreams) -> BTreeMap<String, i64> {
    let params = StoreQueryParameters::from_name("page-counts").enable_stale_stores();
    s.store_with::<String, i64>(&params)
        .map(|st| st.all().unwrap().into_iter().collect())
        .unwrap_or_default()
}

/// Three instances, one standby per task; A serves no HTTP. A stale query reads the standby copies: through
/// `store_with`, each instance sees its own tasks' counts and its standbys' counts, all right; over HTTP, a
/// key of A's asked at C with `?stale=true` is answered by a standby (C's own, or B's after a redirect, since
/// A does not answer), with the copy and its lag named.
fn stale_queries(broker: Broker) {
    let app = "standby-stale";
    broker.create_topic("visits", 3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let ports: Vec<u16> = (0..3).map(|_| tests::free_loopback_port()).collect();
    let instances: Vec<Arc<KafkaStreams>> = (0..3)
        .map(|i| {
            let (mut config, admin) = broker.config(app, dirs[i].path());
            config
                .set("application.server", &format!("127.0.0.1:{}", ports[i]))
                .unwrap();
            config.set("num.standby.replicas", "1").unwrap();
            let s = Arc::new(KafkaStreams::new(page_counts_topology(), (config, admin)).unwrap());
            s.start().unwrap();
            s
        })
        .collect();
    // B and C answer HTTP; A's address accepts no connection.
    let servers: Vec<_> = (1..3)
        .map(|i| {
            rt.block_on(
                QueryServer::builder(instances[i].clone())
                    .store::<String, i64>("page-counts")
                    .bind(([127, 0, 0, 1], ports[i]).into())
                    .serve(),
            )
            .unwrap()
        })
        .collect();
    let expected = produce_visits(&broker.bootstrap(), 6_000, 600);
    let describe = || {
        instances
            .iter()
            .map(|s| format!("{} standbys {:?}", describe_instance(s), s.standby_lags()))
            .collect::<Vec<_>>()
            .join("; ")
    };
    // Every count is in, every counting task has a standby on another instance, and the standbys catch up:
    // each instance's stale view (its own tasks' counts and its standbys') is right, and larger than its own
    // when it keeps standbys (not every instance does: a task's first copy goes where the group would move
    // the task).
    wait_until_reporting(
        "every count, and caught-up standbys of every counting task",
        Duration::from_secs(120),
        || {
            let mut merged = BTreeMap::new();
            let mut standby = BTreeSet::new();
            for s in &instances {
                if s.state() != State::Running {
                    return false;
                }
                merged.extend(local_page_counts(s));
                let own = counting_partitions(s);
                if let Some(parts) = s.standby_lags().get("page-counts") {
                    for (p, lag) in parts {
                        if lag.offset_lag == 0 && !own.contains(p) {
                            standby.insert(*p);
                        }
                    }
                }
            }
            // C answers for A from what the instances announced: every copy C has heard of must be open and
            // caught up where C heard it is (an instance announces a copy as the placement gives it, before
            // the copy has read its changelog).
            let c = &instances[2];
            let views: Vec<BTreeMap<String, i64>> =
                instances.iter().map(|s| stale_view(s)).collect();
            let c_knows_every_copy = expected.iter().all(|(page, count)| {
                c.query_metadata_for_key("page-counts", page, &Serdes::string())
                    .is_ok_and(|m| {
                        !m.standbys.is_empty()
                            && m.standbys.iter().all(|holder| {
                                ports.iter().zip(&views).any(|(port, view)| {
                                    holder.host == HostInfo::parse(&format!("127.0.0.1:{port}"))
                                        && view.get(page) == Some(count)
                                })
                            })
                    })
            });
            merged == expected
                && standby.len() == 3
                && c_knows_every_copy
                && instances.iter().all(|s| {
                    let view = stale_view(s);
                    (s.standby_lags().is_empty() || view.len() > local_page_counts(s).len())
                        && view
                            .iter()
                            .all(|(page, count)| expected.get(page) == Some(count))
                })
        },
        describe,
    );
    let a = &instances[0];
    let a_pages: Vec<&String> = expected
        .keys()
        .filter(|page| {
            a.query_metadata_for_key("page-counts", *page, &Serdes::string())
                .unwrap()
                .active
                .is_some_and(|m| m.instance_id == a.instance_id())
        })
        .collect();
    assert!(!a_pages.is_empty());
    for page in a_pages {
        let url = |stale: &str| {
            format!(
                "http://127.0.0.1:{}/stores/page-counts/keys/{}{stale}",
                ports[2],
                page.replace('/', "%2F")
            )
        };
        let (status, body) = tests::http_get(&url("?stale=true"));
        assert_eq!(status, 200, "{page}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["value"].as_i64(), Some(expected[page]), "{page}: {body}");
        assert_eq!(v["copy"], "standby", "{page}: {body}");
        assert!(v["lag"].as_i64().is_some(), "{page}: {body}");
        // Without stale reads the request goes to A, which does not answer.
        assert_eq!(tests::http_get(&url("")).0, 0, "{page} redirected to A");
    }
    for s in servers {
        rt.block_on(s.shutdown());
    }
    close_all(
        &instances.iter().map(|s| s.as_ref()).collect::<Vec<_>>(),
        Duration::from_secs(60),
    );
}

#[test]
fn stale_queries_read_standby_copies_on_the_embedded_broker() {
    stale_queries(Broker::embedded());
}

/// The configuration of the kill tests' instances (the child process has no `Broker` to ask).
fn kill_config(
    app: &str,
    bootstrap: &str,
    dir: &std::path::Path,
    replicas: &str,
    ownership: &str,
) -> streams_dsl::streams_core::runtime::StreamsConfig {
    let mut c = streams_dsl::streams_core::runtime::StreamsConfig::new(app, bootstrap);
    c.set("task.ownership", ownership).unwrap();
    c.set("task.ownership.session.timeout.ms", "6000").unwrap();
    // The changelogs here are far shorter than the default acceptable lag (10,000): with it, a copy holding
    // nothing would count as caught up, and the assignor would move tasks between the survivors as freely.
    c.set("acceptable.recovery.lag", "0").unwrap();
    c.set("commit.interval.ms", "200").unwrap();
    c.set("state.dir", dir.to_str().unwrap()).unwrap();
    c.set("main.consumer.session.timeout.ms", "6000").unwrap();
    c.set("main.consumer.heartbeat.interval.ms", "500").unwrap();
    c.set("num.standby.replicas", replicas).unwrap();
    c
}

/// Runs one instance until killed; started by `kill_one_of_three` in a child process.
#[test]
#[ignore = "runs only as the child process of the kill tests"]
fn standby_kill_child_process() {
    let (Ok(bootstrap), Ok(dir), Ok(app), Ok(replicas), Ok(ownership)) = (
        std::env::var("KILL_BOOTSTRAP"),
        std::env::var("KILL_STATE_DIR"),
        std::env::var("KILL_APP"),
        std::env::var("KILL_REPLICAS"),
        std::env::var("KILL_OWNERSHIP"),
    ) else {
        return;
    };
    tests::log_from_env();
    let config = kill_config(
        &app,
        &bootstrap,
        std::path::Path::new(&dir),
        &replicas,
        &ownership,
    );
    let streams = KafkaStreams::new(page_counts_topology(), config).unwrap();
    streams.start().unwrap();
    loop {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Three instances, one of them a child process killed with SIGKILL once every count is in and committed.
/// Returns the records the two survivors restored taking over its tasks, and how many keys those tasks held.
fn kill_one_of_three(broker: &Broker, replicas: usize) -> Failover {
    kill_one_of_three_owned_by(broker, replicas, "group", false)
}

/// [`kill_one_of_three`] with task ownership decided by the instances (`task.ownership=library`).
fn kill_one_of_three_library(broker: &Broker, replicas: usize) -> Failover {
    kill_one_of_three_owned_by(broker, replicas, "library", false)
}

/// Sends `signal` (`-STOP`, `-CONT`) to the child process.
fn signal(child: &std::process::Child, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {}", child.id());
}

/// Without `paused`, the child is killed with SIGKILL; with it, the child is stopped (SIGSTOP) instead, the
/// survivors take its tasks over as if it were dead, and then it is woken up (SIGCONT) with more visits
/// arriving: a zombie whose lease lapsed while it slept must drop its tasks without committing, so that the
/// counts, read from the survivors' stores and copies, end exact.
fn kill_one_of_three_owned_by(
    broker: &Broker,
    replicas: usize,
    ownership: &str,
    paused: bool,
) -> Failover {
    let app = format!("standby-kill-{ownership}-{replicas}");
    // The child cannot use the embedded broker's in-process admin (the mock broker does not answer
    // CreateTopics): every topic exists before it starts.
    broker.create_topic("visits", 3);
    broker.create_topic(&format!("{app}-by-page-repartition"), 3);
    broker.create_topic(&format!("{app}-page-counts-changelog"), 3);
    broker.create_topic(&format!("{app}-metadata"), 1);
    broker.create_topic(&format!("{app}-ownership"), 1);
    let bootstrap = broker.bootstrap();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "standby_kill_child_process",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("KILL_BOOTSTRAP", &bootstrap)
        .env("KILL_STATE_DIR", dirs[0].path())
        .env("KILL_APP", &app)
        .env("KILL_REPLICAS", replicas.to_string())
        .env("KILL_OWNERSHIP", ownership)
        // With STREAMS_TEST_LOG set, the child logs as the test does.
        .stdout(if std::env::var_os("STREAMS_TEST_LOG").is_some() {
            std::process::Stdio::inherit()
        } else {
            std::process::Stdio::null()
        })
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let restored = Arc::new(AtomicU64::new(0));
    let survivors: Vec<KafkaStreams> = (1..3)
        .map(|i| {
            let config = kill_config(
                &app,
                &bootstrap,
                dirs[i].path(),
                &replicas.to_string(),
                ownership,
            );
            let s = KafkaStreams::new(page_counts_topology(), config).unwrap();
            s.set_restore_listener(CountingRestores(restored.clone()));
            s.start().unwrap();
            s
        })
        .collect();
    let expected = produce_visits(&bootstrap, VISITS, PAGES);
    let describe = || {
        survivors
            .iter()
            .map(|s| format!("{} standbys {:?}", describe_instance(s), s.standby_lags()))
            .collect::<Vec<_>>()
            .join("; ")
    };
    // The child runs the counting tasks the survivors do not; every survivor count is in, and with standbys
    // the survivors' copies of the child's tasks have caught up with the changelog.
    let victim_tasks = || -> BTreeSet<i32> {
        let mine: BTreeSet<i32> = survivors.iter().flat_map(counting_partitions).collect();
        (0..3).filter(|p| !mine.contains(p)).collect()
    };
    let pages_of = |p: i32| -> usize {
        expected
            .keys()
            .filter(|page| {
                survivors[0]
                    .query_metadata_for_key("page-counts", *page, &Serdes::string())
                    .is_ok_and(|m| m.partition == p)
            })
            .count()
    };
    // Records of each partition of the repartition topic: one per visit to a page of that partition.
    let visits_in = |p: i32| -> i64 {
        expected
            .iter()
            .filter(|(page, _)| {
                survivors[0]
                    .query_metadata_for_key("page-counts", *page, &Serdes::string())
                    .is_ok_and(|m| m.partition == p)
            })
            .map(|(_, n)| n)
            .sum()
    };
    let probe: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", &app)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    // The child committed every record of its counting tasks' input (so its changelogs hold every count).
    let child_committed = |victim: &BTreeSet<i32>| -> bool {
        use rdkafka::consumer::Consumer;
        let topic = format!("{app}-by-page-repartition");
        let mut tpl = rdkafka::TopicPartitionList::new();
        for &p in victim {
            tpl.add_partition(&topic, p);
        }
        probe
            .committed_offsets(tpl, Duration::from_secs(5))
            .is_ok_and(|c| {
                victim.iter().all(|&p| {
                    c.find_partition(&topic, p)
                        .is_some_and(|e| e.offset() == rdkafka::Offset::Offset(visits_in(p)))
                })
            })
    };
    wait_until_reporting(
        "the child to run some counting tasks and commit all their input, the survivors to hold their counts and \
         copies of the child's",
        Duration::from_secs(120),
        || {
            let victim = victim_tasks();
            if !victim.is_empty() && !child_committed(&victim) {
                return false;
            }
            let mut held = BTreeMap::new();
            for s in &survivors {
                if s.state() != State::Running {
                    return false;
                }
                held.extend(local_page_counts(s));
            }
            let theirs = expected.len() - victim.iter().map(|&p| pages_of(p)).sum::<usize>();
            let copies_caught_up = replicas == 0
                || victim.iter().all(|p| {
                    survivors.iter().any(|s| {
                        s.standby_lags()
                            .get("page-counts")
                            .and_then(|l| l.get(p))
                            .is_some_and(|l| l.offset_lag == 0)
                    })
                });
            !victim.is_empty()
                && held.len() == theirs
                && held.iter().all(|(k, v)| expected.get(k) == Some(v))
                && copies_caught_up
        },
        describe,
    );
    // Let the child commit what it processed (every 200 ms), then kill it.
    std::thread::sleep(Duration::from_secs(1));
    let victim = victim_tasks();
    let keys_moved: u64 = victim.iter().map(|&p| pages_of(p) as u64).sum();
    let victim_pages: Vec<String> = expected
        .keys()
        .filter(|page| {
            survivors[0]
                .query_metadata_for_key("page-counts", *page, &Serdes::string())
                .is_ok_and(|m| victim.contains(&m.partition))
        })
        .cloned()
        .collect();
    let before = restored.load(std::sync::atomic::Ordering::Relaxed);
    let killed = std::time::Instant::now();
    if paused {
        signal(&child, "-STOP");
    } else {
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    // A client asks for every key of the child's tasks, over and over, until the survivors hold every count:
    // answered when a survivor has the key (its active store, or a standby copy with stale reads allowed).
    let done = std::sync::atomic::AtomicBool::new(false);
    let (asked, answered) = std::thread::scope(|scope| {
        let client = scope.spawn(|| {
            let params = StoreQueryParameters::from_name("page-counts").enable_stale_stores();
            let (mut asked, mut answered) = (0u64, 0u64);
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let stores: Vec<_> = survivors
                    .iter()
                    .filter_map(|s| s.store_with::<String, i64>(&params).ok())
                    .collect();
                for page in &victim_pages {
                    asked += 1;
                    if stores
                        .iter()
                        .any(|st| st.get(page).is_ok_and(|v| v.is_some()))
                    {
                        answered += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            (asked, answered)
        });
        wait_until_reporting(
            "the survivors to take the child's tasks and hold every count",
            Duration::from_secs(120),
            || {
                let mut merged = BTreeMap::new();
                for s in &survivors {
                    merged.extend(local_page_counts(s));
                }
                victim_tasks().is_empty() && merged == expected
            },
            describe,
        );
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        client.join().unwrap()
    });
    let failover_ms = killed.elapsed().as_millis();
    let restored = restored.load(std::sync::atomic::Ordering::Relaxed) - before;
    if paused {
        signal(&child, "-CONT");
        let mut expected = expected.clone();
        tests::produce_visits(&bootstrap, VISITS, VISITS / 2, PAGES, &mut expected);
        wait_until_reporting(
            "every count exact again, the woken child back among the instances",
            Duration::from_secs(120),
            || {
                // A store closing as its task moves answers with an error: not settled yet.
                let params = StoreQueryParameters::from_name("page-counts").enable_stale_stores();
                let mut merged = BTreeMap::new();
                for s in &survivors {
                    match s.store_with::<String, i64>(&params).and_then(|st| st.all()) {
                        Ok(all) => merged.extend(all),
                        Err(_) => return false,
                    }
                }
                merged == expected
            },
            describe,
        );
    }
    // Killed already, or woken above: it goes now either way.
    let _ = child.kill();
    child.wait().unwrap();
    close_all(
        &survivors.iter().collect::<Vec<_>>(),
        Duration::from_secs(60),
    );
    let share = answered as f64 / asked.max(1) as f64;
    println!(
        "{}, task.ownership={ownership}, num.standby.replicas={replicas}: the survivors restored {restored} records taking over tasks holding {keys_moved} keys; \
         every count back {failover_ms} ms after the kill; {answered} of {asked} queries for the child's keys answered ({:.2}%)",
        if paused { "SIGSTOP" } else { "kill -9" },
        share * 100.0
    );
    Failover {
        restored,
        keys_moved,
        answered: Some(share),
    }
}

#[test]
fn after_a_kill_the_survivors_restore_from_their_standbys_on_the_embedded_broker() {
    compare(Broker::embedded, kill_one_of_three, 1);
}

/// A paused instance (SIGSTOP past its session) is a zombie when it wakes: with library ownership its lease has
/// lapsed by then, so it drops its tasks without committing and joins again; the survivors, which took its
/// tasks from their standby copies, keep every count exact through its return.
#[test]
fn a_paused_instance_drops_its_tasks_when_it_wakes_with_library_ownership_on_tansu() {
    let f = kill_one_of_three_owned_by(&Broker::tansu(), 1, "library", true);
    assert!(
        f.restored * 100 <= f.keys_moved,
        "the survivors restored {} records for {} keys",
        f.restored,
        f.keys_moved
    );
}

/// The same with the instances deciding task ownership: the survivors see the killed instance's heartbeats
/// stop, the assignor gives its tasks to the holders of their copies, and nobody starts them before the killed
/// instance's lease would have lapsed.
#[test]
fn after_a_kill_with_library_ownership_the_survivors_restore_from_their_standbys_on_tansu() {
    compare(Broker::tansu, kill_one_of_three_library, 1);
}

#[test]
fn after_a_kill_the_survivors_restore_from_their_standbys_on_tansu() {
    compare(Broker::tansu, kill_one_of_three, 1);
}

/// Which instance (index into `instances`) runs each counting task.
fn owners(instances: &[&KafkaStreams]) -> BTreeMap<i32, usize> {
    instances
        .iter()
        .enumerate()
        .flat_map(|(i, s)| counting_partitions(s).into_iter().map(move |p| (p, i)))
        .collect()
}

/// One instance, then a second, then a third, each started once the group has settled: each start moves tasks,
/// to the newcomer and, as the `range` assignor shifts its ranges, between the instances already running.
/// Returns the records the instances restored from the first one's settling on, against the keys of the tasks
/// that moved.
fn one_by_one(broker: &Broker, replicas: usize) -> Failover {
    let app = format!("standby-one-by-one-{replicas}");
    broker.create_topic("visits", 3);
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let restored = Arc::new(AtomicU64::new(0));
    let start = |i: usize| start_counting(broker, &app, dirs[i].path(), replicas, &restored);
    let mut instances = vec![start(0)];
    let expected = produce_visits(&broker.bootstrap(), VISITS, PAGES);
    settle_placed(
        &instances.iter().collect::<Vec<_>>(),
        &expected,
        replicas,
        "the first instance to count every visit",
    );
    let keys_of = |p: i32| -> u64 {
        expected
            .keys()
            .filter(|page| {
                instances[0]
                    .query_metadata_for_key("page-counts", *page, &Serdes::string())
                    .is_ok_and(|m| m.partition == p)
            })
            .count() as u64
    };
    let keys_per_partition: Vec<u64> = (0..3).map(keys_of).collect();
    let before = restored.load(std::sync::atomic::Ordering::Relaxed);
    let mut keys_moved = 0;
    for i in 1..3 {
        let was = owners(&instances.iter().collect::<Vec<_>>());
        instances.push(start(i));
        let all: Vec<&KafkaStreams> = instances.iter().collect();
        settle_placed(&all, &expected, replicas, "the instances to settle");
        let now = owners(&all);
        keys_moved += (0..3)
            .filter(|p| was.get(p) != now.get(p))
            .map(|p| keys_per_partition[p as usize])
            .sum::<u64>();
    }
    let restored = restored.load(std::sync::atomic::Ordering::Relaxed) - before;
    close_all(
        &instances.iter().collect::<Vec<_>>(),
        Duration::from_secs(60),
    );
    println!(
        "one by one to three, num.standby.replicas={replicas}: the instances restored {restored} records, the \
         tasks that moved held {keys_moved} keys"
    );
    Failover {
        restored,
        keys_moved,
        answered: None,
    }
}

/// With one replica the copies sit where a failure would move each task, not where a newcomer's arrival moves
/// it: the warm-up copies cover those moves, the newcomer's and those between the instances already running.
/// Without standbys the moves restore (a task moving back to an instance that ran it before restores only what
/// changed meanwhile: nothing here).
#[test]
fn starting_instances_one_by_one_restores_nothing_with_warm_ups_on_tansu() {
    let without = one_by_one(&Broker::tansu(), 0);
    let with = one_by_one(&Broker::tansu(), 1);
    assert!(
        without.restored > 0 && without.keys_moved > 0,
        "without standbys: restored {} records, tasks of {} keys moved",
        without.restored,
        without.keys_moved
    );
    assert!(
        with.restored * 100 <= with.keys_moved && with.keys_moved > 0,
        "with warm-ups: restored {} records, tasks of {} keys moved",
        with.restored,
        with.keys_moved
    );
}

/// Starts an instance of `app` on `dir` with `replicas` standby replicas, counting what it restores into
/// `restored`.
fn start_counting(
    broker: &Broker,
    app: &str,
    dir: &std::path::Path,
    replicas: usize,
    restored: &Arc<AtomicU64>,
) -> KafkaStreams {
    start_counting_owned_by(broker, app, dir, replicas, restored, "group")
}

/// [`start_counting`] with `task.ownership` set to `ownership`.
fn start_counting_owned_by(
    broker: &Broker,
    app: &str,
    dir: &std::path::Path,
    replicas: usize,
    restored: &Arc<AtomicU64>,
    ownership: &str,
) -> KafkaStreams {
    let (mut config, admin) = broker.config(app, dir);
    config.set("task.ownership", ownership).unwrap();
    config
        .set("task.ownership.session.timeout.ms", "6000")
        .unwrap();
    config
        .set("num.standby.replicas", &replicas.to_string())
        .unwrap();
    // The tests' changelogs hold a few thousand records: with Kafka Streams' default (10,000) every copy would
    // count as caught up at once. A joining instance here waits until its copies have read everything.
    config.set("acceptable.recovery.lag", "0").unwrap();
    let s = KafkaStreams::new(page_counts_topology(), (config, admin)).unwrap();
    s.set_restore_listener(CountingRestores(restored.clone()));
    s.start().unwrap();
    s
}

/// Whether `instances` have settled: all running, the three counting tasks split among them, every count of
/// `expected` in, and (with standbys) a caught-up copy of every counting task on an instance not running it.
fn settled(instances: &[&KafkaStreams], expected: &BTreeMap<String, i64>, replicas: usize) -> bool {
    let mut merged = BTreeMap::new();
    let mut owned = Vec::new();
    for s in instances {
        if s.state() != State::Running {
            return false;
        }
        merged.extend(local_page_counts(s));
        owned.extend(counting_partitions(s));
    }
    owned.sort_unstable();
    // What was processed is committed: the embedded broker refuses commits while its group rebalances, so
    // the commit before a revocation can fail there, and a task's next owner would count again what its
    // changelog already holds (at-least-once allows it; the reference counts would not match).
    let committed = instances.iter().all(|s| {
        s.metadata_for_local_threads()
            .iter()
            .flat_map(|t| t.active_tasks.iter())
            .flat_map(|t| t.topic_partitions.iter())
            .all(|p| p.position.is_none_or(|at| p.committed_offset >= Some(at)))
    });
    let copies = |p: i32| {
        instances
            .iter()
            .filter(|s| !counting_partitions(s).contains(&p))
            .filter(|s| {
                s.standby_lags()
                    .get("page-counts")
                    .and_then(|l| l.get(&p))
                    .is_some_and(|l| l.offset_lag == 0)
            })
            .count()
    };
    let wanted = replicas.min(instances.len() - 1);
    owned == [0, 1, 2] && merged == *expected && committed && (0..3).all(|p| copies(p) >= wanted)
}

/// Waits until `instances` have [`settled`], and are still settled two placement rounds later: right after a
/// rebalance the copies placed before it can still be there, caught up, before the placement moves them.
fn settle_placed(
    instances: &[&KafkaStreams],
    expected: &BTreeMap<String, i64>,
    replicas: usize,
    what: &str,
) {
    for round in 0..2 {
        if round > 0 {
            std::thread::sleep(Duration::from_secs(2));
        }
        wait_until_reporting(
            what,
            Duration::from_secs(120),
            || settled(instances, expected, replicas),
            || describe_all(instances),
        );
    }
}

fn describe_all(instances: &[&KafkaStreams]) -> String {
    instances
        .iter()
        .map(|s| format!("{} standbys {:?}", describe_instance(s), s.standby_lags()))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Three instances restarted one after the other on their own state directories, each waiting for the group
/// to settle (and, with standbys, the copies to catch up) before the next. Returns what the restarts made the
/// instances restore, against the keys of the state.
fn rolling_restart(broker: &Broker, replicas: usize) -> Failover {
    rolling_restart_owned_by(broker, replicas, "group")
}

/// [`rolling_restart`] with the instances deciding task ownership (`task.ownership=library`).
fn rolling_restart_library(broker: &Broker, replicas: usize) -> Failover {
    rolling_restart_owned_by(broker, replicas, "library")
}

fn rolling_restart_owned_by(broker: &Broker, replicas: usize, ownership: &str) -> Failover {
    let app = format!("standby-roll-{ownership}-{replicas}");
    broker.create_topic("visits", 3);
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let restored = Arc::new(AtomicU64::new(0));
    let start = |i: usize| {
        start_counting_owned_by(broker, &app, dirs[i].path(), replicas, &restored, ownership)
    };
    let mut instances: Vec<KafkaStreams> = (0..3).map(start).collect();
    let expected = produce_visits(&broker.bootstrap(), VISITS, PAGES);
    let settle = |instances: &[&KafkaStreams], what: &str| {
        settle_placed(instances, &expected, replicas, what)
    };
    settle(
        &instances.iter().collect::<Vec<_>>(),
        "the three instances to settle",
    );
    // The keys of the first instance to leave: nobody else ever held its tasks' state.
    let first_leaver_keys = local_page_counts(&instances[0]).len() as u64;
    let before = restored.load(std::sync::atomic::Ordering::Relaxed);
    for i in 0..3 {
        assert!(
            instances[i].close(Duration::from_secs(60)),
            "instance {i} did not close in time"
        );
        // Down for a while, as in a deployment: the other two take its tasks over before it comes back.
        let others: Vec<&KafkaStreams> =
            (0..3).filter(|&j| j != i).map(|j| &instances[j]).collect();
        settle(&others, &format!("the others to take instance {i}'s tasks"));
        instances[i] = start(i);
        settle(
            &instances.iter().collect::<Vec<_>>(),
            &format!("the group to settle after restarting instance {i}"),
        );
    }
    let restored = restored.load(std::sync::atomic::Ordering::Relaxed) - before;
    close_all(
        &instances.iter().collect::<Vec<_>>(),
        Duration::from_secs(60),
    );
    println!(
        "rolling restart, task.ownership={ownership}, num.standby.replicas={replicas}: the instances restored {restored} records, for state of {} keys",
        expected.len()
    );
    // With the group deciding, every instance's return moves tasks without their state: at least every key is
    // restored. The instances' assignor gives a returning instance warm-up copies first even without standby
    // replicas, so there only the first departure is sure to restore its tasks' keys in full.
    let keys_moved = if ownership == "library" {
        first_leaver_keys
    } else {
        expected.len() as u64
    };
    Failover {
        restored,
        keys_moved,
        answered: None,
    }
}

/// The embedded broker names group members by address, not by client id: the range assignor's order of the
/// members is random there, and an instance coming back is given any task, not the one whose state it kept.
/// With two replicas every instance keeps a copy of every task it does not run, so whichever it is given,
/// it restores nothing.
#[test]
fn a_rolling_restart_restores_nothing_with_standbys_on_the_embedded_broker() {
    compare(Broker::embedded, rolling_restart, 2);
}

/// On a broker that names group members after their client id (as Kafka does), an instance coming back takes
/// its old place in the range assignor's order, and its old tasks: one replica is enough.
#[test]
fn a_rolling_restart_restores_nothing_with_standbys_on_tansu() {
    compare(Broker::tansu, rolling_restart, 1);
}

/// With the instances deciding ownership, a leaving instance's tasks go to the holders of their copies, and a
/// returning one warms up copies before it is given tasks again: one replica is enough, on any broker.
#[test]
fn a_rolling_restart_with_library_ownership_restores_nothing_with_standbys_on_tansu() {
    compare(Broker::tansu, rolling_restart_library, 1);
}

/// What scaling one instance out to three and back did.
struct Scaling {
    /// Records the two new instances restored taking their tasks.
    restored_out: u64,
    /// Keys of the tasks they took.
    keys_out: u64,
    /// Records the remaining instance restored taking the tasks back.
    restored_in: u64,
    /// Keys of the tasks that came back.
    keys_back: u64,
}

/// One instance, then three (counting more visits), then one again. Nothing is lost at either step; the
/// restore counts say how the state followed the tasks.
fn scale_out_and_in(broker: &Broker, replicas: usize, ownership: &str) -> Scaling {
    let app = format!("standby-scale-{ownership}-{replicas}");
    broker.create_topic("visits", 3);
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (restored_a, restored_new) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let start_counting = |broker: &Broker,
                          app: &str,
                          dir: &std::path::Path,
                          replicas: usize,
                          restored: &Arc<AtomicU64>| {
        start_counting_owned_by(broker, app, dir, replicas, restored, ownership)
    };
    let a = start_counting(broker, &app, dirs[0].path(), replicas, &restored_a);
    let first = produce_visits(&broker.bootstrap(), VISITS / 2, PAGES);
    wait_until_reporting(
        "A alone to count every visit",
        Duration::from_secs(120),
        || settled(&[&a], &first, replicas),
        || describe_instance(&a),
    );
    let b = start_counting(broker, &app, dirs[1].path(), replicas, &restored_new);
    let c = start_counting(broker, &app, dirs[2].path(), replicas, &restored_new);
    let three = [&a, &b, &c];
    settle_placed(&three, &first, replicas, "the three instances to settle");
    let restored_out = restored_new.load(std::sync::atomic::Ordering::Relaxed);
    let keys_out = (local_page_counts(&b).len() + local_page_counts(&c).len()) as u64;
    let mut expected = first.clone();
    for (page, n) in produce_visits(&broker.bootstrap(), VISITS / 2, PAGES) {
        *expected.entry(page).or_default() += n;
    }
    settle_placed(
        &three,
        &expected,
        replicas,
        "the three instances to count the second half",
    );
    let keys_back = (local_page_counts(&b).len() + local_page_counts(&c).len()) as u64;
    let before = restored_a.load(std::sync::atomic::Ordering::Relaxed);
    close_all(&[&b, &c], Duration::from_secs(60));
    wait_until_reporting(
        "A alone to take every task back with every count",
        Duration::from_secs(120),
        || settled(&[&a], &expected, replicas),
        || describe_instance(&a),
    );
    let restored_in = restored_a.load(std::sync::atomic::Ordering::Relaxed) - before;
    assert!(a.close(Duration::from_secs(30)));
    println!(
        "scale 1 -> 3 -> 1, task.ownership={ownership}, num.standby.replicas={replicas}: the new instances restored {restored_out} records \
         taking tasks holding {keys_out} keys; A restored {restored_in} taking back tasks holding {keys_back} keys"
    );
    Scaling {
        restored_out,
        keys_out,
        restored_in,
        keys_back,
    }
}

/// Scaling out without standbys restores the tasks the new instances take (they hold no state yet); with
/// standbys, the new instances first warm up copies of the tasks they will be given and join the group once
/// these have caught up, restoring at most 1% of the keys. Scaling back in, the one instance left restores
/// what the others added to their tasks' changelogs, unless it kept copies of them: with two replicas every
/// instance keeps a copy of every task it does not run, and restores at most 1% of the keys.
fn compare_scaling(broker: fn() -> Broker, ownership: &str) {
    let without = scale_out_and_in(&broker(), 0, ownership);
    let with = scale_out_and_in(&broker(), 2, ownership);
    if ownership == "library" {
        // The assignor gives warm-up copies even without standby replicas: a new instance is given a task only
        // once its copy caught up.
        assert!(
            without.restored_out * 100 <= without.keys_out && without.keys_out > 0,
            "with library ownership and no standbys the new instances restored {} records taking tasks holding \
             {} keys (their warm-up copies should have caught up first)",
            without.restored_out,
            without.keys_out
        );
    } else {
        assert!(
            without.restored_out >= without.keys_out && without.keys_out > 0,
            "without standbys the new instances restored {} records taking tasks holding {} keys",
            without.restored_out,
            without.keys_out
        );
    }
    assert!(
        with.restored_out * 100 <= with.keys_out && with.keys_out > 0,
        "with warm-ups the new instances restored {} records taking tasks holding {} keys",
        with.restored_out,
        with.keys_out
    );
    assert!(
        without.restored_in > 0,
        "without standbys A restored nothing taking back tasks of {} keys the others had updated",
        without.keys_back
    );
    assert!(
        with.restored_in * 100 <= with.keys_back,
        "with two replicas A restored {} records taking back tasks of {} keys",
        with.restored_in,
        with.keys_back
    );
}

/// On tansu: the embedded broker refuses offset commits while its group rebalances (Kafka accepts those of the
/// current generation), so there the tasks that move at a scale-out can be counted again from an older commit.
#[test]
fn scaling_one_to_three_to_one_keeps_every_count_on_tansu() {
    compare_scaling(Broker::tansu, "group");
}

/// The same with the instances deciding task ownership: the new instances are given a task only once their
/// warm-up copies caught up, with or without standby replicas; scaling back in, the one left takes the others'
/// tasks from its copies (with two replicas) or restores what they added (without).
#[test]
fn scaling_one_to_three_to_one_with_library_ownership_keeps_every_count_on_tansu() {
    compare_scaling(Broker::tansu, "library");
}
