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
# forcing*) and lowers the cross-entropy of the next one. This notebook reads the
# package's training step line by line, then trains a small translator on the short
# sentences of Tatoeba with `bahdanau_keras.train.train`, one epoch at a time, and
# watches its attention appear. At the end the model translates short everyday
# sentences, scored with BLEU on sentences it never saw.
#
# **Run time.** About 8 minutes (measured: 484 s on this project's 2-core CPU machine,
# idle apart from it, on 2026-12-02; 531 s on another on 2026-12-01), 7 to 8 of them
# training (3 epochs, 5,559 steps of 64 sentences); a machine shared with other work takes
# longer (14 minutes in an earlier run at a load average of 2 to 6). A GPU runtime: not
# measured; the model is small and each decoder step waits for the one before, so expect
# less from it than usual.

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
# ## Data: the short sentences of Tatoeba
#
# Every pair whose English side has at most 8 words: most of the corpus, and the kind
# of sentence a few minutes of training on a CPU can learn to translate well. The full
# recipe (every sentence, a larger model, more epochs) is the README's `bahdanau-keras
# train` command; the shipped model was trained so.

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
if FAST:
    short = random.Random(0).sample(short, min(len(short), 1000))
short_corpus = data.Corpus(pairs=short, path=f"{corpus.path} (at most 8 English words)",
                           origin=corpus.origin)
splits = data.split_pairs(short)  # the split that train.train makes: by a hash of the source
print(f"{len(short):,} pairs:", ", ".join(f"{name} {len(pairs):,}"
                                          for name, pairs in splits.items()))
print("e.g.", random.Random(1).sample(splits["train"], 3))

# %% [markdown]
# ## The training step
#
# `train.train_step` is one update, exactly the function that `bahdanau-keras train`
# runs (printed here from the package):

# %%
import inspect

from bahdanau_keras import train

print(inspect.getsource(train.train_step))

# %% [markdown]
# Line by line:
#
# - `with tf.GradientTape() as tape:` records the computation that follows, so that
#   TensorFlow can differentiate it.
# - `translator.loss_and_count(...)` runs the encoder, then the decoder on
#   `START y_1 … y_n` (the reference, not the model's own guesses: teacher forcing),
#   and returns the summed cross-entropy $-\sum_t \log p(y_t \mid y_{<t}, x)$ of the
#   next tokens `y_1 … y_n END` over the real target tokens, and their number
#   (padding excluded, notebook 3).
# - `all_reduce("sum", count)`: the number of real tokens in the whole batch. On one
#   device it is `count` itself; when a `tf.distribute` strategy splits a batch over
#   several devices, it adds their counts, so that each divides by the same total.
# - `loss_sum / tokens`: the mean loss per real target token, the number training
#   lowers.
# - `optimizer.scale_loss(loss)`: the loss itself in float32 (as here). In float16 it
#   is multiplied by a large factor, so that small gradients do not round to zero, and
#   the optimiser divides it out again.
# - `tape.gradient(loss, variables)`: back-propagation, through the decoder's steps
#   and the encoder's two GRUs, gives $\partial \text{loss} / \partial \theta$ for every
#   weight.
# - `optimizer.apply_gradients(...)`: one Adam update (learning rate 1e-3), each
#   variable's gradient clipped to norm 1 first (`TrainConfig.clipnorm`).
# - It returns `(loss_sum, count)`, for the log.
#
# `train.make_train_step(translator, optimizer)` wraps it in a `tf.function`, so that
# TensorFlow runs it as one graph; epochs, logging and checkpoints stay in plain Python
# around it (the `Trainer` of `train.py`).
#
# A model sized down from the shipped one (which uses 256/512), and vocabularies
# learnt from 10,000 of the training sentences, enough to try the step on one batch:

# %%
import keras
import tensorflow as tf

from bahdanau_keras import Translator, text

SIZES = (dict(embedding_dim=16, encoder_units=16, decoder_units=32, attention_units=32)
         if FAST else
         dict(embedding_dim=128, encoder_units=128, decoder_units=256, attention_units=256))
VOCAB = 500 if FAST else 4000
keras.utils.set_random_seed(0)  # the same initial weights in every run
some = random.Random(0).sample(splits["train"], min(len(splits["train"]), 10000))
source_tokenizer = text.SubwordTokenizer(text.train_sentencepiece(
    text.normalize_python([s for s, _ in some]), VOCAB))
target_tokenizer = text.SubwordTokenizer(text.train_sentencepiece(
    text.normalize_python([t for _, t in some]), VOCAB))
source_ids, target_ids = data.encode_pairs(some, source_tokenizer, target_tokenizer)

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
# ## Training a translator, one epoch at a time
#
# `train.train(model_dir, corpus, sizes, TrainConfig(...))` does the rest: it splits
# the corpus, learns the two vocabularies (4,000 subwords each), batches sentences of
# similar length together, runs the step above, measures the dev loss after each epoch,
# keeps the best weights and writes checkpoints. It returns the history, one record an
# epoch.
#
# The first run is told to stop after 200 steps (`max_steps`), as an interruption would
# stop it. Each later call resumes it (`resume=True`, the command line's `--resume`):
# it reopens the directory, restores the latest checkpoint (weights, Adam's moments,
# counters and the position in the data) and goes on with the very next batch, up to
# the end of epoch `epochs`. After every run we translate one sentence with the weights
# reached so far and keep its attention, to watch alignment appear.

# %%
import dataclasses
import os
import tempfile
import time

from bahdanau_keras.translate import Translation

EPOCHS = 1 if FAST else 3
WATCHED = "I have a red car."  # French puts the colour after the noun
model_dir = Path(tempfile.mkdtemp(prefix="bahdanau_keras_")) / "small-en-fr"
train_config = train.TrainConfig(
    epochs=1, batch_size=64, vocab_size=VOCAB, checkpoint_every=500, patience=0, seed=0,
    max_steps=5 if FAST else 200)
snapshots = []  # (when, the translation of WATCHED then)


def watch(when):
    """Translate WATCHED with the model directory's best weights so far; returns the
    `Translation` of those weights."""
    translation = Translation.open(str(model_dir))
    result = translation.translate([WATCHED])[0]
    snapshots.append((when, result))
    print(f"{when}: {WATCHED} -> {result['translation']}\n")
    return translation


started = time.perf_counter()
history = train.train(str(model_dir), short_corpus, SIZES, train_config, verbose=2)
watch(f"after {train_config.max_steps} steps")
for epoch in range(1, EPOCHS + 1):
    more = dataclasses.replace(train_config, epochs=epoch, max_steps=0)
    history = train.train(str(model_dir), short_corpus, SIZES, more, resume=True, verbose=2)
    translation = watch(f"after epoch {epoch} (step {history[-1]['step']:,})")
minutes = (time.perf_counter() - started) / 60
print(f"Training, in {1 + EPOCHS} runs, took {minutes:.1f} minutes (load average "
      f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")

# %% [markdown]
# ## Attention emerging
#
# The attention weights $\alpha_{ij}$ of that sentence after each run: rows are the
# French subwords the model wrote, columns the English ones, and each row sums to 1
# (row $i$ is computed from $s_{i-1}$, just before the model writes that subword).
# After 200 steps the model writes a generic French sentence and, beyond its first
# word, looks everywhere at once. After an epoch the rows follow the English sentence
# word by word, and then the reordering appears: "voiture" looks at "car", and
# "rouge", written after it, back at "red".

# %%
import matplotlib.pyplot as plt
import numpy as np

from bahdanau_keras.plot import plot_attention

plt.rcParams["figure.dpi"] = 72  # small images in the saved notebook

figure, axes = plt.subplots(1, len(snapshots), figsize=(4.3 * len(snapshots), 4.3))
for ax, (when, result) in zip(np.atleast_1d(axes), snapshots):
    plot_attention(result["attention"], result["source_tokens"], result["target_tokens"],
                   ax=ax, title=f"{when}\n{result['translation']}")
plt.show()

# %% [markdown]
# ## Loss curves
#
# `bahdanau_keras.plot.plot_history` draws the history (train and dev loss an epoch);
# the training loop also writes the loss every 50 steps for TensorBoard, in
# `model_dir/logs`, which gives a finer curve.

# %%
from tensorflow.core.util import event_pb2

from bahdanau_keras.plot import plot_history


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


for record in history:
    print({k: round(v, 3) if isinstance(v, float) else v for k, v in record.items()})
figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
plot_history(history, ax=left)
steps, losses = logged_losses(model_dir / "logs")
right.plot(steps, losses)
right.set_xlabel("step")
right.set_ylabel("train loss (one batch)")
right.grid(alpha=0.3)
figure.tight_layout()
plt.show()

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
# counters, the best dev loss so far, and the position of the `tf.data` iterator. That
# is what each `resume=True` above restored, so that the resumed runs went on with the
# very next batch.

# %%
import collections

latest = tf.train.latest_checkpoint(str(model_dir / "checkpoints"))
variables = tf.train.list_variables(latest)
groups = collections.Counter(name.split("/")[0] for name, _ in variables)
print(latest)
print(f"{len(variables)} saved tensors:", dict(groups))
print("step:", tf.train.load_variable(latest, "step/.ATTRIBUTES/VARIABLE_VALUE"))

# %% [markdown]
# ## How well does it translate?
#
# The test split holds sentences whose English side was never trained on (nor used for
# the dev loss). `evaluate.evaluate` translates them greedily and with beam search
# (notebook 5) and scores the translations with sacreBLEU against all their references
# (Tatoeba often has several translations of one sentence): BLEU counts matching word
# n-grams, chrF matching character n-grams.

# %%
from bahdanau_keras import evaluate

# `translation`, from the last `watch`, holds the best weights (the lowest dev loss so far).
test_sources, test_references = data.group_references(splits["test"])
report = evaluate.evaluate(translation, test_sources, test_references, beam_widths=(1, 4),
                           alpha=0.6, verbose=False)
print(f"{report['sentences']:,} held-out sentences, {report['references']:,} references")
for name in ("greedy", "beam4"):
    print(f"{name:7s} BLEU {report[name]['bleu']:5.2f}  chrF {report[name]['chrf']:5.2f}")
print(report["greedy"]["bleu_signature"])

# %% [markdown]
# Ten of those held-out sentences, drawn at random, with the model's translation (beam
# search) and the corpus' references. At this BLEU a few come out right or nearly,
# and the others go astray, often at a less common word ("included", "nonsense",
# "event"):

# %%
chosen = sorted(random.Random(2).sample(range(len(test_sources)), min(10, len(test_sources))))
results = translation.translate([test_sources[i] for i in chosen], beam_width=4, alpha=0.6)
for i, result in zip(chosen, results):
    print(f"{test_sources[i]}\n  model:     {result['translation']}\n"
          f"  reference: {' | '.join(test_references[i])}")

# %% [markdown]
# And everyday sentences of our own; the ones marked `(trained on)` are in the training
# split, the others the model has never seen:

# %%
trained_on = {" ".join(s.lower().split()) for s, _ in splits["train"]}
everyday = ["I am hungry.", "Where is the station?", "It is raining today.",
            "Can you help me?", "I don't understand.", "We are going to the beach tomorrow.",
            "My brother lives in Paris.", "John loves Mary.", "I have a red car.",
            "Look at that red building."]
for sentence, result in zip(everyday, translation.translate(everyday, beam_width=4)):
    seen = " (trained on)" if " ".join(sentence.lower().split()) in trained_on else ""
    print(f"{sentence:38s} -> {result['translation']}{seen}")

# %% [markdown]
# ## Where the trained model looks
#
# "John loves Mary." keeps its word order in French, whether or not so small a model finds
# the verb ("aime"); "I have a red car." and the held-out "Look at that red building." put
# the adjective after the noun ("une voiture rouge", "l'immeuble rouge"): the bright cells
# leave the diagonal there, as the noun looks at "car" or "building" and "rouge" back at
# "red". The alignments of so small a model are rough (a word often looks partly at its
# neighbour too); those of the shipped model, trained longer on every sentence, are
# sharper (notebook 5).

# %%
shown = ["John loves Mary.", "I have a red car.", "Look at that red building."]
figure, axes = plt.subplots(1, 3, figsize=(14, 4.3))
for ax, result in zip(axes, translation.translate(shown, beam_width=4)):
    plot_attention(result["attention"], result["source_tokens"], result["target_tokens"],
                   ax=ax, title=result["translation"])
plt.show()

# %% [markdown]
# ## Translate your own sentence
#
# Write a sentence in `sentence` and run the cell (in Colab, the field on the right).
# The model knows only short everyday sentences of up to 8 words, like Tatoeba's.

# %%
sentence = "The children are playing in the garden."  # @param {type:"string"}
result = translation.translate([sentence], beam_width=4)[0]
print(f"{sentence}\n-> {result['translation']}")
plot_attention(result["attention"], result["source_tokens"], result["target_tokens"],
               title=result["translation"])
plt.show()

# %% [markdown]
# ## Exercises
#
# 1. For one batch, compute the mean loss over real tokens (`loss_sum / count`) and the
#    mean over every position of the padded `[batch, tgt_len]` target, padding included.
#    Which one falls when the model does nothing but predict padding, and why does
#    training use the other?
# 2. Train on the same data with `learning_rate=1e-2` and with `1e-4` (a field of
#    `train.TrainConfig`) for one epoch each and plot the three loss curves together.
#    What does too large a learning rate look like?
# 3. Train once without interruption for one epoch, and once stopped with `max_steps`
#    and resumed, with the same seed. Compare the two histories' dev losses: why are they
#    equal, and what would differ if the checkpoint did not store the position of the
#    data iterator?
# 4. Watch a longer sentence of your own as `WATCHED` (say 12 words). Does its
#    attention sharpen as quickly as that of the short one, and does the model
#    translate it?
