"""Stage 1 pretraining: it learns on structured data, is reproducible, and exports cell-set embeddings."""
from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from multiome_assets.grn.pretrain import (
    PROFILES,
    PretrainConfig,
    gene_embeddings,
    load_backbone,
    nb_targets,
    pretrain_backbone,
    svd_identity_init,
)
from multiome_assets.models.grn_transformer import GRNTransformerConfig
from multiome_assets.models.progress import TrainingLog

G, P, C = 30, 48, 4


def structured_multiome(n_cells=160, seed=0):
    """Three cell programs: each gene's mean count and each peak's accessibility depend on the
    program; a gene's candidate peaks open together with it. Returns log1p input, atac, counts, candidates."""
    rng = np.random.default_rng(seed)
    program = rng.integers(0, 3, n_cells)
    gene_prog = rng.integers(0, 3, G)
    mean = np.where(gene_prog[None, :] == program[:, None], 6.0, 0.3) * rng.uniform(0.5, 2.0, G)
    size = rng.uniform(0.6, 1.6, n_cells)[:, None]
    counts = rng.poisson(mean * size).astype(np.float32)
    cand = np.full((G, C), -1)
    for g in range(G):  # test-data construction, not library code
        cand[g, : 2 + g % 3] = rng.choice(P, 2 + g % 3, replace=False)
    peak_prog = np.full(P, -1)
    valid = cand >= 0
    peak_prog[cand[valid]] = np.repeat(gene_prog, valid.sum(1))
    p_open = np.where(peak_prog[None, :] == program[:, None], 0.8, 0.05)
    atac = (rng.random((n_cells, P)) < p_open).astype(np.float32)
    return sp.csr_matrix(np.log1p(counts)), sp.csr_matrix(atac), sp.csr_matrix(counts), cand


CFG = GRNTransformerConfig(n_genes=G, n_peaks=P, d_model=16, n_layers=1, n_heads=2, dropout=0.0,
                           top_k=2, k_neighbors=4, max_candidates=C)
TRAIN = PretrainConfig(lr=1e-2, batch_size=16, max_epochs=8, patience=8, seed=7)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data():
    return structured_multiome()


@pytest.fixture(scope="module")
def trained(data):
    rna, atac, counts, cand = data
    return pretrain_backbone(rna, atac, cand, counts=counts, model_config=CFG, train_config=TRAIN,
                             gene_names=[f"g{i}" for i in range(G)], peak_names=[f"p{i}" for i in range(P)])


def test_pretraining_lowers_validation_loss(trained):
    ckpt, history = trained
    assert list(history.columns) == ["epoch", "train_loss", "val_loss"]
    assert history.epoch.tolist()[0] == 0 and np.isnan(history.train_loss[0])  # the untrained model
    assert ckpt.best_val_loss == history.val_loss.min() < 0.9 * history.val_loss[0]
    assert ckpt.best_epoch == int(history.epoch[history.val_loss.idxmin()]) > 0
    assert ckpt.nb_target == "counts"
    assert ckpt.checkpoint.features["genes"][3] == "g3" and ckpt.d_model == 16


def test_training_reports_each_epoch_with_its_loss_and_speed(data):
    rna, atac, counts, cand = data
    lines = []
    _, history = pretrain_backbone(rna, atac, cand, counts=counts, model_config=CFG,
                                   train_config=replace(TRAIN, max_epochs=2), log=lines.append)
    assert len(lines) == 2
    for epoch, line in zip((1, 2), lines):
        got = re.fullmatch(r"backbone epoch (\d): train loss ([\d.]+), val ([\d.]+), ([\d.]+) cells/s, \d+ s", line)
        assert got, line
        assert int(got[1]) == epoch and float(got[2]) == pytest.approx(history.train_loss[epoch], abs=1e-4)
        assert float(got[4]) > 0


def test_within_a_long_epoch_progress_is_reported_at_the_chosen_rate():
    lines = []
    every_step = TrainingLog(lines.append, "x", every_s=0.0, max_epochs=4)
    epoch_only = TrainingLog(lines.append, "y", every_s=3600)
    for log in (every_step, epoch_only):
        log.start_epoch(1, steps=3)
        for loss in (3.0, 2.0, 1.0):
            log.step(cells=4, loss=loss)
    # every step for "x"; none for "y", whose next line is due in an hour
    assert [line.split(":")[0] for line in lines] == ["x epoch 1/4 step 1/3", "x epoch 1/4 step 2/3", "x epoch 1/4 step 3/3"]
    assert lines[-1].startswith("x epoch 1/4 step 3/3: loss 2.0000,")  # the mean over the epoch's cells so far
    assert re.search(r"~\d+ s left in the epoch, ≤ \d+ s in all$", lines[0])  # what is left, at most
    assert epoch_only.cells_per_s() > 0


def test_a_long_loop_over_chunks_reports_what_is_done_and_left():
    from multiome_assets.models.progress import ChunkLog

    lines = []
    log = ChunkLog(lines.append, "grnboost2", 300, "targets", every_s=0.0)
    for _ in range(3):
        log.advance(100)
    assert [line.split(",")[0] for line in lines] == ["grnboost2: 100/300 targets", "grnboost2: 200/300 targets"]
    assert all(re.search(r"~\d+ s left$", line) for line in lines)


def test_same_seed_same_checkpoint_other_seed_differs(data):
    rna, atac, counts, cand = data
    rna, atac, counts = rna[:64], atac[:64], counts[:64]
    short = replace(TRAIN, max_epochs=2)
    a, ha = pretrain_backbone(rna, atac, cand, counts=counts, model_config=CFG, train_config=short)
    b, hb = pretrain_backbone(rna, atac, cand, counts=counts, model_config=CFG, train_config=short)
    c, _ = pretrain_backbone(rna, atac, cand, counts=counts, model_config=CFG, train_config=replace(short, seed=8))
    assert ha.equals(hb)
    a, b, c = (x.checkpoint.weights for x in (a, b, c))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_early_stopping_keeps_the_best_weights(data):
    rna, atac, counts, cand = data
    ckpt, history = pretrain_backbone(rna, atac, cand, counts=counts, model_config=CFG,
                                      train_config=replace(TRAIN, lr=0.3, max_epochs=8, patience=1))
    assert len(history) < 9  # stopped before max_epochs
    model = load_backbone(ckpt)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in ckpt.checkpoint.weights.items())


def test_gene_embeddings_are_per_set_means_of_final_states(data, trained):
    rna, atac, _, _ = data
    model = load_backbone(trained[0])
    model.train()
    sets = {"all": np.arange(rna.shape[0]), "a": np.arange(0, 10), "b": np.array([3, 40, 41, 9])}
    emb = gene_embeddings(model, rna, atac, sets, batch_size=7)
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        states, _ = model(torch.from_numpy(rna.toarray()), torch.from_numpy(atac.toarray()))
    for name, idx in sets.items():
        assert emb[name].shape == (G, 16) and emb[name].dtype == np.float32
        np.testing.assert_allclose(emb[name], states[idx].mean(0).numpy(), atol=1e-5)
    again = gene_embeddings(model, rna, atac, sets, batch_size=32)
    np.testing.assert_allclose(again["all"], emb["all"], atol=1e-5)
    with pytest.raises(ValueError, match="'empty'"):
        gene_embeddings(model, rna, atac, {"empty": np.array([], dtype=int)})


def test_rna_only_ablation_trains(data):
    rna, atac, counts, _ = data
    cfg = replace(CFG, use_atac=False)
    ckpt, history = pretrain_backbone(rna, atac, np.full((G, C), -1), counts=counts, model_config=cfg,
                                      train_config=replace(TRAIN, max_epochs=3))
    assert history.val_loss.iloc[-1] < history.val_loss[0]
    emb = gene_embeddings(load_backbone(ckpt), rna, atac, {"all": np.arange(5)})
    assert np.isfinite(emb["all"]).all()


def test_nb_targets_recover_counts_from_log_transforms():
    rng = np.random.default_rng(0)
    counts = sp.csr_matrix(rng.poisson(2.0, (20, 15)).astype(np.float32))
    for values, kind in [
        (counts, "counts"),
        (counts.log1p(), "expm1"),
        (sp.csr_matrix((np.log2(1 + counts.data), counts.indices, counts.indptr), shape=counts.shape), "exp2m1"),
    ]:
        targets, how = nb_targets(values)
        assert how == kind
        assert (targets != counts).nnz == 0
    lib = np.asarray(counts.sum(1)).ravel()
    normalized = sp.csr_matrix(sp.diags(1e4 / lib) @ counts).log1p()
    targets, how = nb_targets(normalized)
    assert how == "round_expm1" and np.all(targets.data == np.round(targets.data)) and targets.nnz > 0
    assert nb_targets(normalized, counts)[1] == "counts"


def test_profiles():
    from multiome_assets.models.profiles import PROFILE_NAMES
    from multiome_assets.translation import train as translation

    assert set(PROFILES) == set(translation.PROFILES) == set(PROFILE_NAMES) == {"paper", "cpu"}  # one row per profile, both models
    assert translation.translator_config("atac2rna", "paper").d_model == 280  # the paper's ATAC→RNA size
    assert translation.training_config("rna2atac", "cpu", seed=3).seed == 3
    overrides, train = PROFILES["paper"]
    paper = GRNTransformerConfig(n_genes=1, n_peaks=1, **overrides)
    assert (paper.d_model, paper.n_layers, paper.n_heads, paper.top_k, paper.k_neighbors) == (256, 6, 8, 8, 16)
    assert (train.lr, train.weight_decay, train.batch_size, train.seed) == (1e-4, 1e-2, 64, 42)
    cpu = GRNTransformerConfig(n_genes=1, n_peaks=1, **PROFILES["cpu"][0])
    assert cpu.d_model < paper.d_model and cpu.d_model % cpu.n_heads == 0
    from multiome_assets.grn.pipeline import pretrain

    with pytest.raises(ValueError, match=r"profile 'gpu' is not one of \['cpu', 'paper'\]"):
        pretrain(None, None, profile="gpu", device="cpu", seed=0)  # a typo in the launchpad config


def test_svd_identity_init_starts_coexpressed_genes_together(data):
    rna, atac, counts, cand = data  # genes follow one of three cell programs
    z = svd_identity_init(rna, 16, seed=0)
    assert z.shape == (G, 16) and np.isclose(np.sqrt(np.mean(z**2)), 1.0)
    zn = z / np.linalg.norm(z, axis=1, keepdims=True)
    cos = zn @ zn.T
    x = rna.toarray()
    corr = np.corrcoef(x.T)
    same = corr > 0.5  # pairs of genes of one program
    off = ~np.eye(G, dtype=bool)
    assert cos[same & off].mean() > cos[~same].mean() + 0.5
    wide = svd_identity_init(rna[:5], 16, seed=0)  # 5 cells: rank 4 at most, other components zero
    assert np.all(wide[:, 4:] == 0)


def test_arpack_start_is_the_exact_truncated_svd_whatever_the_seed(data):
    """svd_solver="arpack": the data's top-d SVD, not a seed's approximation of it. Compared by the
    Gram matrix (invariant to sign flips and to rotations inside the top-d subspace)."""
    rna = data[0]
    d = 8
    x = rna.toarray().astype(np.float64)
    x = x / np.where(x.std(0) > 0, x.std(0), 1.0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    exact = vt[:d].T * s[:d]
    exact /= np.sqrt(np.mean(exact**2))
    z = svd_identity_init(rna, d, seed=0, solver="arpack").astype(np.float64)
    np.testing.assert_allclose(z @ z.T, exact @ exact.T, atol=1e-4 * np.abs(exact @ exact.T).max())
    np.testing.assert_array_equal(z, svd_identity_init(rna, d, seed=5, solver="arpack"))
    with pytest.raises(ValueError, match="svd_solver"):
        svd_identity_init(rna, d, seed=0, solver="lapack")


def test_unknown_id_init_is_refused(data):
    rna, atac, counts, cand = data
    with pytest.raises(ValueError, match="gene_id_init"):
        pretrain_backbone(rna, atac, cand, model_config=CFG, train_config=replace(TRAIN, gene_id_init="pca"))
    with pytest.raises(ValueError, match="peak_id_init"):
        pretrain_backbone(rna, atac, cand, model_config=CFG, train_config=replace(TRAIN, peak_id_init="pca"))


def test_svd_peak_init_starts_from_accessibility_loadings(data):
    """With peak_id_init="svd" (and no training step) the peak identities are the accessibility
    loadings, so peaks opening in one program start close together; "random" is N(0, 1)."""
    rna, atac, counts, cand = data
    untrained = replace(TRAIN, max_epochs=0)
    svd, _ = pretrain_backbone(rna, atac, cand, model_config=CFG, train_config=replace(untrained, peak_id_init="svd"))
    rnd, _ = pretrain_backbone(rna, atac, cand, model_config=CFG, train_config=untrained)
    svd, rnd = svd.checkpoint.weights["peak_id.weight"].numpy(), rnd.checkpoint.weights["peak_id.weight"].numpy()
    np.testing.assert_allclose(svd, svd_identity_init(atac, CFG.d_model, TRAIN.seed))
    assert not np.allclose(rnd, svd)


def test_embedding_refuses_a_backbone_trained_on_other_genes(data, trained):
    # a backbone from before the multiome was rematerialized would misalign every gene silently
    import anndata as ad
    import pandas as pd

    from multiome_assets.grn.pipeline import embed
    from multiome_assets.readers import Multiome

    rna, atac, _, _ = data
    cells = pd.Index([f"c{i}" for i in range(rna.shape[0])])
    genes, peaks = [f"g{i}" for i in range(G)], [f"p{i}" for i in range(P)]
    mo = Multiome(ad.AnnData(rna, obs=pd.DataFrame(index=cells), var=pd.DataFrame(index=genes)),
                  ad.AnnData(atac, obs=pd.DataFrame(index=cells), var=pd.DataFrame(index=peaks)))
    assert embed(trained[0], mo, {"all": np.arange(5)}, "cpu")["all"].shape == (G, CFG.d_model)
    swapped = Multiome(mo.rna[:, genes[::-1]].copy(), mo.atac)
    with pytest.raises(ValueError, match="trained on other genes than it is given: position 0 is 'g0' in training, "
                                         "'g29' now; rematerialize the backbone assets"):
        embed(trained[0], swapped, {"all": np.arange(5)}, "cpu")


def test_a_backbone_survives_the_warehouse_as_plain_data(trained, tmp_path):
    """Written as plain data and read back with torch.load(weights_only=True): same weights, same
    training record; a checkpoint of another kind or format is refused saying what differs."""
    from dataclasses import replace as replace_field

    from multiome_assets import warehouse
    from multiome_assets.models.checkpoint import CheckpointMismatch

    backbone = trained[0]
    path = warehouse.write_artifact("grn_backbone", "toy", backbone, root=tmp_path)
    assert torch.load(path, weights_only=True)["artifact"] == "multiome_assets.grn.artifacts:Backbone"
    back = warehouse.read_artifact(path)
    assert all(torch.equal(back.checkpoint.weights[k], v) for k, v in backbone.checkpoint.weights.items())
    assert back.history.equals(backbone.history) and back.best_epoch == backbone.best_epoch
    np.testing.assert_array_equal(back.candidates, backbone.candidates)
    old = replace_field(backbone, checkpoint=replace_field(backbone.checkpoint, format_version=0))
    with pytest.raises(CheckpointMismatch, match="checkpoint format 0, this code reads 1"):
        load_backbone(old)
    head = replace_field(backbone, checkpoint=replace_field(backbone.checkpoint, kind="edge_head"))
    with pytest.raises(CheckpointMismatch, match="is a 'edge_head', not a 'grn_backbone'"):
        load_backbone(head)
    extra = replace_field(backbone.checkpoint, config={**backbone.checkpoint.config, "n_experts": 4})
    with pytest.raises(CheckpointMismatch, match=r"config fields this code does not know: \['n_experts'\]"):
        load_backbone(replace_field(backbone, checkpoint=extra))
    pickled = tmp_path / "artifacts" / "grn_backbone" / "old.pt"
    torch.save({"model": backbone.checkpoint.weights, "history": backbone.history}, pickled)  # the old format
    with pytest.raises(ValueError, match="rematerialize asset 'grn_backbone'"):
        warehouse.read_artifact(pickled)
    # a file may only name a type of this package that rebuilds itself: never another module's callable
    for named in ("os:system", "multiome_assets.files:as_path", "Backbone"):
        torch.save({"artifact": named, "state": {}}, pickled)
        with pytest.raises(ValueError, match="rematerialize asset 'grn_backbone'"):
            warehouse.read_artifact(pickled)


KILLED = """
import sys
from dataclasses import replace
import torch
from multiome_assets.grn.pretrain import pretrain_backbone
from multiome_assets_tests.grn.test_pretrain import CFG, RESUMED, structured_multiome
torch.set_num_threads(1)
rna, atac, counts, cand = structured_multiome(n_cells=int(sys.argv[2]))
pretrain_backbone(rna, atac, cand, counts=counts, model_config=replace(CFG, dropout=0.1), train_config=RESUMED,
                  checkpoint=sys.argv[1])
"""
RESUMED = PretrainConfig(lr=1e-2, batch_size=16, max_epochs=3, patience=3, seed=3)


@pytest.mark.slow  # real processes
def test_a_training_killed_mid_epoch_resumes_to_the_weights_of_one_never_killed(tmp_path):
    """A real process, a real SIGKILL in the middle of epoch 2: rerun, the training resumes from the
    end of epoch 1 (model, optimizer, scheduler, data order, masks, dropout stream) and ends where an
    uninterrupted run ends."""
    import signal
    import subprocess
    import sys
    import time

    n_cells, path = 3000, tmp_path / "backbone.pt"
    child = subprocess.Popen([sys.executable, "-c", KILLED, str(path), str(n_cells)])
    try:
        deadline = time.monotonic() + 300
        while not path.exists():  # the end of epoch 1
            assert child.poll() is None and time.monotonic() < deadline, "no checkpoint after epoch 1"
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        child.kill()
    assert child.returncode == -signal.SIGKILL
    assert torch.load(path, weights_only=True)["state"]["epoch"] == 1  # killed before epoch 2 ended

    rna, atac, counts, cand = structured_multiome(n_cells=n_cells)
    args = dict(counts=counts, model_config=replace(CFG, dropout=0.1), train_config=RESUMED)
    resumed, resumed_history = pretrain_backbone(rna, atac, cand, checkpoint=path, **args)
    never_killed, history = pretrain_backbone(rna, atac, cand, **args)
    assert resumed_history.epoch.tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(resumed_history.to_numpy(), history.to_numpy(), rtol=1e-6)
    for name, weight in never_killed.checkpoint.weights.items():
        torch.testing.assert_close(resumed.checkpoint.weights[name], weight, rtol=1e-6, atol=1e-7)

    # a checkpoint of another training is refused, naming the file and what differs
    with pytest.raises(ValueError, match=r"backbone\.pt: an interrupted training with another train_config \(\['lr'\]"):
        pretrain_backbone(rna, atac, cand, checkpoint=path, **{**args, "train_config": replace(RESUMED, lr=1e-3)})


UNDER_TORCHRUN = """
import sys
import torch
import torch.distributed as dist
from multiome_assets.grn.pretrain import pretrain_backbone
from multiome_assets_tests.grn.test_pretrain import CFG, DDP_TRAIN, structured_multiome
torch.set_num_threads(1)
dist.init_process_group("gloo")  # torchrun's environment: rank, world size, rendezvous
rna, atac, counts, cand = structured_multiome(n_cells=200)
backbone, _ = pretrain_backbone(rna, atac, cand, counts=counts, model_config=CFG, train_config=DDP_TRAIN)
if dist.get_rank() == 0:
    torch.save(backbone.checkpoint.weights, sys.argv[1])
dist.destroy_process_group()
"""
DDP_TRAIN = PretrainConfig(lr=1e-2, batch_size=16, max_epochs=2, max_steps=15, patience=2, seed=5)


@pytest.mark.slow  # real processes
def test_two_processes_under_torchrun_take_the_steps_of_one_with_the_same_global_batch(tmp_path):
    """torchrun, 2 CPU processes, gloo: each trains on half of every batch of 16 cells (the last
    batch of an epoch is odd-sized); after 15 steps the weights are those of one process."""
    import os
    import subprocess
    import sys

    out = tmp_path / "ddp.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           "--no-python", sys.executable, "-c", UNDER_TORCHRUN, str(out)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rna, atac, counts, cand = structured_multiome(n_cells=200)
    one, _ = pretrain_backbone(rna, atac, cand, counts=counts, model_config=CFG, train_config=DDP_TRAIN)
    two = replace(one, checkpoint=replace(one.checkpoint, weights=torch.load(out, weights_only=True)))
    # The same function: the gene states of every cell agree to float tolerance.
    with torch.no_grad():
        x, y = (load_backbone(b)(torch.from_numpy(rna.toarray()), torch.from_numpy(atac.toarray()))[0] for b in (one, two))
    torch.testing.assert_close(y, x, rtol=1e-4, atol=1e-5)
    # The same weights, but for the key biases: attention is blind to them (softmax is shift-invariant),
    # so their gradient is rounding noise, which Adam scales up to steps of up to lr.
    d = CFG.d_model
    for name, weight in one.checkpoint.weights.items():
        other = two.checkpoint.weights[name]
        key = slice(d, 2 * d) if name.endswith("qkv.bias") else slice(0, d) if name.endswith("kv.bias") else None
        if key is not None:
            torch.testing.assert_close(other[key], weight[key], rtol=0, atol=DDP_TRAIN.lr)
            other, weight = other.clone(), weight.clone()
            other[key] = weight[key] = 0
        torch.testing.assert_close(other, weight, rtol=1e-5, atol=1e-6, msg=lambda m, name=name: f"{name}: {m}")


def test_cell_budgets_bound_an_epoch_and_the_validation(data):
    """cells_per_epoch: each epoch's steps cover that many training cells, a fresh sample each
    epoch; max_val_cells: the validation set is a fixed sample of that size."""
    rna, atac, counts, cand = data
    seen = []
    budget = replace(TRAIN, max_epochs=2, patience=2, cells_per_epoch=48, max_val_cells=8)
    import multiome_assets.grn.pretrain as stage1

    original = stage1._validate
    try:
        stage1._validate = lambda model, rna, atac, targets, idx, *a: seen.append(len(idx)) or original(model, rna, atac, targets, idx, *a)
        lines = []
        _, history = pretrain_backbone(rna, atac, cand, counts=counts, model_config=CFG, train_config=budget,
                                       log=lines.append)
    finally:
        stage1._validate = original
    assert seen == [8, 8, 8]  # untrained, epoch 1, epoch 2
    assert all(re.search(r"backbone epoch \d", line) for line in lines) and len(history) == 3
    whole = pretrain_backbone(rna, atac, cand, counts=counts, model_config=CFG,
                              train_config=replace(TRAIN, max_epochs=1, cells_per_epoch=10_000))[0]
    same = pretrain_backbone(rna, atac, cand, counts=counts, model_config=CFG,
                             train_config=replace(TRAIN, max_epochs=1))[0]
    for k, v in same.checkpoint.weights.items():  # a budget above the cells changes nothing
        torch.testing.assert_close(whole.checkpoint.weights[k], v, rtol=0, atol=0)
