"""Wall time of each step of the runs in a Dagster instance (after `make demo` or `multiome-assets
build`), from the runs' step events: a table per dataset, longest first, and each dataset's total.

    DAGSTER_HOME=.dagster_home .venv/bin/python benchmarks/build_steps.py [--top 15]
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
                rows.append({"dataset": dataset, "step": event.step_key, "ok": event.event_type.name == "STEP_SUCCESS",
                             "seconds": record.timestamp - starts.get(event.step_key, record.timestamp)})
    return pd.DataFrame(rows, columns=["dataset", "step", "ok", "seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=15, help="steps shown per dataset")
    args = parser.parse_args()
    with dg.DagsterInstance.get() as instance:
        times = step_times(instance)
    for dataset, steps in times.groupby("dataset"):
        steps = steps.sort_values("seconds", ascending=False)
        print(f"\n{dataset}: {len(steps)} steps, {steps.seconds.sum() / 60:.1f} min of steps")
        print(steps.head(args.top).assign(minutes=lambda t: (t.seconds / 60).round(2))[["step", "minutes", "ok"]]
              .to_markdown(index=False))


if __name__ == "__main__":
    main()
