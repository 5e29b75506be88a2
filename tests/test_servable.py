"""The exported SavedModel is servable by TensorFlow Serving, and docs/serving.md's REST examples
are what its signatures answer.

Op set. TensorFlow Serving's model server links TensorFlow's own ops and tensorflow-text's
(its `SUPPORTED_TENSORFLOW_OPS`), and has no Python interpreter. The test reads the SavedModel's
`saved_model.pb` from disk and lists the op of every node of every graph and of every function of
its library (the bodies of `While` loops, the branches of `If`, the functions that
`PartitionedCall` runs, however deeply they nest: all are `FunctionDef`s of the library, and every
function an attribute names must be there). The `stripped_op_list` that TensorFlow writes into
the file is not used: it misses ops that occur only inside nested functions.
Each op must then be

- in TensorFlow's core op set, taken from TensorFlow's own registry in this process: the ops of
  `tf.raw_ops`, which TensorFlow generates for every op it registers itself (ops that libraries
  register, tensorflow-text's included, do not appear there), but not one of those that call
  back into Python (`PyFunc`, `EagerPyFunc`, ... : the core ops named `*PyFunc*`); or
- one of tensorflow-text's: unregistered (`op_def_registry.get(name) is None`) in a fresh
  interpreter that has imported TensorFlow, registered once it imports `tensorflow_text`. (A
  fresh interpreter, because this one may have imported `tensorflow_text` already.)

An op of this package (it registers none), of another library, or a `PyFunc` fails the test,
on the shipped model (`saved_models/en-fr`) and on a tiny model exported here by
`bahdanau_keras.export`, so that a change to the exporter that breaks serving fails too.

REST examples. TensorFlow Serving's REST API takes `{"signature_name": ..., "instances": [...]}`
(row format: one item per batch element) or `{"signature_name": ..., "inputs": {...}}` (columnar
format, which scalar inputs such as `beam_width` need) and answers `{"predictions": [...]}` or
`{"outputs": {...}}`. The test builds each documented request body, turns it into tensors as the
server does, calls the loaded signature, converts its outputs as the server does (floats in its
shortest round-trip decimal, strings as UTF-8 text) and compares the result with the JSON blocks
of docs/serving.md: strings, shapes and integers exactly, floats to 1e-5 (the last bits of a
float depend on the CPU's kernels). To write the blocks again after a change of the model:

    .venv/bin/python tests/test_servable.py --write-docs
"""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "saved_models" / "en-fr"
DOCS = REPO / "docs" / "serving.md"
SENTENCE = "John loves Mary."

# The request bodies documented in docs/serving.md, by the name of their block.
REQUESTS = {
    "greedy": {"signature_name": "serving_default", "instances": [SENTENCE]},
    "beam": {"signature_name": "translate_beam",
             "inputs": {"texts": [SENTENCE], "beam_width": 4, "alpha": 0.6, "beta": 0.0}},
}

# Run in a fresh interpreter: which of the given ops tensorflow-text registers.
REGISTERED_BY_TENSORFLOW_TEXT = r"""
import json, sys
import tensorflow as tf
from tensorflow.python.framework import op_def_registry

names = json.loads(sys.argv[1])
before = {name: op_def_registry.get(name) is not None for name in names}
import tensorflow_text  # noqa: F401
after = {name: op_def_registry.get(name) is not None for name in names}
print(json.dumps([name for name in names if after[name] and not before[name]]))
"""


# -- the op set ---------------------------------------------------------------------------------

def saved_model_ops(path):
    """`{op: [where it occurs]}` for every node of every graph of the SavedModel at `path` and
    of every function of their libraries; fails if a function that an attribute names (a
    loop body, a branch, a called function) is not in the library."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((Path(path) / "saved_model.pb").read_bytes())
    assert len(saved_model.meta_graphs) >= 1
    ops = {}
    for index, meta_graph in enumerate(saved_model.meta_graphs):
        library = {function.signature.name: function
                   for function in meta_graph.graph_def.library.function}
        named = set()
        places = [(f"graph {index}", meta_graph.graph_def.node)] + [
            (f"function {name}", function.node_def) for name, function in library.items()]
        for place, nodes in places:
            for node in nodes:
                named.update(functions_named_by(node))
                if node.op in library:  # a node may call a library function by its name
                    named.add(node.op)
                else:
                    ops.setdefault(node.op, []).append(place)
        missing = sorted(named - set(library))
        assert not missing, f"functions named in graph {index} but not in its library: {missing}"
    return ops


def functions_named_by(node):
    """The names of the functions that `node`'s attributes refer to."""
    names = set()
    for value in node.attr.values():
        if value.HasField("func"):
            names.add(value.func.name)
        if value.HasField("list"):
            names.update(function.name for function in value.list.func)
    return names


def core_ops():
    """TensorFlow's own ops (`tf.raw_ops`) and, among them, those that run Python."""
    import tensorflow as tf

    core = {name for name in dir(tf.raw_ops) if not name.startswith("_")}
    python = {name for name in core if "PyFunc" in name}
    assert {"MatMul", "While", "PyFunc", "EagerPyFunc"} <= core | python
    return core - python, python


def tensorflow_text_ops(names):
    """Those of `names` that importing `tensorflow_text` registers (in a fresh interpreter)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", REGISTERED_BY_TENSORFLOW_TEXT, json.dumps(sorted(names))],
        capture_output=True, text=True, env=env, timeout=600, cwd="/")
    assert done.returncode == 0, done.stderr[-3000:]
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def check_servable(path):
    ops = saved_model_ops(path)
    core, python = core_ops()
    calls_python = {op: ops[op][:3] for op in sorted(set(ops) & python)}
    assert not calls_python, f"ops that need a Python interpreter: {calls_python}"
    others = set(ops) - core
    # SentencepieceOp is a control: the method must find it among tensorflow-text's ops.
    text = tensorflow_text_ops(others | {"SentencepieceOp"})
    assert "SentencepieceOp" in text
    unservable = {op: ops[op][:3] for op in sorted(others - text)}
    assert not unservable, (
        f"ops in neither TensorFlow's core op set nor tensorflow-text's: {unservable}")
    return ops, text


@pytest.mark.slow
def test_shipped_saved_model_uses_only_core_and_tensorflow_text_ops():
    ops, text = check_servable(SHIPPED)
    # What the translator needs is there: the loops, SentencePiece, the normalisation.
    assert {"While", "MatMul", "Softmax", "Tanh", "SentencepieceTokenizeOp",
            "SentencepieceDetokenizeOp", "NormalizeUTF8"} <= set(ops)
    assert {"SentencepieceTokenizeOp", "SentencepieceDetokenizeOp", "NormalizeUTF8"} <= text


def custom_gradient_nodes(path):
    """Nodes of the SavedModel at `path` that `tf.custom_gradient` made (they name their
    gradient in `_gradient_op_type`): a SavedModel keeps no such gradient, and loading one
    logs "Importing a function ... with ops with unsaved custom gradients" for each."""
    from tensorflow.core.protobuf import saved_model_pb2
    from test_graphs import custom_gradient_nodes as graph_custom_gradient_nodes

    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((Path(path) / "saved_model.pb").read_bytes())
    return [name for meta_graph in saved_model.meta_graphs
            for name in graph_custom_gradient_nodes(meta_graph.graph_def)]


def test_shipped_saved_model_holds_no_custom_gradient():
    assert not custom_gradient_nodes(SHIPPED)


@pytest.mark.slow
def test_saved_model_ops_looks_inside_nested_functions(tmp_path):
    """The lister sees an op that occurs only in a loop body inside a called function, and a
    `PyFunc` there fails the check."""
    import tensorflow as tf

    module = tf.Module()

    @tf.function(input_signature=[tf.TensorSpec([], tf.float32)])
    def inner(x):
        def body(i, y):
            y = tf.numpy_function(np.cos, [y], tf.float32)
            return i + 1, tf.reshape(y, [])

        return tf.while_loop(lambda i, y: i < 3, body, (0, x))[1]

    @tf.function(input_signature=[tf.TensorSpec([], tf.float32)])
    def outer(x):
        return inner(x) + tf.math.lgamma(x)

    module.outer = outer
    tf.saved_model.save(module, str(tmp_path), signatures=outer.get_concrete_function())
    ops = saved_model_ops(tmp_path)
    assert "Lgamma" in ops and "While" in ops
    assert "PyFunc" in ops
    assert all(place.startswith("function ") for place in ops["PyFunc"])
    with pytest.raises(AssertionError, match="need a Python interpreter.*PyFunc"):
        check_servable(tmp_path)
    # An op that no library registers (as one of this package would be) fails too, and so
    # does a function named by an attribute that the library lacks.
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((tmp_path / "saved_model.pb").read_bytes())
    library = saved_model.meta_graphs[0].graph_def.library
    for function in library.function:
        for node in function.node_def:
            if node.op == "Lgamma":
                node.op = "BahdanauKerasAttention"
            if node.op == "PyFunc":
                node.op = "Cos"
                node.attr.clear()
    (tmp_path / "saved_model.pb").write_bytes(saved_model.SerializeToString())
    with pytest.raises(AssertionError, match="neither.*BahdanauKerasAttention"):
        check_servable(tmp_path)
    bodies = [f for f in library.function if "while_body" in f.signature.name]
    assert bodies
    for body in bodies:
        library.function.remove(body)
    (tmp_path / "saved_model.pb").write_bytes(saved_model.SerializeToString())
    with pytest.raises(AssertionError, match="not in its library.*while_body"):
        saved_model_ops(tmp_path)


@pytest.mark.slow
def test_freshly_exported_model_uses_only_core_and_tensorflow_text_ops(tiny_trained,
                                                                        tmp_path):
    from bahdanau_keras.export import TranslatorModule, export

    module = TranslatorModule(tiny_trained.translator, tiny_trained.source_tokenizer,
                              tiny_trained.target_tokenizer)
    path = export(module, str(tmp_path / "saved"))
    ops, _ = check_servable(path)
    assert {"While", "SentencepieceTokenizeOp"} <= set(ops)
    assert not custom_gradient_nodes(path)


# -- TensorFlow Serving's REST API, emulated ------------------------------------------------------

def serving_decimal(value):
    """A float32 as TensorFlow Serving's JSON writes it: six significant digits if they read
    back as the same float32, else nine; `.0` after a whole number; `NaN`, `Infinity`."""
    value = np.float32(value)
    if np.isnan(value):
        return "NaN"
    if np.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    text = "%g" % value
    if np.float32(float(text)) != value:
        text = "%.9g" % value
    if "." not in text and "e" not in text:
        text += ".0"
    return text


def json_values(array, name):
    """A NumPy output as TensorFlow Serving writes it: nested lists of numbers, strings (UTF-8
    text, or `{"b64": ...}` for an output named `*_bytes`) or booleans."""
    if isinstance(array, np.ndarray) and array.ndim > 0:
        return [json_values(item, name) for item in array]
    if isinstance(array, bytes):
        if name.endswith("_bytes"):
            import base64

            return {"b64": base64.b64encode(array).decode("ascii")}
        return array.decode("utf-8")
    if isinstance(array, (np.floating, float)):
        return float(serving_decimal(array))  # what a JSON client reads
    if isinstance(array, (np.bool_, bool)):
        return bool(array)
    return int(array)


def request_tensors(body, signature):
    """The input tensors TensorFlow Serving makes of a request body, by input name."""
    import tensorflow as tf

    specs = signature.structured_input_signature[1]
    if "instances" in body:  # row format: one item per batch element
        instances = body["instances"]
        if len(specs) == 1 and not isinstance(instances[0], dict):
            columns = {next(iter(specs)): instances}
        else:
            columns = {name: [instance[name] for instance in instances] for name in specs}
    else:  # columnar format
        inputs = body["inputs"]
        columns = inputs if isinstance(inputs, dict) else {next(iter(specs)): inputs}
    assert set(columns) == set(specs), f"inputs {sorted(columns)} != {sorted(specs)}"
    return {name: tf.constant(columns[name], specs[name].dtype) for name in specs}


def answer(body, signature):
    """TensorFlow Serving's answer to `body`, from the loaded `signature`."""
    outputs = {name: tensor.numpy() for name, tensor in
               signature(**request_tensors(body, signature)).items()}
    names = sorted(outputs)  # the server's order is that of a protobuf map: unspecified
    if "instances" in body:  # row format: every output is cut along its batch dimension
        sizes = {outputs[name].shape[0] for name in names}
        assert len(sizes) == 1, f"outputs of different batch sizes: {sizes}"
        rows = []
        for row in range(sizes.pop()):
            values = {name: json_values(outputs[name][row], name) for name in names}
            rows.append(values if len(names) > 1 else values[names[0]])
        return {"predictions": rows}
    values = {name: json_values(outputs[name], name) for name in names}
    return {"outputs": values if len(names) > 1 else values[names[0]]}


def examples():
    """`{block name: JSON value}`: each request of `REQUESTS` and the shipped model's answer."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the SentencePiece and normalisation ops)

    loaded = tf.saved_model.load(str(SHIPPED))
    blocks = {}
    for name, body in REQUESTS.items():
        blocks[f"{name}-request"] = body
        blocks[f"{name}-answer"] = answer(body, loaded.signatures[body["signature_name"]])
    return blocks


def to_json(value, indent=0):
    """JSON text with objects indented and innermost lists on one line (as the server's
    pretty writer does), the rows of a matrix each on a line."""
    pad = " " * (indent + 2)
    if isinstance(value, dict) and value:
        items = [f"{pad}{json.dumps(key)}: {to_json(item, indent + 2)}"
                 for key, item in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    if isinstance(value, list) and value and isinstance(value[0], (list, dict)):
        items = [pad + to_json(item, indent + 2) for item in value]
        return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"
    return json.dumps(value, ensure_ascii=False)


BLOCK = re.compile(r"<!-- example: (?P<name>[\w-]+) -->\n```json\n(?P<body>.*?)\n```", re.S)


def documented_blocks(text):
    return {match["name"]: match["body"] for match in BLOCK.finditer(text)}


def write_docs():
    text = DOCS.read_text()
    blocks = examples()
    missing = set(blocks) - set(documented_blocks(text))
    if missing:
        raise SystemExit(f"{DOCS} has no block for {sorted(missing)}")
    text = BLOCK.sub(lambda match: (f"<!-- example: {match['name']} -->\n```json\n"
                                    f"{to_json(blocks[match['name']])}\n```"), text)
    DOCS.write_text(text)


def assert_same_json(documented, expected, where="answer"):
    """Equal JSON values; floats to 1e-5."""
    assert type(documented) is type(expected), f"{where}: {documented!r} != {expected!r}"
    if isinstance(expected, dict):
        assert list(documented) == list(expected), f"{where}: keys {list(documented)}"
        for key in expected:
            assert_same_json(documented[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert len(documented) == len(expected), f"{where}: length {len(documented)}"
        for index, (x, y) in enumerate(zip(documented, expected)):
            assert_same_json(x, y, f"{where}[{index}]")
    elif isinstance(expected, float):
        assert math.isclose(documented, expected, rel_tol=0, abs_tol=1e-5), (
            f"{where}: {documented} != {expected}")
    else:
        assert documented == expected, f"{where}: {documented!r} != {expected!r}"


@pytest.fixture(scope="module")
def served():
    return examples()


@pytest.mark.slow
def test_docs_show_each_request_and_the_answer_the_signature_gives(served):
    documented = documented_blocks(DOCS.read_text())
    assert set(documented) == set(served), (
        f"docs/serving.md blocks {sorted(documented)}, expected {sorted(served)}")
    for name, value in served.items():
        assert_same_json(json.loads(documented[name]), value, name)


@pytest.mark.slow
def test_answers_translate_the_sentence(served):
    greedy = served["greedy-answer"]["predictions"]
    assert len(greedy) == 1 and greedy[0]["translation"] == "John aime Marie."
    assert greedy[0]["source_tokens"][-1] == "</s>"
    attention = np.array(greedy[0]["attention"])
    assert attention.shape == (len(greedy[0]["target_tokens"]), len(greedy[0]["source_tokens"]))
    beam = served["beam-answer"]["outputs"]
    assert beam["translation"] == ["John aime Marie."]
    assert len(beam["nbest_translations"][0]) == REQUESTS["beam"]["inputs"]["beam_width"]


def test_serving_decimal_follows_tensorflow_serving():
    assert serving_decimal(0.5) == "0.5"
    assert serving_decimal(3.0) == "3.0"
    assert serving_decimal(3e-05) == "3e-05"
    assert serving_decimal(np.float32(0.2)) == "0.2"  # six digits read back as the float32
    assert serving_decimal(np.float32(1 / 3)) == "0.333333343"  # nine where six do not
    assert serving_decimal(float("nan")) == "NaN"
    assert serving_decimal(float("-inf")) == "-Infinity"
    for value in np.random.default_rng(0).standard_normal(200).astype(np.float32):
        assert np.float32(float(serving_decimal(value))) == value


def test_row_format_needs_one_batch_size(tmp_path):
    import tensorflow as tf

    texts = tf.TensorSpec([None], tf.string, name="texts")
    module = tf.Module()
    module.mixed = tf.function(
        lambda texts: {"one": tf.strings.length(texts), "other": tf.zeros([2])},
        input_signature=[texts])
    module.single = tf.function(lambda texts: {"length": tf.strings.length(texts)},
                                input_signature=[texts])
    tf.saved_model.save(module, str(tmp_path), signatures={
        "mixed": module.mixed.get_concrete_function(),
        "single": module.single.get_concrete_function()})
    signatures = tf.saved_model.load(str(tmp_path)).signatures
    with pytest.raises(AssertionError, match="different batch sizes"):
        answer({"instances": ["a", "bc", "def"]}, signatures["mixed"])
    assert answer({"inputs": ["a", "bc", "def"]}, signatures["mixed"]) == {
        "outputs": {"one": [1, 2, 3], "other": [0.0, 0.0]}}
    # One output: bare values, not objects.
    assert answer({"instances": ["a", "bc"]}, signatures["single"]) == {"predictions": [1, 2]}
    assert answer({"instances": [{"texts": "a"}, {"texts": "bc"}]}, signatures["single"]) == {
        "predictions": [1, 2]}
    assert answer({"inputs": {"texts": ["a", "bc"]}}, signatures["single"]) == {
        "outputs": [1, 2]}

if __name__ == "__main__":
    if sys.argv[1:] != ["--write-docs"]:
        raise SystemExit(f"usage: {sys.argv[0]} --write-docs")
    write_docs()
