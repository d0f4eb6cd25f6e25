#!/usr/bin/env python3
"""The peer's side of the benchmark suite (tests/benches/suite.rs): runs one workload with Quix Streams.

Usage: python bench_quix.py '<spec as JSON>' (written by the suite). Prints one line, `RESULT {json}` with the
records processed, wall and CPU seconds from the first input record to the last one processed, the seconds
`Application.run` then took to commit and stop, and the peak RSS of this process, or `ERROR message`.

Modes: `throughput` stops after `n` input records; `latency` runs until killed; `restore` starts the count
application of an earlier run with an empty state directory and times its recovery from the changelog.
"""

import json
import resource
import sys
import threading
import time


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def peak_rss_kib():
    # VmHWM, as for our side: ru_maxrss would carry over the peak of the harness process this one was forked
    # from (Linux keeps it across exec).
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main():
    spec = json.loads(sys.argv[1])
    from quixstreams import Application

    workload, mode, n = spec["workload"], spec["mode"], spec["n"]

    app = Application(
        broker_address=spec["bootstrap"],
        consumer_group=spec["app"],
        auto_offset_reset="earliest",
        commit_interval=spec["commit_ms"] / 1000.0,
        state_dir=spec["state_dir"],
        loglevel="WARNING",
        consumer_extra_config={
            "session.timeout.ms": 6000,
            # As on every side of the suite: librdkafka's default, or 10 ms in latency runs.
            "fetch.wait.max.ms": 10 if mode == "latency" else 500,
        },
    )
    # The join keeps the table side in its state, which serializes to JSON: its inputs are read as text (the
    # values are ASCII); everything else reads bytes.
    text = workload == "stream-table-join"
    raw = dict(value_deserializer="str" if text else "bytes", key_deserializer="bytes")
    source = app.topic(spec["input"], **raw)
    out_bytes = None
    out_json = None
    if spec["output"]:
        out_bytes = app.topic(spec["output"], value_serializer="bytes", key_serializer="bytes")
        out_json = app.topic(spec["output"], value_serializer="json", key_serializer="bytes")

    seen = {"count": 0, "t0": None, "cpu0": None}

    def tick(_value):
        if seen["t0"] is None:
            seen["t0"] = time.perf_counter()
            seen["cpu0"] = cpu_seconds()
        seen["count"] += 1
        if mode == "throughput" and seen["count"] == n:
            seen["t1"] = time.perf_counter()
            seen["cpu1"] = cpu_seconds()
            app.stop()

    sdf = app.dataframe(source)
    sdf = sdf.update(tick)

    if workload == "consume":
        pass
    elif workload == "passthrough":
        sdf.to_topic(out_bytes)
    elif workload == "kv-store":

        def get_put(value, state):
            state.get("v")
            # The state serializes to JSON: store the bytes as a latin-1 string.
            state.set("v", value.decode("latin-1"))
            return value

        sdf = sdf.apply(get_put, stateful=True)
        sdf.to_topic(out_bytes)
    elif workload == "count":

        def count(_value, state):
            c = state.get("count", 0) + 1
            state.set("count", c)
            return c

        sdf = sdf.apply(count, stateful=True)
        sdf.to_topic(out_json)
    elif workload == "windowed-count":
        sdf = sdf.tumbling_window(1000).count().current()
        sdf.to_topic(out_json)
    elif workload == "stream-table-join":
        table = app.dataframe(app.topic(spec["table"], **raw))
        sdf = sdf.join_asof(table, how="inner", on_merge=lambda left, right: left)
        sdf.to_topic(app.topic(spec["output"], value_serializer="str", key_serializer="bytes"))
    else:
        print(f"ERROR workload {workload} is not supported by the peer", flush=True)
        sys.exit(1)

    if mode == "restore":
        run_restore(app, n)
        return

    app.run()
    if seen["t0"] is None or "t1" not in seen:
        print(f"ERROR processed {seen['count']} of {n} records", flush=True)
        sys.exit(1)
    print(
        "RESULT "
        + json.dumps(
            {
                "records": seen["count"],
                "wall_s": seen["t1"] - seen["t0"],
                "cpu_s": seen["cpu1"] - seen["cpu0"],
                "peak_rss_kib": peak_rss_kib(),
                "close_s": time.perf_counter() - seen["t1"],
            }
        ),
        flush=True,
    )


def run_restore(app, n):
    """Times recovery: from the first recovery pass's start to the end of the pass that restored `n` records."""
    from quixstreams.state import recovery

    clock = {"t0": None, "cpu0": None, "t1": None, "cpu1": None, "restored": 0}
    original_recover = recovery.RecoveryPartition.recover_from_changelog_message
    original_do = recovery.RecoveryManager.do_recovery

    def counted(self, *args, **kwargs):
        clock["restored"] += 1
        return original_recover(self, *args, **kwargs)

    def timed(self):
        if clock["t0"] is None:
            clock["t0"], clock["cpu0"] = time.perf_counter(), cpu_seconds()
        original_do(self)
        clock["t1"], clock["cpu1"] = time.perf_counter(), cpu_seconds()

    recovery.RecoveryPartition.recover_from_changelog_message = counted
    recovery.RecoveryManager.do_recovery = timed

    def watch():
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if clock["t1"] is not None and clock["restored"] >= n:
                break
            time.sleep(0.01)
        app.stop()

    threading.Thread(target=watch, daemon=True).start()
    app.run()
    if clock["t1"] is None or clock["restored"] < n:
        print(f"ERROR restored {clock['restored']} of {n} records", flush=True)
        sys.exit(1)
    print(
        "RESULT "
        + json.dumps(
            {
                "records": clock["restored"],
                "wall_s": clock["t1"] - clock["t0"],
                "cpu_s": clock["cpu1"] - clock["cpu0"],
                "peak_rss_kib": peak_rss_kib(),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # reported to the suite, which counts it as a failed run
        print(f"ERROR {type(e).__name__}: {e}", flush=True)
        sys.exit(1)
