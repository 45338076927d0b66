"""Translators trained on a simulated multiome with planted CRE↔gene programs beat the global mean
on held-out cells (the bar a translator must clear: feature popularity)."""
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.metrics import roc_auc_score

from multiome_assets.models.cisformer import TranslatorConfig
from multiome_assets.translation.predict import translate_atac, translate_rna
from multiome_assets.translation.tokens import vocab_cells
from multiome_assets.translation.train import TrainConfig, train_translator

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]
N_CELLS, N_GENES, N_CRES = 240, 30, 600


@pytest.fixture(scope="module")
def planted():
    """Three cell programs; each gene is high and each CRE open mostly in its own program. A CRE's
    program follows its index in runs of ten (neighbouring cCREs are co-regulated): CREs are known
    to the model only by the digits of their index, so that is the structure it can learn."""
    rng = np.random.default_rng(0)
    program = rng.integers(0, 3, N_CELLS)
    gene_program, cre_program = rng.integers(0, 3, N_GENES), (np.arange(N_CRES) // 10) % 3
    mean = np.where(gene_program[None] == program[:, None], 20.0, 0.5)
    counts = sp.csr_matrix(rng.poisson(mean).astype(np.float32))
    open_ = rng.random((N_CELLS, N_CRES)) < np.where(cre_program[None] == program[:, None], 0.5, 0.03)
    cells = vocab_cells(counts, np.arange(N_GENES, dtype=float), N_GENES, sp.csr_matrix(open_))
    return cells, np.arange(160), np.arange(160, 180), np.arange(180, N_CELLS)


def _config(direction):
    return TranslatorConfig(direction, n_genes=N_GENES, n_cres=N_CRES, d_model=28, n_layers=1, n_heads=2,
                            head_dim=8, dropout=0.0)


def test_atac_to_rna_beats_the_global_mean(planted):
    cells, train, val, test = planted
    truth = np.log1p(cells.rna.toarray())
    upper = float(truth[train].max())
    # no early stop: attention over a uniform start sits on a plateau (the marginal) for some epochs
    config = TrainConfig(lr=3e-3, step_epochs=100, gamma=0.9, batch_size=16, patience=40, max_epochs=40)
    model, history = train_translator(_config("atac2rna"), config, cells, train, val, upper=upper)
    assert history.val_loss.min() < history.val_loss.iloc[0]
    predicted = translate_rna(model, cells, test, upper)
    global_mean = truth[train].mean(0, keepdims=True)
    assert ((predicted - truth[test]) ** 2).mean() < 0.5 * ((global_mean - truth[test]) ** 2).mean()


def test_rna_to_atac_beats_the_global_mean_per_cre(planted):
    cells, train, val, test = planted
    config = TrainConfig(lr=1e-2, step_epochs=100, gamma=0.9, batch_size=16, patience=30, max_epochs=30)
    model, _ = train_translator(_config("rna2atac"), config, cells, train, val)
    probability = translate_atac(model, cells, test)
    truth = cells.atac[test][:, cells.cres].toarray()
    varying = (truth.sum(0) > 0) & (truth.sum(0) < len(test))
    per_cre = [roc_auc_score(truth[:, j], probability[:, j]) for j in np.flatnonzero(varying)]
    assert np.mean(per_cre) > 0.75  # a popularity score (the global mean) gets exactly 0.5 per CRE


def test_attention_links_rank_planted_cre_gene_links_above_distance_matched_decoys():
    """Each gene is expressed when its one planted cCRE is open (every cCRE opens independently):
    to translate a gene the model must attend to its cCRE, and its attention link must say so.
    Gradient descent does not learn every gene (a gene can stay on the plateau where it attends
    elsewhere): the links are checked for the genes it translates, and most genes must be those."""
    from multiome_assets.links import analysis, extract

    rng = np.random.default_rng(1)
    n_cells, n_genes, n_cres = 300, 12, 120
    planted = rng.choice(n_cres, n_genes, replace=False)
    open_ = rng.random((n_cells, n_cres)) < 0.3
    counts = sp.csr_matrix(rng.poisson(np.where(open_[:, planted], 20.0, 0.3)).astype(np.float32))
    cells = vocab_cells(counts, np.arange(n_genes, dtype=float), n_genes, sp.csr_matrix(open_))
    upper = float(np.log1p(counts.max()))
    config = TrainConfig(lr=1e-3, step_epochs=1000, gamma=0.9, batch_size=16, patience=150, max_epochs=150)
    model, _ = train_translator(TranslatorConfig("atac2rna", n_genes=n_genes, n_cres=n_cres, d_model=28, n_layers=1,
                                                 n_heads=2, head_dim=8, dropout=0.0),
                                config, cells, np.arange(240), np.arange(240, 270), upper=upper)
    test = np.arange(270, n_cells)
    predicted, truth = translate_rna(model, cells, test, upper), np.log1p(counts[test].toarray())
    learned = np.array([np.corrcoef(predicted[:, g], truth[:, g])[0, 1] > 0.8 for g in range(n_genes)])
    assert learned.mean() >= 2 / 3
    gene, cre = np.meshgrid(np.arange(n_genes), np.arange(n_cres), indexing="ij")
    pairs = pd.DataFrame({"gene_pos": gene.ravel(), "cre_pos": cre.ravel(),
                          "distance": rng.integers(0, 250_000, gene.size)})
    scored = extract.attention_links(model, cells, pairs, {"all": np.arange(n_cells)}, gene_chunk=n_genes,
                                   max_cres=n_cres).score.to_numpy()
    chosen = np.flatnonzero(pairs.cre_pos.to_numpy() == planted[pairs.gene_pos.to_numpy()])  # gene order
    decoys = analysis.distance_matched(pairs.distance.to_numpy(), chosen, rng, per_pair=1)[:, 0]
    assert (scored[chosen] > scored[decoys])[learned].all()
    # and each learned gene's planted cCRE is in the top tenth of its 120
    by_gene = scored.reshape(n_genes, n_cres)
    assert ((by_gene > by_gene[np.arange(n_genes), planted][:, None]).sum(1)[learned] < n_cres // 10).all()
