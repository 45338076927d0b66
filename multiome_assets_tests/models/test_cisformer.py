"""Cisformer translators: CREs embedded by the digits of their index; padding changes nothing."""
import pytest
import torch

from multiome_assets.models.cisformer import (
    N_BINS,
    CREEmbedding,
    Translator,
    TranslatorConfig,
    cre_digits,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_cre_digits_round_trip():
    index = torch.tensor([0, 7, 42, 1_033_238, 9_999_999])
    digits = cre_digits(index)
    assert digits[2].tolist() == [0, 0, 0, 0, 0, 4, 2]  # zero-padded to 7 digits
    assert (digits * 10 ** torch.arange(6, -1, -1)).sum(-1).tolist() == index.tolist()


def test_cre_embedding_is_the_concatenated_digit_embeddings():
    emb = CREEmbedding(14)
    e = emb(torch.tensor([[1_033_238]]))
    assert e.shape == (1, 1, 14)
    expected = torch.cat([emb.digit.weight[d] for d in (1, 0, 3, 3, 2, 3, 8)])
    torch.testing.assert_close(e[0, 0], expected)
    # CREs sharing digits share parts: 1000000 and 1000001 differ only in the last part
    a, b = emb(torch.tensor([1_000_000, 1_000_001]))
    assert torch.equal(a[:12], b[:12]) and not torch.equal(a[12:], b[12:])


def test_d_model_must_split_into_seven_digit_parts():
    with pytest.raises(ValueError, match="divisible by 7"):
        TranslatorConfig("rna2atac", d_model=64)


def _small(direction):
    torch.manual_seed(0)
    config = TranslatorConfig(direction, n_genes=50, n_cres=2_000, d_model=14, n_layers=2, n_heads=2, head_dim=4, dropout=0.0)
    return Translator(config).eval()


@pytest.mark.parametrize("direction", ["rna2atac", "atac2rna"])
def test_padded_tokens_change_no_output(direction):
    model = _small(direction)
    n_source = 50 if direction == "rna2atac" else 2_000
    n_query = 2_000 if direction == "rna2atac" else 50
    src, qry = torch.randint(0, n_source, (1, 5)), torch.randint(0, n_query, (1, 4))
    value = torch.randint(1, 80, (1, 5)) if direction == "rna2atac" else None
    alone, _ = model(src, torch.ones(1, 5, dtype=torch.bool), qry, torch.ones(1, 4, dtype=torch.bool), value)
    # the same cell padded with 3 source and 2 query slots holding other tokens
    src_pad = torch.cat([src, torch.randint(0, n_source, (1, 3))], 1)
    qry_pad = torch.cat([qry, torch.randint(0, n_query, (1, 2))], 1)
    value_pad = None if value is None else torch.cat([value, torch.randint(1, 80, (1, 3))], 1)
    src_mask, qry_mask = torch.arange(8) < 5, torch.arange(6) < 4
    padded, _ = model(src_pad, src_mask[None], qry_pad, qry_mask[None], value_pad)
    torch.testing.assert_close(padded[:, :4], alone)
    expected = (1, 4) if direction == "rna2atac" else (1, 4, N_BINS)
    assert alone.shape == expected


def test_loss_ignores_padded_queries():
    model = _small("atac2rna").eval()
    source, queries = torch.randint(0, 2_000, (2, 6)), torch.randint(0, 50, (2, 5))
    targets = torch.randint(0, N_BINS, (2, 5))
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    other = targets.clone()
    other[1, 2:] = (other[1, 2:] + 1) % N_BINS

    def loss(targets, mask):
        return model(source, torch.ones(2, 6, dtype=torch.bool), queries, mask, targets=targets)[1]

    assert loss(targets, mask) == loss(other, mask)
    assert loss(targets, torch.ones_like(mask)) != loss(other, torch.ones_like(mask))
    assert model(source, torch.ones(2, 6, dtype=torch.bool), queries, mask)[1] is None  # no targets, no loss


@pytest.mark.parametrize("direction", ["rna2atac", "atac2rna"])
def test_last_attention_is_the_last_layers_weights(direction):
    """What the links read: the last layer's cross-attention, computed without the rest of the model."""
    model = _small(direction)
    n_source, n_query = (50, 2_000) if direction == "rna2atac" else (2_000, 50)
    src, qry = torch.randint(0, n_source, (2, 7)), torch.randint(0, n_query, (2, 5))
    src_mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    value = torch.randint(1, 80, (2, 7)) if direction == "rna2atac" else None
    with torch.no_grad():
        _, layers = model.attention(src, src_mask, qry, torch.ones(2, 5, dtype=torch.bool), value)
        last = model.last_attention(src, src_mask, qry, torch.ones(2, 5, dtype=torch.bool), value)
    torch.testing.assert_close(last, layers[-1])
    assert last.shape == (2, 2, 5, 7) and (last[1, :, :, 4:] == 0).all()  # padded keys get no weight
