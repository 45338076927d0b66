"""Dense attention over padded token sets: padding changes nothing, empty rows give zeros."""
import pytest
import torch

from multiome_assets.models.attention import MultiHeadAttention, attend

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _attention(d=12, heads=3, head_dim=5):
    torch.manual_seed(0)
    return MultiHeadAttention(d, heads, head_dim).eval()


def test_padded_keys_change_no_output():
    attn = _attention()
    x, ctx = torch.randn(2, 4, 12), torch.randn(2, 6, 12)
    lengths = torch.tensor([6, 3])
    may_attend = torch.arange(6) < lengths[:, None]  # (B, Lk) True = real token
    out = attn(x, ctx, may_attend)
    # the second cell alone, without its padding, gives the same output
    alone = attn(x[1:], ctx[1:, :3])
    torch.testing.assert_close(out[1:], alone)
    # whatever sits in the padded slots
    garbage = ctx.clone()
    garbage[1, 3:] = 1e3 * torch.randn(3, 12)
    torch.testing.assert_close(attn(x, garbage, may_attend), out)


def test_a_query_with_no_key_gets_zeros_not_nan():
    q, k, v = torch.randn(2, 2, 3, 4), torch.randn(2, 2, 5, 4), torch.randn(2, 2, 5, 4)
    may_attend = torch.ones(2, 5, dtype=torch.bool)
    may_attend[1] = False
    out = attend(q, k, v, may_attend)
    assert torch.isfinite(out).all() and (out[1] == 0).all() and (out[0] != 0).any()


def test_weights_are_the_attention_the_output_uses():
    attn = _attention()
    x, ctx = torch.randn(2, 4, 12), torch.randn(2, 6, 12)
    may_attend = torch.arange(6) < torch.tensor([[6], [2]])
    out, weights = attn(x, ctx, may_attend, need_weights=True)
    assert weights.shape == (2, 3, 4, 6)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 4))
    assert (weights[1, ..., 2:] == 0).all()  # padded keys get no attention
    v = attn._heads(attn.kv(ctx).chunk(2, dim=-1)[1])
    by_hand = attn.proj((weights @ v).transpose(1, 2).reshape(2, 4, -1))
    torch.testing.assert_close(out, by_hand)


def test_masks_must_say_may_attend_as_bool():
    with pytest.raises(TypeError, match="bool tensor"):
        attend(torch.randn(1, 1, 2, 4), torch.randn(1, 1, 3, 4), torch.randn(1, 1, 3, 4), torch.ones(1, 3))
