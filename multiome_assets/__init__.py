"""multiome-assets: Dagster assets for paired single-cell RNA + ATAC data.

The science lives in plain modules (`dataset`, `readers`, `preprocess`, `annotation`,
`intervals`, `priors`, `warehouse`, `models`, `grn`); `defs/` wires them into Dagster.
"""
