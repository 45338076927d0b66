import pytest
import torch

from multiome_assets.models.layers import Dropout


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dropout_zeroes_a_fraction_p_and_rescales_the_rest(dtype):
    """Training mode: about p of the entries are 0, the others x / (1 - p) (to x's precision), and
    the gradient is the same multiplier; eval mode passes x through."""
    p = 0.25
    layer = Dropout(p).train()
    x = torch.rand(512, 256).add_(0.5).to(dtype).requires_grad_()
    torch.manual_seed(0)
    y = layer(x)
    assert y.dtype == dtype
    kept = y != 0
    assert abs(1 - kept.float().mean().item() - p) < 0.01
    expected = (x.detach().float() * (1 / (1 - p))).to(dtype)  # one fp32 multiply, rounded to x's dtype
    assert torch.equal(y.detach()[kept], expected[kept])
    y.backward(torch.ones_like(y))
    assert torch.equal(x.grad, torch.where(kept, torch.tensor(1 / (1 - p), dtype=dtype), torch.tensor(0, dtype=dtype)))
    assert torch.equal(layer.eval()(x), x)
