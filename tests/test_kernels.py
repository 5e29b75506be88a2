"""The kernels' one dispatch rule (`bahdanau_keras.kernels.use_kernel`) and its validators."""

import re

import keras
import pytest

from bahdanau_keras import kernels


@pytest.mark.parametrize("implementation, unsupported, gpu, expected", [
    ("auto", None, False, True),
    ("auto", None, True, False),  # measured on CPUs only: a GPU keeps the reference
    ("auto", "it cannot", False, False),
    ("fused", None, False, True),
    ("fused", None, True, True),
    ("reference", None, False, False),
    ("reference", "it cannot", True, False),
])
def test_use_kernel(monkeypatch, implementation, unsupported, gpu, expected):
    monkeypatch.setattr(kernels, "gpu_present", lambda: gpu)
    assert kernels.use_kernel(implementation, unsupported, "layer") is expected


def test_fused_where_the_kernel_cannot_apply_raises():
    with pytest.raises(ValueError, match=re.escape(
            "`implementation='fused'` cannot run layer 'decoder': it needs float32. Use "
            "implementation='auto'")):
        kernels.use_kernel("fused", "it needs float32", "decoder")


@pytest.mark.parametrize("implementation", ["AUTO", "cudnn", None, 1, ("auto",)])
def test_implementation_must_be_one_of_three(implementation):
    message = ("`implementation` must be one of ('auto', 'reference', 'fused'). Received: "
               f"implementation={implementation!r}")
    with pytest.raises(ValueError, match=re.escape(message)):
        kernels.validate_implementation(implementation)
    with pytest.raises(ValueError, match=re.escape(message)):
        kernels.use_kernel(implementation, None, "layer")


def test_the_three_implementations_are_valid():
    assert [kernels.validate_implementation(x) for x in kernels.IMPLEMENTATIONS] == [
        "auto", "reference", "fused"]


@pytest.mark.parametrize("value", [0, -2, 2.0, True, "2", None])
def test_parts_must_be_positive_integers(value):
    with pytest.raises(ValueError, match=re.escape(
            f"`loop_shards` must be a positive integer. Received: loop_shards={value!r}")):
        kernels.validate_parts("loop_shards", value)
    assert kernels.validate_parts("loop_shards", 3) == 3


def test_float32_only_names_the_dtype_policy():
    layer = keras.layers.Dense(2)
    assert kernels.float32_only(layer, "kernel") is None
    mixed = keras.layers.Dense(2, dtype="mixed_bfloat16")
    reason = kernels.float32_only(mixed, "fused thing")
    assert reason == ("the fused thing computes in float32 only, and this layer computes in "
                      "bfloat16 (dtype policy 'mixed_bfloat16')")
