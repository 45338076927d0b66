"""Wall time of each step of the runs in a Dagster instance (after `make demo` or `multiome-assets
build`), from the runs' step events: a table per dataset, longest first, and each dataset's total.
With `--rss LOG` (lines "unix-seconds resident-kB", sampled while the build ran, e.g. every 10 s by
`ps -o rss= -s SESSION`), also the resident memory when each step started and its largest while it ran.

    DAGSTER_HOME=.dagster_home .venv/bin/python benchmarks/build_steps.py [--top 15] [--rss rss.log]
"""
from __future__ import annotations

import argparse

import dagster as dg
import pandas as pd


def step_times(instance: dg.DagsterInstance) -> pd.DataFrame:
    rows = []
    for run in instance.get_runs():
        dataset = run.tags.get("dagster/partition", "")
        starts = {}
        for record in instance.all_logs(run.run_id):
            event = record.dagster_event
            if event is None or event.step_key is None:
                continue
            if event.event_type == dg.DagsterEventType.STEP_START:
                starts[event.step_key] = record.timestamp
            elif event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
                start = starts.get(event.step_key, record.timestamp)
                rows.append({"dataset": dataset, "step": event.step_key, "ok": event.event_type.name == "STEP_SUCCESS",
                             "seconds": record.timestamp - start, "start": start, "end": record.timestamp})
    return pd.DataFrame(rows, columns=["dataset", "step", "ok", "seconds", "start", "end"])


def with_rss(times: pd.DataFrame, log: str) -> pd.DataFrame:
    """Each step's resident GB at its start (the last sample before it) and its largest sample while it ran."""
    rss = pd.read_csv(log, sep=" ", names=["t", "kb"]).sort_values("t")
    t, gb = rss.t.to_numpy(), rss.kb.to_numpy() / 1e6
    at_start = gb[(t.searchsorted(times.start.to_numpy()) - 1).clip(0)]
    largest = [gb[(t >= a) & (t <= b)].max(initial=s) for a, b, s in zip(times.start, times.end, at_start)]
    return times.assign(rss_start_gb=at_start.round(1), rss_max_gb=pd.Series(largest, index=times.index).round(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=15, help="steps shown per dataset")
    parser.add_argument("--rss", help="resident memory samples of the build: lines 'unix-seconds kB'")
    args = parser.parse_args()
    with dg.DagsterInstance.get() as instance:
        times = step_times(instance)
    columns = ["step", "minutes", "ok"]
    if args.rss:
        times, columns = with_rss(times, args.rss), columns + ["rss_start_gb", "rss_max_gb"]
    for dataset, steps in times.groupby("dataset"):
        steps = steps.sort_values("seconds", ascending=False)
        print(f"\n{dataset}: {len(steps)} steps, {steps.seconds.sum() / 60:.1f} min of steps")
        print(steps.head(args.top).assign(minutes=lambda t: (t.seconds / 60).round(2))[columns].to_markdown(index=False))


if __name__ == "__main__":
    main()
