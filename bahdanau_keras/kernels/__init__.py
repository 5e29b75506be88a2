"""Speed kernels: the model's training loops and loss, computed faster, with their own gradients.

The model files (`encoder.py`, `decoder.py`, `model.py`) hold the paper's equations once, in
the readable form that TensorFlow differentiates: that is the *reference*. Each module here
computes the same function as one piece of it, faster on the CPUs of `docs/benchmarks.md`, and
is held to it by `tests/test_kernels_<module>.py` (values and gradients):

- `bidirectional_gru`: both GRU directions of the `Encoder` in one loop, with the backward
  pass written out (reference: `keras.layers.Bidirectional(GRU)` in `Encoder.call`);
- `decoder_loop`: the `Decoder`'s step loop with `BahdanauAttention`, its backward pass
  written out and the batch split into independent parts (reference: `Decoder.cell` in
  `Decoder.time_loop`);
- `decoding`: the `Decoder`'s step for greedy and beam search, its products fused and its
  weights prepared once per search (reference: `Decoder.step`, `decode.ReferenceStep`);
- `cross_entropy`: the output layer and the cross-entropy over the real tokens in pieces, the
  cross-entropy with its own gradient (reference: `Translator.loss_and_count`);
- `adam`: Keras' Adam with its update as one fused TensorFlow op (reference:
  `keras.optimizers.Adam`);
- `backprop`: pieces shared by the hand-written backward loops.

Every hand-written gradient of the package is here. A layer chooses between its reference and
its kernel in one place, with `use_kernel`, from its `implementation` argument (as Keras' `GRU`
chooses its cuDNN kernel with `use_cudnn`):

- `"auto"` (the default): the kernel where it applies and was measured (float32 computation on
  a machine without a GPU), the reference otherwise;
- `"reference"`: always the readable path;
- `"fused"`: always the kernel; a `ValueError` says why where it cannot apply.
"""

import tensorflow as tf

IMPLEMENTATIONS = ("auto", "reference", "fused")


def validate_implementation(implementation):
    """Returns `implementation` if it is one of `IMPLEMENTATIONS`; raises a `ValueError`."""
    if not isinstance(implementation, str) or implementation not in IMPLEMENTATIONS:
        raise ValueError(f"`implementation` must be one of {IMPLEMENTATIONS}. Received: "
                         f"implementation={implementation!r}")
    return implementation


def gpu_present():
    """Whether TensorFlow sees a GPU (`auto` then keeps the reference)."""
    return bool(tf.config.list_physical_devices("GPU"))


def use_kernel(implementation, unsupported, layer_name):
    """Whether a layer built with `implementation` runs its kernel: the one dispatch rule.

    Args:
        implementation: `"auto"`, `"reference"` or `"fused"`.
        unsupported: Why the kernel cannot compute this layer's function (a phrase from the
            kernel module's `unsupported`), or `None` where it can.
        layer_name: The layer's name, for the error message.

    Returns:
        `True` for the kernel, `False` for the reference.

    Raises:
        ValueError: `implementation` is not one of `IMPLEMENTATIONS`, or is `"fused"` where
            the kernel cannot apply (no silent fallback).
    """
    validate_implementation(implementation)
    if implementation == "reference":
        return False
    if unsupported is not None:
        if implementation == "fused":
            raise ValueError(
                f"`implementation='fused'` cannot run layer {layer_name!r}: {unsupported}. "
                "Use implementation='auto' (the kernel where it applies) or 'reference'.")
        return False
    # The kernels were measured only on CPUs (docs/benchmarks.md): with a GPU, "auto" keeps the
    # reference, which TensorFlow differentiates (and whose Keras GRU uses cuDNN there).
    return implementation == "fused" or not gpu_present()


def float32_only(layer, kernel_name):
    """The `unsupported` phrase of a float32 kernel for `layer`, or `None` in float32."""
    if layer.compute_dtype != "float32":
        return (f"the {kernel_name} computes in float32 only, and this layer computes in "
                f"{layer.compute_dtype} (dtype policy {layer.dtype_policy.name!r})")
    return None


def validate_parts(name, value):
    """Returns `value` if it is a positive int (a number of parts, e.g. `loop_shards`)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
    return value
