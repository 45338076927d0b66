"""Asset metadata and asset checks shared by the groups."""
import base64
from pathlib import Path

import dagster as dg
import pandas as pd

from multiome_assets.quality import Verdict


def png_markdown(path: Path, alt: str = "figure") -> str:
    """A PNG inline in Markdown metadata (the UI renders it), with where the file is."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()})\n\n`{path}`"


def curve_table(history: pd.DataFrame) -> dg.MetadataValue:
    """A training history (one row per epoch) as a table of numbers, not text: the UI sorts it and
    a client reads it back as values."""
    columns = [dg.TableColumn(c, "int" if c == "epoch" else "float") for c in history.columns]
    records = [dg.TableRecord({c: (int(v) if c == "epoch" else (None if pd.isna(v) else float(v)))
                               for c, v in row.items()}) for row in history.to_dict("records")]
    return dg.MetadataValue.table(records, schema=dg.TableSchema(columns))


def check_result(asset: str, name: str, verdict: Verdict) -> dg.AssetCheckResult:
    """A `quality` verdict as the result of the asset check `name` on `asset`."""
    return dg.AssetCheckResult(
        asset_key=asset, check_name=name, passed=bool(verdict.passed),
        severity=dg.AssetCheckSeverity.ERROR if verdict.error else dg.AssetCheckSeverity.WARN,
        description=verdict.description, metadata={"value": float(verdict.value)})


def check_spec(asset: str, name: str, description: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name, asset=asset, description=description)
