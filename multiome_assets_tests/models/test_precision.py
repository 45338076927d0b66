"""Autocast dtype: bf16 only where the hardware computes it (issue 17: emulated bf16 is ~400x slower)."""
from __future__ import annotations

import pytest
import torch

from multiome_assets.models.precision import (
    autocast,
    autocast_dtype,
    native_cpu_bf16,
    training_amp,
)

# torch.cpu.get_capabilities() subsets; get_cpu_capability() says "AVX2" for the first, "AVX512" for the rest
AVX2_EPYC = {"architecture": "x86_64", "avx2": True, "avx512_f": False, "avx512_bf16": False, "amx_bf16": False}
SKYLAKE_SP = {"architecture": "x86_64", "avx2": True, "avx512_f": True, "avx512_bf16": False, "amx_bf16": False}
COOPER_LAKE = {**SKYLAKE_SP, "avx512_bf16": True}
SAPPHIRE_RAPIDS = {**COOPER_LAKE, "amx_tile": True, "amx_bf16": True, "amx_int8": True}
GRAVITON3 = {"architecture": "aarch64", "neon": True, "sve": True, "sve_max_length": 256, "bf16": True}


@pytest.mark.parametrize(("capabilities", "native"), [
    (AVX2_EPYC, False), (SKYLAKE_SP, False), (COOPER_LAKE, True), (SAPPHIRE_RAPIDS, True), (GRAVITON3, True),
    ({"architecture": "aarch64", "neon": True, "bf16": False}, False),
])
def test_native_cpu_bf16_needs_bf16_instructions_not_just_avx512(capabilities, native):
    assert native_cpu_bf16(capabilities) is native


@pytest.mark.parametrize(("capabilities", "dtype"), [(AVX2_EPYC, None), (SAPPHIRE_RAPIDS, torch.bfloat16)])
def test_autocast_dtype_on_cpu_follows_the_detected_instruction_sets(monkeypatch, capabilities, dtype):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities)
    assert autocast_dtype("cpu") is dtype
    assert autocast_dtype(torch.device("cpu")) is dtype


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the answer without a GPU")
def test_autocast_dtype_without_cuda_is_fp32():
    assert autocast_dtype("cuda") is None


def test_training_stays_fp32_on_any_cpu_so_results_do_not_depend_on_the_cpu_model(monkeypatch):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: SAPPHIRE_RAPIDS)
    assert autocast_dtype("cpu") is torch.bfloat16 and training_amp("cpu") is False
    x = torch.randn(4, 4)
    with autocast("cpu", training_amp("cpu")):
        assert (x @ x).dtype == torch.float32
    with autocast("cpu", True):
        assert (x @ x).dtype == torch.bfloat16
