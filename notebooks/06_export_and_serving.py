# ---
# jupyter:
#   colab:
#     provenance: []
#   jupytext:
#     notebook_metadata_filter: kernelspec,colab,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 6. Export and serving
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/bahdanau-keras/bahdanau_keras/blob/main/notebooks/06_export_and_serving.ipynb)
#
# `bahdanau-keras export` writes the whole pipeline — normalisation, SentencePiece,
# encoder, search, detokenisation — into one TensorFlow SavedModel that takes raw
# strings. This notebook looks at its files and signatures, loads it in a process that
# does not have this package, inspects it with `saved_model_cli` and calls it the way
# TensorFlow Serving does.
#
# **Run time.** Under a minute (measured: 32 s on this project's 2-core CPU machine, idle
# apart from it, on 2026-12-02, and 17 s earlier that day; in Colab the set-up cell adds the
# clone and the install). A GPU runtime is not needed: nothing here trains.

# %%
# Set-up, the same in every notebook. In Colab: clone the repository once (it brings the shipped
# model), pip-install it while keeping Colab's TensorFlow and Keras, and work in the clone.
# Anywhere else: only make the repository importable.
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up messages
REPOSITORY = "https://github.com/bahdanau-keras/bahdanau_keras"


def colab_install(checkout):
    """Clone REPOSITORY into `checkout` (unless a clone is there) and pip-install it."""
    import subprocess
    import tempfile
    from importlib import metadata

    def run(step, command):
        try:
            done = subprocess.run(command, capture_output=True, text=True)
        except OSError as error:
            raise RuntimeError(f"Set-up failed while {step}: {error}") from None
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise RuntimeError(f"Set-up failed while {step} ({command[0]} exited with "
                               f"{done.returncode}). Its last lines:\n{tail}")

    def version(package):
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    reused = (checkout / "pyproject.toml").is_file()  # a clone made earlier is reused
    if not reused:
        run(f"cloning {REPOSITORY}", ["git", "clone", "--depth", "1", REPOSITORY, str(checkout)])
    tensorflow, keras = version("tensorflow"), version("keras")
    if tensorflow is None or keras is None:
        raise RuntimeError(f"Set-up failed: this runtime lacks Colab's TensorFlow or Keras "
                           f"(tensorflow {tensorflow}, keras {keras}).")
    major, minor = tensorflow.split(".")[:2]
    packages = [str(checkout)]
    text = version("tensorflow-text")
    if text is None or text.split(".")[:2] != [major, minor]:  # the release that matches
        packages.insert(0, f"tensorflow-text>={major}.{minor},<{major}.{int(minor) + 1}")
    constraints = Path(tempfile.mkdtemp()) / "constraints.txt"  # pip must not replace them
    constraints.write_text(f"tensorflow=={tensorflow}\nkeras=={keras}\n")
    run(f"installing {' and '.join(packages)}",
        [sys.executable, "-m", "pip", "install", "--quiet", "--constraint", str(constraints),
         *packages])
    print(f"Set-up: {checkout} ({'reused' if reused else 'cloned'}) installed, with Colab's "
          f"TensorFlow {tensorflow} and Keras {keras}")


if "google.colab" in sys.modules:
    REPO = Path(os.environ.get("BAHDANAU_KERAS_CHECKOUT", "/content/bahdanau_keras"))
    colab_install(REPO)
    os.chdir(REPO / "notebooks")
else:
    REPO = next((p for p in (Path.cwd(), *Path.cwd().parents)
                 if (p / "bahdanau_keras" / "__init__.py").exists()), Path.cwd())
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# %%
from bahdanau_keras import tutorial

MODEL = tutorial.shipped_model(REPO)  # the SavedModel that comes with the repository

# %% [markdown]
# ## The files
#
# `saved_model.pb` holds the graphs (the SentencePiece models are inside, as
# attributes of their ops), `variables/` the weights, and `assets/` the training
# configuration and history.

# %%
import json

for path in sorted(MODEL.rglob("*")):
    if path.is_file():
        print(f"{str(path.relative_to(MODEL)):42s} {path.stat().st_size:>12,} bytes")
config = json.loads((MODEL / "assets" / "config.json").read_text())
print(json.dumps(config["model"]))

# %% [markdown]
# ## Signatures
#
# A signature is a named, typed entry point. `serving_default` is greedy decoding;
# `translate_beam` adds the beam width and the length and coverage penalties;
# `translate_sample` samples with a temperature and a seed. Every input has a fixed
# dtype and a shape, `[None]` for the batch of sentences. Loading the model needs
# TensorFlow and `tensorflow_text`, whose import registers the text ops the model uses
# (more on this below).

# %%
import tensorflow as tf
import tensorflow_text  # noqa: F401  registers the SentencePiece and normalisation ops

reloaded = tf.saved_model.load(str(MODEL))
for name, function in sorted(reloaded.signatures.items()):  # sorted: a loaded model's
    print(name)                                               # order is arbitrary
    for key, spec in sorted(function.structured_input_signature[1].items()):
        print(f"   in   {key:20s} {spec.dtype.name:8s} {spec.shape}")
    for key, spec in sorted(function.structured_outputs.items()):
        print(f"   out  {key:20s} {spec.dtype.name:8s} {spec.shape}")

# %% [markdown]
# ## `saved_model_cli`
#
# TensorFlow's command-line tool shows the same from the files alone. `--all` prints
# every signature and the ops the graphs use, among them the TensorFlow Text ops
# (`SentencepieceOp`, `NormalizeUTF8`, ...); because of those, it cannot list the saved
# functions themselves:

# %%
import shutil
import subprocess

cli = shutil.which("saved_model_cli") or str(Path(sys.executable).with_name("saved_model_cli"))
shown = subprocess.run([cli, "show", "--dir", str(MODEL), "--all"], capture_output=True,
                       text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
print(shown.stdout if shown.returncode == 0 else shown.stderr[-3000:])

# %% [markdown]
# ## Loading without this package
#
# The SavedModel needs TensorFlow and `tensorflow_text`, which registers the
# SentencePiece and Unicode-normalisation ops; none of this package's code. A fresh
# Python process in which `import bahdanau_keras` would fail first tries plain
# TensorFlow, then imports `tensorflow_text` and translates:

# %%
import tempfile
import textwrap

script = f'''
import sys
sys.modules["bahdanau_keras"] = None  # importing the package now raises ImportError
import tensorflow as tf

try:
    tf.saved_model.load({str(MODEL)!r})
except Exception as error:  # plain TensorFlow lacks the TensorFlow Text ops
    print("without tensorflow_text:", str(error).splitlines()[0][:100], "...")

import tensorflow_text  # noqa: F401  registers the SentencePiece and normalisation ops

translator = tf.saved_model.load({str(MODEL)!r})
texts = tf.constant(["John loves Mary.", "Where is the station?"])
result = translator.signatures["serving_default"](texts=texts)
print("with tensorflow_text:   ", [t.decode() for t in result["translation"].numpy()])
'''
run = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True,
                     text=True, cwd=tempfile.gettempdir(),
                     env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
print(run.stdout if run.returncode == 0 else run.stderr[-2000:])

# %% [markdown]
# ## Calling it as TensorFlow Serving does
#
# TensorFlow Serving loads the SavedModel and exposes each signature over REST and
# gRPC. A REST request is JSON: in the *row* format, `{"instances": [...]}` holds one
# entry per example (here, one string each, as `serving_default` has a single input,
# `texts`); the answer is `{"predictions": [...]}`, one object per example with every
# output. The server turns the instances into the tensor `texts` and calls the
# signature, exactly this:

# %%
serving_default = reloaded.signatures["serving_default"]
outputs = serving_default(texts=tf.constant(["John loves Mary.", "Where is the station?"]))
for name, value in sorted(outputs.items()):
    print(f"{name:14s} {value.dtype.name:7s} {value.shape}")

# %% [markdown]
# The whole request–response cycle in a few lines, for both request formats: rows
# (`instances`) and columns (`inputs`, which also takes the scalar inputs of
# `translate_beam`):

# %%
import numpy as np


def to_json(value):
    """A tensor as TensorFlow Serving writes it in JSON (strings as UTF-8 text)."""
    value = value.numpy() if hasattr(value, "numpy") else value
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        return [to_json(v) for v in value] if value.ndim else to_json(value.item())
    return round(float(value), 4) if isinstance(value, (float, np.floating)) else value


def predict(body):
    """What the REST endpoint `POST /v1/models/en-fr:predict` does with a request body."""
    request = json.loads(body)
    signature = reloaded.signatures[request.get("signature_name", "serving_default")]
    if "instances" in request:  # row format: one entry per example
        texts = [i["texts"] if isinstance(i, dict) else i for i in request["instances"]]
        outputs = signature(texts=tf.constant(texts))
        rows = [{k: to_json(v[n]) for k, v in outputs.items()} for n in range(len(texts))]
        return json.dumps({"predictions": rows}, ensure_ascii=False)
    specs = signature.structured_input_signature[1]  # column format: named inputs
    inputs = {k: tf.constant(v, specs[k].dtype) for k, v in request["inputs"].items()}
    outputs = signature(**inputs)
    return json.dumps({"outputs": {k: to_json(v) for k, v in outputs.items()}},
                      ensure_ascii=False)


body = json.dumps({"instances": ["John loves Mary.", "Where is the station?"]})
response = json.loads(predict(body))
print("request: ", body)
for row in response["predictions"]:
    print("response:", {k: row[k] for k in ("translation", "score", "target_tokens")})

# %%
body = json.dumps({"signature_name": "translate_beam",
                   "inputs": {"texts": ["John loves Mary."], "beam_width": 4,
                              "alpha": 0.6, "beta": 0.0}})
response = json.loads(predict(body))["outputs"]
print("request: ", body)
print("response:", {k: response[k] for k in ("translation", "nbest_translations", "nbest_scores")})

# %% [markdown]
# With the real server (not run here): TensorFlow Serving expects a numbered version
# directory under the model's base path, and its releases link in the TensorFlow Text
# ops (use one at least as recent as the TensorFlow that exported the model).
#
# ```bash
# mkdir -p /tmp/serving/en-fr && cp -r saved_models/en-fr /tmp/serving/en-fr/1
# docker run --rm -p 8501:8501 -v /tmp/serving/en-fr:/models/en-fr -e MODEL_NAME=en-fr \
#     tensorflow/serving
# curl -s -X POST http://localhost:8501/v1/models/en-fr:predict \
#      -d '{"instances": ["John loves Mary."]}'
# ```
#
# In Python, the exported model is also usable directly: `reloaded.translate(texts)`,
# `reloaded.translate_beam(texts, 4, 0.6, 0.0)`.

# %% [markdown]
# ## Exercises
#
# 1. Send `predict` a request in the column format for `serving_default`, with three
#    sentences, and compare its answer with the row format's. Which one would you use for
#    a batch of a thousand sentences?
# 2. Call the `translate_sample` signature on one sentence with `temperature` 0.5, 1.0 and
#    1.5 and a few seeds. How do the samples change with the temperature?
# 3. The exported model takes any string. Send it an empty string, a sentence of 2,000
#    characters and a line of emoji in one batch: what comes back, and why does the rest
#    of the batch still translate?
