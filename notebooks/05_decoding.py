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
# # 5. Decoding
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/bahdanau-keras/bahdanau_keras/blob/main/notebooks/05_decoding.ipynb)
#
# A trained model gives the probability of the next word; decoding turns that into a
# sentence. This notebook compares greedy decoding with beam search, shows the length
# penalty at work, draws the attention of real translations and scores the model with
# BLEU and chrF. It uses the shipped English→French model, `saved_models/en-fr`.

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
from bahdanau_keras import data, tutorial

FAST = tutorial.fast_mode()  # BAHDANAU_KERAS_FAST=1 (the tests): fewer sentences
MODEL = tutorial.shipped_model(REPO)  # the SavedModel that comes with the repository

# %% [markdown]
# `Translation.open` opens either a model directory from training or an exported
# SavedModel; both translate batches of raw strings inside the graph. The export
# carries its training configuration and history in `assets/`.

# %%
import json

from bahdanau_keras.translate import Translation

translation = Translation.open(str(MODEL))
config = json.loads((MODEL / "assets" / "config.json").read_text())
print("model:", config["model"])
print(f"trained on {config['data']['train_pairs']:,} pairs of {config['data']['path']}")
history = json.loads((MODEL / "assets" / "history.json").read_text())
print(f"after {history[-1]['epoch']} epochs ({history[-1]['step']:,} steps): "
      f"dev loss {history[-1]['dev_loss']:.3f}")

# %% [markdown]
# ## Greedy decoding
#
# Greedy decoding picks the most likely subword at every step and feeds it back, until
# the end token. The score is the sum of the chosen tokens' log-probabilities,
# $\log P(Y \mid X)$.

# %%
sentences = ["John loves Mary.", "Where is the station?", "I think it will rain tomorrow.",
             "She has been reading this book for two hours."]
greedy = translation.translate(sentences)
for sentence, result in zip(sentences, greedy):
    print(f"{sentence:48s} -> {result['translation']}  (log P = {result['score']:.2f})")

# %% [markdown]
# ## Beam search
#
# A locally best word can lead to a poor sentence. Beam search keeps the `beam_width`
# best partial translations at each step and extends each of them; it returns the
# n-best list. All sentences of the batch are searched together in one
# `tf.while_loop`.

# %%
beam = translation.translate(sentences, beam_width=4, alpha=0.6)
for sentence, result in zip(sentences, beam):
    print(f"{sentence:48s} -> {result['translation']}")
print("\nn-best list of", repr(sentences[-1]))
for hypothesis, score in beam[-1]["nbest"]:
    print(f"  {score:7.3f}  {hypothesis}")

# %% [markdown]
# ## The length penalty
#
# Every word multiplies in a probability below 1, so a plain sum of log-probabilities
# prefers short translations. Beam search ranks hypotheses by
# $\log P(Y \mid X) \,/\, lp(Y)$ with the GNMT length penalty (Wu et al. 2016)
# $lp(Y) = \left(\frac{5 + |Y|}{6}\right)^\alpha$: $\alpha = 0$ is no penalty,
# larger $\alpha$ favours longer output.

# %%
import tensorflow as tf

from bahdanau_keras.decode import length_penalty

lengths = tf.constant([3, 6, 11, 20])
print("|Y|       ", lengths.numpy())
for alpha in (0.0, 0.6, 1.0, 2.0):
    penalty = length_penalty(lengths, alpha)  # ((5 + |Y|) / 6)^α
    print(f"α = {alpha:3.1f}   ", penalty.numpy().round(2))

# %% [markdown]
# Its effect, measured on sentences of the Tatoeba test split: the mean length of the
# translations against the references', and BLEU. `split_pairs` assigns each English
# sentence by a hash of its text (notebook 2), with the fractions the model was trained
# with, so these sentences were held out of its training, whichever release of the corpus
# this is.

# %%
from bahdanau_keras import evaluate

try:
    corpus = tutorial.load_tatoeba(REPO)  # a local copy, else downloaded once into a cache
except data.CorpusError as error:  # no copy and no download: say so, then use the sample
    corpus = tutorial.use_sample_corpus(error)
splits = data.split_pairs(corpus.pairs, config["train"]["dev_fraction"],
                          config["train"]["test_fraction"])
sources, references = data.group_references(splits["test"])
print(f"test split: {len(sources):,} source sentences, {sum(map(len, references)):,} references")

# %%
import numpy as np

few = min(len(sources), 30 if FAST else 300)
reference_words = np.mean([len(r[0].split()) for r in references[:few]])
print(f"{few} sentences; references: {reference_words:.2f} words on average")
for alpha in (0.0, 0.6, 1.2, 2.0):
    results = translation.translate(sources[:few], beam_width=4, alpha=alpha)
    hypotheses = [r["translation"] for r in results]
    words = np.mean([len(h.split()) for h in hypotheses])
    bleu = evaluate.corpus_scores(hypotheses, references[:few])["bleu"]
    print(f"α = {alpha:3.1f}: {words:.2f} words on average, BLEU {bleu:5.2f}")

# %% [markdown]
# ## Attention of real translations
#
# The decoder's attention weights $\alpha_{ij}$ for each chosen subword (rows) over the
# source subwords (columns), drawn with `bahdanau_keras.plot.plot_attention`. A good
# model aligns "Jean" with "John" and "Marie" with "Mary", and reorders where the
# languages do.

# %%
import matplotlib.pyplot as plt

from bahdanau_keras.plot import plot_attention

plt.rcParams["figure.dpi"] = 72  # small images in the saved notebook

shown = ["John loves Mary.", "I think it will rain tomorrow."]
figure, axes = plt.subplots(1, 2, figsize=(11, 4.5))
for ax, result in zip(axes, translation.translate(shown, beam_width=4)):
    plot_attention(result["attention"], result["source_tokens"], result["target_tokens"],
                   ax=ax, title=result["translation"])
plt.show()

# %%
result = translation.translate(["She has been reading this book for two hours."])[0]
plot_attention(result["attention"], result["source_tokens"], result["target_tokens"],
               title=result["translation"])
plt.show()

# %% [markdown]
# ## Translate your own sentence
#
# Write a sentence in `sentence` and run the cell (in Colab, the field on the right): the
# shipped model translates it with beam search and draws where each French subword looked.
# Short everyday sentences work best, as in Tatoeba. This one puts the adjective after its
# noun in French ("chaise rouge"): look for the crossing in the heatmap.

# %%
sentence = "The little cat is sleeping on the red chair."  # @param {type:"string"}
result = translation.translate([sentence], beam_width=4, alpha=0.6)[0]
print(f"{sentence}\n-> {result['translation']}")
plot_attention(result["attention"], result["source_tokens"], result["target_tokens"],
               title=result["translation"])
plt.show()

# %% [markdown]
# ## BLEU and chrF
#
# `bahdanau_keras.evaluate.evaluate` translates the test sentences greedily and with
# beam search and scores them with sacreBLEU: BLEU (matching word n-grams) and chrF
# (matching character n-grams, kinder to French morphology). Tatoeba often has several
# translations of one sentence; all of them are references.

# %%
count = min(len(sources), 100 if FAST else 1000)
report = evaluate.evaluate(translation, sources[:count], references[:count],
                           beam_widths=(1, 4), alpha=0.6, verbose=False)
print(f"{report['sentences']} sentences, {report['references']} references")
for name in ("greedy", "beam4"):
    r = report[name]
    print(f"{name:7s} BLEU {r['bleu']:5.2f}  chrF {r['chrf']:5.2f}  "
          f"{r['sentences_per_s']:6.1f} sentences/s")
print(report["greedy"]["bleu_signature"])

# %%
for example in report["beam4"]["examples"][:3]:
    print(f"{example['source']}\n  model:      {example['translation']}\n"
          f"  references: {example['references']}")

# %% [markdown]
# Next: notebook 6 looks inside the exported SavedModel and serves it.

# %% [markdown]
# ## Exercises
#
# 1. Translate one sentence with `beam_width` 1, 2, 4 and 8 and print the n-best lists.
#    When does a wider beam change the best translation, and when does it only add
#    near-copies of it?
# 2. The length penalty study above uses 4 beams. Repeat it with greedy decoding
#    (`beam_width=1`): does `alpha` change anything there, and why?
# 3. Find a sentence that the model gets wrong (a rare word, a long sentence, a name)
#    and look at its heatmap. Does the attention show where the translation went astray?
