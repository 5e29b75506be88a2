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
# # 7. Bahdanau against Luong attention
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/bahdanau-keras/bahdanau_keras/blob/main/notebooks/07_bahdanau_vs_luong.ipynb)
#
# Introductions to attention usually set Bahdanau's *additive* score beside Luong's
# *multiplicative* one and say that the second is cheaper and about as good. This
# notebook measures it: the same translator, data and number of steps, with only the
# score function changed, each trained long enough to translate, and the two BLEU
# scores compared with a paired bootstrap test, which says whether their difference is
# larger than the choice of test sentences explains.
#
# **Run time.** About 15 minutes (measured: 899 s on this project's 2-core CPU machine,
# idle apart from it, on 2026-12-02; 1,120 s on another on 2026-12-01), 15 to 18 of them
# training the two models (3 epochs, 5,559 steps each); a machine shared with other work
# takes longer (33 minutes in an earlier run at a load average of 3 to 8). A GPU runtime:
# not measured; the models are small and each decoder step waits for the one before, so
# expect less from it than usual.

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
# ## Two scores
#
# | | score $e_{ij}$ | parameters |
# | --- | --- | --- |
# | Bahdanau et al. (2014), additive | $v_a^\top \tanh(W_a s_{i-1} + U_a h_j)$ | $n(q + v + 1)$ |
# | Luong et al. (2015), "general" | $s_{i-1}^\top W_a h_j$ | $q v$ |
#
# with $q$ = `query_dim` (the size of $s$), $v$ = `value_dim` (the size of $h$) and $n$ =
# `units`, the size of the additive score's hidden layer.
#
# Luong, Pham and Manning, *Effective Approaches to Attention-based Neural Machine
# Translation* ([arXiv:1508.04025](https://arxiv.org/abs/1508.04025), Section 3.1)
# propose the "general" score (and "dot", $s^\top h$, when sizes agree). Both are
# followed by the same softmax and weighted sum. Luong et al. also moved attention
# after the recurrent step and fed its output back in; here only the score changes, so
# that the measurement is about the score alone.
#
# The package has no Luong layer, so we write one, with the interface of
# `BahdanauAttention` (`project_keys`, then `call(query, values, mask, keys)`) and the
# package's masked softmax. As before, $W_a h_j$ does not depend on the decoder step
# and is computed once per sentence.

# %%
import keras
import tensorflow as tf

from bahdanau_keras import BahdanauAttention, Translator, tutorial

FAST = tutorial.fast_mode()  # BAHDANAU_KERAS_FAST=1 (the tests): less data, fewer steps


class LuongAttention(keras.layers.Layer):
    """Luong's "general" score, `e_ij = s_{i-1}^T W_a h_j`, as a drop-in for
    `BahdanauAttention`: same call arguments, same outputs, no `units`."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True  # the mask is an argument; outputs carry none

    def build(self, query_shape, values_shape, mask_shape=None, keys_shape=None):
        # W_a maps annotations into the query's space: [value_dim, query_dim]
        self.key_kernel = self.add_weight(
            name="key_kernel", shape=(values_shape[-1], query_shape[-1]),
            initializer="glorot_uniform")

    def project_keys(self, values):
        """`W_a h_j` for every source position: `[batch, src_len, query_dim]`."""
        return tf.matmul(values, tf.cast(self.key_kernel, values.dtype))

    def call(self, query, values, mask=None, keys=None):
        if keys is None:
            keys = self.project_keys(values)
        if len(query.shape) == 3:  # every step: [batch, tgt_len, src_len]
            scores = tf.matmul(query, keys, transpose_b=True)  # e_ij = s_{i-1}^T W_a h_j
        else:  # one step: [batch, src_len]
            scores = tf.einsum("bq,bsq->bs", query, keys)  # e_ij = s_{i-1}^T W_a h_j
        weights = BahdanauAttention.masked_softmax(scores, mask)  # α_ij
        values = tf.cast(values, weights.dtype)
        if len(weights.shape) == 3:
            return tf.matmul(weights, values), weights  # c_i = Σ_j α_ij h_j
        return tf.einsum("bs,bsd->bd", weights, values), weights  # c_i = Σ_j α_ij h_j


# %% [markdown]
# The translator builds its decoder's attention when it is created. A subclass of the
# package's `Translator` puts the Luong layer in its place just before the weights are
# made; the encoder, the GRU, the deep output, the loss and the searches are the
# package's, unchanged.

# %%
class LuongTranslator(Translator):
    """`bahdanau_keras.Translator` whose decoder scores with `LuongAttention`."""

    def build(self, inputs_shape=None):
        self.decoder.attention = LuongAttention(name="attention")
        super().build(inputs_shape)


sizes = dict(embedding_dim=32, encoder_units=48, decoder_units=64, attention_units=64)
for model_class in (Translator, LuongTranslator):
    model = model_class(1000, 1000, **sizes)
    attention = model.decoder.attention
    print(f"{model_class.__name__:16s} {type(attention).__name__:18s} "
          f"attention {attention.count_params():>6,}  total {model.count_params():>8,} parameters")

# %% [markdown]
# ## Speed of the score alone
#
# At the shipped model's sizes (batch 64, 20 source subwords, 512 units everywhere),
# one decoder step of attention, with the keys precomputed:

# %%
import time

import numpy as np


def time_attention(layer, batch=64, src_len=20, dim=512, calls=20 if FAST else 200):
    values = tf.random.normal([batch, src_len, dim])  # h: [batch, src_len, value_dim]
    query = tf.random.normal([batch, dim])  # s_{i-1}: [batch, query_dim]
    mask = tf.ones([batch, src_len], tf.bool)
    layer(query, values, mask=mask)  # creates the weights
    keys = layer.project_keys(values)  # computed once per sentence
    step = tf.function(lambda q: layer(q, values, mask=mask, keys=keys))
    step(query)  # the first call compiles the step: not timed
    started = time.perf_counter()
    for _ in range(calls):
        step(query)
    return (time.perf_counter() - started) / calls * 1e6


layers = {"Bahdanau": BahdanauAttention(512), "Luong": LuongAttention()}
timing = {name: min(time_attention(layer) for _ in range(3)) for name, layer in layers.items()}
for name, microseconds in timing.items():
    print(f"{name:9s} {microseconds:6.0f} µs a step (best of 3)")

# %% [markdown]
# ## The same data
#
# The pairs of Tatoeba whose English side has at most 8 words (as in notebook 4), one
# pair of vocabularies, and the same batches in the same order for both models.

# %%
from bahdanau_keras import data

try:
    corpus = tutorial.load_tatoeba(REPO)  # a local copy, else downloaded once into a cache
except data.CorpusError as error:  # no copy and no download: say so, then use the sample
    corpus = tutorial.use_sample_corpus(error)

# %%
import random

from bahdanau_keras import text, train

keras.utils.set_random_seed(0)  # one seed for the whole comparison
short = [(s, t) for s, t in corpus.pairs if len(s.split()) <= 8]
if FAST:
    short = random.Random(0).sample(short, min(len(short), 1000))
splits = data.split_pairs(short)
VOCAB = 500 if FAST else 4000
source_tokenizer = text.SubwordTokenizer(text.train_sentencepiece(
    text.normalize_python([s for s, _ in splits["train"]]), VOCAB))
target_tokenizer = text.SubwordTokenizer(text.train_sentencepiece(
    text.normalize_python([t for _, t in splits["train"]]), VOCAB))
train_ids = data.encode_pairs(splits["train"], source_tokenizer, target_tokenizer)
dev_ids = data.encode_pairs(splits["dev"] or splits["train"][:50], source_tokenizer,
                            target_tokenizer)
test_sources, test_references = data.group_references(splits["test"])
print({name: len(pairs) for name, pairs in splits.items()}, "pairs;",
      f"vocabularies {source_tokenizer.vocab_size} and {target_tokenizer.vocab_size}")

# %% [markdown]
# ## Training both
#
# The package's training step and optimiser (`train.make_train_step`, Adam 1e-3,
# clipnorm 1), the sizes of notebook 4 and the same batches; both models take their
# initial weights from the seed set above. The models take turns on each batch, so
# that both see the same load on the machine, and the dev loss of each is measured
# after every epoch.

# %%
import os

SIZES = (dict(embedding_dim=16, encoder_units=16, decoder_units=32, attention_units=32)
         if FAST else
         dict(embedding_dim=128, encoder_units=128, decoder_units=256, attention_units=256))
EPOCHS = 1 if FAST else 3
models, steps, results = {}, {}, {}
for name, model_class in (("Bahdanau", Translator), ("Luong", LuongTranslator)):
    models[name] = model_class(source_tokenizer.vocab_size, target_tokenizer.vocab_size, **SIZES)
    optimizer = train.make_optimizer(train.TrainConfig())
    optimizer.build(models[name].trainable_variables)
    steps[name] = train.make_train_step(models[name], optimizer)
    results[name] = {"losses": [], "dev_losses": [], "seconds": 0.0, "tokens": 0}
eval_steps = {name: train.make_eval_step(model) for name, model in models.items()}
dev_batches = data.batches(*dev_ids, batch_size=64, shuffle=False)

started = time.perf_counter()
for epoch in range(EPOCHS):
    batches = data.batches(*train_ids, batch_size=64, seed=0, first_epoch=epoch,
                           epochs=epoch + 1)
    for number, (_, source, target) in enumerate(batches):
        for name, step in steps.items():
            begin = time.perf_counter()
            loss_sum, count = step(source, target)
            loss_sum, count = float(loss_sum), int(count)
            if epoch or number >= 3:  # the first steps include one-off start-up work
                results[name]["seconds"] += time.perf_counter() - begin
                results[name]["tokens"] += count
            results[name]["losses"].append(loss_sum / count)
    for name, result in results.items():
        result["dev_losses"].append(train.dev_loss(eval_steps[name], dev_batches))
    print(f"epoch {epoch + 1}: {number + 1} steps each; dev loss " + ", ".join(
        f"{name} {result['dev_losses'][-1]:.3f}" for name, result in results.items()))
minutes = (time.perf_counter() - started) / 60
print(f"Training both took {minutes:.1f} minutes (load average {os.getloadavg()[0]:.1f} on "
      f"{os.cpu_count()} cores).")
for name, result in results.items():
    result["tokens_per_s"] = result["tokens"] / result["seconds"]
    print(f"{name:9s} {len(result['losses'])} steps, {result['tokens_per_s']:8,.0f} target "
          f"tokens/s")

# %% [markdown]
# The whole training steps do not compare the two scores alone: the decoder loop of the
# Bahdanau model runs the package's fused kernel (`kernels.decoder_loop`, which writes
# out `BahdanauAttention`'s equations and their gradients), while the Luong model runs
# the readable loop of `Decoder.time_loop`, which TensorFlow differentiates. The time
# per attention step measured above is the comparison of the scores.

# %%
import matplotlib.pyplot as plt

plt.rcParams["figure.dpi"] = 72  # small images in the saved notebook

figure, (left, right) = plt.subplots(1, 2, figsize=(11, 3.5))
window = 5 if FAST else 50
for name, result in results.items():
    smooth = np.convolve(result["losses"], np.ones(window) / window, mode="valid")
    left.plot(np.arange(len(smooth)) + window, smooth, label=name)
    right.plot(range(1, EPOCHS + 1), result["dev_losses"], marker="o", label=name)
left.set_xlabel("step")
left.set_ylabel(f"train loss (mean of {window} steps)")
right.set_xlabel("epoch")
right.set_ylabel("dev loss")
for ax in (left, right):
    ax.legend()
    ax.grid(alpha=0.3)
figure.tight_layout()
plt.show()

# %% [markdown]
# ## Translations, scores and alignments
#
# Both models translate the held-out test split greedily (the package's in-graph
# search, through `TranslatorModule`). Beside BLEU and chrF, two measures of the
# attention itself: the mean entropy of each row of $\alpha$ (lower is sharper) and the
# mean largest weight. The first column repeats the attention timing above (at 512
# units).

# %%
from bahdanau_keras import evaluate
from bahdanau_keras.export import TranslatorModule
from bahdanau_keras.translate import Translation

translations = {name: Translation(TranslatorModule(model, source_tokenizer, target_tokenizer),
                                  path=None)
                for name, model in models.items()}
hypotheses = {}
for name, translation in translations.items():
    translated = translation.translate(test_sources)
    hypotheses[name] = [r["translation"] for r in translated]
    scores = evaluate.corpus_scores(hypotheses[name], test_references)
    alphas = [np.asarray(r["attention"]) for r in translated]
    alphas = [a for a in alphas if a.size]  # each [tgt_len, src_len], real tokens only
    entropy = np.concatenate([-np.sum(a * np.log(np.maximum(a, 1e-12)), axis=1) for a in alphas])
    largest = np.concatenate([a.max(axis=1) for a in alphas])
    results[name].update(bleu=scores["bleu"], chrf=scores["chrf"],
                         entropy=float(entropy.mean()), largest=float(largest.mean()))

print(f"{len(test_sources):,} held-out sentences, {sum(map(len, test_references)):,} references")
print(f"{'':9s} {'µs/step (512)':>13s} {'tokens/s':>9s} {'dev loss':>9s} {'BLEU':>6s} "
      f"{'chrF':>6s} {'entropy':>8s} {'max α':>6s}")
for name, r in results.items():
    print(f"{name:9s} {timing[name]:13.0f} {r['tokens_per_s']:9,.0f} {r['dev_losses'][-1]:9.3f} "
          f"{r['bleu']:6.2f} {r['chrf']:6.2f} {r['entropy']:8.3f} {r['largest']:6.3f}")

# %%
examples = sorted(random.Random(2).sample(range(len(test_sources)), min(6, len(test_sources))))
for i in examples:
    print(f"{test_sources[i]}\n  Bahdanau:  {hypotheses['Bahdanau'][i]}\n"
          f"  Luong:     {hypotheses['Luong'][i]}\n  reference: {' | '.join(test_references[i])}")

# %% [markdown]
# ## Is the difference real? Paired bootstrap resampling
#
# A BLEU score measured on some 1,500 sentences would come out differently on another
# 1,500. Paired bootstrap resampling (Koehn, 2004) asks how much: it draws as many test
# sentences as there are, with replacement, scores *both* models on that same resample,
# and repeats it 1,000 times. `evaluate.paired_bootstrap` runs sacreBLEU's paired
# bootstrap test (`sacrebleu.significance`, the command line's `--paired-bs`), which
# gives each model's mean and 95% interval and a p-value, and computes on the same
# resamples the 95% interval of the difference. If that interval contains 0, the test
# cannot tell the two models apart on these sentences: we call it no difference,
# whichever BLEU is higher.

# %%
test = evaluate.paired_bootstrap(hypotheses["Luong"], hypotheses["Bahdanau"], test_references)
low, high = test["interval"]
for name, key in (("Bahdanau", "b"), ("Luong", "a")):
    print(f"{name:8s} BLEU {test['bleu_' + key]:5.2f} (bootstrap μ = {test['mean_' + key]:.2f} "
          f"± {test['ci_' + key]:.2f})")
print(f"Bahdanau − Luong: {test['difference']:+.2f} BLEU, 95% interval [{low:+.2f}, {high:+.2f}] "
      f"over {test['samples']:,} paired resamples of {test['sentences']:,} sentences; "
      f"sacreBLEU's p-value {test['p_value']:.3f}")
print(test["signature"])
if test["significant"]:
    winner = "Bahdanau" if test["difference"] > 0 else "Luong"
    print(f"The interval excludes 0: {winner} scores higher on these sentences.")
else:
    print("The interval contains 0: no difference between the two scores on these sentences.")

# %%
from bahdanau_keras.plot import plot_attention

shown = ["John loves Mary.", "I have a red car."]
figure, axes = plt.subplots(2, 2, figsize=(10, 8))
for row, (name, translation) in zip(axes, translations.items()):
    for ax, result in zip(row, translation.translate(shown)):
        plot_attention(result["attention"], result["source_tokens"], result["target_tokens"],
                       ax=ax, title=f"{name}: {result['translation']}")
plt.show()

# %% [markdown]
# ## Reading the numbers
#
# The table and the test above are this run's. The project ran this notebook, the same
# code, data and seed, on two machines, with these results:
#
# | run | Bahdanau BLEU | Luong BLEU | Bahdanau − Luong, 95% interval |
# | --- | ---: | ---: | --- |
# | 2026-12-01, a 2-core AMD EPYC | 28.42 | 26.43 | +1.98, [+0.65, +3.23] |
# | 2026-12-02, a 2-core Intel Xeon | 26.12 | 28.25 | −2.13, [−3.36, −0.90] |
#
# Both intervals exclude 0, in opposite directions. The training code and the versions
# (TensorFlow 2.21.0, Keras 3.15.1, Python 3.11.7) were the same; the processor was not,
# and with it the kernels that TensorFlow's products run, which round differently in the
# last bits. Three epochs of training carry that into different models: after the first
# epoch the Bahdanau model's dev loss was already 2.364 on one machine and 2.319 on the
# other. So the paired bootstrap answers a narrower question than "which score is better":
# whether *these two trained models* differ on these sentences. It resamples the test
# sentences, not the training, and here the difference between the two scores is no larger
# than the difference between two trainings of one of them. A verdict on the scores in
# general would train each several times and compare the spread (exercise 2).
#
# What held in both runs: both models translate short sentences (BLEU above 25); the Luong
# model's attention is the sharper of the two (lower entropy, a larger largest weight, the
# crisp heatmaps above), which alone does not make its translations better or worse; its
# dev loss lagged behind for two epochs and ended close to the Bahdanau model's. The
# Bahdanau model here is trained exactly as notebook 4's (the same data, vocabularies,
# seed and batches), and on the same machine its dev loss and BLEU are those of notebook
# 4. The Luong score is the cheaper one per attention step; in whole training steps the
# rest of the model and the two decoder loops' implementations hide most of that.

# %%
faster, slower = sorted(timing, key=timing.get)
print(f"The {faster} score took {timing[faster] / timing[slower]:.0%} of the time of the "
      f"{slower} score per attention step (512 units).")
print(f"BLEU: Bahdanau {test['bleu_b']:.2f}, Luong {test['bleu_a']:.2f}; difference "
      f"{test['difference']:+.2f}, 95% interval [{low:+.2f}, {high:+.2f}]: "
      + ("a difference." if test["significant"] else "no difference."))

# %% [markdown]
# ## Exercises
#
# 1. Luong's "dot" score, $e_{ij} = s_{i-1}^\top h_j$, has no parameters at all. Write it
#    as a third layer (which sizes must agree?) and add it to the timing and the training.
# 2. Train both models with three different seeds (`keras.utils.set_random_seed`) and
#    print the spread of their BLEU scores. Is the difference between the two scores
#    larger than the difference between two seeds of one score? What does the paired
#    bootstrap interval above not account for?
# 3. Repeat the paired bootstrap test on the first 200 test sentences only. How does the
#    interval change with fewer sentences, and why?
# 4. Time one attention step at `src_len` 10, 20 and 40. Which score's cost grows faster
#    with the sentence length, and why, from the shapes of its products?
