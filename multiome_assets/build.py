"""What `multiome-assets build` runs, as plain functions over a `dg.Definitions`: the asset selection
grown to whole steps, what is out of date in a dataset partition, the run config for one run, and a
failed step's root error. The CLI parses arguments and prints.

Dagster's public API throughout, except the stale status and in-process execution that keeps no
outputs, which have none (see `_not_fresh`, `_materialize`).
"""
from __future__ import annotations

import ctypes
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import dagster as dg

from multiome_assets.defs.partitions import NEEDS_TAG, TRANSLATOR_FROM_TAG


def steps(defs: dg.Definitions) -> dict[str, frozenset[dg.AssetKey]]:
    """Each step (op) name and the asset keys it makes, e.g. `grn_evaluation` -> `grn_metrics`,
    `grn_regulator_enrichment`."""
    return {a.node_def.name: frozenset(a.keys) for a in defs.assets if isinstance(a, dg.AssetsDefinition)}


def select_assets(defs: dg.Definitions, selection: str) -> tuple[list[dg.AssetKey], list[dg.AssetKey]]:
    """The asset keys `selection` names, plus the other outputs of any multi-output step it touches
    (they are made together), and those added; a multi-output step's name (`grn_evaluation`)
    selects all its outputs. No keys when nothing matches.

    Raises `dg.DagsterError` when `selection` does not parse or names a key that does not exist.
    """
    graph = defs.resolve_asset_graph()
    made = steps(defs).get(selection, frozenset())
    with warnings.catch_warnings():  # "*" resolves through a beta parameter: not the user's concern
        warnings.simplefilter("ignore", dg.BetaWarning)
        chosen = dg.AssetSelection.assets(*made) if len(made) > 1 else dg.AssetSelection.from_string(selection)
        keys = chosen.resolve(graph)
    full = chosen.required_multi_asset_neighbors().resolve(graph)
    return sorted(full), sorted(full - keys, key=dg.AssetKey.to_user_string)


def applicable(defs: dg.Definitions, keys: Iterable[dg.AssetKey], spec) -> list[dg.AssetKey]:
    """Of `keys`, the assets that apply to dataset `spec` (a `dataset.DatasetSpec`), by their tags
    (`defs.partitions.needs`): a single-modality dataset gets those reading what it has; the
    cross-dataset ones only a dataset that names `translator_from`."""
    graph = defs.resolve_asset_graph()

    def applies(key: dg.AssetKey) -> bool:
        tags = graph.get(key).tags
        needed = tags.get(NEEDS_TAG, "rna.atac")
        has = needed == "any" or set(needed.split(".")) <= set(spec.modalities)
        return has and (spec.translator_from is not None or TRANSLATOR_FROM_TAG not in tags)

    return [k for k in keys if applies(k)]


def build_order(specs: dict) -> list[str]:
    """Dataset keys with each `translator_from` dataset before the datasets it translates."""
    order, waiting = [], dict(specs)
    while waiting:
        ready = [k for k, s in waiting.items() if s.translator_from not in waiting or s.translator_from == k]
        ready = ready or list(waiting)[:1]  # two datasets translating each other: one goes first
        order += ready
        for k in ready:
            del waiting[k]
    return order


def out_of_date(defs: dg.Definitions, keys: Iterable[dg.AssetKey], partition: str,
                instance: dg.DagsterInstance) -> list[dg.AssetKey]:
    """Of `keys`, those missing or stale in `partition`, and everything of `keys` downstream of
    them (with the other outputs of their steps), as make does."""
    keys = list(keys)
    graph = defs.resolve_asset_graph()
    roots = _not_fresh(instance, graph, keys, partition)
    if not roots:
        return []
    downstream = dg.AssetSelection.assets(*roots).downstream().required_multi_asset_neighbors().resolve(graph)
    return sorted(set(keys) & downstream)


def _not_fresh(instance: dg.DagsterInstance, graph, keys: list[dg.AssetKey], partition: str) -> list[dg.AssetKey]:
    """Of `keys`, those Dagster reports missing or stale in `partition`, as the UI shows them: a new
    code version, or upstream data (inputs observed at registration included) newer than theirs.

    Dagster 1.13 has no public API for stale status (`RunRequest(stale_assets_only=True)` needs
    the sensor daemon, not an in-process run), so this is the one place that imports its private
    resolver; rebuilding it from materialization tags would copy more private detail, not less.
    """
    from dagster._core.definitions.data_version import (
        CachingStaleStatusResolver,
        StaleStatus,
    )
    from dagster._core.loader import (
        LoadingContextForTest,  # a plain loader cache, nothing test-specific
    )

    status = CachingStaleStatusResolver(instance, graph, LoadingContextForTest(instance))
    return [k for k in keys if status.get_status(k, partition) != StaleStatus.FRESH]


def _ops(run_config) -> Mapping:
    return (run_config.get("ops") or {}) if isinstance(run_config, dict) else {}


def unknown_steps(defs: dg.Definitions, run_config) -> list[str]:
    """The names under `ops:` in `run_config` that are no step of `defs` (a typo)."""
    return sorted(set(_ops(run_config)) - set(steps(defs)))


def run_config_for(defs: dg.Definitions, run_config, keys: Iterable[dg.AssetKey]):
    """`run_config` with `ops:` cut to the steps that make `keys`: a run rejects config of a step
    it does not run (one that `--stale` skipped)."""
    ops = _ops(run_config)
    if not ops:
        return run_config
    keys = set(keys)
    running = {name for name, made in steps(defs).items() if made & keys}
    return {**run_config, "ops": {k: v for k, v in ops.items() if k in running}}


@dataclass(frozen=True)
class Progress:
    done: int  # steps finished (succeeded or failed)
    total: int  # steps in the run
    running: str | None  # the step running now
    elapsed_s: float
    failed: int = 0
    finished: bool = False  # the run has ended (steps after a failed one never start)
    detail: str | None = None  # the running step's newest log line (training: epoch, step, time left)


def materialize_partition(defs: dg.Definitions, keys: list[dg.AssetKey], partition: str,
                          instance: dg.DagsterInstance, run_config, progress: Callable[[Progress], None] | None = None,
                          every_s: float = 1.0) -> dg.ExecuteInProcessResult:
    """Materialize `keys` of `partition` in-process; a failed step fails the result, not the call.
    `progress`, if given, hears about the run every `every_s` seconds and once at its end, from a
    thread that reads the run's events from `instance`; when it sees a step end, that thread hands
    the memory the step freed back to the system (`release_freed_memory`).

    Raises `dg.DagsterInvalidConfigError` when `run_config` does not fit the steps.
    """
    tags = {"multiome/build": uuid.uuid4().hex}  # finds this run in the instance
    finished = threading.Event()
    total = sum(1 for made in steps(defs).values() if made & set(keys))
    watcher = threading.Thread(target=_watch, args=(RunWatcher(instance, tags, total), progress, finished, every_s),
                               daemon=True)
    watcher.start()
    try:
        return _materialize(defs, keys, partition, instance, run_config, tags)
    finally:
        finished.set()
        if watcher.is_alive():
            watcher.join()


def _materialize(defs: dg.Definitions, keys: list[dg.AssetKey], partition: str, instance: dg.DagsterInstance,
                 run_config, tags: dict) -> dg.ExecuteInProcessResult:
    """`dg.materialize(..., raise_on_error=False)`, except that no step's output stays in memory
    until the run ends: `execute_in_process` keeps every output (for `result.output_for_node`), so a
    build of every asset held all of them at once (docs/performance.md#a-10x-run-at-the-papers-size).
    Dagster's in-process execution with that one switch turned off; no public API has it."""
    from dagster._core.definitions.job_base import InMemoryJob
    from dagster._core.definitions.materialize import EPHEMERAL_JOB_NAME
    from dagster._core.execution.execute_in_process import core_execute_in_process, merge_run_tags

    # the job name dg.materialize gives its runs
    job = dg.Definitions(jobs=[dg.define_asset_job(EPHEMERAL_JOB_NAME, selection=keys)], assets=defs.assets,
                         resources=defs.resources).resolve_job_def(EPHEMERAL_JOB_NAME)
    in_process = job.as_ephemeral_job(resource_defs={}, input_values={})
    if not run_config and in_process.partitioned_config:
        run_config = in_process.partitioned_config.get_run_config_for_partition_key(partition)
    run_config = run_config or {}
    return core_execute_in_process(
        run_config=run_config, job=InMemoryJob(in_process), instance=instance, output_capturing_enabled=False,
        raise_on_error=False,
        run_tags=merge_run_tags(job_def=job, partition_key=partition, tags=tags, asset_selection=[], instance=instance,
                                run_config=run_config))


def _watch(watcher: "RunWatcher", progress, finished: threading.Event, every_s: float) -> None:
    started, done = time.monotonic(), 0
    while True:
        last = finished.wait(every_s)
        state = watcher.progress(time.monotonic() - started, finished=last)
        if state.done > done:  # what the step freed goes back to the system, not kept for the next one
            release_freed_memory()
            done = state.done
        if progress is not None:
            progress(state)
        if last:
            return


def release_freed_memory() -> bool:
    """Hand the pages that the allocator holds freed back to the system; False where it cannot.

    jemalloc as the Makefile preloads it never purges (freed tensors are reused, not zeroed again:
    training ~2x faster), so in one process running every step of a build the resident memory would
    climb to what all the steps left behind, not the largest step's need. glibc's malloc keeps
    freed small blocks in its heaps; `malloc_trim` returns them."""
    libc = ctypes.CDLL(None)
    if hasattr(libc, "mallctl"):  # jemalloc: purge every arena (MALLCTL_ARENAS_ALL = 4096)
        return libc.mallctl(b"arena.4096.purge", None, None, None, ctypes.c_size_t(0)) == 0
    if hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
        return True
    return False


class RunWatcher:
    """Reads a run's new events from the instance on each call (a cursor, not the whole log again)."""

    STEP_EVENTS = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE}

    def __init__(self, instance: dg.DagsterInstance, tags: dict, total: int):
        self.instance, self.tags, self.total = instance, tags, total
        self.run_id, self.cursor = None, None
        self.started, self.ended, self.failed = [], set(), 0
        self.said: dict[str, str] = {}  # step -> its newest user log line

    def progress(self, elapsed_s: float, finished: bool = False) -> Progress:
        if self.run_id is None:
            runs = self.instance.get_runs(filters=dg.RunsFilter(tags=self.tags), limit=1)
            self.run_id = runs[0].run_id if runs else None
        if self.run_id is not None:
            self._read()
        running = [step for step in self.started if step not in self.ended]
        step = running[-1] if running else None
        return Progress(len(self.ended), self.total, step, elapsed_s, self.failed, finished, self.said.get(step))

    def _read(self) -> None:
        while True:
            page = self.instance.get_records_for_run(self.run_id, cursor=self.cursor, limit=1000)
            for record in page.records:
                entry = record.event_log_entry
                event = entry.dagster_event
                if event is None:
                    if entry.step_key and entry.user_message:
                        self.said[entry.step_key] = entry.user_message
                elif event.event_type == dg.DagsterEventType.STEP_START:
                    self.started.append(event.step_key)
                elif event.event_type in self.STEP_EVENTS:
                    self.ended.add(event.step_key)
                    self.failed += event.event_type == dg.DagsterEventType.STEP_FAILURE
            self.cursor = page.cursor
            if not page.has_more:
                return


def root_errors(result: dg.ExecuteInProcessResult) -> list[tuple[str, str]]:
    """(step key, message) per failed step: the error at the root of Dagster's wrappers (e.g. a
    DatasetError naming the file), without its class name or traceback."""
    errors = []
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        while error.cause is not None:
            error = error.cause
        name, _, rest = error.message.strip().partition(": ")
        errors.append((event.step_key, rest if rest and name.endswith(str(error.cls_name)) else error.message.strip()))
    return errors
