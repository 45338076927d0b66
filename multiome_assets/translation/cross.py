"""Across datasets: the translators of one paired dataset (its `random` scenario's, trained on 80% of
its cells) translate every cell of another dataset mapped to the same vocabularies, including a
dataset with only RNA or only ATAC (`translator_from` in its dataset.yaml). Profiles are over the
features the translator was trained to predict: the source's covered cCREs, or its vocabulary genes.
Where the other dataset is paired, its measured profile scores the translation, beside the simple
translators fitted on the same source cells, over the features both datasets have."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import scipy.sparse as sp

from multiome_assets import (
    warehouse,  # reads the source dataset's results (docs/translation.md, lineage)
)
from multiome_assets.dataset import DatasetError, DatasetSpec
from multiome_assets.models.checkpoint import CheckpointMismatch
from multiome_assets.cells import cell_labels
from multiome_assets.preprocess import TARGET_SUM
from multiome_assets.translation import metrics, outputs
from multiome_assets.translation.pipeline import (
    Translators,
    _baselines,
    config_json,
    feature_var,
    load_cells,
    training_config,
    vocabularies,
)
from multiome_assets.translation.predict import translate_atac, translate_rna
from multiome_assets.translation.splits import rows_of
from multiome_assets.translation.tokens import VocabCells

SOURCE_SCENARIO = "random"
NEEDS = {"rna2atac": "rna", "atac2rna": "atac"}  # the modality a direction reads


@dataclass
class Source:
    """A paired dataset's cells and its trained translators, as the warehouse holds them."""

    key: str
    cells: VocabCells
    train_rows: np.ndarray  # the cells its `random` translators trained on
    val_rows: np.ndarray  # and were early-stopped and calibrated on
    translators: dict[str, Translators]  # direction -> translators


def scenario_name(source: str) -> str:
    return f"from_{source}"


def require_source(spec: DatasetSpec, source_spec: DatasetSpec) -> None:
    if not source_spec.paired:
        raise DatasetError(f"{spec.yaml_path}: translator_from {source_spec.key!r} has only "
                           f"{source_spec.modalities[0].upper()}; name a paired dataset, whose translators learned both")


def check_translators(translators: Translators, spec: DatasetSpec, source: str) -> None:
    """Refuse translators trained on other vocabularies or another genome than `spec` is mapped to."""
    if SOURCE_SCENARIO not in translators.checkpoints:
        raise DatasetError(f"the {translators.direction} translators of {source!r} have no {SOURCE_SCENARIO!r} "
                           "scenario to translate other datasets with")
    try:
        translators.checkpoints[SOURCE_SCENARIO].require_features(vocabularies=vocabularies(spec))
    except CheckpointMismatch as e:
        raise DatasetError(f"{spec.yaml_path}: the {translators.direction} translators of {source!r} cannot "
                           f"translate {spec.key!r}: {e}") from None


def translate(direction: str, source: Source, cells: VocabCells, cell_names: pd.Index, device: str,
              spec: DatasetSpec, gene_vocab_map: pd.DataFrame, labels: np.ndarray | None):
    """A MuData with one modality (`atac` or `rna`, :mod:`~multiome_assets.translation.outputs`):
    every cell translated over the source's features."""
    translators = source.translators[direction]
    model = translators.model(SOURCE_SCENARIO, device)
    config = training_config(direction, translators.profile, 0)
    rows = np.arange(cells.n_cells)
    if direction == "rna2atac":
        onto = replace(cells, cres=source.cells.cres)
        x = translate_atac(model, onto, rows, device=device, cre_chunk=config.n_queries, max_genes=config.max_source)
        features = onto.cres
    else:
        onto = replace(cells, genes=source.cells.genes)
        x = translate_rna(model, onto, rows, translators.uppers[SOURCE_SCENARIO], device=device,
                          gene_chunk=config.n_queries, max_cres=config.max_source)
        features = onto.genes
    profile = outputs.profile(
        direction, x, feature_var(direction, features, spec, gene_vocab_map), cell_names,
        scenario=scenario_name(source.key), source=source.key, role="translated", cell_types=labels,
        translator=translators.checkpoints[SOURCE_SCENARIO], profile_name=translators.profile,
        threshold=translators.thresholds.get(SOURCE_SCENARIO),
        library_size=translators.libraries.get(SOURCE_SCENARIO, TARGET_SUM))
    return outputs.translated_mudata({outputs.MODALITY[direction]: profile})


def evaluate(direction: str, profiles, source: Source, cells: VocabCells, labels: np.ndarray | None) -> pd.DataFrame:
    """(direction, scenario, method, metric, value, n_cells) of the cross-dataset translation and the
    simple translators fitted on the source's training cells (calibrated, like the translator, on its
    validation cells), over the features both datasets have."""
    (profile,) = profiles.mod.values()
    scenario = outputs.scenario_of(profile)
    ours = source.cells.cres if direction == "rna2atac" else source.cells.genes
    features = np.intersect1d(ours, cells.cres if direction == "rna2atac" else cells.genes)
    if len(features) == 0:
        raise DatasetError(f"{source.key!r} and this dataset share no {'cCRE' if direction == 'rna2atac' else 'gene'}"
                           ": nothing to score the translation on")
    src_rows = np.r_[source.train_rows, source.val_rows]
    if direction == "rna2atac":
        kind, inputs = "rna", sp.vstack([source.cells.rna[src_rows], cells.rna])
        target = sp.vstack([source.cells.atac[src_rows][:, features], cells.atac[:, features]]).toarray().astype(np.float32)
    else:
        kind, inputs = "atac", sp.vstack([source.cells.atac[src_rows], cells.atac])[:, source.cells.cres]
        target = np.log1p(sp.vstack([source.cells.rna[src_rows][:, features], cells.rna[:, features]]).toarray()
                          ).astype(np.float32)
    n_train, n_val = len(source.train_rows), len(source.val_rows)
    fitted = _baselines(inputs.tocsr(), kind, target, np.arange(n_train), np.arange(n_train, target.shape[0]), None)
    truth = target[n_train + n_val:]
    predictions = {"cisformer": (outputs.scores(profile)[:, np.searchsorted(ours, features)], None)}
    predictions |= {name: (both[n_val:], both[:n_val]) for name, both in fitted.items()}
    rows = []
    for method, (predicted, on_validation) in predictions.items():
        if direction == "rna2atac":
            threshold = (source.translators[direction].thresholds[SOURCE_SCENARIO] if on_validation is None else
                         metrics.calibrate_threshold(on_validation, target[n_train:n_train + n_val]))
            values = metrics.atac_metrics(predicted, truth, threshold, labels)
        else:
            values = metrics.rna_metrics(predicted, truth)
        if labels is not None:
            values |= metrics.clustering_scores(predicted, labels)
        rows += [{"direction": direction, "scenario": scenario, "method": method, "metric": k, "value": float(v),
                  "n_cells": cells.n_cells} for k, v in values.items()]
    return pd.DataFrame(rows, columns=["direction", "scenario", "method", "metric", "value", "n_cells"])


def load_source(source_spec: DatasetSpec, root, directions=tuple(NEEDS)) -> Source:
    """A paired dataset's cells, splits and translators (of `directions`) from the warehouse at `root`."""
    source = source_spec.key

    def artifact(asset: str):
        try:
            return warehouse.read_artifact(warehouse.find_artifact(asset, source, root))
        except FileNotFoundError:
            raise DatasetError(f"translating with the translators of {source!r} needs its {asset}: materialize it "
                               f"first (multiome-assets build --dataset {source})") from None

    translators = {d: artifact(f"translator_{d}") for d in directions}
    mo = artifact("multiome")
    try:
        vocab_map = warehouse.read_table("gene_vocab_map", source, root).drop(columns=["dataset"])
        splits = warehouse.read_table("translation_splits", source, root).drop(columns=["dataset"])
    except FileNotFoundError as e:
        raise DatasetError(f"translating with the translators of {source!r} needs its tables ({e}): "
                           f"multiome-assets build --dataset {source}") from None
    cells, _ = load_cells(mo, vocab_map, artifact("peak_vocab_matrix"), source_spec)
    names = mo.rna.obs_names
    return Source(source, cells, rows_of(splits, names, SOURCE_SCENARIO, "train"),
                  rows_of(splits, names, SOURCE_SCENARIO, "validation"), translators)


def translated_from(direction: str, spec: DatasetSpec, source_spec: DatasetSpec, mo, gene_vocab_map: pd.DataFrame,
                    peak_vocab_matrix, root, device: str):
    """The `cross_translated_*` assets: dataset `spec` translated by `source_spec`'s translators."""
    require_source(spec, source_spec)
    source = load_source(source_spec, root, (direction,))
    check_translators(source.translators[direction], spec, source_spec.key)
    cells, _ = load_cells(mo, gene_vocab_map, peak_vocab_matrix, spec, need=(NEEDS[direction],))
    return translate(direction, source, cells, mo.rna.obs_names, device, spec, gene_vocab_map,
                     cell_labels(mo.rna.obs, spec.cell_type_column))


def metrics_from(spec: DatasetSpec, source_spec: DatasetSpec, mo, gene_vocab_map: pd.DataFrame, peak_vocab_matrix, profiles: dict, root,
                 labels: np.ndarray | None) -> pd.DataFrame:
    """The `cross_translation_metrics` asset: both directions' cross-dataset translations of a paired
    dataset scored against its measured profiles, beside the simple translators."""
    source = load_source(source_spec, root)
    cells, counts_from = load_cells(mo, gene_vocab_map, peak_vocab_matrix, spec)
    config = config_json(source.translators["rna2atac"].profile, counts_from, spec.translator_from)
    return pd.concat([evaluate(d, profiles[d], source, cells, labels) for d in NEEDS],
                     ignore_index=True).assign(config=config)
