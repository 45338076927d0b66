"""`multiome_assets.build` on a toy graph: one two-output step (`pair` makes `a`, `b`), `c` reads
`a`, `d` stands alone; every asset partitioned by dataset, as ours are."""
import ast
import ctypes.util
import os
import subprocess
import sys
import time

import dagster as dg
import pytest

from multiome_assets.build import (
    Progress,
    materialize_partition,
    out_of_date,
    root_errors,
    run_config_for,
    select_assets,
    steps,
    unknown_steps,
)

A, B, C, D = (dg.AssetKey(k) for k in "abcd")
PARTS = dg.StaticPartitionsDefinition(["p1"])


class Window(dg.Config):
    window: int = 1


def _defs(c_version: str = "1", d_fails: bool = False) -> dg.Definitions:
    @dg.multi_asset(specs=[dg.AssetSpec("a"), dg.AssetSpec("b")], partitions_def=PARTS)
    def pair():
        return None, None

    @dg.asset(deps=["a"], partitions_def=PARTS, code_version=c_version)
    def c(config: Window) -> None:
        pass

    @dg.asset(partitions_def=PARTS)
    def d() -> None:
        if d_fails:
            raise ValueError("p1/rna.h5ad: X holds 1 NaN or infinite values")

    return dg.Definitions(assets=[pair, c, d])


def test_steps_and_selection_grow_to_whole_steps():
    defs = _defs()
    assert steps(defs) == {"pair": {A, B}, "c": {C}, "d": {D}}
    assert select_assets(defs, "a") == ([A, B], [B])  # one output brings the other
    assert select_assets(defs, "pair") == ([A, B], [])  # the step's name selects all its outputs
    assert select_assets(defs, "+c") == ([A, B, C], [B])
    assert select_assets(defs, "*") == ([A, B, C, D], [])
    assert select_assets(defs, "key:nope") == ([], [])
    with pytest.raises(dg.DagsterError):
        select_assets(defs, "(((")


def test_out_of_date_is_missing_or_stale_and_what_depends_on_it():
    defs, instance = _defs(), dg.DagsterInstance.ephemeral()
    everything = [A, B, C, D]
    assert out_of_date(defs, everything, "p1", instance) == everything  # nothing built yet
    assert materialize_partition(defs, everything, "p1", instance, {}).success
    assert out_of_date(defs, everything, "p1", instance) == []
    assert out_of_date(_defs(c_version="2"), everything, "p1", instance) == [C]  # new code version
    assert materialize_partition(defs, [A, B], "p1", instance, {}).success
    assert out_of_date(defs, everything, "p1", instance) == [C]  # upstream newer
    assert out_of_date(defs, [D], "p1", instance) == []  # only of the keys asked about


def test_run_config_keeps_the_steps_that_run():
    defs = _defs()
    config = {"ops": {"c": {"config": {"window": 5}}}, "execution": {}}
    assert unknown_steps(defs, config) == []
    assert unknown_steps(defs, {"ops": {"cc": {}, "pair": {}}}) == ["cc"]
    assert unknown_steps(defs, ["not", "a", "mapping"]) == []  # left for Dagster's config check
    assert run_config_for(defs, config, [C]) == config
    assert run_config_for(defs, config, [A, B]) == {"ops": {}, "execution": {}}  # c skipped
    assert run_config_for(defs, {}, [A]) == {}


def test_root_errors_name_the_file_not_the_wrappers():
    defs, instance = _defs(d_fails=True), dg.DagsterInstance.ephemeral()
    result = materialize_partition(defs, [D], "p1", instance, {})
    assert not result.success
    assert root_errors(result) == [("d", "p1/rna.h5ad: X holds 1 NaN or infinite values")]
    with pytest.raises(dg.DagsterInvalidConfigError):
        materialize_partition(defs, [C], "p1", instance, {"ops": {"c": {"config": {"windw": 5}}}})


def test_progress_counts_steps_and_names_the_running_one():
    @dg.asset(partitions_def=PARTS)
    def slow(context: dg.AssetExecutionContext) -> None:
        context.log.info("epoch 1/3 step 2/9: ~7 s left in the epoch")  # as a training step reports itself
        time.sleep(0.5)

    @dg.asset(deps=[slow], partitions_def=PARTS)
    def fails() -> None:
        raise ValueError("no")

    @dg.asset(deps=[fails], partitions_def=PARTS)
    def never() -> None:
        pass

    defs, seen = dg.Definitions(assets=[slow, fails, never]), []
    keys = [dg.AssetKey(k) for k in ("slow", "fails", "never")]
    result = materialize_partition(defs, keys, "p1", dg.DagsterInstance.ephemeral(), {}, progress=seen.append,
                                   every_s=0.05)
    assert not result.success
    assert any(p.running == "slow" and p.done == 0 for p in seen)  # heard while the first step ran
    # where the running step is inside itself: its newest log line
    assert any(p.running == "slow" and p.detail == "epoch 1/3 step 2/9: ~7 s left in the epoch" for p in seen)
    assert [p.done for p in seen] == sorted(p.done for p in seen)
    assert seen[-1] == Progress(done=2, total=3, running=None, elapsed_s=seen[-1].elapsed_s, failed=1, finished=True)
    assert not any(p.finished for p in seen[:-1])


STEP_FREES_MEMORY = """
import dagster as dg, numpy as np, time
from multiome_assets.build import materialize_partition

def resident_gb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 1e9

class Discard(dg.IOManager):  # stores nothing: what stays resident is what the run keeps
    def handle_output(self, context, obj): pass
    def load_input(self, context): return None

seen = {}
P = dg.StaticPartitionsDefinition(["p1"])

@dg.asset(partitions_def=P)
def big() -> np.ndarray:
    scratch = np.ones(10**8)  # 0.8 GB, written, freed when the step returns
    seen["scratch"] = resident_gb()
    del scratch
    out = np.ones(10**8)  # 0.8 GB: the step's output
    seen["during"] = resident_gb()
    return out

@dg.asset(deps=[big], partitions_def=P)
def after() -> None:
    time.sleep(3)  # the run's watcher looks every second
    seen["next step"] = resident_gb()

defs = dg.Definitions(assets=[big, after], resources={"io_manager": Discard()})
assert materialize_partition(defs, [dg.AssetKey("big"), dg.AssetKey("after")], "p1", dg.DagsterInstance.ephemeral(), {}).success
print(seen)
"""


@pytest.mark.skipif(ctypes.util.find_library("jemalloc") is None, reason="jemalloc not installed (apt install libjemalloc2)")
def test_a_build_keeps_nothing_of_a_finished_step():
    """Under jemalloc never purging, as `make demo` runs: neither the memory a step freed nor its
    output (once stored) stays resident into the next step."""
    env = {**os.environ, "LD_PRELOAD": "libjemalloc.so.2", "MALLOC_CONF": "dirty_decay_ms:-1,muzzy_decay_ms:-1"}
    out = subprocess.run([sys.executable, "-c", STEP_FREES_MEMORY], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    seen = ast.literal_eval(out.stdout.strip().splitlines()[-1])
    assert seen["during"] > seen["scratch"] - 0.1  # jemalloc reused the freed scratch for the output...
    assert seen["next step"] < seen["during"] - 0.6  # ...and neither stayed once the step ended
