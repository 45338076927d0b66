"""Translator training: an interrupted training resumes to the weights of an uninterrupted one."""
from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from multiome_assets.models.cisformer import TranslatorConfig
from multiome_assets.translation.tokens import vocab_cells
from multiome_assets.translation.train import TrainConfig, train_translator, training_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cells():
    rng = np.random.default_rng(0)
    counts = sp.random(40, 30, density=0.3, random_state=1, data_rvs=lambda k: rng.integers(1, 50, k)).tocsr()
    cres = sp.random(40, 3000, density=0.01, random_state=2).tocsr().astype(bool)
    return vocab_cells(counts, np.arange(30, dtype=float), 30, cres)


MODEL = TranslatorConfig("atac2rna", n_genes=30, n_cres=3000, d_model=14, n_layers=1, n_heads=2, head_dim=4, dropout=0.1)
TRAIN = TrainConfig(lr=1e-2, step_epochs=1, gamma=0.5, batch_size=8, patience=10, max_epochs=3, seed=3)


class Interrupted(Exception):
    pass


def test_an_interrupted_training_resumes_to_the_same_weights(cells, tmp_path):
    train, val = np.arange(32), np.arange(32, 40)
    whole, history = train_translator(MODEL, TRAIN, cells, train, val, upper=4.0)
    assert len(history) == 3

    def stop_after_first(line):
        if line.startswith(f"{MODEL.direction} epoch 1:"):  # told after the epoch's checkpoint is saved
            raise Interrupted

    with pytest.raises(Interrupted):
        train_translator(MODEL, TRAIN, cells, train, val, upper=4.0, checkpoint_dir=tmp_path, log=stop_after_first)
    resumed, resumed_history = train_translator(MODEL, TRAIN, cells, train, val, upper=4.0, checkpoint_dir=tmp_path)
    assert resumed_history.equals(history)
    for k, v in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=0, atol=0)


def test_a_checkpoint_of_another_configuration_is_refused(cells, tmp_path):
    train, val = np.arange(32), np.arange(32, 40)
    short = TrainConfig(lr=1e-2, step_epochs=1, gamma=0.5, batch_size=8, patience=10, max_epochs=1, seed=3)
    train_translator(MODEL, short, cells, train, val, upper=4.0, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match=r"another train_config \(\['max_epochs'\] differ\)"):
        train_translator(MODEL, TRAIN, cells, train, val, upper=4.0, checkpoint_dir=tmp_path)


def test_an_interrupted_training_on_other_splits_is_not_resumed(cells, tmp_path):
    def stop(line):
        raise Interrupted

    with pytest.raises(Interrupted):
        train_translator(MODEL, TRAIN, cells, np.arange(32), np.arange(32, 40), upper=4.0, checkpoint_dir=tmp_path, log=stop)
    # the same configuration on other training cells would continue weights that saw today's test cells
    with pytest.raises(ValueError, match="on other cells, data or splits"):
        train_translator(MODEL, TRAIN, cells, np.arange(8, 40), np.arange(8), upper=4.0, checkpoint_dir=tmp_path)


@pytest.mark.slow  # real processes under torchrun
def test_two_processes_under_torchrun_take_the_steps_of_one(cells):
    """`distributed.launch`: torchrun, 2 CPU processes, gloo, each on half of every batch of 8 cells
    (25 cells: the last batch is one cell, process 1 has none and must still keep DDP's collectives in
    step); no dropout, so the weights are those of one process."""
    from dataclasses import replace

    from multiome_assets.models.distributed import launch

    model, train = replace(MODEL, dropout=0.0), replace(TRAIN, max_epochs=2)
    inputs = dict(model_config=model, config=train, cells=cells, train_rows=np.arange(25), val_rows=np.arange(30, 40),
                  upper=4.0)
    lines = []
    two, two_history = launch(2, "multiome_assets.translation.train:train_translator", inputs, log=lines.append)
    one, history = train_translator(**inputs)
    assert any(line.startswith("atac2rna epoch 2:") for line in lines)  # process 0's progress, passed on
    np.testing.assert_allclose(two_history.to_numpy(), history.to_numpy(), rtol=1e-5)
    # Adam turns the rounding noise of near-zero gradients into steps (up to lr = 1e-2 each): weights
    # agree to a tenth of one step; the losses above to 1e-5
    for name, weight in one.state_dict().items():
        torch.testing.assert_close(two.state_dict()[name], weight, rtol=0, atol=train.lr / 10,
                                   msg=lambda m, name=name: f"{name}: {m}")


def test_the_paper_profile_is_the_reference_codes_model_and_schedule():
    """cisformer/generate_default_config.py and M2M.py: one linear output layer, 500 / 100 epochs
    stopped early; RNA→ATAC reads at most 2,048 expressed genes (a random subset above), as we do."""
    import torch.nn as nn

    from multiome_assets.models.cisformer import Translator
    from multiome_assets.translation.train import translator_config

    for direction, epochs in (("rna2atac", 500), ("atac2rna", 100)):
        model = Translator(replace(translator_config(direction, "paper"), n_genes=50, n_cres=1000))
        assert [type(m) for m in model.head] == [nn.Linear]
        assert training_config(direction, "paper", 0).max_epochs == epochs
    assert training_config("rna2atac", "paper", 0).max_source == 2_048
    cpu = Translator(replace(translator_config("rna2atac", "cpu"), n_genes=50, n_cres=1000))
    assert len(cpu.head) == 3  # the cpu profile's two-layer head: docs/translation.md says why


def test_a_cell_budget_trains_each_epoch_on_a_fresh_sample_of_the_training_cells(cells):
    from multiome_assets.translation.train import _epoch_batches

    rows = np.arange(40)
    config = replace(TRAIN, batch_size=4, cells_per_epoch=12)
    rng = np.random.default_rng(0)
    first, second = (np.concatenate(_epoch_batches("atac2rna", cells, rows, config, rng)) for _ in range(2))
    assert len(first) == len(set(first)) == 12 and set(first) <= set(rows)
    assert set(first) != set(second)  # another sample next epoch
    whole = np.concatenate(_epoch_batches("atac2rna", cells, rows, replace(config, cells_per_epoch=None), rng))
    assert sorted(whole) == list(rows)


def test_the_cells_seen_budget_cuts_epochs_only_where_the_cells_are_many():
    from multiome_assets.translation.train import epoch_limit

    cpu = training_config("atac2rna", "cpu", 0)
    assert epoch_limit(cpu, 400) == cpu.max_epochs  # a bundled dataset trains every epoch
    assert epoch_limit(cpu, 9_600) == 6  # a 10x run: 1,000 cells per epoch, 6,000 seen in all
    assert epoch_limit(replace(cpu, max_cells_seen=None), 9_600) == cpu.max_epochs
    assert epoch_limit(replace(cpu, max_cells_seen=10), 9_600) == 1  # never no training
    assert epoch_limit(replace(cpu, resamples=2), 9_600) == 3  # each resample counts as a cell seen
