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
# # 4. Training with teacher forcing
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/bahdanau-keras/bahdanau_keras/blob/main/notebooks/04_training.ipynb)
#
# Training shows the decoder the correct previous word at every step (*teacher
# forcing*) and lowers the cross-entropy of the next one. This notebook runs the
# package's compiled training step by hand, then trains a small translator on a subset
# of Tatoeba with `bahdanau_keras.train.train`, plots its loss, looks inside its
# checkpoints and resumes it.

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

# %% [markdown]
# ## Data: a subset of Tatoeba
#
# To keep the run to a few minutes on a CPU, we take a random sample of the short pairs
# (at most 8 English words). The full-size recipe is the README's `bahdanau-keras
# train` command.

# %%
from bahdanau_keras import data, tutorial

FAST = tutorial.fast_mode()  # BAHDANAU_KERAS_FAST=1 (the tests): less data, fewer steps
try:
    corpus = tutorial.load_tatoeba(REPO)  # a local copy, else downloaded once into a cache
except data.CorpusError as error:  # no copy and no download: say so, then use the sample
    corpus = tutorial.use_sample_corpus(error)

# %%
import random

short = [(s, t) for s, t in corpus.pairs if len(s.split()) <= 8]
subset = random.Random(0).sample(short, min(len(short), 1000 if FAST else 12000))
subset_corpus = data.Corpus(pairs=subset, path=f"{corpus.path} (random subset)",
                            origin=corpus.origin)
print(f"{len(subset):,} pairs, e.g. {subset[0]}")

# %% [markdown]
# ## The training step
#
# The decoder reads `START y_1 … y_n` and is scored on predicting `y_1 … y_n END`; the
# loss is the mean of $-\log p(y_t \mid y_{<t}, x)$ over the real target tokens of the
# batch (padding excluded, see notebook 3). `train.train_step` is one update: the gradient
# tape, the masked loss, the gradients and Adam (learning rate 1e-3, gradients clipped to
# norm 1). It is the step that `bahdanau-keras train` runs; `train.make_train_step` makes it
# a `tf.function`, and epochs, logging and checkpoints stay in plain Python around it. Two
# of its lines let the same function run on several devices and in float16 (the token count
# of the whole batch across devices, and the scaling that float16 gradients need); on one
# device in float32 they change nothing.

# %%
import inspect

from bahdanau_keras import train

print(inspect.getsource(train.train_step))

# %% [markdown]
# A model and its tokenizers, sized down from the shipped model (which uses 256/512):

# %%
import keras
import tensorflow as tf

from bahdanau_keras import Translator, text

SIZES = (dict(embedding_dim=16, encoder_units=16, decoder_units=32, attention_units=32)
         if FAST else
         dict(embedding_dim=128, encoder_units=128, decoder_units=256, attention_units=256))
VOCAB = 500 if FAST else 4000
keras.utils.set_random_seed(0)  # the same initial weights and data order in every run
splits = data.split_pairs(subset)
source_tokenizer = text.SubwordTokenizer(text.train_sentencepiece(
    text.normalize_python([s for s, _ in splits["train"]]), VOCAB))
target_tokenizer = text.SubwordTokenizer(text.train_sentencepiece(
    text.normalize_python([t for _, t in splits["train"]]), VOCAB))
source_ids, target_ids = data.encode_pairs(splits["train"], source_tokenizer, target_tokenizer)

translator = Translator(source_tokenizer.vocab_size, target_tokenizer.vocab_size, **SIZES)
optimizer = train.make_optimizer(train.TrainConfig())
optimizer.build(translator.trainable_variables)  # its variables, before the first step
train_step = train.make_train_step(translator, optimizer)
print(f"{translator.count_params():,} parameters")

# %% [markdown]
# Twenty updates on one batch: the loss per token falls quickly, as the model learns
# these few sentences by heart.

# %%
batches = iter(data.batches(source_ids, target_ids, batch_size=64, seed=0))
_, source, target = next(batches)
print("source", source.shape, " target", target.shape)
for step in range(1, 21):
    loss_sum, count = train_step(source, target)
    if step % 5 == 0 or step == 1:
        print(f"step {step:2d}: loss {float(loss_sum) / int(count):.3f} over {int(count)} tokens")

# %% [markdown]
# ## Training a model
#
# `train.train(model_dir, corpus, sizes, TrainConfig(...))` does the rest: it splits
# the corpus, learns the vocabularies, batches by length, runs the step, measures the
# dev loss after each epoch, keeps the best weights and writes checkpoints. It returns
# the history: one record an epoch. This run is told to stop half-way through its last
# epoch (`max_steps`), as an interruption would stop it; we resume it below.

# %%
import tempfile

EPOCHS = 2 if FAST else 3
steps_per_epoch = sum(1 for _ in data.batches(source_ids, target_ids, 64, shuffle=False))
model_dir = Path(tempfile.mkdtemp(prefix="bahdanau_keras_")) / "small-en-fr"
train_config = train.TrainConfig(
    epochs=EPOCHS, batch_size=64, vocab_size=VOCAB, checkpoint_every=100, patience=0,
    seed=0, max_steps=int((EPOCHS - 0.5) * steps_per_epoch))
print(f"about {steps_per_epoch} batches an epoch; stopping at step {train_config.max_steps}")
history = train.train(str(model_dir), subset_corpus, SIZES, train_config, verbose=2)

# %% [markdown]
# ## Loss curves
#
# `bahdanau_keras.plot.plot_history` draws the history (train and dev loss an epoch);
# the training loop also writes the loss every 50 steps for TensorBoard, in
# `model_dir/logs`, which gives a finer curve.

# %%
import matplotlib.pyplot as plt
from tensorflow.core.util import event_pb2

from bahdanau_keras.plot import plot_history

plt.rcParams["figure.dpi"] = 72  # small images in the saved notebook


def logged_losses(logs):
    """(steps, losses) of the `train/loss` scalars in a TensorBoard log directory."""
    points = {}
    for path in sorted(Path(logs).glob("events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(str(path)):
            event = event_pb2.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.tag == "train/loss":
                    points[event.step] = float(tf.make_ndarray(value.tensor))
    return sorted(points), [points[s] for s in sorted(points)]


def plot_training(history):
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    plot_history(history, ax=left)
    steps, losses = logged_losses(model_dir / "logs")
    right.plot(steps, losses)
    right.set_xlabel("step")
    right.set_ylabel("train loss (one batch)")
    right.grid(alpha=0.3)
    figure.tight_layout()
    plt.show()


for record in history:
    print({k: round(v, 3) if isinstance(v, float) else v for k, v in record.items()})
plot_training(history)

# %% [markdown]
# ## Checkpoints
#
# The model directory holds the configuration, the two SentencePiece models, the
# history, the latest checkpoints (`checkpoints/`, every `checkpoint_every` steps and
# at each epoch end) and the weights with the best dev loss (`best/`):

# %%
for path in sorted(model_dir.rglob("*")):
    if path.is_file() and "logs" not in path.parts:
        print(f"{str(path.relative_to(model_dir)):52s} {path.stat().st_size:>10,} bytes")

# %% [markdown]
# A checkpoint holds more than the weights: the optimizer's moments, the step and epoch
# counters, the best dev loss so far, and the position of the `tf.data` iterator, so
# that training can resume on the very next batch.

# %%
import collections

latest = tf.train.latest_checkpoint(str(model_dir / "checkpoints"))
variables = tf.train.list_variables(latest)
groups = collections.Counter(name.split("/")[0] for name, _ in variables)
print(latest)
print(f"{len(variables)} saved tensors:", dict(groups))
print("step:", tf.train.load_variable(latest, "step/.ATTRIBUTES/VARIABLE_VALUE"))

# %% [markdown]
# ## Resuming
#
# `train.train(..., resume=True)` (the command line's `--resume`) reopens the directory,
# restores the latest checkpoint and carries on with the very next batch; only the
# run's length and limits (epochs, `max_steps`, time limit, patience) may change. Here
# it lifts the step limit and finishes the last epoch:

# %%
import dataclasses

finish = dataclasses.replace(train_config, max_steps=0)
history = train.train(str(model_dir), subset_corpus, SIZES, finish, resume=True, verbose=2)
plot_training(history)

# %% [markdown]
# The trained directory translates right away (greedy decoding, notebook 5). A few
# minutes on a CPU and a 12,000-pair subset give a model that knows some frequent
# phrases, no more; the shipped model trained on the whole corpus.

# %%
from bahdanau_keras.translate import Translation

translation = Translation.open(str(model_dir))
sentences = ["I am hungry.", "Where is my cat?", "John loves Mary."]
for sentence, result in zip(sentences, translation.translate(sentences)):
    print(f"{sentence:20s} -> {result['translation']}")

# %% [markdown]
# ## Exercises
#
# 1. For one batch, compute the mean loss over real tokens (`loss_sum / count`) and the
#    mean over every position of the padded `[batch, tgt_len]` target, padding included.
#    Which one falls when the model does nothing but predict padding, and why does
#    training use the other?
# 2. Train the same subset with `learning_rate=1e-2` and with `1e-4` (a field of
#    `train.TrainConfig`) for one epoch each and plot the three loss curves together.
#    What does too large a learning rate look like?
# 3. Train once without interruption, and once stopped with `max_steps` and resumed, with
#    the same seed. Compare the two histories' dev losses: why are they equal, and what
#    would differ if the checkpoint did not store the position of the data iterator?
