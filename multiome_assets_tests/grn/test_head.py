"""Stage 2 edge head: nnPU correction, unlabeled sampling, export, seeding, recovery."""
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from sklearn.metrics import roc_auc_score

from multiome_assets.grn.edge_space import EdgeSpace
from multiome_assets.grn.head import (
    edge_head_checkpoint,
    load_edge_head,
    nnpu_risk,
    score_all_pairs,
    score_blocks,
    train_edge_head,
)
from multiome_assets.grn.pairs import forbidden_flat_index, sample_unlabeled
from multiome_assets.models.edge_head import EdgeHead, EdgeHeadConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


# per loss: l(f, +1), l(f, -1) and their derivatives in f, written out by hand
SURROGATES = {
    "sigmoid": (
        lambda f: _sig(-f), lambda f: _sig(f),
        lambda f: -_sig(f) * (1 - _sig(f)), lambda f: _sig(f) * (1 - _sig(f)),
    ),
    "logistic": (
        lambda f: np.log1p(np.exp(-f)), lambda f: np.log1p(np.exp(f)),
        lambda f: -_sig(-f), lambda f: _sig(f),
    ),
}


def _grads(zp, zu, pi, beta=0.0, gamma=1.0, loss="logistic"):
    lp = torch.tensor(zp, dtype=torch.float64, requires_grad=True)
    lu = torch.tensor(zu, dtype=torch.float64, requires_grad=True)
    objective, risk = nnpu_risk(lp, lu, pi, beta, gamma, loss=loss)
    objective.backward()
    return lp.grad.numpy(), lu.grad.numpy(), objective.item(), risk.item()


# --------------------------------------------------------------------------------- nnPU risk


@pytest.mark.parametrize("loss", ["sigmoid", "logistic"])
def test_nnpu_negative_risk_below_beta_steps_on_negated_negative_risk(loss):
    lpos, lneg, dpos, dneg = SURROGATES[loss]
    # pi=0.5, one positive at +3, two unlabeled at -3: R_neg = l(-3,-1) - 0.5 l(3,-1) < 0
    zp, zu, pi, gamma = 3.0, -3.0, 0.5, 2.0
    r_neg = lneg(zu) - pi * lneg(zp)
    assert r_neg < 0
    gp, gu, objective, risk = _grads([zp], [zu, zu], pi, gamma=gamma, loss=loss)
    # objective = -gamma * (mean l(z_u, -1) - pi * mean l(z_p, -1))
    assert objective == pytest.approx(-gamma * r_neg)
    np.testing.assert_allclose(gu, -gamma * dneg(zu) / 2)
    np.testing.assert_allclose(gp, gamma * pi * dneg(zp))
    assert (gu < 0).all() and (gp > 0).all()  # steps push unlabeled logits up, positives down
    # the reported risk drops the negative part: pi * R_p^+ only
    assert risk == pytest.approx(pi * lpos(zp))


@pytest.mark.parametrize("loss", ["sigmoid", "logistic"])
def test_nnpu_nonnegative_or_within_beta_steps_on_full_risk(loss):
    lpos, lneg, dpos, dneg = SURROGATES[loss]
    zp, zu = 3.0, -3.0
    # pi=0.01: R_neg > 0 -> full risk pi R_p^+ + R_neg
    pi = 0.01
    assert lneg(zu) - pi * lneg(zp) > 0
    gp, gu, objective, risk = _grads([zp], [zu, zu], pi, loss=loss)
    np.testing.assert_allclose(gu, dneg(zu) / 2)  # pushes unlabeled logits down
    np.testing.assert_allclose(gp, pi * dpos(zp) - pi * dneg(zp))
    assert (gp < 0).all() and (gu > 0).all()
    assert objective == pytest.approx(risk)
    # pi=0.5: R_neg < 0 but beta tolerates it: still the full risk, which is then negative
    pi = 0.5
    r_neg = lneg(zu) - pi * lneg(zp)
    full = pi * lpos(zp) + r_neg
    gp, gu, objective, risk = _grads([zp], [zu, zu], pi, beta=-r_neg + 0.1, loss=loss)
    assert full < 0 and objective == pytest.approx(full)
    np.testing.assert_allclose(gp, pi * dpos(zp) - pi * dneg(zp))
    np.testing.assert_allclose(gu, dneg(zu) / 2)
    assert risk >= 0


@pytest.mark.parametrize("loss", ["sigmoid", "logistic"])
def test_nnpu_reported_risk_is_never_negative(loss):
    gen = torch.Generator().manual_seed(0)
    corrected = 0
    for pi in (0.01, 0.2, 0.5, 0.9):
        for _ in range(50):
            lp = torch.randn(7, generator=gen) * 4 + 2
            lu = torch.randn(30, generator=gen) * 4 - 2
            objective, risk = nnpu_risk(lp, lu, pi, loss=loss)
            assert risk.item() >= 0
            corrected += not torch.isclose(objective, risk)
    assert corrected > 0  # the correction branch was exercised


# --------------------------------------------------------------------------------- sampling


def test_unlabeled_sampler_never_returns_self_pairs_or_training_positives():
    R, G = 4, 6
    regulator_index = np.array([0, 2, 3, 5])
    rng = np.random.default_rng(0)
    train = rng.random((R, G)) < 0.6  # most of the space is forbidden
    train[0, 1] = train[2, 4] = False
    rows, cols = np.nonzero(train)
    forbidden = forbidden_flat_index(regulator_index, rows, cols, G)
    allowed = ~train
    allowed[np.arange(R), regulator_index] = False
    assert allowed.sum() / allowed.size < 0.5

    pairs = sample_unlabeled(6000, R, G, forbidden, np.random.default_rng(1))
    assert pairs.shape == (6000, 2)
    assert allowed[pairs[:, 0], pairs[:, 1]].all()
    counts = np.zeros((R, G), dtype=int)
    np.add.at(counts, (pairs[:, 0], pairs[:, 1]), 1)
    assert (counts[allowed] > 0).all()  # every allowed pair is reachable
    expected = 6000 / allowed.sum()
    assert np.abs(counts[allowed] - expected).max() < 0.35 * expected  # roughly uniform


def test_unlabeled_sampler_refuses_a_fully_forbidden_space():
    forbidden = np.arange(6)
    with pytest.raises(ValueError, match="forbidden"):
        sample_unlabeled(3, 2, 3, forbidden, np.random.default_rng(0))


# --------------------------------------------------------------------------------- export


@pytest.mark.parametrize("chunk,gene_chunk", [(32, None), (3, 7), (100, 1000)])
def test_score_all_pairs_matches_forward_on_explicit_pairs(chunk, gene_chunk):
    G, d, R = 211, 12, 17
    rng = np.random.default_rng(0)
    z = rng.normal(size=(G, d)).astype(np.float32)
    regulator_index = rng.choice(G, size=R, replace=False)
    torch.manual_seed(0)
    head = EdgeHead(d, EdgeHeadConfig(hidden=64))
    head.train()  # export must switch dropout off and restore the mode

    scores = score_all_pairs(head, z, regulator_index, chunk=chunk, gene_chunk=gene_chunk)
    assert head.training
    assert scores.shape == (R, G) and scores.dtype == np.float32

    head.eval()
    rr, gg = np.meshgrid(np.arange(R), np.arange(G), indexing="ij")
    zt = torch.from_numpy(z)
    with torch.no_grad():
        expected, _ = head(zt[regulator_index[rr.ravel()]], zt[gg.ravel()])
    np.testing.assert_allclose(scores, expected.numpy().reshape(R, G), rtol=1e-5, atol=1e-5)


def test_top_targets_by_blocks_equal_those_of_the_whole_matrix():
    """The export cuts each block of TFs to its top targets: the same table as from all scores at once."""
    from multiome_assets.grn.pipeline import top_targets

    G, d, R = 301, 8, 70
    rng = np.random.default_rng(1)
    z = rng.normal(size=(G, d)).astype(np.float32)
    genes = np.array([f"g{i}" for i in range(G)], dtype=object)
    reg_index = rng.choice(G, size=R, replace=False)
    torch.manual_seed(1)
    head = EdgeHead(d, EdgeHeadConfig(hidden=16)).eval()
    whole = top_targets(score_all_pairs(head, z, reg_index), genes[reg_index], genes, 5)
    blocks = pd.concat([top_targets(block, genes[reg_index][i:i + len(block)], genes, 5)
                        for i, block in score_blocks(head, z, reg_index, chunk=32)], ignore_index=True)
    pd.testing.assert_frame_equal(blocks, whole)
    assert len(whole) == R * 5 and not (whole.tf == whole.target).any()


# --------------------------------------------------------------------------------- training


def _modular_space(seed=0, G=240, R=20, d=16, n_modules=4, test_fraction=0.2):
    """Genes in modules; regulator r regulates exactly the genes of its module m(r).

    z[g] = [onehot(module(g)), onehot(m(g) as a regulator)] + noise: positives are separable.
    """
    rng = np.random.default_rng(seed)
    module = rng.integers(0, n_modules, size=G)
    regulator_index = np.sort(rng.choice(G, size=R, replace=False))
    reg_module = rng.integers(0, n_modules, size=R)
    as_regulator = rng.integers(0, n_modules, size=G)
    as_regulator[regulator_index] = reg_module
    z = np.zeros((G, d), dtype=np.float32)
    z[np.arange(G), module] = 1.0
    z[np.arange(G), n_modules + as_regulator] = 1.0
    z += 0.3 * rng.normal(size=z.shape).astype(np.float32)
    truth = reg_module[:, None] == module[None, :]  # (R, G)
    truth[np.arange(R), regulator_index] = False
    test = truth & (rng.random(truth.shape) < test_fraction)
    space = EdgeSpace(
        regulators=np.array([f"g{i}" for i in regulator_index], dtype=object),
        genes=np.array([f"g{i}" for i in range(G)], dtype=object),
        train=sp.csr_matrix(truth & ~test),
        test=sp.csr_matrix(test),
    )
    return z, space


def _held_out_auroc(space, scores):
    mask = space.candidate_mask()
    return roc_auc_score(space.test.toarray()[mask], scores[mask])


@pytest.mark.parametrize(
    "config",
    [
        # a larger lr than the default: this toy space has ~1k positives (the real prior ~100k)
        EdgeHeadConfig(objective="bce", epochs=8, batch_size=512, lr=3e-3),
        EdgeHeadConfig(objective="nnpu", prior_pi=0.05, epochs=8, batch_size=512, lr=3e-3),
    ],
    ids=["bce", "nnpu"],
)
def test_head_recovers_held_out_positives_on_separable_embeddings(config):
    z, space = _modular_space()
    head, history = train_edge_head(z, space.regulator_gene_index, space.train, config)
    assert list(history["epoch"]) == list(range(len(history))) and len(history) >= config.epochs
    assert np.isfinite(history["loss"]).all()
    if config.objective == "nnpu":
        assert {"risk_pos", "risk_neg", "corrected"} <= set(history.columns)
        assert (history["loss"] >= 0).all()
    else:
        assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    scores = score_all_pairs(head, z, space.regulator_gene_index)
    assert _held_out_auroc(space, scores) > 0.9


def test_same_seed_gives_identical_scores_and_pairs_or_matrix_agree():
    z, space = _modular_space(seed=1, G=120, R=10)
    config = EdgeHeadConfig(epochs=2, batch_size=128, seed=7)
    reg = space.regulator_gene_index
    a, _ = train_edge_head(z, reg, space.train, config)
    b, _ = train_edge_head(z, reg, np.argwhere(space.train.toarray()), config)  # (n, 2) form
    c, _ = train_edge_head(z, reg, space.train, EdgeHeadConfig(epochs=2, batch_size=128, seed=8))
    sa, sb, sc = (score_all_pairs(h, z, reg) for h in (a, b, c))
    np.testing.assert_array_equal(sa, sb)
    assert not np.array_equal(sa, sc)
    # the checkpoint round trip keeps the scores
    np.testing.assert_array_equal(score_all_pairs(load_edge_head(edge_head_checkpoint(a)), z, reg), sa)


def test_training_leaves_the_global_torch_rng_alone():
    z, space = _modular_space(seed=2, G=60, R=5)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_edge_head(z, space.regulator_gene_index, space.train, EdgeHeadConfig(epochs=1))
    np.testing.assert_array_equal(torch.rand(3).numpy(), expected.numpy())


def test_config_rejects_unknown_objective():
    with pytest.raises(ValueError, match="objective"):
        EdgeHeadConfig(objective="hinge")


def _hub_space(seed=0, G=400, R=30, test_fraction=0.2):
    """Edges drawn with probability ~ popularity(regulator) x popularity(target), as in real priors."""
    rng = np.random.default_rng(seed)
    regulator_index = np.sort(rng.choice(G, size=R, replace=False))
    p = np.outer(rng.pareto(1.5, R) + 0.1, rng.pareto(1.5, G) + 0.1)
    truth = rng.random((R, G)) < np.clip(0.03 * p / p.mean(), 0, 0.9)
    truth[np.arange(R), regulator_index] = False
    test = truth & (rng.random(truth.shape) < test_fraction)
    names = np.array([f"g{i}" for i in range(G)], dtype=object)
    return EdgeSpace(regulators=names[regulator_index], genes=names, train=sp.csr_matrix(truth & ~test),
                     test=sp.csr_matrix(test))


def test_degree_head_learns_popularity_from_other_edges_not_its_own_label():
    """Degree features only (no embedding): held-out edges of popular regulators and targets rank
    high, at least as well as the degree product, and the degrees travel with the checkpoint."""
    space = _hub_space()
    reg = space.regulator_gene_index
    z = np.zeros((len(space.genes), 0), dtype=np.float32)
    config = EdgeHeadConfig(epochs=10, batch_size=512, lr=3e-3, degree_features=("out", "in"))
    head, _ = train_edge_head(z, reg, space.train, config)
    scores = score_all_pairs(head, z, reg)
    product = np.outer(np.asarray(space.train.sum(1)).ravel(), np.asarray(space.train.sum(0)).ravel())
    assert _held_out_auroc(space, scores) > 0.65
    assert _held_out_auroc(space, scores) > _held_out_auroc(space, product) - 0.05
    np.testing.assert_array_equal(score_all_pairs(load_edge_head(edge_head_checkpoint(head)), z, reg), scores)


def test_in_degree_head_ranks_unseen_regulators_edges_by_target_popularity():
    """TF-held-out: a third of the regulators keep no training edge (as TFs absent from the prior
    do), a third are held out (every edge is test). Reading target in-degree only, the head ranks
    the held-out regulators' edges by target popularity, well above chance."""
    space = _hub_space(seed=1, R=60, test_fraction=0.0)
    truth = space.train.toarray()
    rows = np.random.default_rng(1).permutation(len(space.regulators))
    held, absent = rows[:20], rows[20:40]
    train = truth.copy()
    train[held] = train[absent] = False
    reg = space.regulator_gene_index
    z = np.zeros((len(space.genes), 0), dtype=np.float32)
    head, _ = train_edge_head(z, reg, sp.csr_matrix(train), EdgeHeadConfig(epochs=10, batch_size=512, lr=3e-3,
                                                                         degree_features=("in",)))
    held_space = EdgeSpace(regulators=space.regulators[held], genes=space.genes,
                           train=sp.csr_matrix(train[held]), test=sp.csr_matrix(truth[held]))
    scores = score_all_pairs(head, z, reg[held])
    in_degree = np.broadcast_to(train.sum(0), scores.shape)
    assert _held_out_auroc(held_space, scores) > 0.65
    assert _held_out_auroc(held_space, scores) > _held_out_auroc(held_space, in_degree) - 0.05


def test_config_rejects_unknown_degree():
    with pytest.raises(ValueError, match="degree_features"):
        EdgeHeadConfig(degree_features=("out", "betweenness"))
    assert EdgeHeadConfig(degree_features=["in"]).degree_features == ("in",)


def test_small_priors_get_at_least_min_steps():
    z, space = _modular_space(seed=3, G=60, R=5)
    n_pos = int(space.train.sum())
    steps_per_epoch = -(-n_pos * 11 // 128)  # positives + 10 unlabeled each, batch 128
    reg = space.regulator_gene_index
    _, exact = train_edge_head(z, reg, space.train, EdgeHeadConfig(epochs=3, batch_size=128, min_steps=0))
    _, longer = train_edge_head(z, reg, space.train, EdgeHeadConfig(epochs=3, batch_size=128, min_steps=100))
    assert len(exact) == 3
    assert len(longer) == max(3, -(-100 // steps_per_epoch))
