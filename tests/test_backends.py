"""`BahdanauAttention` under the other Keras backends, each in a subprocess of its own (a
process has one backend, chosen by `KERAS_BACKEND` before Keras is imported).

For JAX (in requirements-dev.txt) and PyTorch (where installed; it is not in
requirements-dev.txt: its default Linux wheel pulls about 2.9 GB of CUDA libraries):

- tests/test_attention.py runs again, whole, on that backend: the layer against the NumPy
  reference of the paper's equations (`numpy_attention`), masks, precomputed keys, the
  weight-normalised variant, mixed precision, gradients, the configuration round trip;
- a `.keras` file written here, under TensorFlow, loads there and gives the TensorFlow outputs
  (and the NumPy reference's) to 1e-5, and a file written there loads here likewise;
- importing `bahdanau_keras` and its attention module, running the layer and loading a `.keras`
  file there does not import TensorFlow. (Saving one does: Keras's own
  `serialization_lib.serialize_keras_object` asks `tf.available`, which imports TensorFlow
  whenever it is installed. The child records that, and the check is made before it saves.)

Run as a script (`python tests/test_backends.py CHILD_ARGS`), this file is the child.
"""

import importlib.util
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest

# Every test starts an interpreter on another backend.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
# A tolerance of 1e-5 on outputs of order 1, float32 on both sides.
ATOL = 1e-5
# The tests of tests/test_attention.py that need another backend's tools, by backend.
ONE_BACKEND_TESTS = {
    "test_works_inside_tf_function_with_unknown_lengths": "tensorflow",
    "test_works_inside_jax_jit": "jax",
}


# -- the child: runs on the backend named by KERAS_BACKEND ---------------------------------------

def model_inputs(seed=0):
    """The model's inputs: a 3-D query, a 2-D query, values and a mask with a padded row, a
    one-token row and a row with nothing real."""
    from test_attention import QUERY_DIM, SRC_LEN, TGT_LEN, VALUE_DIM, padding_mask

    rng = np.random.default_rng(seed)
    return {
        "query_steps": rng.standard_normal((4, TGT_LEN, QUERY_DIM)).astype(np.float32),
        "query": rng.standard_normal((4, QUERY_DIM)).astype(np.float32),
        "values": rng.standard_normal((4, SRC_LEN, VALUE_DIM)).astype(np.float32),
        "mask": padding_mask([SRC_LEN, 6, 1, 0]),
    }


def attention_model(seed):
    """A functional model with both variants of the layer (random weights, `g` and `b` too):
    `plain` on a 3-D query, `normalized` on a 2-D query, both masked."""
    import keras
    from test_attention import QUERY_DIM, SRC_LEN, TGT_LEN, UNITS, VALUE_DIM

    from bahdanau_keras.attention import BahdanauAttention

    query_steps = keras.Input((TGT_LEN, QUERY_DIM), name="query_steps")
    query = keras.Input((QUERY_DIM,), name="query")
    values = keras.Input((SRC_LEN, VALUE_DIM), name="values")
    mask = keras.Input((SRC_LEN,), dtype="bool", name="mask")
    plain = BahdanauAttention(UNITS, name="plain")(query_steps, values, mask=mask)
    normalized = BahdanauAttention(UNITS, normalize=True, name="normalized")(
        query, values, mask=mask)
    model = keras.Model([query_steps, query, values, mask], [*plain, *normalized])
    rng = np.random.default_rng(seed)
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in model.weights])
    return model


def model_outputs(model, inputs):
    """`[context, weights]` of `plain` then of `normalized`, as NumPy arrays."""
    import keras

    outputs = model([inputs[name] for name in ("query_steps", "query", "values", "mask")])
    return [keras.ops.convert_to_numpy(x) for x in outputs]


def reference_outputs(model, inputs):
    """The same outputs from the NumPy reference of tests/test_attention.py, in float64."""
    from test_attention import numpy_attention

    plain = numpy_attention(model.get_layer("plain"), inputs["query_steps"], inputs["values"],
                            inputs["mask"])
    normalized = numpy_attention(model.get_layer("normalized"), inputs["query"],
                                 inputs["values"], inputs["mask"])
    return [*plain, *normalized]


def child(keras_file, out_dir):
    """Load `keras_file` (written under TensorFlow) and run it; then save a model of this
    backend. Writes `outputs.npz`, `reference.npz`, `written.keras`, `written_outputs.npz`
    and `report.json` into `out_dir`."""
    import keras

    import bahdanau_keras
    from bahdanau_keras.attention import BahdanauAttention

    out_dir = Path(out_dir)
    report = {"backend": keras.backend.backend(),
              "tensorflow_after_import": "tensorflow" in sys.modules}
    # The layer, built and called eagerly, both variants.
    layer = bahdanau_keras.BahdanauAttention(7, normalize=True)
    inputs = model_inputs(seed=1)
    layer(inputs["query_steps"], inputs["values"], mask=inputs["mask"])
    report["tensorflow_after_call"] = "tensorflow" in sys.modules
    loaded = keras.saving.load_model(keras_file)
    assert isinstance(loaded.get_layer("normalized"), BahdanauAttention)
    inputs = model_inputs()
    np.savez(out_dir / "outputs.npz", *model_outputs(loaded, inputs))
    np.savez(out_dir / "reference.npz", *reference_outputs(loaded, inputs))
    report["tensorflow_after_load"] = "tensorflow" in sys.modules
    # Written on this backend, for TensorFlow to read back.
    model = attention_model(seed=3)
    np.savez(out_dir / "written_outputs.npz", *model_outputs(model, inputs))
    keras.saving.save_model(model, out_dir / "written.keras")
    report["tensorflow_after_save"] = "tensorflow" in sys.modules
    (out_dir / "report.json").write_text(json.dumps(report))


# -- the tests, under TensorFlow -----------------------------------------------------------------

def require_backend(backend):
    """Skip when the backend's package is not installed (a failure under CI for JAX, which
    requirements-dev.txt installs)."""
    package = {"jax": "jax", "torch": "torch"}[backend]
    if importlib.util.find_spec(package) is None:
        if backend == "jax" and os.environ.get("CI"):
            pytest.fail("jax is not installed: requirements-dev.txt pins it and CI must run "
                        "the JAX tests")
        pytest.skip(f"{package} is not installed (the {backend} backend's tests need it)")


def run_on(backend, args, timeout):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, (
        f"{backend} subprocess {args} exited with {result.returncode}:\n"
        f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}")
    return result


BACKENDS = ["jax", "torch"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_attention_suite_passes_on_backend(backend, tmp_path):
    require_backend(backend)
    report = tmp_path / "junit.xml"
    run_on(backend, ["-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
                     str(TESTS / "test_attention.py")], timeout=1800)
    cases = ElementTree.parse(report).getroot().iter("testcase")
    outcomes = {}
    for case in cases:
        outcome = "passed"
        for kind in ("failure", "error", "skipped"):
            if case.find(kind) is not None:
                outcome = kind
        outcomes[case.get("name")] = outcome
    assert len(outcomes) > 50
    assert outcomes["test_runs_on_the_backend_named_by_keras_backend"] == "passed"
    not_passed = {name: outcome for name, outcome in outcomes.items() if outcome != "passed"}
    # Only the tests of another backend's tools may be skipped.
    for name, outcome in not_passed.items():
        base = name.split("[")[0]
        assert outcome == "skipped" and ONE_BACKEND_TESTS.get(base, backend) != backend, (
            f"{name}: {outcome} on {backend}")


@pytest.fixture(scope="module", params=BACKENDS)
def exchanged(request, tmp_path_factory):
    """A `.keras` file written here (TensorFlow) and run by the child on `backend`, and the
    child's own file: the paths and the outputs of both sides."""
    backend = request.param
    require_backend(backend)
    import keras

    assert keras.backend.backend() == "tensorflow"
    if str(TESTS) not in sys.path:  # model_inputs and attention_model import test_attention
        sys.path.insert(0, str(TESTS))
    out_dir = tmp_path_factory.mktemp(f"exchange_{backend}")
    model = attention_model(seed=2)
    keras_file = out_dir / "tensorflow.keras"
    keras.saving.save_model(model, keras_file)
    inputs = model_inputs()
    run_on(backend, [__file__, str(keras_file), str(out_dir)], timeout=600)
    report = json.loads((out_dir / "report.json").read_text())
    assert report["backend"] == backend

    def load(name):
        with np.load(out_dir / name) as arrays:
            return [arrays[f"arr_{i}"] for i in range(len(arrays.files))]

    return {"backend": backend, "report": report, "tensorflow_model": model, "inputs": inputs,
            "tensorflow_outputs": model_outputs(model, inputs),
            "child_outputs": load("outputs.npz"), "child_reference": load("reference.npz"),
            "written": out_dir / "written.keras",
            "written_outputs": load("written_outputs.npz")}


def test_keras_file_from_tensorflow_gives_the_same_outputs_on_backend(exchanged):
    expected = exchanged["tensorflow_outputs"]
    assert [x.shape for x in exchanged["child_outputs"]] == [x.shape for x in expected]
    for got, want in zip(exchanged["child_outputs"], expected):
        np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)
    # And both sides agree with the NumPy reference (the child computed it from the weights
    # it loaded, which are therefore the ones written here).
    reference = reference_outputs(exchanged["tensorflow_model"], exchanged["inputs"])
    for got, child_reference, want in zip(
            exchanged["child_outputs"], exchanged["child_reference"], reference):
        np.testing.assert_array_equal(child_reference, want)
        np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)
    # Masked positions are exactly 0 there too (the last row has nothing real).
    mask = exchanged["inputs"]["mask"]
    plain_weights, normalized_weights = exchanged["child_outputs"][1], exchanged["child_outputs"][3]
    assert np.all(plain_weights[np.broadcast_to(~mask[:, None], plain_weights.shape)] == 0.0)
    assert np.all(normalized_weights[~mask] == 0.0)
    np.testing.assert_array_equal(exchanged["child_outputs"][0][3], 0.0)


def test_keras_file_from_backend_gives_the_same_outputs_under_tensorflow(exchanged):
    import keras

    from bahdanau_keras.attention import BahdanauAttention

    loaded = keras.saving.load_model(exchanged["written"])
    assert isinstance(loaded.get_layer("plain"), BahdanauAttention)
    got = model_outputs(loaded, exchanged["inputs"])
    for x, want in zip(got, exchanged["written_outputs"]):
        np.testing.assert_allclose(x, want, rtol=0, atol=ATOL)
    for x, want in zip(got, reference_outputs(loaded, exchanged["inputs"])):
        np.testing.assert_allclose(x, want, rtol=0, atol=ATOL)


def test_backend_runs_the_layer_without_importing_tensorflow(exchanged):
    report = exchanged["report"]
    assert report["tensorflow_after_import"] is False
    assert report["tensorflow_after_call"] is False
    assert report["tensorflow_after_load"] is False


if __name__ == "__main__":
    child(*sys.argv[1:])
