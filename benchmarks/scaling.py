"""Scaling of the pipeline's stages with cells (N) and genes (G), on calibrated simulated data at a
10x run's depth, up to the paper's PBMC (12,000 cells x 36,600 genes x 112,000 peaks).

For each size a dataset is simulated (:func:`multiome_assets.simulate.dataset.simulate_dataset`,
peaks P = G x 112,000 / 36,600, ~3,000 UMI and ~8,000 open peaks per cell as
docs/performance.md's 10x build). Its inputs are prepared once (read, QC, annotation, the `cpu`
gene selection, cCRE vocabulary, window pairs: each stage's inputs as the assets hand them on) and
kept in the work folder. Each stage then runs in a forked child of a process holding those inputs,
so its peak RSS (``ru_maxrss``: the inputs it inherits, ``rss_before_gb``, included) and a failure
are its own. The stages call the plain functions behind the assets, `cpu` profiles:

- ``read_qc``: ``readers.read_dataset`` + ``preprocess.preprocess`` (asset ``multiome``)
- ``candidates``: ``annotation.match_genes`` + ``intervals.candidate_sets`` (``gene_annotation``, ``candidate_sets``)
- ``peak_vocab``: ``intervals.peak_to_vocab`` + ``binarize_to_vocab`` (``peak_vocab_matrix``)
- ``grn_genes``: ``grn.genes.select_genes`` with the ``cpu`` budget (``grn_genes``)
- ``backbone_epoch``: ``grn.pipeline.pretrain`` on the GRN genes, one epoch of BUDGET["backbone"] cells
  and as many validation cells, the SVD start on every training cell (``grn_backbone``)
- ``embeddings``: ``grn.pipeline.embed`` of that backbone on BUDGET["embeddings"] cells (``grn_embeddings``)
- ``heads``: ``grn.pipeline.train_heads``, 1 of its 20 epochs, on the SVD start (``grn_head``)
- ``baselines``: Pearson, Spearman and WGCNA on every cell (``grn_baselines``; GRNBoost2 left out)
- ``export``: ``grn.pipeline.export_scores``, top 500 targets per TF (``edge_scores``)
- ``evaluation``: ``grn.pipeline.evaluate_grn``, 100 random networks (``grn_metrics``)
- ``translator_atac2rna_epoch``, ``translator_rna2atac_epoch``: ``translation.train.train_translator``,
  one epoch of BUDGET["translator"] cells, as many validation cells (``translator_*``)
- ``translated_rna``, ``translated_atac``: ``translation.predict.translate_*`` of BUDGET["translated"]
  cells (``translated_*``)
- ``link_pairs``: ``links.extract.window_pairs`` (in ``cre_gene_links``)
- ``attention_links``: ``links.extract.attention_links`` of BUDGET["links"] cells (``cre_gene_links``)
- ``correlation_links``: ``links.extract.correlation_links`` on every cell (``cre_gene_links``)
- ``gene_link_scores``, ``tf_attention_cres``: ``links.extract.gene_link_scores`` and
  ``tf_attended_cres`` of BUDGET["links"] cells (the assets of those names)
- ``link_validation``, ``enrichment``: ``links.pipeline.link_validation``; ``cre_link_scores`` +
  ``celltype_specific_cres`` + ``enrichment_table`` (the assets of those names), on a
  ``cre_gene_links`` of this size with every in-window pair in every cell set (``_link_tables``)
- ``link_tracks``: ``links.pipeline.link_tracks`` of that table (``link_tracks``)
- ``export_write``: ``warehouse.write_table`` of the export (``edge_scores``' IO manager)
- ``tf_cre_gene``: its filtered read of that table + ``links.pipeline.tf_cre_gene`` (``tf_cre_gene``
  and ``tf_cre_gene_metrics``)

The `cpu` profiles cap what the training and attention stages see at a number of cells
(docs/performance.md#budgets: 500 cells per backbone epoch, 1,300 embedded, 1,000 translator cells
per epoch and 500 test cells, 500 link cells). Here those stages run on BUDGET's smaller numbers
of cells, the column ``cells``, so that the grid fits in an hour: their time against N says how
what is not capped grows (the SVD start, sampling, reading rows), against G how a cell's cost grows.
A stage's time at the profile's budget is about budget / cells times the per-cell part.
The models' weights are their initial ones (the work does not depend on them).

    python benchmarks/scaling.py --quick         # a smoke run, a few minutes
    python benchmarks/scaling.py                 # the table of docs/performance.md#scaling, ~70 min
    python benchmarks/scaling.py --report        # the tables and exponents of the last run again
    python benchmarks/scaling.py --stages baselines   # measure one stage again: its rows in the table are
                                                      # replaced, the other stages' kept

Each stage's result is kept in the work folder (DATA/work/KEY_results.jsonl): a stopped grid resumes
where it stopped; delete a line (or the file) to measure that stage (or size) again.
    python benchmarks/scaling.py --cells 1500,3000 --genes 9150 --fixed-genes 9150 --fixed-cells 3000
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PEAKS_PER_GENE = 112_000 / 36_600  # the paper's PBMC
DEPTH = {"umi_median": 3_000, "open_median": 8_000}  # docs/performance.md's 10x build
BUDGET = {"backbone": 64, "embeddings": 64, "translator": 128, "translated": 32, "links": 8}
STAGES = ("read_qc", "candidates", "peak_vocab", "grn_genes", "backbone_epoch", "embeddings", "heads", "baselines",
          "export", "evaluation", "translator_atac2rna_epoch", "translator_rna2atac_epoch", "translated_rna",
          "translated_atac", "link_pairs", "attention_links", "correlation_links", "gene_link_scores",
          "tf_attention_cres", "link_validation", "enrichment", "link_tracks", "export_write", "tf_cre_gene")
# read no cell: on the cells axis, its ends only
NO_CELLS = ("candidates", "heads", "export", "evaluation", "link_pairs", "enrichment", "link_tracks", "export_write",
            "tf_cre_gene")
# stages whose work follows rows that grow faster than G on the genes axis (the simulator puts P = 3.06 G
# peaks on one genome, so a gene's window holds more cCREs as G grows; the regulators grow with G too)
WORK_ROWS = {"evaluation": "TF x GRN gene pairs", "link_pairs": "window pairs", "correlation_links": "window pairs",
             "link_validation": "link table rows", "enrichment": "link table rows", "link_tracks": "link table rows",
             "tf_cre_gene": "link table rows"}
CELLS = {"backbone_epoch": BUDGET["backbone"], "embeddings": BUDGET["embeddings"],
         "translator_atac2rna_epoch": BUDGET["translator"], "translator_rna2atac_epoch": BUDGET["translator"],
         "translated_rna": BUDGET["translated"], "translated_atac": BUDGET["translated"], "attention_links": BUDGET["links"],
         "gene_link_scores": BUDGET["links"], "tf_attention_cres": BUDGET["links"]}


# ------------------------------------------------------------------------------------- inputs
def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _rss_gb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def _read_qc(root: Path, key: str):
    from multiome_assets.dataset import load_spec
    from multiome_assets.preprocess import preprocess
    from multiome_assets.readers import read_dataset

    spec = load_spec(key, root)
    return spec, preprocess(read_dataset(spec), spec.qc, spec.rna_values, str(spec.yaml_path))[0]


def _candidates(spec, mo):
    from multiome_assets import annotation, intervals

    var = mo.rna.var
    genes = annotation.match_genes(var.index, var["gene_ids"], annotation.read_annotation(spec.annotation))
    return genes, intervals.candidate_sets(genes, mo.atac.var, spec.candidate_window, 50)


def _peak_vocab(vocab, mo):
    from multiome_assets import intervals

    return intervals.binarize_to_vocab(mo.atac.X, intervals.peak_to_vocab(mo.atac.var, vocab))


def _grn_genes(spec, mo, prior):
    from multiome_assets import priors
    from multiome_assets.grn import genes

    return genes.select_genes(mo, priors.read_tf_list(spec.tf_list), prior, genes.budget("cpu"))


def prepare(root: Path, key: str, work: Path) -> dict:
    """Every stage's inputs, built once per dataset and kept in `work` (what the assets upstream of
    each stage would have written)."""
    path = work / f"{key}_inputs.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    from multiome_assets import annotation, priors
    from multiome_assets.cells import cell_labels, cell_sets
    from multiome_assets.dataset import reference_path
    from multiome_assets.grn import genes, pipeline
    from multiome_assets.intervals import read_ccre_bed
    from multiome_assets.links import extract
    from multiome_assets.translation.pipeline import load_cells, splits

    spec, mo = _read_qc(root, key)
    vocab = read_ccre_bed(reference_path("ccre_hg38", root))
    gene_table, candidates = _candidates(spec, mo)
    prior = priors.load_prior_edges(spec.prior, mo.rna.var_names, priors.read_tf_list(spec.tf_list))
    grn_mo = genes.restrict(mo, _grn_genes(spec, mo, prior))
    candidates = candidates[candidates.gene.isin(grn_mo.rna.var_names)]
    regulators = pipeline.regulator_universe(grn_mo.rna.var_names, priors.read_tf_list(spec.tf_list))
    sets = cell_sets(cell_labels(mo.rna.obs, spec.cell_type_column), mo.n_cells)
    vocab_map = annotation.map_to_vocab(gene_table, annotation.read_gene_vocab(reference_path("gene_vocab_38244", root)))
    cells, _ = load_cells(mo, vocab_map, _peak_vocab(vocab, mo), spec)
    located = vocab_map.merge(gene_table[["gene", "chrom", "tss"]], on="gene")
    inputs = dict(spec=spec, vocab=vocab, mo=mo, grn_mo=grn_mo, candidates=candidates, prior=prior, regulators=regulators,
                  sets=sets, cells=cells, located=located, splits=splits(mo, spec.batch_column, spec.cell_type_column),
                  pairs=extract.window_pairs(cells, located, vocab, spec.link_window))
    path.write_bytes(pickle.dumps(inputs, protocol=5))
    return inputs


def _grn_inputs(x: dict, work: Path, key: str):
    """(embeddings, heads, baselines) for export and evaluation: the SVD start as every backbone's
    embeddings, heads of 1 epoch, Pearson and Spearman; built once per dataset and kept."""
    path = work / f"{key}_grn_inputs.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    from multiome_assets.grn import baselines, pipeline
    from multiome_assets.grn.artifacts import BaselineScores, GeneEmbeddings

    mo, genes = x["grn_mo"], np.asarray(x["grn_mo"].rna.var_names)
    svd = pipeline.svd_embeddings(mo, x["sets"], d=32, seed=0)
    embeddings = GeneEmbeddings(list(genes), x["sets"], {n: svd for n in ("full", "rna_only", "random_candidates", "svd")}, "cpu")
    heads = pipeline.train_heads(embeddings, x["prior"], mo.rna.var_names, x["regulators"], seed=0, device="cpu",
                                 epochs=1, min_steps=1)
    scores = baselines.expression_baselines(["pearson", "spearman"], mo.rna.X, genes, x["regulators"])
    made = (embeddings, heads, BaselineScores(x["regulators"], genes, scores))
    path.write_bytes(pickle.dumps(made, protocol=5))
    return made


def _link_tables(x: dict, work: Path, key: str) -> dict:
    """What the link and regulon stages read, at this size: `cre_gene_links` with every in-window
    pair in every cell set (attention) and in `all` (correlation), as a 10x run's 100 cells per set
    cover nearly every covered cCRE; `tf_attention_cres`, 500 cCREs per TF; `gene_link_scores`,
    every vocabulary gene per set; the annotation tables. Scores are seeded random numbers: the work
    downstream does not depend on them. Built once per dataset and kept."""
    path = work / f"{key}_links.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    from multiome_assets import annotation
    from multiome_assets.dataset import reference_path
    from multiome_assets.links import extract

    rng, pairs, cells = np.random.default_rng(0), x["pairs"], x["cells"]
    every = np.arange(len(pairs))
    attention = pd.concat([pd.DataFrame({"cell_set": name, "pair": every, "score": rng.random(len(pairs))})
                           for name in x["sets"]], ignore_index=True)
    correlation = pd.DataFrame({"cell_set": "all", "pair": every, "score": rng.uniform(-1, 1, len(pairs)),
                                "zscore": rng.normal(size=len(pairs)), "pvalue": rng.random(len(pairs))})
    links = pd.concat([extract.links_table(pairs, attention, "attention"),
                       extract.links_table(pairs, correlation, "correlation")], ignore_index=True)
    named = x["located"].dropna(subset=["vocab_index"]).drop_duplicates("vocab_index")
    named = named[named.vocab_index.astype(np.int64).isin(cells.genes)]
    tfs = named[named.gene.isin(x["regulators"])].gene.to_numpy()
    top = np.stack([rng.choice(len(cells.cres), 500, replace=False) for _ in tfs])
    bed = x["vocab"].iloc[cells.cres[top.ravel()]]
    tf_cres = pd.DataFrame({"tf": np.repeat(tfs, 500), "cre": [f"cCRE{i}" for i in cells.cres[top.ravel()]],
                            "chrom": bed.Chromosome.to_numpy(), "start": bed.Start.to_numpy(), "end": bed.End.to_numpy(),
                            "attention": rng.random(top.size), "rank": np.tile(np.arange(1, 501), len(tfs))})
    gene_scores = pd.concat([pd.DataFrame({"cell_type": name, "gene": named.gene.to_numpy(), "score": rng.random(len(named))})
                             for name in x["sets"]], ignore_index=True)
    gene_scores["rank"] = gene_scores.groupby("cell_type").score.rank(ascending=False, method="min").astype(np.int64)
    gene_table, _ = _candidates(x["spec"], x["mo"])
    vocab_map = annotation.map_to_vocab(gene_table, annotation.read_gene_vocab(reference_path("gene_vocab_38244")))
    made = dict(links=links, tf_cres=tf_cres, gene_scores=gene_scores, gene_table=gene_table, vocab_map=vocab_map,
                peak_vocab=_peak_vocab(x["vocab"], x["mo"]), tf_pos=np.flatnonzero(np.isin(
                    cells.genes, named[named.gene.isin(x["regulators"])].vocab_index.astype(np.int64))))
    path.write_bytes(pickle.dumps(made, protocol=5))
    return made


# ------------------------------------------------------------------------------------- stages
def _translator(direction: str):
    from multiome_assets.models.cisformer import Translator
    from multiome_assets.translation.train import training_config, translator_config

    return Translator(translator_config(direction, "cpu")), training_config(direction, "cpu", 0)


def _rows(x: dict, part: str, n: int) -> np.ndarray:
    from multiome_assets.translation.splits import rows_of

    return rows_of(x["splits"], x["mo"].rna.obs_names, "random", part)[:n]


def stage_call(stage: str, root: Path, key: str, x: dict, work: Path):
    """The stage as a call of no arguments, its own inputs (a backbone, a model, heads) loaded or
    built here, before the clock starts. `_grn_inputs` builds export's and evaluation's inputs."""
    from dataclasses import replace

    from multiome_assets.grn import baselines, pipeline
    from multiome_assets.links import extract

    mo, cells = x["grn_mo"], x["cells"]
    if stage == "read_qc":
        return lambda: _read_qc(root, key)
    if stage == "candidates":
        return lambda: _candidates(x["spec"], x["mo"])
    if stage == "peak_vocab":
        return lambda: _peak_vocab(x["vocab"], x["mo"])
    if stage == "grn_genes":
        return lambda: _grn_genes(x["spec"], x["mo"], x["prior"])
    if stage == "backbone_epoch":
        def backbone_epoch():
            n = BUDGET["backbone"]
            backbone = pipeline.pretrain(mo, x["candidates"], profile="cpu", device="cpu", seed=0, max_epochs=1,
                                         cells_per_epoch=n, max_val_cells=n)
            (work / f"{key}_backbone.pkl").write_bytes(pickle.dumps(backbone, protocol=5))
        return backbone_epoch
    if stage == "embeddings":
        backbone = pickle.loads((work / f"{key}_backbone.pkl").read_bytes())
        return lambda: pipeline.embed(backbone, mo, {"all": np.arange(BUDGET["embeddings"])}, "cpu")
    if stage == "_grn_inputs":
        return lambda: _grn_inputs(x, work, key)
    if stage in ("heads", "export", "evaluation"):
        embeddings, heads, base = _grn_inputs(x, work, key)
        return {"heads": lambda: pipeline.train_heads(embeddings, x["prior"], mo.rna.var_names, x["regulators"], seed=0,
                                                      device="cpu", epochs=1, min_steps=1),
                "export": lambda: pipeline.export_scores(embeddings, heads, base, x["prior"], 500, device="cpu"),
                "evaluation": lambda: pipeline.evaluate_grn(
                    mo.rna.var_names, x["prior"], embeddings, heads, base, external_grns=[], n_random=100, top_n=100,
                    device="cpu", curves_path=lambda split: work / f"{key}_{split}.png")}[stage]
    if stage == "baselines":
        return lambda: baselines.expression_baselines(["pearson", "spearman", "wgcna"], mo.rna.X,
                                                      np.asarray(mo.rna.var_names), x["regulators"])
    if stage.startswith("translator_"):
        from multiome_assets.translation.train import train_translator

        n = BUDGET["translator"]
        model, config = _translator(stage.split("_")[1])
        config = replace(config, max_epochs=1, cells_per_epoch=n, max_cells_seen=None, max_val_cells=n)
        train, val, upper = _rows(x, "train", n), _rows(x, "validation", n), float(np.log1p(cells.rna.max()))
        return lambda: train_translator(model.config, config, cells, train, val, upper=upper)
    if stage == "translated_rna":
        from multiome_assets.translation.predict import translate_rna

        (model, config), rows = _translator("atac2rna"), _rows(x, "test", BUDGET["translated"])
        return lambda: translate_rna(model, cells, rows, 5.0, gene_chunk=config.n_queries, max_cres=config.max_source)
    if stage == "translated_atac":
        from multiome_assets.translation.predict import translate_atac

        (model, config), rows = _translator("rna2atac"), _rows(x, "test", BUDGET["translated"])
        return lambda: translate_atac(model, cells, rows, cre_chunk=config.n_queries, max_genes=config.max_source)
    if stage == "link_pairs":
        return lambda: extract.window_pairs(cells, x["located"], x["vocab"], x["spec"].link_window)
    if stage == "attention_links":
        model, config = _translator("atac2rna")
        return lambda: extract.attention_links(model, cells, x["pairs"], {"all": np.arange(BUDGET["links"])},
                                               gene_chunk=config.n_queries, max_cres=config.max_source)
    if stage == "correlation_links":
        from multiome_assets.preprocess import log_normalize

        return lambda: extract.correlation_links(cells, log_normalize(cells.rna[:, cells.genes].tocsr()), x["pairs"],
                                                 x["vocab"].Chromosome.to_numpy()[cells.cres])
    if stage == "gene_link_scores":
        model, config = _translator("rna2atac")
        return lambda: extract.gene_link_scores(model, cells, {"all": np.arange(BUDGET["links"])},
                                                cre_chunk=config.n_queries, max_genes=config.max_source)
    if stage in ("tf_attention_cres", "link_validation", "enrichment", "link_tracks", "tf_cre_gene"):
        return _link_stage(stage, x, work, key)
    if stage == "export_write":
        from multiome_assets import warehouse

        embeddings, heads, base = _grn_inputs(x, work, key)
        table = pipeline.export_scores(embeddings, heads, base, x["prior"], 500, device="cpu")
        return lambda: warehouse.write_table("edge_scores", key, table, work / "warehouse")
    raise ValueError(f"no stage {stage}")


def _link_stage(stage: str, x: dict, work: Path, key: str):
    """The stages downstream of the links, on `_link_tables`' tables of this size; `tf_cre_gene`
    reads `edge_scores` as its asset does, the head's rows only, from `export_write`'s table."""
    from multiome_assets import warehouse
    from multiome_assets.links import extract, pipeline
    from multiome_assets.links.triplets import EDGE_METHOD

    t, spec = _link_tables(x, work, key), x["spec"]
    if stage == "tf_attention_cres":
        model, config = _translator("rna2atac")
        return lambda: extract.tf_attended_cres(model, x["cells"], np.arange(BUDGET["links"]), t["tf_pos"], top=500,
                                                cre_chunk=config.n_queries, max_genes=config.max_source)
    if stage == "link_validation":
        return lambda: pipeline.link_validation(t["links"], x["mo"], t["vocab_map"], t["gene_table"], t["peak_vocab"],
                                                x["splits"], spec)
    if stage == "enrichment":
        def enrichment():
            specific = pipeline.celltype_specific_cres(pipeline.cre_link_scores(t["links"]))
            return pipeline.enrichment_table(t["links"], specific, x["prior"], t["tf_cres"], t["gene_scores"],
                                             t["gene_table"], spec)
        return enrichment
    if stage == "link_tracks":
        return lambda: pipeline.link_tracks(t["links"], t["gene_table"])
    embeddings, heads, _ = _grn_inputs(x, work, key)

    def tf_cre_gene():
        edges = warehouse.read_table("edge_scores", key, work / "warehouse", where={"method": EDGE_METHOD})
        return pipeline.tf_cre_gene(edges.drop(columns=["dataset"]), t["links"], t["tf_cres"], x["prior"], embeddings,
                                    heads, spec, n_random=100, device="cpu")
    return tf_cre_gene


def run_forked(stage: str, root: Path, key: str, x: dict, work: Path, timeout: float) -> dict:
    """The stage in a forked child (its own peak RSS, inputs included; its own failure), killed
    after `timeout` seconds."""
    read, write = os.pipe()
    before = _rss_gb()
    pid = os.fork()
    if pid == 0:  # the child: no torch ran in the parent, so its threads start here
        os.close(read)
        try:
            import torch

            torch.set_num_threads(2)
            call = stage_call(stage, root, key, x, work)
            t0 = time.perf_counter()
            call()
            out = {"status": "ok", "seconds": time.perf_counter() - t0, "peak_rss_gb": _peak_rss_gb()}
        except BaseException as e:  # noqa: BLE001 -- reported in the table
            out = {"status": f"failed: {type(e).__name__}: {str(e)[:200]}"}
        os.write(write, json.dumps(out).encode())
        os._exit(0)
    os.close(write)
    deadline = time.time() + timeout
    while time.time() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.2)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(read)
        return {"status": f"timeout after {timeout:.0f} s"}
    with os.fdopen(read) as pipe:
        text = pipe.read()
    return {**json.loads(text), "rss_before_gb": before} if text else {"status": "failed: no result (killed?)"}


# ------------------------------------------------------------------------------------- driver
def dataset_key(n_cells: int, n_genes: int) -> str:
    return f"scaling_n{n_cells}_g{n_genes}"


def ensure_dataset(root: Path, n_cells: int, n_genes: int, depth: dict) -> str:
    """The simulated dataset of this size under root/datasets (simulated once, kept); `depth`: the
    simulator's umi_median and open_median ({}: the reference's, scaled to the features)."""
    from multiome_assets.simulate.dataset import simulate_dataset

    key = dataset_key(n_cells, n_genes)
    if not (root / "datasets" / key / "dataset.yaml").exists():
        reference = root / "reference"
        if not reference.exists():
            reference.parent.mkdir(parents=True, exist_ok=True)
            reference.symlink_to(ROOT / "data" / "reference")
        t0 = time.perf_counter()
        simulate_dataset(root / "datasets" / key, n_cells, n_genes, n_peaks(n_genes), seed=0, **depth)
        tqdm.write(f"simulated {key}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return key


def n_peaks(n_genes: int) -> int:
    return round(PEAKS_PER_GENE * n_genes)


def run_size(root: Path, key: str, work: Path, stages: list[str], timeout: float) -> None:
    """One dataset's stages, each forked from this process once the inputs are built; a JSON line per
    stage, printed and kept in work/KEY_results.jsonl: a stage found there is not run again."""
    kept = work / f"{key}_results.jsonl"
    done = {r["stage"]: r for r in map(json.loads, kept.read_text().splitlines())} if kept.exists() else {}
    todo = [s for s in stages if s not in done]
    for stage in stages:
        if stage in done:
            print(json.dumps(done[stage]), flush=True)
    if not todo:
        return
    t0 = time.perf_counter()
    inputs = prepare(root, key, work)
    print(json.dumps({"stage": "_inputs", "seconds": time.perf_counter() - t0, "peak_rss_gb": _peak_rss_gb()}), flush=True)
    if {"heads", "export", "evaluation", "export_write", "tf_cre_gene"} & set(todo):  # built in a child: the parent never runs torch
        print(json.dumps({"stage": "_grn_inputs", **run_forked("_grn_inputs", root, key, inputs, work, timeout)}), flush=True)
    for stage in todo:
        line = json.dumps({"stage": stage, **run_forked(stage, root, key, inputs, work, timeout)})
        print(line, flush=True)
        with kept.open("a") as f:
            f.write(line + "\n")


def run_worker(root: Path, key: str, work: Path, stages: list[str], timeout: float) -> list[dict]:
    """run_size in a fresh process (the driver never holds a dataset or imports torch); its lines
    are shown as they come."""
    cmd = [sys.executable, __file__, "--worker", key, "--root", str(root), "--work", str(work),
           "--stages", ",".join(stages), "--timeout", str(timeout)]
    rows = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "2"}) as proc:
        for line in proc.stdout:
            if line.startswith("{"):
                rows.append(json.loads(line))
                tqdm.write(f"{key} {line.strip()}", file=sys.stderr)
        errors = proc.stderr.read().strip()
    done = {r["stage"] for r in rows}
    failure = errors.splitlines()[-1] if proc.returncode and errors else f"exit {proc.returncode}"
    return rows + [{"stage": s, "status": f"not run: the size's process ended ({failure})"} for s in stages if s not in done]


def input_rows(work: Path, key: str) -> dict[str, int]:
    """The rows of each kind in WORK_ROWS at this size, from the inputs kept in `work` ({} if none)."""
    counts = {}
    links, grn = work / f"{key}_links.pkl", work / f"{key}_grn_inputs.pkl"
    if links.exists():
        table = pickle.loads(links.read_bytes())["links"]
        counts |= {"link table rows": len(table), "window pairs": int((table.method == "correlation").sum())}
    if grn.exists():
        embeddings, heads, _ = pickle.loads(grn.read_bytes())
        counts["TF x GRN gene pairs"] = len(heads.regulators) * len(embeddings.genes)
    return counts


def with_input_rows(table: pd.DataFrame, work: Path) -> pd.DataFrame:
    """`table` with `input_rows`: for the stages of WORK_ROWS, the rows of their kind at the size."""
    sizes = {key: input_rows(work, key) for key in {dataset_key(n, g) for n, g in zip(table.n_cells, table.n_genes)}}
    return table.assign(input_rows=[sizes[dataset_key(n, g)].get(WORK_ROWS.get(s), np.nan)
                                    for n, g, s in zip(table.n_cells, table.n_genes, table.stage)])


def growth_exponents(table: pd.DataFrame) -> pd.DataFrame:
    """Slope of log(seconds) against log(size) per stage and axis (least squares, >= 2 sizes); on the
    genes axis also against the stage's input rows (`per_row`), where WORK_ROWS names them."""
    rows = []
    for (axis, stage), part in table[table.status == "ok"].groupby(["axis", "stage"], sort=False):
        size = part.n_cells if axis == "cells" else part.n_genes
        if part.seconds.gt(0).sum() >= 2:
            slope = np.polyfit(np.log(size), np.log(part.seconds), 1)[0]
            counted = part.get("input_rows", pd.Series(np.nan, index=part.index))
            per_row = (np.polyfit(np.log(counted), np.log(part.seconds), 1)[0]
                       if axis == "genes" and counted.notna().all() and counted.nunique() >= 2 else np.nan)
            rows.append({"axis": axis, "stage": stage, "exponent": slope, "per_row": per_row, "sizes": len(part)})
    return pd.DataFrame(rows)


def markdown_tables(table: pd.DataFrame, exponents: pd.DataFrame) -> str:
    """Per axis, each stage's "seconds / peak GB" at each size; then the exponents in N and G."""
    def cell(r) -> str:
        return f"{r.seconds:.3g} s / {r.peak_rss_gb:.2f} GB" if r.status == "ok" else r.status

    parts = []
    for axis, part in table.groupby("axis", sort=False):
        size = "n_cells" if axis == "cells" else "n_genes"
        wide = part.assign(text=part.apply(cell, axis=1)).pivot(index="stage", columns=size, values="text")
        wide = wide.reindex([s for s in STAGES if s in wide.index]).fillna("–")  # –: reads no cell, run at the ends
        wide.columns = [f"{'N' if axis == 'cells' else 'G'}={c:,}" for c in wide.columns]
        fixed = f"G={part.n_genes.iloc[0]:,}" if axis == "cells" else f"N={part.n_cells.iloc[0]:,}"
        parts.append(f"against {axis} ({fixed}):\n\n" + wide.assign(
            cells=[f"{CELLS[s]:,}" if s in CELLS else "all" for s in wide.index]).to_markdown())
    if len(exponents):
        wide = exponents.pivot(index="stage", columns="axis", values="exponent")
        per_row = exponents[exponents.axis == "genes"].set_index("stage").per_row
        wide["genes, per input row"] = [f"{per_row[s]:.2f} ({WORK_ROWS[s]})" if s in WORK_ROWS and pd.notna(per_row.get(s))
                                        else "" for s in wide.index]
        wide = wide.reindex([s for s in STAGES if s in wide.index])
        parts.append("growth exponents (slope of log time on log size):\n\n" + wide.to_markdown(floatfmt=".2f"))
    if "input_rows" in table:
        genes = table[(table.axis == "genes") & table.stage.isin(WORK_ROWS)].assign(kind=lambda t: t.stage.map(WORK_ROWS))
        wide = genes.drop_duplicates(["kind", "n_genes"]).pivot(index="kind", columns="n_genes", values="input_rows")
        wide.columns = [f"G={c:,}" for c in wide.columns]
        parts.append("input rows against genes:\n\n" + wide.map(lambda v: f"{v:,.0f}").to_markdown())
    return "\n\n".join(parts)


def plot(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for col, axis in enumerate(("cells", "genes")):
        part = table[(table.axis == axis) & (table.status == "ok")]
        size = "n_cells" if axis == "cells" else "n_genes"
        for stage in STAGES:
            s = part[part.stage == stage]
            if len(s):
                axes[0, col].loglog(s[size], s.seconds, "o-", label=stage)
                axes[1, col].semilogx(s[size], s.peak_rss_gb, "o-", label=stage)
        fixed = part.n_genes.iloc[0] if axis == "cells" and len(part) else part.n_cells.iloc[0] if len(part) else ""
        axes[0, col].set_title(f"against {axis} ({'genes' if axis == 'cells' else 'cells'} = {fixed})")
        axes[0, col].set_ylabel("wall time (s)")
        axes[1, col].set_ylabel("peak RSS (GB)")
        axes[1, col].set_xlabel(size)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def merged(before: pd.DataFrame, measured: pd.DataFrame) -> pd.DataFrame:
    """`before`'s rows of the stages not measured now, and the rows measured now; axes, then stages
    in pipeline order, then sizes."""
    kept = before[~before.stage.isin(measured.stage.unique())]
    if len(kept):
        print(f"kept {len(kept)} rows of {kept.stage.nunique()} stages measured before", file=sys.stderr)
    table = pd.concat([kept, measured], ignore_index=True)
    order = {s: i for i, s in enumerate(STAGES)}
    return table.sort_values(["axis", "stage", "n_cells", "n_genes"], key=lambda c: c.map(order) if c.name == "stage"
                             else c, kind="stable").reset_index(drop=True)


def grid(args) -> list[tuple[str, int, int]]:
    cells = [("cells", n, args.fixed_genes) for n in args.cells]
    genes = [("genes", args.fixed_cells, g) for g in args.genes]
    return cells + genes


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ints = lambda text: [int(x) for x in text.split(",")]  # noqa: E731
    parser.add_argument("--cells", type=ints, default=[1_500, 3_000, 6_000, 12_000], help="N at --fixed-genes")
    parser.add_argument("--genes", type=ints, default=[4_575, 9_150, 18_300, 36_600], help="G at --fixed-cells")
    parser.add_argument("--fixed-genes", type=int, default=36_600)
    parser.add_argument("--fixed-cells", type=int, default=12_000)
    parser.add_argument("--stages", type=lambda t: t.split(","), default=list(STAGES))
    parser.add_argument("--timeout", type=float, default=600, help="per stage and size, seconds")
    parser.add_argument("--data", type=Path, default=Path("/tmp/multiome_scaling"), help="simulated datasets, kept")
    parser.add_argument("--out", type=Path, default=RESULTS / "scaling.csv")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--report", action="store_true", help="no run: the tables and exponents of --out again")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.stages) - set(STAGES))
    if unknown:
        parser.error(f"no stage {', '.join(unknown)} (stages: {', '.join(STAGES)})")
    if args.worker:
        run_size(args.root, args.worker, args.work, args.stages, args.timeout)
        return
    if args.quick:
        args.cells, args.genes, args.fixed_genes, args.fixed_cells = [400, 800], [1_500, 3_000], 3_000, 800
        args.out = args.out.with_name("scaling_quick.csv")

    root, work = args.data / "data", args.data / "work"
    if args.report:
        return report(pd.read_csv(args.out), work, args.out)
    work.mkdir(parents=True, exist_ok=True)
    rows, done = [], {}
    for axis, n, g in tqdm(grid(args), desc="sizes", file=sys.stderr):
        key = ensure_dataset(root, n, g, {} if args.quick else DEPTH)  # quick: too few peaks for 8,000 open
        inner = axis == "cells" and n not in (min(args.cells), max(args.cells))
        stages = [s for s in args.stages if not (inner and s in NO_CELLS)]
        if key not in done:  # the shared corner is measured once, and listed on both axes
            done[key] = run_worker(root, key, work, stages, args.timeout)
        for r in done[key]:
            if not r["stage"].startswith("_"):
                rows.append({"axis": axis, "n_cells": n, "n_genes": g, "n_peaks": n_peaks(g),
                             "cells": CELLS.get(r["stage"], n), **r})
    table = pd.DataFrame(rows)
    for column in ("seconds", "rss_before_gb", "peak_rss_gb"):
        table[column] = table.get(column, np.nan)
    if args.out.exists():
        table = merged(pd.read_csv(args.out), table)
    report(table, work, args.out)


def report(table: pd.DataFrame, work: Path, out: Path) -> None:
    """Write the table (with its input rows, where the work folder keeps the inputs), its exponents
    and figure, and print them."""
    if work.exists():
        table = with_input_rows(table.drop(columns="input_rows", errors="ignore"), work)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    exponents = growth_exponents(table)
    exponents.to_csv(out.with_name(out.stem + "_exponents.csv"), index=False)
    plot(table, out.with_suffix(".png"))
    print(markdown_tables(table, exponents))
    print(f"\nwrote {out}, {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
