"""Snapshot of the asset graph: a change to an asset's key, group, partitions, dependencies, code
version, pool or the datasets it applies to shows up as a diff to review. After an intended change, regenerate it with

    UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest multiome_assets_tests/defs/test_asset_graph.py
"""
from __future__ import annotations

import difflib
import json
import os
from pathlib import Path

import dagster as dg
import pytest

from multiome_assets.definitions import defs

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"
REGENERATE = "UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest multiome_assets_tests/defs/test_asset_graph.py"


def _partitions(spec: dg.AssetSpec) -> dict | None:
    p = spec.partitions_def
    return None if p is None else {"type": type(p).__name__, "name": getattr(p, "name", None)}


def asset_graph_snapshot(definitions: dg.Definitions) -> dict[str, dict]:
    """Asset key -> group, partitions, upstream keys, code version, pool and which datasets it
    applies to, for every asset (the observable inputs too)."""
    return {
        spec.key.to_user_string(): {
            "group": spec.group_name,
            "partitions": _partitions(spec),
            "deps": sorted(dep.asset_key.to_user_string() for dep in spec.deps),
            "code_version": spec.code_version,
            "pool": definitions.resolve_assets_def(spec.key).op.pool,
            "applies_to": {k: v for k, v in spec.tags.items() if k.startswith("multiome/")},  # build.applicable
        }
        for spec in definitions.resolve_all_asset_specs()
    }


def dumps(snapshot: dict[str, dict]) -> str:
    """One asset per line, keys sorted: a diff names the asset that changed."""
    lines = [f"  {json.dumps(key)}: {json.dumps(snapshot[key], sort_keys=True)}" for key in sorted(snapshot)]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def test_asset_graph_matches_the_snapshot():
    got = asset_graph_snapshot(defs)
    assert any(node["group"] == "inputs" for node in got.values())  # the observable source assets are in it
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(dumps(got))
        pytest.skip(f"wrote {SNAPSHOT}")
    want = SNAPSHOT.read_text() if SNAPSHOT.exists() else "{}\n"
    if json.loads(want) != got:
        diff = "".join(difflib.unified_diff(want.splitlines(keepends=True), dumps(got).splitlines(keepends=True),
                                            f"{SNAPSHOT.name} (committed)", "current definitions"))
        pytest.fail(f"the asset graph differs from {SNAPSHOT}:\n{diff}\n"
                    f"If the change is intended, regenerate the snapshot and commit it:\n    {REGENERATE}", pytrace=False)


def test_the_readme_lineage_is_the_definitions():
    from multiome_assets.dataset import PROJECT_ROOT
    from multiome_assets.defs.lineage import readme_with_lineage

    readme = (PROJECT_ROOT / "README.md").read_text()
    assert readme == readme_with_lineage(readme, defs), \
        "README.md's lineage differs from the Definitions: python -m multiome_assets.defs.lineage --write"
