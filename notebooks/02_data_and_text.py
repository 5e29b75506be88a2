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
# # 2. Data and text
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/bahdanau-keras/bahdanau_keras/blob/main/notebooks/02_data_and_text.ipynb)
#
# The translator learns from pairs of sentences. This notebook reads the Tatoeba
# English–French corpus, normalises its text, cuts it into SentencePiece subwords and
# batches it by length with `tf.data`, using `bahdanau_keras.data` and
# `bahdanau_keras.text`.
#
# **Run time.** Half a minute (measured: 27 s on this project's 2-core CPU machine, idle
# apart from it, on 2026-12-01; in Colab the set-up cell adds the clone, the install and
# the corpus download). A GPU runtime is not needed: nothing here trains a network.

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
# ## The Tatoeba corpus
#
# manythings.org publishes sentence pairs from the Tatoeba project, one pair a line:
# `English<TAB>French<TAB>attribution` (CC-BY 2.0 FR; www.manythings.org/anki and
# tatoeba.org). The files are not part of this repository. `tutorial.load_tatoeba` reads
# `../shared/data/fra-eng.zip` (or the one in the folder `$BAHDANAU_KERAS_DATA`) when it is
# there, else downloads the corpus once into a cache (from manythings.org, else from the
# TensorFlow storage mirror) and checks it. Only if both fail does the notebook go on with the
# package's small sample corpus, and it says so in a warning box.

# %%
from bahdanau_keras import data, tutorial

FAST = tutorial.fast_mode()  # BAHDANAU_KERAS_FAST=1 (the tests): less data, fewer steps
try:
    corpus = tutorial.load_tatoeba(REPO)  # a local copy, else downloaded once into a cache
except data.CorpusError as error:  # no copy and no download: say so, then use the sample
    corpus = tutorial.use_sample_corpus(error)

# %%
print(f"skipped: {corpus.duplicates:,} repeated pairs, {corpus.blank_lines} blank lines, "
      f"{len(corpus.bad_lines)} malformed lines")
for source, target in corpus.pairs[:3] + corpus.pairs[-2:]:
    print(f"{source[:50]!r:54} -> {target[:60]!r}")

# %% [markdown]
# The file is sorted by length, from "Go." to paragraphs. Most pairs are short:

# %%
import numpy as np

words = np.array([len(source.split()) for source, _ in corpus.pairs])
print(f"English words per sentence: median {np.median(words):.0f}, "
      f"95% under {np.percentile(words, 95):.0f}, longest {words.max()}")

# %% [markdown]
# ## Normalisation
#
# The French side writes a narrow no-break space (U+202F) or a no-break space (U+00A0)
# before `? ! : ;` and often uses the typographic apostrophe (U+2019). Left alone,
# "t’aime" and "t'aime" would be different words, and the invisible spaces would end up
# inside tokens. How many French sentences contain them:

# %%
special = {"\u202f": "NARROW NO-BREAK SPACE", "\u00a0": "NO-BREAK SPACE",
           "\u2019": "RIGHT SINGLE QUOTATION MARK"}
for char, name in special.items():
    found = [t for _, t in corpus.pairs if char in t]
    example = found[0] if found else "(none)"
    print(f"U+{ord(char):04X} {name:28s} {len(found):7,} sentences, e.g. {example!r}")

# %% [markdown]
# `bahdanau_keras.text.normalize` runs inside the TensorFlow graph (so the exported
# model applies it too): invalid UTF-8 becomes U+FFFD, NFKC turns the special spaces
# into plain ones, typographic quotes become ASCII, and runs of spaces shrink to one.
# Case, accents and punctuation stay.

# %%
from bahdanau_keras import text

raw = ["Je t\u2019aime\u202f!", "Où est la gare\u00a0?", "  Trop   d'espaces  "]
for before, after in zip(raw, text.normalize_python(raw)):
    print(f"{before!r:32} -> {after!r}")

# %% [markdown]
# ## Train, dev and test splits
#
# `split_pairs` assigns each pair by a hash of its English side, so every translation
# of one sentence lands in the same split, whatever the order of the file: the test
# sentences are sentences the model has never seen.

# %%
splits = data.split_pairs(corpus.pairs)  # 1% dev, 2% test
for name, pairs in splits.items():
    print(f"{name:5s} {len(pairs):7,} pairs")
seen = {source.lower() for source, _ in splits["train"]}
print("test sources also in train:",
      sum(source.lower() in seen for source, _ in splits["test"]))

# %% [markdown]
# ## Subwords with SentencePiece
#
# A word vocabulary cannot cover every name and form; characters make sentences long.
# SentencePiece learns a vocabulary of frequent pieces from the training sentences
# (`text.train_sentencepiece`, on already normalised text) and falls back to bytes for
# characters it never saw. Ids 0 to 3 are reserved for padding, start, end and unknown.

# %%
import tensorflow as tf

train_pairs = splits["train"][: 5000 if FAST else None]
vocab_size = 1000 if FAST else 8000
sources = text.normalize_python([s for s, _ in train_pairs])
targets = text.normalize_python([t for _, t in train_pairs])
source_tokenizer = text.SubwordTokenizer(text.train_sentencepiece(sources, vocab_size))
target_tokenizer = text.SubwordTokenizer(text.train_sentencepiece(targets, vocab_size))
print(f"learned from {len(train_pairs):,} pairs: source vocabulary "
      f"{source_tokenizer.vocab_size:,}, target vocabulary {target_tokenizer.vocab_size:,}")
print("reserved:", text.PAD_ID, text.START_ID, text.END_ID, text.UNKNOWN_ID,
      "=", target_tokenizer.id_to_piece(tf.range(4)).numpy())

# %% [markdown]
# `tokenize` normalises and splits a batch of strings into a `RaggedTensor` of ids
# (`▁` marks the start of a word); `detokenize` joins them back.

# %%
examples = tf.constant(["John loves Mary.", "Je t\u2019aime\u202f!", "Il coûte 5 € 🙂"])
tokenizer = {0: source_tokenizer, 1: target_tokenizer, 2: target_tokenizer}
for k, sentence in enumerate(examples.numpy()):
    ids = tokenizer[k].tokenize(tf.constant([sentence]))  # [1, (len)]
    pieces = tokenizer[k].id_to_piece(ids).flat_values.numpy()
    back = tokenizer[k].detokenize(ids).numpy()[0].decode()
    print(f"{sentence.decode()!r}: {ids.shape} ids {ids.flat_values.numpy().tolist()}")
    print("   pieces", [p.decode() for p in pieces], "->", repr(back))

# %% [markdown]
# Without the normalisation, the same tokenizer sees the U+202F space as a character
# of its own:

# %%
raw = tf.constant(["Je t\u2019aime\u202f!"])
as_is = target_tokenizer.sentencepiece.tokenize(raw)  # the SentencePiece op alone
normalised = target_tokenizer.tokenize(raw)  # normalize, then SentencePiece
for label, ids in (("as is:     ", as_is), ("normalised:", normalised)):
    pieces = target_tokenizer.id_to_piece(ids).flat_values.numpy()
    print(label, [p.decode() for p in pieces])

# %% [markdown]
# ## Token ids
#
# `data.encode_pairs` tokenizes every pair: the source gets the end token, the target
# the start and end tokens (`START y_1 … y_n END`), as the decoder reads the target
# shifted by one. Pairs longer than `max_length` subwords are left out.

# %%
source_ids, target_ids = data.encode_pairs(
    train_pairs, source_tokenizer, target_tokenizer, max_length=64)
print("source", source_ids.shape, source_ids.dtype.name, " target", target_ids.shape)
print("first pair:", source_ids[0].numpy(), target_ids[0].numpy())
source_lengths = source_ids.row_lengths().numpy()
target_lengths = target_ids.row_lengths().numpy()
print(f"subwords per sentence (with start/end): source mean {source_lengths.mean():.1f}, "
      f"target mean {target_lengths.mean():.1f}, longest {target_lengths.max()}")

# %%
import matplotlib.pyplot as plt

plt.rcParams["figure.dpi"] = 72  # small images in the saved notebook

figure, ax = plt.subplots(figsize=(6, 3))
bins = np.arange(0, max(source_lengths.max(), target_lengths.max()) + 2)
ax.hist(source_lengths, bins=bins, alpha=0.6, label="English (source)")
ax.hist(target_lengths, bins=bins, alpha=0.6, label="French (target)")
ax.set_xlabel("subwords per sentence")
ax.set_ylabel("sentences")
ax.legend()
figure.tight_layout()
plt.show()

# %% [markdown]
# ## Batches by length
#
# A batch is a rectangle: every sentence is padded to the longest one in it. Random
# batches mix short and long sentences and waste much of the work on padding.
# `data.batches` draws a fresh shuffled order each epoch (a stateless shuffle of
# `(seed, epoch)`) and groups sentences of similar length with
# `bucket_by_sequence_length`; each batch leaves when its bucket is full.

# %%
batch_size = 64
bucketed = data.batches(source_ids, target_ids, batch_size, seed=0)
print("bucket boundaries:", data.length_buckets(int(target_lengths.max()))[:12], "...")
for epoch, source, target in bucketed.take(5):
    print(f"epoch {int(epoch)}: source {source.shape}, target {target.shape}")


# %% [markdown]
# The padding over one epoch, by length against in random order (the same sentences,
# cut into batches of 64 and padded to the longest of each):

# %%
def padding_share(batches):
    real = padded = 0
    for source, target in batches:
        real += int(tf.reduce_sum(tf.cast(source != 0, tf.int32))
                    + tf.reduce_sum(tf.cast(target != 0, tf.int32)))
        padded += int(tf.size(source) + tf.size(target))
    return 1 - real / padded


by_length = bucketed.map(lambda epoch, source, target: (source, target))
random_order = (tf.data.Dataset.from_tensor_slices((source_ids, target_ids))
                .shuffle(len(train_pairs), seed=0).batch(batch_size)
                .map(lambda s, t: (s.to_tensor(), t.to_tensor())))
print(f"padding, batches by length: {padding_share(by_length):.1%}")
print(f"padding, random batches:    {padding_share(random_order):.1%}")

# %% [markdown]
# The pipeline is deterministic given the seed, and its iterator can be saved in a
# checkpoint, so that training resumes mid-epoch on the very next batch (notebook 4).
# Next: notebook 3 builds the model that reads these batches.

# %% [markdown]
# ## Exercises
#
# 1. Learn the target vocabulary with 500 and with 4,000 pieces instead of
#    `vocab_size`, and tokenize "Il coûte 5 € 🙂" and "anticonstitutionnellement" with
#    each. How does the mean target length change, and why does that matter for a decoder
#    that runs one step per target token?
# 2. `split_pairs` assigns a pair by its English side. Count the English sentences of the
#    test split that have more than one French translation (`data.group_references`
#    groups them). What would a test set measure if the pairs were split one by one?
# 3. Measure the padding share of batches by length with `batch_size` 16 and 256. Why do
#    larger batches pad more, even when sorted by length?
