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
# # 3. The model
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/bahdanau-keras/bahdanau_keras/blob/main/notebooks/03_the_model.ipynb)
#
# The translator is an encoder (an embedding and a bidirectional GRU), a decoder (a GRU
# that attends over the encoder's annotations before every step) and a "deep output"
# layer that turns each state into a distribution over the target vocabulary. This
# notebook counts the parameters of the shipped model's sizes and follows one small
# batch through every piece, printing shapes.
#
# **Run time.** A few seconds (measured: 9 s on this project's 2-core CPU machine, idle
# apart from it, on 2026-12-01; in Colab the set-up cell adds the clone and the install).
# A GPU runtime is not needed: the model only runs on one small batch.

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
# ## The picture
#
# One step of the decoder, drawn after Figure 1 of the paper for "John loves Mary" →
# "Jean aime Marie", at $i = 2$, while it writes "aime". From the bottom: the source words
# $x_j$; the forward GRU reads them left to right and the backward GRU right to left, and
# the two states at each position form the annotation $h_j$. The attention weights
# $\alpha_{2j}$ (the line widths; made up here, a trained model learns them) mix the
# annotations into the context $c_2$; the decoder state $s_2$ comes from $s_1$, the
# previous word $y_1$ = "Jean" and $c_2$, and scores the next word. The rest of this
# notebook builds each of these pieces and prints its shape.

# %%
import matplotlib.pyplot as plt

from bahdanau_keras import tutorial

plt.rcParams["figure.dpi"] = 72  # small images in the saved notebook
tutorial.plot_encoder_decoder(["John", "loves", "Mary", "<end>"],
                              ["Jean", "aime", "Marie", "<end>"], step=2,
                              weights=[0.06, 0.85, 0.05, 0.04])
plt.show()

# %% [markdown]
# ## Sizes and parameters
#
# `ModelConfig` holds the sizes. The shipped English→French model, read from its
# `assets/config.json`, uses 8,000 subwords a language, 256-dimensional embeddings,
# 2 × 256 encoder units, a 512-unit decoder and 512 alignment units.

# %%
import json

from bahdanau_keras import ModelConfig, Translator

MODEL = tutorial.shipped_model(REPO)
config = ModelConfig(**json.loads((MODEL / "assets" / "config.json").read_text())["model"])
print(config)
big = Translator.from_model_config(config)
print(f"{big.count_params():,} parameters")

# %%
import numpy as np

for weight in big.weights:
    name = weight.path.removeprefix("translator/")
    print(f"{name:66s} {str(tuple(weight.shape)):12s} {int(np.prod(weight.shape)):>10,}")

# %% [markdown]
# Where they are: the embeddings and the decoder's GRU dominate. The attention layer
# holds $W_a$ (`units × query_dim`), $U_a$ (`units × value_dim`) and $v_a$ (`units`),
# with `query_dim` the decoder size and `value_dim` = 2 × encoder units. The output
# layer has no matrix of its own: it reuses the target embedding (`tie_embeddings`).

# %%
attention = big.decoder.attention.count_params()
c = config
expected = (c.attention_units * c.decoder_units + c.attention_units * 2 * c.encoder_units
            + c.attention_units)
print(f"encoder   {big.encoder.count_params():>12,}")
print(f"decoder   {big.decoder.count_params() - attention:>12,} (without attention)")
print(f"attention {attention:>12,} = units·query_dim + units·value_dim + units = {expected:,}")

# %% [markdown]
# ## A small model to follow
#
# For the walk-through, a small model with distinct sizes, so that every axis can be
# told apart in the shapes: embeddings 24, encoder 2 × 32 = 64, decoder 48, attention
# 40. Its vocabularies are learned from the package's sample corpus.
# `implementation="reference"` makes it run exactly the code this notebook shows; the
# default, `"auto"`, trains with a faster version of the same equations that the tests
# hold equal to it.

# %%
import tensorflow as tf

from bahdanau_keras import data, text

pairs = data.read_corpus(data.SAMPLE_CORPUS).pairs
source_tokenizer = text.SubwordTokenizer(text.train_sentencepiece(
    text.normalize_python([s for s, _ in pairs]), vocab_size=500))
target_tokenizer = text.SubwordTokenizer(text.train_sentencepiece(
    text.normalize_python([t for _, t in pairs]), vocab_size=500))
translator = Translator(source_tokenizer.vocab_size, target_tokenizer.vocab_size,
                        embedding_dim=24, encoder_units=32, decoder_units=48,
                        attention_units=40, implementation="reference")
print(f"vocabularies {source_tokenizer.vocab_size} and {target_tokenizer.vocab_size}, "
      f"{translator.count_params():,} parameters")

# %% [markdown]
# A batch of two pairs, as `data.encode_pairs` makes them and `data.batches` pads them:
# ids, `END_ID` (2) after the source, `START_ID` (1) before the target, `PAD_ID` (0) to
# fill.

# %%
batch_pairs = [("John loves Mary.", "Jean aime Marie."),
               ("I see the red car.", "Je vois la voiture rouge.")]
source_ids, target_ids = data.encode_pairs(batch_pairs, source_tokenizer, target_tokenizer)
source = source_ids.to_tensor()  # [batch, src_len]
target = target_ids.to_tensor()  # [batch, tgt_len + 1]
print("source", source.shape, "\n", source.numpy())
print("target", target.shape, "\n", target.numpy())

# %% [markdown]
# ## The encoder
#
# Each source id is embedded, then a forward and a backward GRU read the sentence; the
# annotation of position $j$ joins both states, $h_j = [\overrightarrow{h}_j;
# \overleftarrow{h}_j]$, so it describes the word in the context of the whole
# sentence. The decoder starts from $s_0 = \tanh(W_s \overleftarrow{h}_1)$ (Appendix
# A.2.2). The mask marks the real tokens.

# %%
annotations, source_mask, initial_state = translator.encoder(source)
print("annotations h   ", annotations.shape, "[batch, src_len, 2 * encoder_units]")
print("source_mask     ", source_mask.shape, "[batch, src_len]")
print("initial_state s0", initial_state.shape, "[batch, decoder_units]")
print(source_mask.numpy())

# %% [markdown]
# ## Attention inside the decoder loop
#
# At each output step $i$ the decoder
#
# 1. attends with its previous state: $c_i, \alpha_i$ = attention($s_{i-1}$, $h$) —
#    notebook 1's three equations;
# 2. updates its GRU state from the previous word $E y_{i-1}$, $s_{i-1}$ and $c_i$:
#    $z_i = \sigma(W_z E y_{i-1} + U_z s_{i-1} + C_z c_i)$,
#    $r_i = \sigma(W_r E y_{i-1} + U_r s_{i-1} + C_r c_i)$,
#    $\tilde s_i = \tanh(W E y_{i-1} + U [r_i \circ s_{i-1}] + C c_i)$,
#    $s_i = (1 - z_i) \circ s_{i-1} + z_i \circ \tilde s_i$;
# 3. scores the vocabulary from $s_i$, $E y_{i-1}$ and $c_i$ (the deep output with
#    maxout, Appendix A.2.2).
#
# `Decoder.cell` is steps 1 and 2, each equation beside the line that computes it. Two of
# its inputs do not depend on the state, so they are computed once before the loop, for
# every step: `projected_input`, the input word's share of the gates and the candidate,
# $[W_z; W_r; W] E y_{i-1}$ (`Decoder.project_inputs`), and the attention's `keys`,
# $U_a h_j$. `kernels` holds $C$, $[U_z; U_r]$ and $U$:

# %%
import inspect

from bahdanau_keras import Decoder

print(inspect.getsource(Decoder.cell))

# %% [markdown]
# Running the loop by hand, one step at a time, as a search does it. The keys
# $U_a h_j$ are computed once, before the loop; the decoder reads the target shifted
# by one (`START y_1 … y_n` in, `y_1 … y_n END` out): *teacher forcing*.

# %%
decoder = translator.decoder
target_in = target[:, :-1]  # [batch, tgt_len]: START y_1 ... y_n
keys = decoder.attention.project_keys(annotations)  # U_a h_j: [batch, src_len, attention_units]
state = initial_state  # s_0
step_logits, step_weights = [], []
for i in range(target_in.shape[1]):
    logits, state, weights = decoder.step(target_in[:, i], state, keys, annotations, source_mask)
    if i == 0:
        print("previous words y_{i-1}", target_in[:, i].shape, "[batch]")
        print("logits", logits.shape, "[batch, vocab]  state s_i", state.shape,
              "[batch, decoder_units]  weights α_i", weights.shape, "[batch, src_len]")
    step_logits.append(logits)
    step_weights.append(weights)
print("keys", keys.shape, "  steps:", len(step_logits))

# %% [markdown]
# ## One forward pass
#
# `Translator((source, target_in))` runs the same loop inside the graph, `Decoder.cell`
# at every target step (`Decoder.time_loop`), for the whole batch, and returns the logits
# of every step and the attention weights. The results match the step-by-step loop:

# %%
logits, attention_weights = translator((source, target_in))
print("logits           ", logits.shape, "[batch, tgt_len, target_vocab]")
print("attention weights", attention_weights.shape, "[batch, tgt_len, src_len]")
difference = tf.reduce_max(tf.abs(logits - tf.stack(step_logits, axis=1)))
print(f"largest difference from the step-by-step loop: {float(difference):.2g}")
print("weights at padding positions:",
      float(tf.reduce_sum(tf.where(source_mask[:, None, :], 0.0, attention_weights))))

# %% [markdown]
# ## The loss
#
# Training minimises the cross-entropy of each real target token,
# $-\frac{1}{N}\sum_{\text{real } t} \log p(y_t \mid y_{<t}, x)$. `loss_and_count`
# returns the sum and $N$; it runs the deep output and the vocabulary projection once,
# after the loop, on the real tokens only. An untrained model is about as unsure as a
# uniform guess, $\log(\text{vocab})$:

# %%
loss_sum, count = translator.loss_and_count(source, target)
per_token = float(loss_sum) / int(count)
print(f"{int(count)} real target tokens; loss per token {per_token:.3f}; "
      f"log(vocab) = {np.log(target_tokenizer.vocab_size):.3f}")

# %% [markdown]
# Next: notebook 4 trains this model with that loss.

# %% [markdown]
# ## Exercises
#
# 1. Count the decoder's parameters by hand from `config` (the GRU's three gates, each
#    with $W$, $U$, $C$ and a bias, then the deep output) and compare with
#    `big.decoder.count_params()`. Which single weight is the largest?
# 2. Give the second source sentence of the batch more padding (add a third, longer pair)
#    and check that the first sentence's logits do not change. What makes them
#    independent of the padding?
# 3. Before any training, the attention weights of the small model are almost uniform.
#    Print `attention_weights[0]` and explain why, from the sizes of its initial weights.
