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
# # 1. Attention from scratch
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/bahdanau-keras/bahdanau_keras/blob/main/notebooks/01_attention_from_scratch.ipynb)
#
# Bahdanau, Cho and Bengio, *Neural Machine Translation by Jointly Learning to Align
# and Translate* ([arXiv:1409.0473](https://arxiv.org/abs/1409.0473)), let the decoder
# look back at the whole source sentence before each word it writes, instead of
# squeezing the sentence into one vector. This notebook computes that attention by
# hand with NumPy on the paper's kind of example, then gets the same numbers from the
# package's Keras layer, `bahdanau_keras.BahdanauAttention`.
#
# **Run time.** A few seconds (measured: 8 s on this project's 2-core CPU machine, idle
# apart from it, on 2026-12-01; in Colab the set-up cell adds the clone and the install).
# A GPU runtime is not needed: nothing here trains.

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
# ## The equations
#
# The encoder turns the source words $x_1 \dots x_{T_x}$ into *annotations*
# $h_1 \dots h_{T_x}$. Before it writes target word $y_i$, the decoder is in state
# $s_{i-1}$. Attention scores every annotation against that state, turns the scores
# into weights, and averages the annotations with them:
#
# | | equation | in the code |
# | --- | --- | --- |
# | alignment model (Appendix A.1.2) | $e_{ij} = v_a^\top \tanh(W_a s_{i-1} + U_a h_j)$ | `scores` |
# | weights (eq. 6) | $\alpha_{ij} = \exp(e_{ij}) \,/\, \sum_{k=1}^{T_x} \exp(e_{ik})$ | `weights` |
# | context (eq. 5) | $c_i = \sum_{j=1}^{T_x} \alpha_{ij} h_j$ | `context` |
#
# `scores` and `weights` are `[tgt_len, src_len]`, `context` is `[tgt_len, value_dim]`.
# $W_a$ is `[units, query_dim]`, $U_a$ is `[units, value_dim]` and $v_a$ has `units`
# entries. `units`, the size of the alignment model's hidden layer, is free of the
# other sizes: `query_dim` (the size of $s$) and `value_dim` (the size of $h$).

# %% [markdown]
# ## A toy example: "John loves Mary" → "Jean aime Marie"
#
# A trained model learns its annotations and weights. Here we write them by hand, so
# that every number can be read. Each annotation $h_j$ says which word it stands for
# (one feature per word) and where it is (two features that the alignment ignores but
# the context carries along). The decoder state $s_{i-1}$ says which source word the
# decoder needs next, plus one feature of its own.

# %%
import numpy as np

np.set_printoptions(precision=3, suppress=True)
source_words = ["John", "loves", "Mary", "<end>"]
target_words = ["Jean", "aime", "Marie", "<end>"]
src_len, tgt_len = len(source_words), len(target_words)

# h_j: the word (one-hot, 4 features) and its position (2 features)
position = np.arange(src_len) / (src_len - 1)
annotations = np.concatenate(
    [np.eye(src_len), np.stack([position, 1 - position], axis=1)], axis=1)
# s_{i-1}: the source word needed before writing y_i ("John" before "Jean", ...)
states = np.concatenate([np.eye(tgt_len), np.full((tgt_len, 1), 0.5)], axis=1)
value_dim, query_dim = annotations.shape[1], states.shape[1]
print("annotations h:", annotations.shape, "[src_len, value_dim]")
print("states s:     ", states.shape, "[tgt_len, query_dim]")

# %% [markdown]
# Now the alignment model's weights, also by hand. Each of the 4 words gets two hidden
# units, both fed with $x$ = (the state wants the word) + (the annotation is the word):
# $x = 2$ for a match, $x = 1$ when only one side has the word. One unit is gentle
# ($\tanh(0.5x)$, weight $+4$ in $v_a$), the other steep ($\tanh(3x)$, weight $-4$):
# it saturates at once. Together they score a match higher than two half-matches. A
# hidden `tanh` layer can turn a sum into a comparison: the alignment model is a small
# neural network.

# %%
units = 2 * 4  # two alignment units per word
gentle, steep = 0.5, 3.0
pick_word_s = np.eye(4, query_dim)  # keeps the 4 word features of s: [4, query_dim]
pick_word_h = np.eye(4, value_dim)  # keeps the 4 word features of h: [4, value_dim]
W_a = np.concatenate([gentle * pick_word_s, steep * pick_word_s])  # [units, query_dim]
U_a = np.concatenate([gentle * pick_word_h, steep * pick_word_h])  # [units, value_dim]
v_a = np.concatenate([np.full(4, 4.0), np.full(4, -4.0)])  # [units]
print("W_a", W_a.shape, " U_a", U_a.shape, " v_a", v_a.shape)

# %% [markdown]
# ### One decoder step: $i = 1$, before writing "Jean"
#
# $U_a h_j$ does not depend on $i$: it is computed once per sentence, for every source
# position.

# %%
keys = annotations @ U_a.T  # U_a h_j: [src_len, units]
s_prev = states[0]  # s_0: [query_dim]
projected_query = W_a @ s_prev  # W_a s_0: [units]
print("keys", keys.shape, " projected query", projected_query.shape)

# %% [markdown]
# $e_{1j} = v_a^\top \tanh(W_a s_0 + U_a h_j)$, for every $j$ at once:

# %%
scores = np.tanh(projected_query + keys) @ v_a  # e_1j: [src_len]
print("e_1j  ", scores)

# %% [markdown]
# $\alpha_{1j} = \exp(e_{1j}) / \sum_k \exp(e_{1k})$ (subtracting the largest score
# first changes nothing but avoids overflow):

# %%
exp = np.exp(scores - scores.max())
weights = exp / exp.sum()  # α_1j: [src_len]
print("α_1j  ", weights, f" sum {weights.sum():.3f}")

# %% [markdown]
# $c_1 = \sum_j \alpha_{1j} h_j$: mostly the annotation of \"John\":

# %%
context = weights @ annotations  # c_1 = Σ_j α_1j h_j: [value_dim]
print("c_1   ", context)
print("h_John", annotations[0])


# %% [markdown]
# ### Every step at once
#
# The same three equations for all $i$: broadcasting `[tgt_len, 1, units]` against
# `[1, src_len, units]` gives every pair $(i, j)$.

# %%
def numpy_attention(states, annotations):
    keys = annotations @ U_a.T  # U_a h_j: [src_len, units]
    projected = states @ W_a.T  # W_a s_{i-1}: [tgt_len, units]
    hidden = np.tanh(projected[:, None, :] + keys[None, :, :])  # [tgt_len, src_len, units]
    scores = hidden @ v_a  # e_ij: [tgt_len, src_len]
    exp = np.exp(scores - scores.max(axis=1, keepdims=True))
    weights = exp / exp.sum(axis=1, keepdims=True)  # α_ij: rows sum to 1
    return weights @ annotations, weights  # c_i: [tgt_len, value_dim]


all_context, all_weights = numpy_attention(states, annotations)
print("context", all_context.shape, " weights", all_weights.shape)
print(all_weights)

# %% [markdown]
# The weights as a heatmap (`bahdanau_keras.plot.plot_attention`, the function that
# draws the trained model's attention in notebook 5): each row is one target word,
# and it looks at its source word.

# %%
import matplotlib.pyplot as plt

from bahdanau_keras.plot import plot_attention

plt.rcParams["figure.dpi"] = 72  # small images in the saved notebook

plot_attention(all_weights, source_words, target_words, title="hand-made alignment")
plt.show()

# %% [markdown]
# ## The same numbers from the Keras layer
#
# `BahdanauAttention(units)` holds $W_a$ and $U_a$ as two bias-free `Dense` layers and
# $v_a$ as `score_vector`. Its first call creates the weights; we then overwrite them
# with the NumPy ones. Keras' `Dense` computes `x @ kernel`, so its kernel is the
# transpose of the paper's matrix.

# %%
import tensorflow as tf

from bahdanau_keras import BahdanauAttention

layer = BahdanauAttention(units=units)
query = tf.constant(states[None], tf.float32)  # [batch=1, tgt_len, query_dim]
values = tf.constant(annotations[None], tf.float32)  # [batch=1, src_len, value_dim]
layer(query, values)  # creates the weights
for weight in layer.weights:
    print(f"{weight.path:45s} {tuple(weight.shape)}")

# %%
layer.query_dense.kernel.assign(W_a.T)  # W_a^T: [query_dim, units]
layer.key_dense.kernel.assign(U_a.T)  # U_a^T: [value_dim, units]
layer.score_vector.assign(v_a)  # v_a: [units]

keras_context, keras_weights = layer(query, values)
print("context", keras_context.shape, "[batch, tgt_len, value_dim]")
print("weights", keras_weights.shape, "[batch, tgt_len, src_len]")
np.testing.assert_allclose(keras_weights[0], all_weights, atol=1e-6)
np.testing.assert_allclose(keras_context[0], all_context, atol=1e-6)
print("largest difference from NumPy:",
      float(np.abs(keras_weights[0] - all_weights).max()))

# %% [markdown]
# A decoder calls the layer once per output step, with the 2-D state
# `[batch, query_dim]`. The keys $U_a h_j$ are computed once with `project_keys` and
# passed in at every step: the layer keeps nothing between calls.

# %%
keys = layer.project_keys(values)  # U_a h_j: [batch, src_len, units]
print("keys", keys.shape)
for i in range(tgt_len):
    step_context, step_weights = layer(query[:, i], values, keys=keys)  # s_{i-1}
    np.testing.assert_allclose(step_weights[0], all_weights[i], atol=1e-6)
print("one step: context", step_context.shape, " weights", step_weights.shape)

# %% [markdown]
# ## Masking
#
# Sentences in a batch have different lengths, so the shorter ones are padded. The
# encoder's outputs at padding positions are not meaningful, yet the softmax gives
# them weight unless told otherwise. Here a second sentence, "Mary <end>", is padded
# with two zero annotations, and both sentences look for "Mary". Zero annotations
# score higher than the wrong words, so without a mask they steal weight.

# %%
short = np.zeros_like(annotations)
short[:2] = annotations[2:]  # "Mary", "<end>", then two padding positions
batch_values = tf.constant(np.stack([annotations, short]), tf.float32)  # [2, src_len, value_dim]
batch_query = tf.constant(np.stack([states[2], states[2]]), tf.float32)  # [2, query_dim]
mask = tf.constant([[True, True, True, True],
                    [True, True, False, False]])  # [batch, src_len], True at real tokens

_, unmasked = layer(batch_query, batch_values)
_, masked = layer(batch_query, batch_values, mask=mask)
print("no mask:  ", unmasked.numpy()[1])
print("with mask:", masked.numpy()[1], " sum", float(tf.reduce_sum(masked[1])))

# %% [markdown]
# With the mask, padding gets exactly 0 and the real positions share all the weight
# (the softmax runs over the real positions only). The package's encoder makes this
# mask from the token ids (`tokens != PAD_ID`). A sentence with no real position at
# all gets zeros rather than `NaN`:

# %%
_, empty = layer(batch_query, batch_values, mask=tf.zeros([2, src_len], tf.bool))
print(empty.numpy())

# %% [markdown]
# ## Why additive attention?
#
# * **A learned comparison.** $e_{ij}$ is a one-hidden-layer network of $s_{i-1}$ and
#   $h_j$, trained with the rest of the translator (Section 3.1 of the paper), not a
#   fixed similarity. The hand-made weights above used exactly that freedom.
# * **Sizes need not agree.** Here `query_dim` = 5, `value_dim` = 6, `units` = 8. In
#   the shipped model, the decoder state has 512 features and the annotations 2 × 256.
# * **The cost.** The `tanh` runs over `[batch, src_len, units]` at every output step.
#   $U_a h_j$ is shared by all steps, so it is computed once (`project_keys`); each
#   step adds $W_a s_{i-1}$, the `tanh` and the product with $v_a$.
# * **The alternative.** Luong et al. (2015) scored with products such as
#   $s^\top W h$: one matrix product and no hidden layer. Notebook 7 compares both
#   on the same data.
# * Keras also has `keras.layers.AdditiveAttention`, but without $W_a$ and $U_a$: it
#   adds a query and a key of the same size as given. The package's layer follows the
#   paper, with its own projections.
#
# Next: notebook 2 prepares the data that real annotations are computed from.

# %% [markdown]
# ## Exercises
#
# 1. Set `steep = gentle` and recompute `all_weights`. Before running it, predict what
#    happens to the weights, from the values of $v_a$. Why does the alignment model need
#    two kinds of hidden unit to tell a match from two half-matches?
# 2. In the masking example, hide "Mary" as well (`[True, False, False, False]` for the
#    second sentence). Where does the weight go, and what is the context then?
# 3. Write Luong's "general" score $e_{ij} = s_{i-1}^\top W h_j$ in NumPy, with `W` of
#    shape `[query_dim, value_dim]`, and choose `W` so that every target word again looks
#    at its source word. Why can the "dot" score $s_{i-1}^\top h_j$ not be used on these
#    states and annotations as they are?
