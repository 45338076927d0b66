"""The translation workflow as plain functions over the foundation assets; each asset of
`defs/translation.py` is one call here."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from multiome_assets import (
    warehouse,  # profile_listing: which translated profiles the warehouse holds
)
from multiome_assets.annotation import read_gene_vocab
from multiome_assets.dataset import DatasetError, DatasetSpec
from multiome_assets.files import remove
from multiome_assets.inputs import file_sha256
from multiome_assets.models.checkpoint import Checkpoint
from multiome_assets.models.cisformer import Translator, TranslatorConfig
from multiome_assets.models.distributed import launch
from multiome_assets.models.profiles import Profile
from multiome_assets.intervals import read_ccre_bed
from multiome_assets.preprocess import TARGET_SUM, nb_targets
from multiome_assets.readers import Multiome
from multiome_assets.translation import baselines, metrics, outputs
from multiome_assets.translation.figures import umap_measured_vs_translated
from multiome_assets.translation.predict import translate_atac, translate_rna
from multiome_assets.translation.splits import rows_of, translation_splits
from multiome_assets.translation.tokens import VocabCells, vocab_cells
from multiome_assets.translation.train import (
    train_translator,
    training_config,
    held_out_sample,
    translator_config,
    validation_sample,
)

DIRECTIONS = ("rna2atac", "atac2rna")
def vocabularies(spec: DatasetSpec) -> list[str]:
    """What a translator's inputs and outputs mean: the genome and the two vocabularies' content."""
    return [f"genome={spec.genome}", f"genes={file_sha256(spec.reference('gene_vocab_38244'))[:16]}",
            f"cres={file_sha256(spec.reference('ccre_hg38'))[:16]}"]


def load_cells(mo: Multiome, gene_vocab_map: pd.DataFrame, peak_vocab_matrix: sp.csr_matrix,
               spec: DatasetSpec, need: tuple[str, ...] = ("rna", "atac")) -> tuple[VocabCells, str]:
    """The cells in the fixed vocabularies, and where the RNA counts came from (the counts layer,
    or counts recovered from the normalized values, `preprocess.nb_targets`). Refused when a
    modality in `need` is absent or misses the vocabulary."""
    def where(modality: str) -> str:
        return str(spec.file_of(modality))

    absent = [m for m in need if m not in mo.modalities]
    if absent:
        raise DatasetError(f"{spec.yaml_path}: has no {' and no '.join(absent).upper()}; "
                           "this needs it")
    counts, counts_from = nb_targets(mo.rna.X, mo.rna.layers.get("counts")) if mo.rna.n_vars else (mo.rna.X, "absent")
    index = gene_vocab_map.set_index("gene").vocab_index.reindex(mo.rna.var_names).astype("float64").to_numpy()
    if "rna" in need and not np.isfinite(index).any():
        raise DatasetError(f"{where('rna')}: no gene is in the gene vocabulary (genes e.g. {list(mo.rna.var_names[:3])})")
    if "atac" in need and peak_vocab_matrix.nnz == 0:
        raise DatasetError(f"{where('atac')}: no peak overlaps a cCRE of the vocabulary (peaks e.g. "
                           f"{list(mo.atac.var_names[:3])}; hg38 coordinates?)")
    n_vocab = len(read_gene_vocab(spec.reference("gene_vocab_38244")))
    return vocab_cells(counts, index, n_vocab, peak_vocab_matrix), counts_from


def splits(mo: Multiome, batch_column: str | None, cell_type_column: str | None, seed: int = 0) -> pd.DataFrame:
    if len(mo.modalities) < 2:
        raise DatasetError(f"the dataset has only {mo.modalities[0].upper()}: translators train on paired cells; "
                           "translate it with a paired dataset's translators (`translator_from` in its dataset.yaml)")
    return translation_splits(mo.rna.obs, batch_column=batch_column, cell_type_column=cell_type_column, seed=seed)


@dataclass
class Translators:
    """One trained translator per scenario of a dataset, with how training went."""

    direction: str
    checkpoints: dict[str, Checkpoint]  # scenario -> kind "translator"
    histories: dict[str, pd.DataFrame]
    uppers: dict[str, float]  # ATAC→RNA: upper edge of the expression bins (log1p of the training cells' maximum)
    thresholds: dict[str, float]  # RNA→ATAC: calls at probability >= threshold (calibrated on validation cells)
    profile: str
    libraries: dict[str, float] = field(default_factory=dict)  # ATAC→RNA: median counts per training cell

    def model(self, scenario: str, device: str = "cpu") -> Translator:
        ckpt = self.checkpoints[scenario]
        model = Translator(ckpt.model_config(TranslatorConfig, "translator"))
        model.load_state_dict(ckpt.weights)
        return model.to(device).eval()

    def to_state(self) -> dict:
        return {"direction": self.direction, "checkpoints": {k: v.to_state() for k, v in self.checkpoints.items()},
                "histories": {k: {c: torch.as_tensor(h[c].to_numpy(np.float64)) for c in h} for k, h in self.histories.items()},
                "uppers": dict(self.uppers), "thresholds": dict(self.thresholds), "profile": self.profile,
                "libraries": dict(self.libraries)}

    @classmethod
    def from_state(cls, s: dict) -> "Translators":
        return cls(s["direction"], {k: Checkpoint.from_state(v) for k, v in s["checkpoints"].items()},
                   {k: pd.DataFrame({c: t.numpy() for c, t in h.items()}) for k, h in s["histories"].items()},
                   s["uppers"], s["thresholds"], s["profile"], dict(s.get("libraries", {})))


def train(direction: str, cells: VocabCells, cell_names: pd.Index, split_table: pd.DataFrame, *, profile: Profile,
          device: str, seed: int = 0, max_epochs: int | None = None, checkpoint_dir=None, log=None,
          vocabularies: list[str] = (), processes: int = 1) -> Translators:
    """A translator per scenario, trained on its training cells, early-stopped on its validation cells.
    `processes` > 1: each trained by that many processes under torchrun (DDP), each on its shard of
    every batch."""
    model_config = translator_config(direction, profile)
    config = training_config(direction, profile, seed)
    config = config if max_epochs is None else replace(config, max_epochs=max_epochs)
    checkpoints, histories, thresholds, uppers, libraries = {}, {}, {}, {}, {}
    for scenario in split_table.scenario.unique():
        train_rows, val_rows = (rows_of(split_table, cell_names, scenario, r) for r in ("train", "validation"))
        # ATAC→RNA bins' upper edge and the library size of its CP10k scale: from the training cells only
        upper = uppers[scenario] = float(np.log1p(cells.rna[train_rows].max())) if direction == "atac2rna" else 1.0
        if direction == "atac2rna":
            libraries[scenario] = outputs.library_size(cells.rna, train_rows)
        resume_from = None if checkpoint_dir is None else checkpoint_dir / f"{direction}_{scenario}"
        inputs = dict(model_config=model_config, config=config, cells=cells, train_rows=train_rows, val_rows=val_rows,
                      upper=upper, checkpoint_dir=resume_from)
        told = log and (lambda line, s=scenario: log(f"{s} split: {line}"))
        if processes > 1:
            model, history = launch(processes, "multiome_assets.translation.train:train_translator", inputs,
                                    device=device, log=told)
        else:
            model, history = train_translator(**inputs, device=device, log=told)
        if resume_from is not None:  # finished: a later materialization trains afresh
            remove(resume_from)
        checkpoints[scenario] = Checkpoint("translator", asdict(model_config), {k: v.cpu() for k, v in model.state_dict().items()},
                                           features={"vocabularies": list(vocabularies)})
        histories[scenario] = history
        if direction == "rna2atac":  # the call threshold, on the validation cells early stopping saw
            val_rows = validation_sample(config, val_rows)
            truth = cells.atac[val_rows][:, cells.cres].toarray()
            probability = translate_atac(model, cells, val_rows, device=device, cre_chunk=config.n_queries,
                                         max_genes=config.max_source, log=told and (lambda line: told(f"calibration: {line}")))
            thresholds[scenario] = metrics.calibrate_threshold(probability, truth)
    return Translators(direction, checkpoints, histories, uppers, thresholds, profile, libraries)


def translated(translators: Translators, cells: VocabCells, cell_names: pd.Index, split_table: pd.DataFrame,
               device: str, spec: DatasetSpec, gene_vocab_map: pd.DataFrame, labels: np.ndarray | None, log=None):
    """A MuData of the held-out cells' translated profiles, a modality per scenario, shaped as
    scanpy and muon expect (:mod:`multiome_assets.translation.outputs`): accessibility scores and
    calls over the covered cCREs (`chr:start-end`), or expression over the dataset's vocabulary genes.
    `log(line)` hears of the progress."""
    var = feature_var(translators.direction, cells.cres if translators.direction == "rna2atac" else cells.genes,
                      spec, gene_vocab_map)
    out = {}
    for scenario in translators.checkpoints:
        config = training_config(translators.direction, translators.profile, 0)
        rows = held_out_sample(config, rows_of(split_table, cell_names, scenario, "test"))
        model = translators.model(scenario, device)
        told = log and (lambda line, s=scenario: log(f"{s} split: {line}"))
        if translators.direction == "rna2atac":
            x = translate_atac(model, cells, rows, device=device, cre_chunk=config.n_queries, max_genes=config.max_source,
                               log=told)
        else:
            x = translate_rna(model, cells, rows, translators.uppers[scenario], device=device, gene_chunk=config.n_queries,
                              max_cres=config.max_source, log=told)
        name = outputs.modality_name(translators.direction, scenario, main=scenario == "random")
        out[name] = outputs.profile(
            translators.direction, x, var, cell_names[rows], scenario=scenario, source=spec.key, role="test",
            cell_types=None if labels is None else labels[rows], translator=translators.checkpoints[scenario],
            profile_name=translators.profile, threshold=translators.thresholds.get(scenario),
            library_size=translators.libraries.get(scenario, TARGET_SUM))
    return outputs.translated_mudata(out)


def feature_var(direction: str, vocab_index: np.ndarray, spec: DatasetSpec, gene_vocab_map: pd.DataFrame) -> pd.DataFrame:
    """The translated features' `var`: cCREs by coordinates, or genes by the dataset's symbols."""
    if direction == "rna2atac":
        return outputs.cre_var(vocab_index, read_ccre_bed(spec.reference("ccre_hg38")))
    return outputs.gene_var(vocab_index, read_gene_vocab(spec.reference("gene_vocab_38244")), gene_vocab_map)


def vocab_genes(vocab_index: np.ndarray, gene_vocabulary: Path) -> pd.DataFrame:
    """Vocabulary genes by Ensembl id (unique), with their symbol and index."""
    vocab = read_gene_vocab(gene_vocabulary).iloc[vocab_index]
    return pd.DataFrame({"symbol": vocab.symbol.to_numpy(), "vocab_index": vocab_index}, index=vocab.gene_id.to_numpy())


def evaluate(direction: str, profiles, cells: VocabCells, cell_names: pd.Index,
             split_table: pd.DataFrame, labels: np.ndarray | None, thresholds: dict[str, float]) -> pd.DataFrame:
    """Long table (direction, scenario, method, metric, value, n_cells) of the transformer and the
    simple translators on the same held-out cells."""
    source, kind = (cells.rna, "rna") if direction == "rna2atac" else (cells.atac[:, cells.cres], "atac")
    target = measured_sparse(direction, cells)  # the training cells' targets stay sparse
    rows = []
    for profile in profiles.mod.values():
        scenario = outputs.scenario_of(profile)
        train, val, test = (rows_of(split_table, cell_names, scenario, r) for r in ("train", "validation", "test"))
        test = _profile_rows(profile, cell_names, test, scenario)
        val = validation_sample(training_config(direction, profile.uns.get("profile", "cpu"), 0), val)
        truth = {"val": target[val].toarray(), "test": target[test].toarray()}
        predictions = {"cisformer": outputs.scores(profile)}
        fitted = _baselines(source, kind, target, train, np.r_[val, test], labels)
        for name, both in fitted.items():
            predictions[name] = both[len(val):]
        for method, predicted in predictions.items():
            if direction == "rna2atac":
                threshold = thresholds[scenario] if method == "cisformer" else \
                    metrics.calibrate_threshold(fitted[method][:len(val)], truth["val"])
                values = metrics.atac_metrics(predicted, truth["test"], threshold, None if labels is None else labels[test])
            else:
                values = metrics.rna_metrics(predicted, truth["test"])
            if labels is not None:
                values |= metrics.clustering_scores(predicted, labels[test])
            rows += [{"direction": direction, "scenario": scenario, "method": method, "metric": k, "value": float(v),
                      "n_cells": len(test)} for k, v in values.items()]
        if labels is not None:  # the measured profiles clustered the same way: the ceiling
            rows += [{"direction": direction, "scenario": scenario, "method": "measured", "metric": k, "value": float(v),
                      "n_cells": len(test)} for k, v in metrics.clustering_scores(truth["test"], labels[test]).items()]
    return pd.DataFrame(rows, columns=["direction", "scenario", "method", "metric", "value", "n_cells"])


def measured(direction: str, cells: VocabCells, rows: np.ndarray | None = None) -> np.ndarray:
    """What `direction` translates into, as measured, dense for `rows` (every cell when None)."""
    m = measured_sparse(direction, cells)
    return (m if rows is None else m[rows]).toarray()


def measured_sparse(direction: str, cells: VocabCells) -> sp.csr_matrix:
    """float32 accessibility at the covered cCREs, or log1p counts at the dataset's vocabulary genes
    (the columns of the translated profiles), one row per cell."""
    if direction == "rna2atac":
        return sp.csr_matrix(cells.atac[:, cells.cres], dtype=np.float32)
    x = sp.csr_matrix(cells.rna[:, cells.genes], dtype=np.float32)
    x.data = np.log1p(x.data)
    return x


def _profile_rows(profile, cell_names: pd.Index, test: np.ndarray, scenario: str) -> np.ndarray:
    """The rows of the cells a translated profile holds; refused unless they are test cells."""
    rows = pd.Index(cell_names.astype(str)).get_indexer(profile.obs_names)
    if (rows < 0).any() or not np.isin(rows, test).all():
        raise ValueError(f"the translated profiles of {scenario!r} hold other cells than its test cells; "
                         "rematerialize them")
    return rows


def umap_pictures(profiles: dict, cells: VocabCells, cell_names: pd.Index, split_table: pd.DataFrame,
                  labels: np.ndarray | None, path_for) -> dict[str, Path]:
    """Per direction, a UMAP of the `random` scenario's test cells, measured and translated
    (`figures.umap_measured_vs_translated`), written to `path_for(direction)`."""
    pictures = {}
    for direction, mdata in profiles.items():
        profile = mdata.mod[outputs.MODALITY[direction]] if outputs.MODALITY[direction] in mdata.mod else next(iter(mdata.mod.values()))
        scenario = outputs.scenario_of(profile)
        test = _profile_rows(profile, cell_names, rows_of(split_table, cell_names, scenario, "test"), scenario)
        pictures[direction] = path_for(direction)
        umap_measured_vs_translated(measured(direction, cells, test), outputs.scores(profile),
                                    None if labels is None else labels[test], pictures[direction],
                                    title=f"{direction}, {scenario} split: test cells")
    return pictures


PROFILE_ASSETS = ("translated_atac", "translated_rna", "cross_translated_atac", "cross_translated_rna")


def profile_listing(dataset: str, root) -> pd.DataFrame:
    """The `translated_profiles` table: one row per translated profile of `dataset` the warehouse
    at `root` holds (asset, direction, scenario, source dataset, path, cells, features)."""
    import mudata


    rows = []
    for asset in PROFILE_ASSETS:
        try:
            path = warehouse.find_artifact(asset, dataset, root)
        except FileNotFoundError:
            continue
        with mudata.set_options(pull_on_update=False):
            mdata = mudata.read_h5mu(path, backed=True)
        for profile in mdata.mod.values():
            rows.append({"asset": asset, "direction": profile.uns["direction"], "scenario": outputs.scenario_of(profile),
                         "source": profile.uns.get("source", dataset), "path": str(path), "cells": profile.n_obs,
                         "features": profile.n_vars})
        mdata.file.close()
    return pd.DataFrame(rows, columns=["asset", "direction", "scenario", "source", "path", "cells", "features"])


def _baselines(source, kind, target, train, test, labels) -> dict[str, np.ndarray]:
    z = baselines.source_embedding(source, train, kind)
    out = {"global_mean": baselines.global_mean(target[train], len(test)),
           "knn": baselines.knn(z[train], target[train], z[test]),
           "ridge": baselines.ridge(z[train], target[train], z[test])}
    if labels is not None:
        out["cell_type_mean_oracle"] = baselines.cell_type_mean(target[train], labels[train], labels[test])
    return out


def config_json(profile: str, counts_from: str, translator_from: str | None = None) -> str:
    return json.dumps({"profile": profile, "rna_counts": counts_from}
                      | ({"translator_from": translator_from} if translator_from else {}))
