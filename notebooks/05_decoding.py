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
# sentence. This notebook compares greedy decoding with beam search, explains the
# scores beam search ranks by (the length and coverage penalties) and measures them on
# test sentences of every length, draws the attention of real translations and scores
# the model with BLEU and chrF. It uses the shipped English→French model,
# `saved_models/en-fr`.
#
# **Run time.** Under a minute (measured: 26 s on this project's 2-core CPU machine, idle
# apart from it, on 2026-12-02; 95 s in an earlier run at a load average of about 2.5). A
# GPU runtime: not measured; nothing here trains, and the searches run one decoder step
# after another on a small model.

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
# ### Why "John aime Marie" and not "Jean aime Marie"?
#
# The toy example of notebooks 1 and 3 translates "John loves Mary" as "Jean aime
# Marie", as a French schoolbook would. The model writes what its corpus does: Tatoeba's
# translators mostly keep English first names as they are (its "Tom" is "Tom" in
# French), and translate some of them. Counting the corpus:

# %%
import re

try:
    corpus = tutorial.load_tatoeba(REPO)  # a local copy, else downloaded once into a cache
except data.CorpusError as error:  # no copy and no download: say so, then use the sample
    corpus = tutorial.use_sample_corpus(error)
for english, french in (("John", "Jean"), ("Mary", "Marie"), ("Tom", None)):
    pairs = [t for s, t in corpus.pairs if re.search(rf"\b{english}\b", s)]
    kept = sum(bool(re.search(rf"\b{english}\b", t)) for t in pairs)
    line = f"{english:5s} in {len(pairs):5,} English sentences: kept as {english!r} in {kept:5,}"
    if french:
        translated = sum(bool(re.search(rf"\b{french}\b", t)) for t in pairs)
        line += f", written {french!r} in {translated:4,}"
    print(line)

# %% [markdown]
# "John" stays "John" in nearly every pair that has it, while "Mary" becomes "Marie" in
# about a third of hers: the model learnt both habits.
#
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
# ## Normalised scores: the length penalty
#
# Every word multiplies in a probability below 1, so a plain sum of log-probabilities
# prefers short translations: a hypothesis that stops early has fewer negative terms.
# Beam search therefore ranks hypotheses by a *normalised* score,
# $\log P(Y \mid X) \,/\, lp(Y)$, with the GNMT length penalty (Wu et al. 2016)
# $lp(Y) = \left(\frac{5 + |Y|}{6}\right)^\alpha$, where $|Y|$ counts the subwords and
# the end token. $\alpha = 0$ is no normalisation ($lp = 1$), $\alpha = 1$ divides by
# roughly the length (the mean log-probability per subword), and larger $\alpha$
# favours longer output still. It is `decode.length_penalty`:

# %%
import tensorflow as tf

from bahdanau_keras.decode import length_penalty

lengths = tf.constant([3, 6, 11, 20])
print("|Y|       ", lengths.numpy())
for alpha in (0.0, 0.6, 1.0, 2.0):
    penalty = length_penalty(lengths, alpha)  # ((5 + |Y|) / 6)^α
    print(f"α = {alpha:3.1f}   ", penalty.numpy().round(2))

# %% [markdown]
# The scores of the n-best list above are such normalised scores (α = 0.6), not
# log-probabilities. Multiplying the best one back by its $lp(Y)$ gives its
# $\log P(Y \mid X)$, the number greedy decoding printed for the same translation:

# %%
best, first = beam[-1], greedy[-1]
subwords = len(best["target_tokens"])  # |Y|: the subwords and the end token
log_p = best["score"] * float(length_penalty(subwords, 0.6))
print(f"{best['translation']!r}: {subwords} subwords, normalised score "
      f"{best['score']:.3f} × lp {float(length_penalty(subwords, 0.6)):.3f} = log P {log_p:.3f}")
print(f"greedy: {first['translation']!r}, log P {first['score']:.3f}")

# %% [markdown]
# ### The length penalty on test sentences of every length
#
# Its effect, measured on sentences of the Tatoeba test split: `split_pairs` assigns
# each English sentence by a hash of its text (notebook 2), with the fractions the
# model was trained with, so these sentences were held out of its training, whichever
# release of the corpus this is. The corpus is sorted by length, so its first test
# sentences are its shortest; we draw the same number at random from each length
# group instead (all of a group that has fewer).

# %%
import random

from bahdanau_keras import evaluate

splits = data.split_pairs(corpus.pairs, config["train"]["dev_fraction"],
                          config["train"]["test_fraction"])
sources, references = data.group_references(splits["test"])
print(f"test split: {len(sources):,} source sentences, {sum(map(len, references)):,} references")

GROUPS = ((1, 4), (5, 8), (9, 12), (13, 99))  # English words
PER_GROUP = 5 if FAST else 60
study = {}  # (low, high) -> indices into the test split
for low, high in GROUPS:
    members = [i for i, s in enumerate(sources) if low <= len(s.split()) <= high]
    study[low, high] = sorted(random.Random(0).sample(members, min(PER_GROUP, len(members))))
    group = f"{low}-{high}" if high < 99 else f"{low}+"
    print(f"{group:>5s} words: {len(members):5,} test sentences, {len(study[low, high])} drawn")

# %%
import numpy as np


def length_study(**options):
    """Beam search with `options` on the drawn sentences: BLEU and the length ratio
    (translation words / reference words) per length group and over all of them, and the
    translations."""
    results = translation.translate([sources[i] for i in drawn], beam_width=4, **options)
    by_index = {i: r["translation"] for i, r in zip(drawn, results)}
    row = {}
    for group, indices in [*study.items(), ("all", drawn)]:
        hypotheses = [by_index[i] for i in indices]
        refs = [references[i] for i in indices]
        words = sum(len(h.split()) for h in hypotheses)
        reference_words = sum(np.mean([len(r.split()) for r in rs]) for rs in refs)
        row[group] = (evaluate.corpus_scores(hypotheses, refs)["bleu"], words / reference_words)
    return row, [by_index[i] for i in drawn]


def print_study(rows):
    groups = [f"{low}-{high}" if high < 99 else f"{low}+" for low, high in GROUPS]
    print(f"{'':8s}" + "".join(f"{g + ' words':>19s}" for g in groups) + f"{'all':>19s}")
    for label, (row, _) in rows.items():
        print(f"{label:8s}" + "".join(f"   BLEU {b:5.1f} ×{r:4.2f}" for b, r in row.values()))


def compare(rows, baseline):
    """The paired bootstrap test (notebook 7) of each row's BLEU against `baseline`'s."""
    for label, (_, hypotheses) in rows.items():
        if label != baseline:
            test = evaluate.paired_bootstrap(rows[baseline][1], hypotheses, drawn_references)
            low, high = test["interval"]
            print(f"{label} against {baseline}: {test['difference']:+5.2f} BLEU, 95% interval "
                  f"[{low:+.2f}, {high:+.2f}]: "
                  + ("a difference" if test["significant"] else "no difference"))


drawn = [i for indices in study.values() for i in indices]
drawn_references = [references[i] for i in drawn]
alphas = {f"α = {alpha}": length_study(alpha=alpha) for alpha in (0.0, 0.6, 1.2, 2.0)}
print_study(alphas)
print()
compare(alphas, "α = 0.0")

# %% [markdown]
# Each cell gives the group's BLEU and its length ratio (×1.00: as many words as the
# references). With 4 beams the shipped model hardly needs the length penalty. Without it
# (α = 0) its translations are already about as long as the references (×0.94–1.00 by
# group): a well-trained model gives the end token a low probability until the sentence
# is complete, so a cut-short hypothesis seldom wins. Each step up in α lengthens them a
# little, most on the longer sentences (9–12 words: ×0.98 at α = 0, ×1.05 at α = 2), and
# over all the drawn sentences BLEU moves by less than a point: the paired bootstrap
# test (explained in notebook 7) calls none of these differences a difference. The
# penalty matters more with wider beams, which find more short hypotheses, and with
# weaker models; α = 0.6, the package's default, is a safe middle.
#
# ## The coverage penalty, `beta`
#
# The length penalty cannot tell *which* source words a translation has covered. The
# GNMT coverage penalty adds, to each hypothesis' score,
# $cp(X; Y) = \beta \sum_j \log \min\left(\sum_i \alpha_{ij}, 1\right)$: for each source
# subword $j$, the attention it received over all the output steps $i$ so far, capped
# at 1. A source word that the hypothesis has not looked at yet ($\sum_i \alpha_{ij}$
# near 0) costs a large negative log, so with $\beta > 0$ beam search prefers
# hypotheses that have attended to every source word: it discourages dropped words
# (and, less directly, repeated ones, which spend attention on words already covered).
# `beta = 0` (the default) turns it off; it is `decode.coverage_penalty`. The attention
# each source subword received in one translation:

# %%
result = translation.translate([sentences[-1]], beam_width=4, alpha=0.6)[0]
coverage = np.asarray(result["attention"]).sum(axis=0)  # Σ_i α_ij, one per source subword
terms = np.log(np.minimum(coverage, 1.0)).round(2) + 0.0  # log min(Σ_i α_ij, 1); + 0.0: no -0
for token, total, term in zip(result["source_tokens"], coverage, terms):
    print(f"{token:>10s}  Σ_i α_ij = {total:4.2f}  log min(·, 1) = {term:5.2f}")
print(f"cp = β × {terms.sum():.2f}")

# %% [markdown]
# On the same drawn test sentences, with α = 0.6:

# %%
betas = {f"β = {beta}": length_study(alpha=0.6, beta=beta) for beta in (0.0, 0.2, 0.5, 1.0)}
print_study(betas)
print()
compare(betas, "β = 0.0")

# %% [markdown]
# A small β (0.2) changes almost nothing; larger ones cost BLEU, mostly on the longer
# sentences, and at β = 1 the loss is a real one (its interval excludes 0). This model's
# attention already covers the source: in the example above the content words each
# received about 1, and the subwords with little attention ("has", "been", absorbed by
# the French tense) need no word of their own, yet a strong penalty pushes the search
# towards translations that look at them anyway. The coverage penalty was made for
# models that drop or repeat parts of long sentences; for this one `beta = 0` is right.
#
# ## Attention of real translations
#
# The decoder's attention weights $\alpha_{ij}$ for each chosen subword (rows) over the
# source subwords (columns), drawn with `bahdanau_keras.plot.plot_attention`. The model
# aligns "John" with "John" and "Marie" with "Mary", and reorders where the languages
# do.

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
# translations of one sentence; all of them are references. Here, every sentence of the
# test split (a random 100 in fast mode).

# %%
chosen = (sorted(random.Random(1).sample(range(len(sources)), min(100, len(sources))))
          if FAST else list(range(len(sources))))
report = evaluate.evaluate(translation, [sources[i] for i in chosen],
                           [references[i] for i in chosen], beam_widths=(1, 4), alpha=0.6,
                           verbose=False)
print(f"{report['sentences']:,} sentences, {report['references']:,} references")
for name in ("greedy", "beam4"):
    r = report[name]
    print(f"{name:7s} BLEU {r['bleu']:5.2f}  chrF {r['chrf']:5.2f}  "
          f"{r['sentences_per_s']:6.1f} sentences/s")
print(report["greedy"]["bleu_signature"])

# %%
examples = sorted(random.Random(2).sample(range(len(chosen)), min(5, len(chosen))))
results = translation.translate([sources[chosen[k]] for k in examples], beam_width=4)
for k, result in zip(examples, results):
    print(f"{sources[chosen[k]]}\n  model:      {result['translation']}\n"
          f"  references: {references[chosen[k]]}")

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
# 4. Find a sentence where β = 1 changes the translation, and compare the coverage
#    $\sum_i \alpha_{ij}$ of its source words in the two translations.
