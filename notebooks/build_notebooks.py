"""Build the tutorial notebooks from this file, and optionally execute them.

The notebooks are written here as lists of Markdown and code cells, so that a change to a
tutorial is an ordinary, reviewable diff of Python source; the `.ipynb` files are generated.

    python notebooks/build_notebooks.py                  # rewrite changed notebooks, without outputs
    python notebooks/build_notebooks.py --execute        # write and run every notebook, keep outputs
    python notebooks/build_notebooks.py --execute 05 06  # only the notebooks whose names start so
    python notebooks/build_notebooks.py --check          # exit 1 if an .ipynb differs from here

Executing runs each notebook top to bottom in a fresh kernel with the working directory
`notebooks/`, as `tests/test_notebooks.py` does (which sets `BAHDANAU_KERAS_FAST=1`).
The repository's owner on GitHub appears only in `OWNER` below (Colab badges, installs).
"""

# ruff: noqa: E501  (the notebooks' code and Markdown tables, indented here, run past 100)

import argparse
import re
import sys
import textwrap
from pathlib import Path

import nbformat

OWNER = "OWNER"  # the GitHub user or organisation that hosts bahdanau_keras
REPOSITORY = f"https://github.com/{OWNER}/bahdanau_keras"
NOTEBOOKS_DIR = Path(__file__).resolve().parent
COLAB = f"https://colab.research.google.com/github/{OWNER}/bahdanau_keras/blob/main/notebooks"


def md(text):
    return nbformat.v4.new_markdown_cell(textwrap.dedent(text).strip("\n"))


def code(*parts):
    """A code cell from one or more pieces of source, each dedented on its own."""
    return nbformat.v4.new_code_cell(
        "\n\n".join(textwrap.dedent(part).strip("\n") for part in parts))


def title(name, heading, summary):
    badge = (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
             f"({COLAB}/{name}.ipynb)")
    return md(f"# {heading}\n\n{badge}\n\n" + textwrap.dedent(summary).strip("\n"))


# -- cells shared by several notebooks -------------------------------------------------------

SETUP = code(f'''
    # Inside Colab: install the tensorflow-text release that matches Colab's TensorFlow, and this
    # package from its repository. Anywhere else: only make the repository importable.
    import os
    import sys
    from pathlib import Path

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up messages
    GITHUB = "{REPOSITORY}"
    IN_COLAB = "google.colab" in sys.modules
    if IN_COLAB:
        import subprocess

        import tensorflow as tf

        major, minor = tf.__version__.split(".")[:2]
        subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                        f"tensorflow-text=={{major}}.{{minor}}.*", f"git+{{GITHUB}}"], check=True)
        REPO = Path.cwd()
    else:
        REPO = next((p for p in (Path.cwd(), *Path.cwd().parents)
                     if (p / "bahdanau_keras" / "__init__.py").exists()), Path.cwd())
        sys.path.insert(0, str(REPO))
    # BAHDANAU_KERAS_FAST=1 (set by the tests) only shrinks data sizes and step counts.
    FAST = os.environ.get("BAHDANAU_KERAS_FAST") == "1"
''')

CORPUS = code('''
    from bahdanau_keras import data

    DATA = Path(os.environ.get("BAHDANAU_KERAS_DATA", REPO.parent / "shared" / "data"))
    CORPUS_URL = "https://www.manythings.org/anki/fra-eng.zip"


    def load_corpus():
        """Tatoeba English-French from ../shared/data, else downloaded; offline, the sample."""
        local = DATA / "fra-eng.zip"
        try:
            return data.read_corpus(local if local.exists() else CORPUS_URL, skip_bad_lines=True)
        except data.CorpusError as error:
            print(f"{error}\\nUsing the built-in sample corpus instead (not Tatoeba).")
            return data.read_corpus(data.SAMPLE_CORPUS)


    corpus = load_corpus()
    print(f"{corpus.path}: {len(corpus.pairs):,} pairs")
''')

PLOTS = "import matplotlib.pyplot as plt"
SMALL_IMAGES = 'plt.rcParams["figure.dpi"] = 72  # small images in the saved notebook'

MODEL = code('''
    import tempfile

    from bahdanau_keras import data, export, train

    MODEL = Path(os.environ.get("BAHDANAU_KERAS_MODEL", REPO / "saved_models" / "en-fr"))
    if IN_COLAB and not (MODEL / "saved_model.pb").exists():
        # The pip-installed package does not carry the model: fetch the repository's copy.
        subprocess.run(["git", "clone", "-q", "--depth", "1", GITHUB, "/content/bahdanau_keras"])
        MODEL = Path("/content/bahdanau_keras/saved_models/en-fr")
    SHIPPED = (MODEL / "saved_model.pb").exists()
    if not SHIPPED:
        print(f"NOTE: there is no exported model at {MODEL}.\\n"
              "This run trains a small stand-in on the built-in sample corpus and exports it to a "
              "temporary directory.\\nIts results only show how the code works: run the notebook "
              "again once the pretrained model is in saved_models/en-fr.")
        workdir = Path(tempfile.mkdtemp(prefix="bahdanau_keras_"))
        sizes = (dict(embedding_dim=32, encoder_units=32, decoder_units=64, attention_units=32)
                 if FAST else
                 dict(embedding_dim=64, encoder_units=64, decoder_units=128, attention_units=128))
        train.train(str(workdir / "model"), data.read_corpus(data.SAMPLE_CORPUS), sizes,
                    train.TrainConfig(epochs=1 if FAST else 20, vocab_size=1000), verbose=0)
        MODEL = Path(export.export_model_dir(str(workdir / "model"), str(workdir / "en-fr")))
    print("Model:", MODEL)
''')


# -- 01 ------------------------------------------------------------------------------------

def notebook_01():
    return [
        title("01_attention_from_scratch", "1. Attention from scratch", """
            Bahdanau, Cho and Bengio, *Neural Machine Translation by Jointly Learning to Align
            and Translate* ([arXiv:1409.0473](https://arxiv.org/abs/1409.0473)), let the decoder
            look back at the whole source sentence before each word it writes, instead of
            squeezing the sentence into one vector. This notebook computes that attention by
            hand with NumPy on the paper's kind of example, then gets the same numbers from the
            package's Keras layer, `bahdanau_keras.BahdanauAttention`.
        """),
        SETUP,
        md(r"""
            ## The equations

            The encoder turns the source words $x_1 \dots x_{T_x}$ into *annotations*
            $h_1 \dots h_{T_x}$. Before it writes target word $y_i$, the decoder is in state
            $s_{i-1}$. Attention scores every annotation against that state, turns the scores
            into weights, and averages the annotations with them:

            | | equation | in the code |
            | --- | --- | --- |
            | alignment model (Appendix A.1.2) | $e_{ij} = v_a^\top \tanh(W_a s_{i-1} + U_a h_j)$ | `scores`, `[tgt_len, src_len]` |
            | weights (eq. 6) | $\alpha_{ij} = \exp(e_{ij}) \,/\, \sum_{k=1}^{T_x} \exp(e_{ik})$ | `weights`, `[tgt_len, src_len]` |
            | context (eq. 5) | $c_i = \sum_{j=1}^{T_x} \alpha_{ij} h_j$ | `context`, `[tgt_len, value_dim]` |

            $W_a$ is `[units, query_dim]`, $U_a$ is `[units, value_dim]` and $v_a$ has `units`
            entries. `units`, the size of the alignment model's hidden layer, is free of the
            other sizes: `query_dim` (the size of $s$) and `value_dim` (the size of $h$).
        """),
        md("""
            ## A toy example: "John loves Mary" → "Jean aime Marie"

            A trained model learns its annotations and weights. Here we write them by hand, so
            that every number can be read. Each annotation $h_j$ says which word it stands for
            (one feature per word) and where it is (two features that the alignment ignores but
            the context carries along). The decoder state $s_{i-1}$ says which source word the
            decoder needs next, plus one feature of its own.
        """),
        code("""
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
        """),
        md("""
            Now the alignment model's weights, also by hand. Each of the 4 words gets two hidden
            units, both fed with $x$ = (the state wants the word) + (the annotation is the word):
            $x = 2$ for a match, $x = 1$ when only one side has the word. One unit is gentle
            ($\\tanh(0.5x)$, weight $+4$ in $v_a$), the other steep ($\\tanh(3x)$, weight $-4$):
            it saturates at once. Together they score a match higher than two half-matches. A
            hidden `tanh` layer can turn a sum into a comparison: the alignment model is a small
            neural network.
        """),
        code("""
            units = 2 * 4  # two alignment units per word
            gentle, steep = 0.5, 3.0
            pick_word_s = np.eye(4, query_dim)  # keeps the 4 word features of s: [4, query_dim]
            pick_word_h = np.eye(4, value_dim)  # keeps the 4 word features of h: [4, value_dim]
            W_a = np.concatenate([gentle * pick_word_s, steep * pick_word_s])  # [units, query_dim]
            U_a = np.concatenate([gentle * pick_word_h, steep * pick_word_h])  # [units, value_dim]
            v_a = np.concatenate([np.full(4, 4.0), np.full(4, -4.0)])  # [units]
            print("W_a", W_a.shape, " U_a", U_a.shape, " v_a", v_a.shape)
        """),
        md("""
            ### One decoder step: $i = 1$, before writing "Jean"

            $U_a h_j$ does not depend on $i$: it is computed once per sentence, for every source
            position.
        """),
        code("""
            keys = annotations @ U_a.T  # U_a h_j: [src_len, units]
            s_prev = states[0]  # s_0: [query_dim]
            projected_query = W_a @ s_prev  # W_a s_0: [units]
            print("keys", keys.shape, " projected query", projected_query.shape)
        """),
        md(r"$e_{1j} = v_a^\top \tanh(W_a s_0 + U_a h_j)$, for every $j$ at once:"),
        code("""
            scores = np.tanh(projected_query + keys) @ v_a  # e_1j: [src_len]
            print("e_1j  ", scores)
        """),
        md(r"""
            $\alpha_{1j} = \exp(e_{1j}) / \sum_k \exp(e_{1k})$ (subtracting the largest score
            first changes nothing but avoids overflow):
        """),
        code("""
            exp = np.exp(scores - scores.max())
            weights = exp / exp.sum()  # α_1j: [src_len]
            print("α_1j  ", weights, f" sum {weights.sum():.3f}")
        """),
        md(r"$c_1 = \sum_j \alpha_{1j} h_j$: mostly the annotation of \"John\":"),
        code("""
            context = weights @ annotations  # c_1 = Σ_j α_1j h_j: [value_dim]
            print("c_1   ", context)
            print("h_John", annotations[0])
        """),
        md("""
            ### Every step at once

            The same three equations for all $i$: broadcasting `[tgt_len, 1, units]` against
            `[1, src_len, units]` gives every pair $(i, j)$.
        """),
        code("""
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
        """),
        md("""
            The weights as a heatmap (`bahdanau_keras.plot.plot_attention`, the function that
            draws the trained model's attention in notebook 5): each row is one target word,
            and it looks at its source word.
        """),
        code(PLOTS, """
            from bahdanau_keras.plot import plot_attention
        """, SMALL_IMAGES, """
            plot_attention(all_weights, source_words, target_words, title="hand-made alignment")
            plt.show()
        """),
        md("""
            ## The same numbers from the Keras layer

            `BahdanauAttention(units)` holds $W_a$ and $U_a$ as two bias-free `Dense` layers and
            $v_a$ as `score_vector`. Its first call creates the weights; we then overwrite them
            with the NumPy ones. Keras' `Dense` computes `x @ kernel`, so its kernel is the
            transpose of the paper's matrix.
        """),
        code("""
            import tensorflow as tf

            from bahdanau_keras import BahdanauAttention

            layer = BahdanauAttention(units=units)
            query = tf.constant(states[None], tf.float32)  # [batch=1, tgt_len, query_dim]
            values = tf.constant(annotations[None], tf.float32)  # [batch=1, src_len, value_dim]
            layer(query, values)  # creates the weights
            for weight in layer.weights:
                print(f"{weight.path:45s} {tuple(weight.shape)}")
        """),
        code("""
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
        """),
        md("""
            A decoder calls the layer once per output step, with the 2-D state
            `[batch, query_dim]`. The keys $U_a h_j$ are computed once with `project_keys` and
            passed in at every step: the layer keeps nothing between calls.
        """),
        code("""
            keys = layer.project_keys(values)  # U_a h_j: [batch, src_len, units]
            print("keys", keys.shape)
            for i in range(tgt_len):
                step_context, step_weights = layer(query[:, i], values, keys=keys)  # s_{i-1}
                np.testing.assert_allclose(step_weights[0], all_weights[i], atol=1e-6)
            print("one step: context", step_context.shape, " weights", step_weights.shape)
        """),
        md("""
            ## Masking

            Sentences in a batch have different lengths, so the shorter ones are padded. The
            encoder's outputs at padding positions are not meaningful, yet the softmax gives
            them weight unless told otherwise. Here a second sentence, "Mary <end>", is padded
            with two zero annotations, and both sentences look for "Mary". Zero annotations
            score higher than the wrong words, so without a mask they steal weight.
        """),
        code("""
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
        """),
        md("""
            With the mask, padding gets exactly 0 and the real positions share all the weight
            (the softmax runs over the real positions only). The package's encoder makes this
            mask from the token ids (`tokens != PAD_ID`). A sentence with no real position at
            all gets zeros rather than `NaN`:
        """),
        code("""
            _, empty = layer(batch_query, batch_values, mask=tf.zeros([2, src_len], tf.bool))
            print(empty.numpy())
        """),
        md("""
            ## Why additive attention?

            * **A learned comparison.** $e_{ij}$ is a one-hidden-layer network of $s_{i-1}$ and
              $h_j$, trained with the rest of the translator (Section 3.1 of the paper), not a
              fixed similarity. The hand-made weights above used exactly that freedom.
            * **Sizes need not agree.** Here `query_dim` = 5, `value_dim` = 6, `units` = 8. In
              the shipped model, the decoder state has 512 features and the annotations 2 × 256.
            * **The cost.** The `tanh` runs over `[batch, src_len, units]` at every output step.
              $U_a h_j$ is shared by all steps, so it is computed once (`project_keys`); each
              step adds $W_a s_{i-1}$, the `tanh` and the product with $v_a$.
            * **The alternative.** Luong et al. (2015) scored with products such as
              $s^\\top W h$: one matrix product and no hidden layer. Notebook 7 compares both
              on the same data.
            * Keras also has `keras.layers.AdditiveAttention`, but without $W_a$ and $U_a$: it
              adds a query and a key of the same size as given. The package's layer follows the
              paper, with its own projections.

            Next: notebook 2 prepares the data that real annotations are computed from.
        """),
    ]


# -- 02 ------------------------------------------------------------------------------------

def notebook_02():
    return [
        title("02_data_and_text", "2. Data and text", """
            The translator learns from pairs of sentences. This notebook reads the Tatoeba
            English–French corpus, normalises its text, cuts it into SentencePiece subwords and
            batches it by length with `tf.data`, using `bahdanau_keras.data` and
            `bahdanau_keras.text`.
        """),
        SETUP,
        md("""
            ## The Tatoeba corpus

            manythings.org publishes sentence pairs from the Tatoeba project, one pair a line:
            `English<TAB>French<TAB>attribution` (CC-BY 2.0 FR; www.manythings.org/anki and
            tatoeba.org). The files are not part of this repository: the notebook reads
            `../shared/data/fra-eng.zip` (or `$BAHDANAU_KERAS_DATA`), downloads the corpus when it
            is missing, and falls back to the package's small sample corpus when offline.
        """),
        CORPUS,
        code("""
            print(f"skipped: {corpus.duplicates:,} repeated pairs, {corpus.blank_lines} blank lines, "
                  f"{len(corpus.bad_lines)} malformed lines")
            for source, target in corpus.pairs[:3] + corpus.pairs[-2:]:
                print(f"{source[:50]!r:54} -> {target[:60]!r}")
        """),
        md("""
            The file is sorted by length, from "Go." to paragraphs. Most pairs are short:
        """),
        code("""
            import numpy as np

            words = np.array([len(source.split()) for source, _ in corpus.pairs])
            print(f"English words per sentence: median {np.median(words):.0f}, "
                  f"95% under {np.percentile(words, 95):.0f}, longest {words.max()}")
        """),
        md("""
            ## Normalisation

            The French side writes a narrow no-break space (U+202F) or a no-break space (U+00A0)
            before `? ! : ;` and often uses the typographic apostrophe (U+2019). Left alone,
            "t’aime" and "t'aime" would be different words, and the invisible spaces would end up
            inside tokens. How many French sentences contain them:
        """),
        code("""
            special = {"\\u202f": "NARROW NO-BREAK SPACE", "\\u00a0": "NO-BREAK SPACE",
                       "\\u2019": "RIGHT SINGLE QUOTATION MARK"}
            for char, name in special.items():
                found = [t for _, t in corpus.pairs if char in t]
                example = found[0] if found else "(none)"
                print(f"U+{ord(char):04X} {name:28s} {len(found):7,} sentences, e.g. {example!r}")
        """),
        md("""
            `bahdanau_keras.text.normalize` runs inside the TensorFlow graph (so the exported
            model applies it too): invalid UTF-8 becomes U+FFFD, NFKC turns the special spaces
            into plain ones, typographic quotes become ASCII, and runs of spaces shrink to one.
            Case, accents and punctuation stay.
        """),
        code("""
            from bahdanau_keras import text

            raw = ["Je t\\u2019aime\\u202f!", "Où est la gare\\u00a0?", "  Trop   d'espaces  "]
            for before, after in zip(raw, text.normalize_python(raw)):
                print(f"{before!r:32} -> {after!r}")
        """),
        md("""
            ## Train, dev and test splits

            `split_pairs` assigns each pair by a hash of its English side, so every translation
            of one sentence lands in the same split, whatever the order of the file: the test
            sentences are sentences the model has never seen.
        """),
        code("""
            splits = data.split_pairs(corpus.pairs)  # 1% dev, 2% test
            for name, pairs in splits.items():
                print(f"{name:5s} {len(pairs):7,} pairs")
            seen = {source.lower() for source, _ in splits["train"]}
            print("test sources also in train:",
                  sum(source.lower() in seen for source, _ in splits["test"]))
        """),
        md("""
            ## Subwords with SentencePiece

            A word vocabulary cannot cover every name and form; characters make sentences long.
            SentencePiece learns a vocabulary of frequent pieces from the training sentences
            (`text.train_sentencepiece`, on already normalised text) and falls back to bytes for
            characters it never saw. Ids 0 to 3 are reserved for padding, start, end and unknown.
        """),
        code("""
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
        """),
        md("""
            `tokenize` normalises and splits a batch of strings into a `RaggedTensor` of ids
            (`▁` marks the start of a word); `detokenize` joins them back.
        """),
        code("""
            examples = tf.constant(["John loves Mary.", "Je t\\u2019aime\\u202f!", "Il coûte 5 € 🙂"])
            tokenizer = {0: source_tokenizer, 1: target_tokenizer, 2: target_tokenizer}
            for k, sentence in enumerate(examples.numpy()):
                ids = tokenizer[k].tokenize(tf.constant([sentence]))  # [1, (len)]
                pieces = tokenizer[k].id_to_piece(ids).flat_values.numpy()
                back = tokenizer[k].detokenize(ids).numpy()[0].decode()
                print(f"{sentence.decode()!r}: {ids.shape} ids {ids.flat_values.numpy().tolist()}")
                print("   pieces", [p.decode() for p in pieces], "->", repr(back))
        """),
        md("""
            Without the normalisation, the same tokenizer sees the U+202F space as a character
            of its own:
        """),
        code("""
            raw = tf.constant(["Je t\\u2019aime\\u202f!"])
            as_is = target_tokenizer.sentencepiece.tokenize(raw)  # the SentencePiece op alone
            normalised = target_tokenizer.tokenize(raw)  # normalize, then SentencePiece
            for label, ids in (("as is:     ", as_is), ("normalised:", normalised)):
                pieces = target_tokenizer.id_to_piece(ids).flat_values.numpy()
                print(label, [p.decode() for p in pieces])
        """),
        md("""
            ## Token ids

            `data.encode_pairs` tokenizes every pair: the source gets the end token, the target
            the start and end tokens (`START y_1 … y_n END`), as the decoder reads the target
            shifted by one. Pairs longer than `max_length` subwords are left out.
        """),
        code("""
            source_ids, target_ids = data.encode_pairs(
                train_pairs, source_tokenizer, target_tokenizer, max_length=64)
            print("source", source_ids.shape, source_ids.dtype.name, " target", target_ids.shape)
            print("first pair:", source_ids[0].numpy(), target_ids[0].numpy())
            source_lengths = source_ids.row_lengths().numpy()
            target_lengths = target_ids.row_lengths().numpy()
            print(f"subwords per sentence (with start/end): source mean {source_lengths.mean():.1f}, "
                  f"target mean {target_lengths.mean():.1f}, longest {target_lengths.max()}")
        """),
        code(PLOTS, SMALL_IMAGES, """
            figure, ax = plt.subplots(figsize=(6, 3))
            bins = np.arange(0, max(source_lengths.max(), target_lengths.max()) + 2)
            ax.hist(source_lengths, bins=bins, alpha=0.6, label="English (source)")
            ax.hist(target_lengths, bins=bins, alpha=0.6, label="French (target)")
            ax.set_xlabel("subwords per sentence")
            ax.set_ylabel("sentences")
            ax.legend()
            figure.tight_layout()
            plt.show()
        """),
        md("""
            ## Batches by length

            A batch is a rectangle: every sentence is padded to the longest one in it. Random
            batches mix short and long sentences and waste much of the work on padding.
            `data.batches` draws a fresh shuffled order each epoch (a stateless shuffle of
            `(seed, epoch)`) and groups sentences of similar length with
            `bucket_by_sequence_length`; each batch leaves when its bucket is full.
        """),
        code("""
            batch_size = 64
            bucketed = data.batches(source_ids, target_ids, batch_size, seed=0)
            print("bucket boundaries:", data.length_buckets(int(target_lengths.max()))[:12], "...")
            for epoch, source, target in bucketed.take(5):
                print(f"epoch {int(epoch)}: source {source.shape}, target {target.shape}")
        """),
        md("""
            The padding over one epoch, by length against in random order (the same sentences,
            cut into batches of 64 and padded to the longest of each):
        """),
        code("""
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
        """),
        md("""
            The pipeline is deterministic given the seed, and its iterator can be saved in a
            checkpoint, so that training resumes mid-epoch on the very next batch (notebook 4).
            Next: notebook 3 builds the model that reads these batches.
        """),
    ]


# -- 03 ------------------------------------------------------------------------------------

def notebook_03():
    return [
        title("03_the_model", "3. The model", """
            The translator is an encoder (an embedding and a bidirectional GRU), a decoder (a GRU
            that attends over the encoder's annotations before every step) and a "deep output"
            layer that turns each state into a distribution over the target vocabulary. This
            notebook counts the parameters of the shipped model's sizes and follows one small
            batch through every piece, printing shapes.
        """),
        SETUP,
        md("""
            ## Sizes and parameters

            `ModelConfig` holds the sizes. The shipped English→French model uses 8,000 subwords a
            language, 256-dimensional embeddings, 2 × 256 encoder units, a 512-unit decoder and
            512 alignment units (read from its `assets/config.json` when it is present).
        """),
        code("""
            import json

            from bahdanau_keras import ModelConfig, Translator

            shipped = REPO / "saved_models" / "en-fr" / "assets" / "config.json"
            if shipped.exists():
                config = ModelConfig(**json.loads(shipped.read_text())["model"])
            else:  # the sizes of the README's training command
                config = ModelConfig(source_vocab_size=8000, target_vocab_size=8000,
                                     embedding_dim=256, encoder_units=256, decoder_units=512,
                                     attention_units=512)
            print(config)
            big = Translator.from_model_config(config)
            print(f"{big.count_params():,} parameters")
        """),
        code("""
            import numpy as np

            for weight in big.weights:
                name = weight.path.removeprefix("translator/")
                print(f"{name:66s} {str(tuple(weight.shape)):12s} {int(np.prod(weight.shape)):>10,}")
        """),
        md(r"""
            Where they are: the embeddings and the decoder's GRU dominate. The attention layer
            holds $W_a$ (`units × query_dim`), $U_a$ (`units × value_dim`) and $v_a$ (`units`),
            with `query_dim` the decoder size and `value_dim` = 2 × encoder units. The output
            layer has no matrix of its own: it reuses the target embedding (`tie_embeddings`).
        """),
        code("""
            attention = big.decoder.attention.count_params()
            c = config
            expected = (c.attention_units * c.decoder_units + c.attention_units * 2 * c.encoder_units
                        + c.attention_units)
            print(f"encoder   {big.encoder.count_params():>12,}")
            print(f"decoder   {big.decoder.count_params() - attention:>12,} (without attention)")
            print(f"attention {attention:>12,} = units·query_dim + units·value_dim + units = {expected:,}")
        """),
        md("""
            ## A small model to follow

            For the walk-through, a small model with distinct sizes, so that every axis can be
            told apart in the shapes: embeddings 24, encoder 2 × 32 = 64, decoder 48, attention
            40. Its vocabularies are learned from the package's sample corpus.
        """),
        code("""
            import tensorflow as tf

            from bahdanau_keras import data, text

            pairs = data.read_corpus(data.SAMPLE_CORPUS).pairs
            source_tokenizer = text.SubwordTokenizer(text.train_sentencepiece(
                text.normalize_python([s for s, _ in pairs]), vocab_size=500))
            target_tokenizer = text.SubwordTokenizer(text.train_sentencepiece(
                text.normalize_python([t for _, t in pairs]), vocab_size=500))
            translator = Translator(source_tokenizer.vocab_size, target_tokenizer.vocab_size,
                                    embedding_dim=24, encoder_units=32, decoder_units=48,
                                    attention_units=40)
            print(f"vocabularies {source_tokenizer.vocab_size} and {target_tokenizer.vocab_size}, "
                  f"{translator.count_params():,} parameters")
        """),
        md("""
            A batch of two pairs, as `data.encode_pairs` makes them and `data.batches` pads them:
            ids, `END_ID` (2) after the source, `START_ID` (1) before the target, `PAD_ID` (0) to
            fill.
        """),
        code("""
            batch_pairs = [("John loves Mary.", "Jean aime Marie."),
                           ("I see the red car.", "Je vois la voiture rouge.")]
            source_ids, target_ids = data.encode_pairs(batch_pairs, source_tokenizer, target_tokenizer)
            source = source_ids.to_tensor()  # [batch, src_len]
            target = target_ids.to_tensor()  # [batch, tgt_len + 1]
            print("source", source.shape, "\\n", source.numpy())
            print("target", target.shape, "\\n", target.numpy())
        """),
        md(r"""
            ## The encoder

            Each source id is embedded, then a forward and a backward GRU read the sentence; the
            annotation of position $j$ joins both states, $h_j = [\overrightarrow{h}_j;
            \overleftarrow{h}_j]$, so it describes the word in the context of the whole
            sentence. The decoder starts from $s_0 = \tanh(W_s \overleftarrow{h}_1)$ (Appendix
            A.2.2). The mask marks the real tokens.
        """),
        code("""
            annotations, source_mask, initial_state = translator.encoder(source)
            print("annotations h   ", annotations.shape, "[batch, src_len, 2 * encoder_units]")
            print("source_mask     ", source_mask.shape, "[batch, src_len]")
            print("initial_state s0", initial_state.shape, "[batch, decoder_units]")
            print(source_mask.numpy())
        """),
        md(r"""
            ## Attention inside the decoder loop

            At each output step $i$ the decoder

            1. attends with its previous state: $c_i, \alpha_i$ = attention($s_{i-1}$, $h$) —
               notebook 1's three equations;
            2. updates its GRU state from the previous word $E y_{i-1}$, $s_{i-1}$ and $c_i$:
               $z_i = \sigma(W_z E y_{i-1} + U_z s_{i-1} + C_z c_i)$,
               $r_i = \sigma(W_r E y_{i-1} + U_r s_{i-1} + C_r c_i)$,
               $\tilde s_i = \tanh(W E y_{i-1} + U [r_i \circ s_{i-1}] + C c_i)$,
               $s_i = (1 - z_i) \circ s_{i-1} + z_i \circ \tilde s_i$;
            3. scores the vocabulary from $s_i$, $E y_{i-1}$ and $c_i$ (the deep output with
               maxout, Appendix A.2.2).

            `Decoder.cell` is steps 1 and 2. Its body, `Decoder._cell`, with each equation
            beside its line (it also returns $r_i \circ s_{i-1}$, which the training loop's
            gradient reads; `kernels` are $C$, $[U_z; U_r]$, $U$ and $W_a$, split once before
            the loop):
        """),
        code("""
            import inspect

            from bahdanau_keras import Decoder

            print(inspect.getsource(Decoder._cell))
        """),
        md("""
            Running the loop by hand, one step at a time, as a search does it. The keys
            $U_a h_j$ are computed once, before the loop; the decoder reads the target shifted
            by one (`START y_1 … y_n` in, `y_1 … y_n END` out): *teacher forcing*.
        """),
        code("""
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
        """),
        md("""
            ## One forward pass

            `Translator((source, target_in))` runs the same loop inside the graph (one
            `tf.while_loop` over the target), for the whole batch, and returns the
            logits of every step and the attention weights. The results match the step-by-step
            loop:
        """),
        code("""
            logits, attention_weights = translator((source, target_in))
            print("logits           ", logits.shape, "[batch, tgt_len, target_vocab]")
            print("attention weights", attention_weights.shape, "[batch, tgt_len, src_len]")
            difference = tf.reduce_max(tf.abs(logits - tf.stack(step_logits, axis=1)))
            print(f"largest difference from the step-by-step loop: {float(difference):.2g}")
            print("weights at padding positions:",
                  float(tf.reduce_sum(tf.where(source_mask[:, None, :], 0.0, attention_weights))))
        """),
        md(r"""
            ## The loss

            Training minimises the cross-entropy of each real target token,
            $-\frac{1}{N}\sum_{\text{real } t} \log p(y_t \mid y_{<t}, x)$. `loss_and_count`
            returns the sum and $N$; it runs the deep output and the vocabulary projection once,
            after the loop, on the real tokens only. An untrained model is about as unsure as a
            uniform guess, $\log(\text{vocab})$:
        """),
        code("""
            loss_sum, count = translator.loss_and_count(source, target)
            per_token = float(loss_sum) / int(count)
            print(f"{int(count)} real target tokens; loss per token {per_token:.3f}; "
                  f"log(vocab) = {np.log(target_tokenizer.vocab_size):.3f}")
        """),
        md("""
            Next: notebook 4 trains this model with that loss.
        """),
    ]


# -- 04 ------------------------------------------------------------------------------------

def notebook_04():
    return [
        title("04_training", "4. Training with teacher forcing", """
            Training shows the decoder the correct previous word at every step (*teacher
            forcing*) and lowers the cross-entropy of the next one. This notebook runs the
            package's compiled training step by hand, then trains a small translator on a subset
            of Tatoeba with `bahdanau_keras.train.train`, plots its loss, looks inside its
            checkpoints and resumes it.
        """),
        SETUP,
        md("""
            ## Data: a subset of Tatoeba

            To keep the run to a few minutes on a CPU, we take a random sample of the short pairs
            (at most 8 English words). The full-size recipe is the README's `bahdanau-keras
            train` command.
        """),
        CORPUS,
        code("""
            import random

            short = [(s, t) for s, t in corpus.pairs if len(s.split()) <= 8]
            subset = random.Random(0).sample(short, min(len(short), 1000 if FAST else 12000))
            subset_corpus = data.Corpus(pairs=subset, path=f"{corpus.path} (random subset)",
                                        origin=corpus.origin)
            print(f"{len(subset):,} pairs, e.g. {subset[0]}")
        """),
        md("""
            ## The training step

            The decoder reads `START y_1 … y_n` and is scored on predicting `y_1 … y_n END`; the
            loss is the mean of $-\\log p(y_t \\mid y_{<t}, x)$ over the real target tokens of the
            batch (padding excluded, see notebook 3). `train.make_train_step` wraps one update in
            a `tf.function`: the gradient tape, the masked loss, the gradients and Adam (learning
            rate 1e-3, gradients clipped to norm 1). Epochs, logging and checkpoints stay in plain
            Python around it.
        """),
        code("""
            import inspect

            from bahdanau_keras import train

            print(inspect.getsource(train.make_train_step))
        """),
        md("""
            A model and its tokenizers, sized down from the shipped model (which uses 256/512):
        """),
        code("""
            import keras
            import tensorflow as tf

            from bahdanau_keras import Translator, text

            SIZES = (dict(embedding_dim=16, encoder_units=16, decoder_units=32, attention_units=32)
                     if FAST else
                     dict(embedding_dim=128, encoder_units=128, decoder_units=256, attention_units=256))
            VOCAB = 500 if FAST else 4000
            # Seed first: setting a seed clears TensorFlow's cache of eager kernels, and with it the
            # SentencePiece resources of tokenizers made before.
            keras.utils.set_random_seed(0)
            splits = data.split_pairs(subset)
            source_tokenizer = text.SubwordTokenizer(text.train_sentencepiece(
                text.normalize_python([s for s, _ in splits["train"]]), VOCAB))
            target_tokenizer = text.SubwordTokenizer(text.train_sentencepiece(
                text.normalize_python([t for _, t in splits["train"]]), VOCAB))
            source_ids, target_ids = data.encode_pairs(splits["train"], source_tokenizer, target_tokenizer)

            translator = Translator(source_tokenizer.vocab_size, target_tokenizer.vocab_size, **SIZES)
            optimizer = train.make_optimizer(train.TrainConfig())
            optimizer.build(translator.trainable_variables)  # its variables exist before tracing
            train_step = train.make_train_step(translator, optimizer)
            print(f"{translator.count_params():,} parameters; step signature: {train_step.input_signature}")
        """),
        md("""
            Twenty updates on one batch: the loss per token falls quickly, as the model learns
            these few sentences by heart. The input signature `[None, None]` lets batches of any
            shape reuse one compiled graph: it is traced once.
        """),
        code("""
            batches = iter(data.batches(source_ids, target_ids, batch_size=64, seed=0))
            _, source, target = next(batches)
            print("source", source.shape, " target", target.shape)
            for step in range(1, 21):
                loss_sum, count = train_step(source, target)
                if step % 5 == 0 or step == 1:
                    print(f"step {step:2d}: loss {float(loss_sum) / int(count):.3f} over {int(count)} tokens")
            other = next((s, t) for _, s, t in batches if s.shape != source.shape)
            train_step(*other)
            traced = train_step.experimental_get_tracing_count()
            print(f"another shape {other[0].shape}: traced {traced} time(s)")
        """),
        md("""
            ## Training a model

            `train.train(model_dir, corpus, sizes, TrainConfig(...))` does the rest: it splits
            the corpus, learns the vocabularies, batches by length, runs the step, measures the
            dev loss after each epoch, keeps the best weights and writes checkpoints. It returns
            the history: one record an epoch. This run is told to stop half-way through its last
            epoch (`max_steps`), as an interruption would stop it; we resume it below.
        """),
        code("""
            import tempfile

            EPOCHS = 2 if FAST else 3
            steps_per_epoch = sum(1 for _ in data.batches(source_ids, target_ids, 64, shuffle=False))
            model_dir = Path(tempfile.mkdtemp(prefix="bahdanau_keras_")) / "small-en-fr"
            train_config = train.TrainConfig(
                epochs=EPOCHS, batch_size=64, vocab_size=VOCAB, checkpoint_every=100, patience=0,
                seed=0, max_steps=int((EPOCHS - 0.5) * steps_per_epoch))
            print(f"about {steps_per_epoch} batches an epoch; stopping at step {train_config.max_steps}")
            history = train.train(str(model_dir), subset_corpus, SIZES, train_config, verbose=2)
        """),
        md("""
            ## Loss curves

            `bahdanau_keras.plot.plot_history` draws the history (train and dev loss an epoch);
            the training loop also writes the loss every 50 steps for TensorBoard, in
            `model_dir/logs`, which gives a finer curve.
        """),
        code("""
            import matplotlib.pyplot as plt
            from tensorflow.core.util import event_pb2

            from bahdanau_keras.plot import plot_history
        """, SMALL_IMAGES, """

            def logged_losses(logs):
                \"\"\"(steps, losses) of the `train/loss` scalars in a TensorBoard log directory.\"\"\"
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
        """),
        md("""
            ## Checkpoints

            The model directory holds the configuration, the two SentencePiece models, the
            history, the latest checkpoints (`checkpoints/`, every `checkpoint_every` steps and
            at each epoch end) and the weights with the best dev loss (`best/`):
        """),
        code("""
            for path in sorted(model_dir.rglob("*")):
                if path.is_file() and "logs" not in path.parts:
                    print(f"{str(path.relative_to(model_dir)):52s} {path.stat().st_size:>10,} bytes")
        """),
        md("""
            A checkpoint holds more than the weights: the optimizer's moments, the step and epoch
            counters, the best dev loss so far, and the position of the `tf.data` iterator, so
            that training can resume on the very next batch.
        """),
        code("""
            import collections

            latest = tf.train.latest_checkpoint(str(model_dir / "checkpoints"))
            variables = tf.train.list_variables(latest)
            groups = collections.Counter(name.split("/")[0] for name, _ in variables)
            print(latest)
            print(f"{len(variables)} saved tensors:", dict(groups))
            print("step:", tf.train.load_variable(latest, "step/.ATTRIBUTES/VARIABLE_VALUE"))
        """),
        md("""
            ## Resuming

            `train.train(..., resume=True)` (the command line's `--resume`) reopens the directory,
            restores the latest checkpoint and carries on with the very next batch; only the
            run's length and limits (epochs, `max_steps`, time limit, patience) may change. Here
            it lifts the step limit and finishes the last epoch:
        """),
        code("""
            import dataclasses

            finish = dataclasses.replace(train_config, max_steps=0)
            history = train.train(str(model_dir), subset_corpus, SIZES, finish, resume=True, verbose=2)
            plot_training(history)
        """),
        md("""
            The trained directory translates right away (greedy decoding, notebook 5). A few
            minutes on a CPU and a 12,000-pair subset give a model that knows some frequent
            phrases, no more; the shipped model trained on the whole corpus.
        """),
        code("""
            from bahdanau_keras.translate import Translation

            translation = Translation.open(str(model_dir))
            sentences = ["I am hungry.", "Where is my cat?", "John loves Mary."]
            for sentence, result in zip(sentences, translation.translate(sentences)):
                print(f"{sentence:20s} -> {result['translation']}")
        """),
    ]


# -- 05 ------------------------------------------------------------------------------------

def notebook_05():
    return [
        title("05_decoding", "5. Decoding", """
            A trained model gives the probability of the next word; decoding turns that into a
            sentence. This notebook compares greedy decoding with beam search, shows the length
            penalty at work, draws the attention of real translations and scores the model with
            BLEU and chrF. It uses the shipped English→French model, `saved_models/en-fr`.
        """),
        SETUP,
        MODEL,
        md("""
            `Translation.open` opens either a model directory from training or an exported
            SavedModel; both translate batches of raw strings inside the graph. The export
            carries its training configuration and history in `assets/`.
        """),
        code("""
            import json

            from bahdanau_keras.translate import Translation

            translation = Translation.open(str(MODEL))
            model_config, train_config, data_info = train.read_config(str(MODEL / "assets"))
            print(model_config)
            print("trained on", data_info.get("path"), "-", data_info.get("train_pairs"), "training pairs")
            history_path = MODEL / "assets" / "history.json"
            history = json.loads(history_path.read_text()) if history_path.exists() else []
            if history:
                last = history[-1]
                print(f"after {last['epoch']} epochs ({last['step']:,} steps): dev loss {last['dev_loss']:.3f}")
        """),
        md("""
            ## Greedy decoding

            Greedy decoding picks the most likely subword at every step and feeds it back, until
            the end token. The score is the sum of the chosen tokens' log-probabilities,
            $\\log P(Y \\mid X)$.
        """),
        code("""
            sentences = ["John loves Mary.", "Where is the station?", "I think it will rain tomorrow.",
                         "She has been reading this book for two hours."]
            greedy = translation.translate(sentences)
            for sentence, result in zip(sentences, greedy):
                print(f"{sentence:48s} -> {result['translation']}  (log P = {result['score']:.2f})")
        """),
        md("""
            ## Beam search

            A locally best word can lead to a poor sentence. Beam search keeps the `beam_width`
            best partial translations at each step and extends each of them; it returns the
            n-best list. All sentences of the batch are searched together in one
            `tf.while_loop`.
        """),
        code("""
            beam = translation.translate(sentences, beam_width=4, alpha=0.6)
            for sentence, result in zip(sentences, beam):
                print(f"{sentence:48s} -> {result['translation']}")
            print("\\nn-best list of", repr(sentences[-1]))
            for hypothesis, score in beam[-1]["nbest"]:
                print(f"  {score:7.3f}  {hypothesis}")
        """),
        md("""
            ## The length penalty

            Every word multiplies in a probability below 1, so a plain sum of log-probabilities
            prefers short translations. Beam search ranks hypotheses by
            $\\log P(Y \\mid X) \\,/\\, lp(Y)$ with the GNMT length penalty (Wu et al. 2016)
            $lp(Y) = \\left(\\frac{5 + |Y|}{6}\\right)^\\alpha$: $\\alpha = 0$ is no penalty,
            larger $\\alpha$ favours longer output.
        """),
        code("""
            import tensorflow as tf

            from bahdanau_keras.decode import length_penalty

            lengths = tf.constant([3, 6, 11, 20])
            print("|Y|       ", lengths.numpy())
            for alpha in (0.0, 0.6, 1.0, 2.0):
                penalty = length_penalty(lengths, alpha)  # ((5 + |Y|) / 6)^α
                print(f"α = {alpha:3.1f}   ", penalty.numpy().round(2))
        """),
        md("""
            Its effect, measured on sentences from the test split (never seen in training): the
            mean length of the translations against the references', and BLEU.
        """),
        code("""
            from bahdanau_keras import evaluate

            DATA = Path(os.environ.get("BAHDANAU_KERAS_DATA", REPO.parent / "shared" / "data"))
            trained_on = str(data_info.get("path", ""))
            name = Path(trained_on).name.split(":")[0]  # "corpus.zip:member.txt" names a zip member
            if name == Path(data.SAMPLE_CORPUS).name:
                corpus_path = data.SAMPLE_CORPUS
            elif name and (DATA / name).exists():
                corpus_path = DATA / name
            else:
                corpus_path = trained_on  # a URL (downloaded once), or a path on the training machine
            try:
                sources, references = evaluate.test_split(corpus_path, train_config)
            except data.CorpusError as error:
                print(f"{error}\\nScoring on the test split of the sample corpus instead.")
                sources, references = evaluate.test_split(data.SAMPLE_CORPUS, train_config)
            print(f"test split: {len(sources):,} source sentences, {sum(map(len, references)):,} references")
        """),
        code("""
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
        """),
        md("""
            ## Attention of real translations

            The decoder's attention weights $\\alpha_{ij}$ for each chosen subword (rows) over the
            source subwords (columns), drawn with `bahdanau_keras.plot.plot_attention`. A good
            model aligns "Jean" with "John" and "Marie" with "Mary", and reorders where the
            languages do.
        """),
        code(PLOTS, """
            from bahdanau_keras.plot import plot_attention
        """, SMALL_IMAGES, """
            shown = ["John loves Mary.", "I think it will rain tomorrow."]
            figure, axes = plt.subplots(1, 2, figsize=(11, 4.5))
            for ax, result in zip(axes, translation.translate(shown, beam_width=4)):
                plot_attention(result["attention"], result["source_tokens"], result["target_tokens"],
                               ax=ax, title=result["translation"])
            plt.show()
        """),
        code("""
            result = translation.translate(["She has been reading this book for two hours."])[0]
            plot_attention(result["attention"], result["source_tokens"], result["target_tokens"],
                           title=result["translation"])
            plt.show()
        """),
        md("""
            ## BLEU and chrF

            `bahdanau_keras.evaluate.evaluate` translates the test sentences greedily and with
            beam search and scores them with sacreBLEU: BLEU (matching word n-grams) and chrF
            (matching character n-grams, kinder to French morphology). Tatoeba often has several
            translations of one sentence; all of them are references.
        """),
        code("""
            count = min(len(sources), 100 if FAST else 1000)
            report = evaluate.evaluate(translation, sources[:count], references[:count],
                                       beam_widths=(1, 4), alpha=0.6, verbose=False)
            print(f"{report['sentences']} sentences, {report['references']} references")
            for name in ("greedy", "beam4"):
                r = report[name]
                print(f"{name:7s} BLEU {r['bleu']:5.2f}  chrF {r['chrf']:5.2f}  "
                      f"{r['sentences_per_s']:6.1f} sentences/s")
            print(report["greedy"]["bleu_signature"])
        """),
        code("""
            for example in report["beam4"]["examples"][:3]:
                print(f"{example['source']}\\n  model:      {example['translation']}\\n"
                      f"  references: {example['references']}")
        """),
        md("""
            Next: notebook 6 looks inside the exported SavedModel and serves it.
        """),
    ]


# -- 06 ------------------------------------------------------------------------------------

def notebook_06():
    return [
        title("06_export_and_serving", "6. Export and serving", """
            `bahdanau-keras export` writes the whole pipeline — normalisation, SentencePiece,
            encoder, search, detokenisation — into one TensorFlow SavedModel that takes raw
            strings. This notebook looks at its files and signatures, loads it in a process that
            does not have this package, inspects it with `saved_model_cli` and calls it the way
            TensorFlow Serving does.
        """),
        SETUP,
        MODEL,
        md("""
            ## The files

            `saved_model.pb` holds the graphs (the SentencePiece models are inside, as
            attributes of their ops), `variables/` the weights, and `assets/` the training
            configuration and history.
        """),
        code("""
            import json

            for path in sorted(MODEL.rglob("*")):
                if path.is_file():
                    print(f"{str(path.relative_to(MODEL)):42s} {path.stat().st_size:>12,} bytes")
            config = json.loads((MODEL / "assets" / "config.json").read_text())
            print(json.dumps(config["model"]))
        """),
        md("""
            ## Signatures

            A signature is a named, typed entry point. `serving_default` is greedy decoding;
            `translate_beam` adds the beam width and the length and coverage penalties;
            `translate_sample` samples with a temperature and a seed. Every input has a fixed
            dtype and a shape, `[None]` for the batch of sentences.
        """),
        code("""
            import tensorflow as tf

            reloaded = tf.saved_model.load(str(MODEL))
            for name, function in reloaded.signatures.items():
                print(name)
                for key, spec in function.structured_input_signature[1].items():
                    print(f"   in   {key:20s} {spec.dtype.name:8s} {spec.shape}")
                for key, spec in function.structured_outputs.items():
                    print(f"   out  {key:20s} {spec.dtype.name:8s} {spec.shape}")
        """),
        md("""
            ## `saved_model_cli`

            TensorFlow's command-line tool shows the same from the files alone. `--all` prints
            every signature and the ops the graphs use, among them the TensorFlow Text ops
            (`SentencepieceOp`, `NormalizeUTF8`, ...); because of those, it cannot list the saved
            functions themselves:
        """),
        code("""
            import shutil
            import subprocess

            cli = shutil.which("saved_model_cli") or str(Path(sys.executable).with_name("saved_model_cli"))
            shown = subprocess.run([cli, "show", "--dir", str(MODEL), "--all"], capture_output=True,
                                   text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
            print(shown.stdout if shown.returncode == 0 else shown.stderr[-3000:])
        """),
        md("""
            ## Loading without this package

            The SavedModel needs TensorFlow and `tensorflow_text`, which registers the
            SentencePiece and Unicode-normalisation ops; none of this package's code. A fresh
            Python process in which `import bahdanau_keras` would fail first tries plain
            TensorFlow, then imports `tensorflow_text` and translates:
        """),
        code("""
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
        """),
        md("""
            ## Calling it as TensorFlow Serving does

            TensorFlow Serving loads the SavedModel and exposes each signature over REST and
            gRPC. A REST request is JSON: in the *row* format, `{"instances": [...]}` holds one
            entry per example (here, one string each, as `serving_default` has a single input,
            `texts`); the answer is `{"predictions": [...]}`, one object per example with every
            output. The server turns the instances into the tensor `texts` and calls the
            signature, exactly this:
        """),
        code("""
            serving_default = reloaded.signatures["serving_default"]
            outputs = serving_default(texts=tf.constant(["John loves Mary.", "Where is the station?"]))
            for name, value in outputs.items():
                print(f"{name:14s} {value.dtype.name:7s} {value.shape}")
        """),
        md("""
            The whole request–response cycle in a few lines, for both request formats: rows
            (`instances`) and columns (`inputs`, which also takes the scalar inputs of
            `translate_beam`):
        """),
        code("""
            import numpy as np


            def to_json(value):
                \"\"\"A tensor as TensorFlow Serving writes it in JSON (strings as UTF-8 text).\"\"\"
                value = value.numpy() if hasattr(value, "numpy") else value
                if isinstance(value, bytes):
                    return value.decode("utf-8")
                if isinstance(value, np.ndarray):
                    return [to_json(v) for v in value] if value.ndim else to_json(value.item())
                return round(float(value), 4) if isinstance(value, (float, np.floating)) else value


            def predict(body):
                \"\"\"What the REST endpoint `POST /v1/models/en-fr:predict` does with a request body.\"\"\"
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
        """),
        code("""
            body = json.dumps({"signature_name": "translate_beam",
                               "inputs": {"texts": ["John loves Mary."], "beam_width": 4,
                                          "alpha": 0.6, "beta": 0.0}})
            response = json.loads(predict(body))["outputs"]
            print("request: ", body)
            print("response:", {k: response[k] for k in ("translation", "nbest_translations", "nbest_scores")})
        """),
        md("""
            With the real server (not run here): TensorFlow Serving expects a numbered version
            directory under the model's base path, and its releases link in the TensorFlow Text
            ops (use one at least as recent as the TensorFlow that exported the model).

            ```bash
            mkdir -p /tmp/serving/en-fr && cp -r saved_models/en-fr /tmp/serving/en-fr/1
            docker run --rm -p 8501:8501 -v /tmp/serving/en-fr:/models/en-fr -e MODEL_NAME=en-fr tensorflow/serving
            curl -s -X POST http://localhost:8501/v1/models/en-fr:predict \\
                 -d '{"instances": ["John loves Mary."]}'
            ```

            In Python, the exported model is also usable directly: `reloaded.translate(texts)`,
            `reloaded.translate_beam(texts, 4, 0.6, 0.0)`.
        """),
    ]


# -- 07 ------------------------------------------------------------------------------------

def notebook_07():
    return [
        title("07_bahdanau_vs_luong", "7. Bahdanau against Luong attention", """
            Introductions to attention usually set Bahdanau's *additive* score beside Luong's
            *multiplicative* one and say that the second is cheaper and about as good. This
            notebook measures it: the same translator, data and number of steps, with only the
            score function changed.
        """),
        SETUP,
        md(r"""
            ## Two scores

            | | score $e_{ij}$ | parameters |
            | --- | --- | --- |
            | Bahdanau et al. (2014), additive | $v_a^\top \tanh(W_a s_{i-1} + U_a h_j)$ | `units·(query_dim + value_dim + 1)` |
            | Luong et al. (2015), "general" | $s_{i-1}^\top W_a h_j$ | `query_dim·value_dim` |

            Luong, Pham and Manning, *Effective Approaches to Attention-based Neural Machine
            Translation* ([arXiv:1508.04025](https://arxiv.org/abs/1508.04025), Section 3.1)
            propose the "general" score (and "dot", $s^\top h$, when sizes agree). Both are
            followed by the same softmax and weighted sum. Luong et al. also moved attention
            after the recurrent step and fed its output back in; here only the score changes, so
            that the measurement is about the score alone.

            The package has no Luong layer, so we write one, with the interface of
            `BahdanauAttention` (`project_keys`, then `call(query, values, mask, keys)`) and the
            package's masked softmax. As before, $W_a h_j$ does not depend on the decoder step
            and is computed once per sentence.
        """),
        code('''
            import keras
            import tensorflow as tf

            from bahdanau_keras import BahdanauAttention, Translator


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
        '''),
        md("""
            The translator builds its decoder's attention when it is created. A subclass of the
            package's `Translator` puts the Luong layer in its place just before the weights are
            made; the encoder, the GRU, the deep output, the loss and the searches are the
            package's, unchanged.
        """),
        code('''
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
        '''),
        md("""
            ## Speed of the score alone

            At the shipped model's sizes (batch 64, 20 source subwords, 512 units everywhere),
            one decoder step of attention, with the keys precomputed:
        """),
        code("""
            import time

            import numpy as np


            def time_attention(layer, batch=64, src_len=20, dim=512, calls=20 if FAST else 200):
                values = tf.random.normal([batch, src_len, dim])  # h: [batch, src_len, value_dim]
                query = tf.random.normal([batch, dim])  # s_{i-1}: [batch, query_dim]
                mask = tf.ones([batch, src_len], tf.bool)
                layer(query, values, mask=mask)  # creates the weights
                keys = layer.project_keys(values)  # computed once per sentence
                step = tf.function(lambda q: layer(q, values, mask=mask, keys=keys))
                step(query)  # traces
                started = time.perf_counter()
                for _ in range(calls):
                    step(query)
                return (time.perf_counter() - started) / calls * 1e6


            layers = {"Bahdanau": BahdanauAttention(512), "Luong": LuongAttention()}
            timing = {name: min(time_attention(layer) for _ in range(3)) for name, layer in layers.items()}
            for name, microseconds in timing.items():
                print(f"{name:9s} {microseconds:6.0f} µs a step (best of 3)")
        """),
        md("""
            ## The same data

            A random subset of short Tatoeba pairs (as in notebook 4), one pair of vocabularies,
            and the same batches in the same order for both models.
        """),
        CORPUS,
        code("""
            import random

            from bahdanau_keras import text, train

            # One seed for the whole comparison, set before the tokenizers are made: setting a seed
            # clears TensorFlow's cache of eager kernels, and with it their SentencePiece resources.
            keras.utils.set_random_seed(0)
            short = [(s, t) for s, t in corpus.pairs if len(s.split()) <= 8]
            subset = random.Random(0).sample(short, min(len(short), 1000 if FAST else 12000))
            splits = data.split_pairs(subset)
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
        """),
        md("""
            ## Training both

            The package's training step and optimiser (Adam 1e-3, clipnorm 1), the same sizes and
            the same batches; both models take their initial weights from the seed set above.
        """),
        code("""
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
                results[name] = {"losses": [], "seconds": 0.0, "tokens": 0}

            # The models take turns on each batch, so that both see the same load on the machine.
            batches = data.batches(*train_ids, batch_size=64, seed=0, epochs=EPOCHS)
            for number, (_, source, target) in enumerate(batches):
                for name, step in steps.items():
                    started = time.perf_counter()
                    loss_sum, count = step(source, target)
                    loss_sum, count = float(loss_sum), int(count)
                    if number >= 3:  # the first steps include tracing and warm-up: not timed
                        results[name]["seconds"] += time.perf_counter() - started
                        results[name]["tokens"] += count
                    results[name]["losses"].append(loss_sum / count)

            for name, model in models.items():
                result = results[name]
                result["tokens_per_s"] = result["tokens"] / result["seconds"]
                result["dev_loss"] = train.dev_loss(
                    train.make_eval_step(model), data.batches(*dev_ids, batch_size=64, shuffle=False))
                print(f"{name:9s} {len(result['losses'])} steps, {result['tokens_per_s']:8,.0f} target "
                      f"tokens/s, dev loss {result['dev_loss']:.3f}")
        """),
        code(PLOTS, SMALL_IMAGES, """
            figure, ax = plt.subplots(figsize=(6, 3.5))
            window = 5 if FAST else 20
            for name, result in results.items():
                smooth = np.convolve(result["losses"], np.ones(window) / window, mode="valid")
                ax.plot(np.arange(len(smooth)) + window, smooth, label=name)
            ax.set_xlabel("step")
            ax.set_ylabel(f"train loss (mean of {window} steps)")
            ax.legend()
            ax.grid(alpha=0.3)
            figure.tight_layout()
            plt.show()
        """),
        md("""
            ## Translations, scores and alignments

            Both models translate the test split greedily (the package's in-graph search, through
            `TranslatorModule`). Beside BLEU and chrF, two measures of the attention itself: the
            mean entropy of each row of $\\alpha$ (lower is sharper) and the mean largest weight.
            The first column repeats the attention timing above (at 512 units).
        """),
        code("""
            from bahdanau_keras import evaluate
            from bahdanau_keras.export import TranslatorModule
            from bahdanau_keras.translate import Translation

            translations = {name: Translation(TranslatorModule(model, source_tokenizer, target_tokenizer),
                                              path=None)
                            for name, model in models.items()}
            for name, translation in translations.items():
                report = evaluate.evaluate(translation, test_sources, test_references,
                                           beam_widths=(1,), verbose=False)["greedy"]
                alphas = [np.asarray(r["attention"]) for r in translation.translate(test_sources)]
                alphas = [a for a in alphas if a.size]  # each [tgt_len, src_len], real tokens only
                entropy = np.concatenate([-np.sum(a * np.log(np.maximum(a, 1e-12)), axis=1) for a in alphas])
                largest = np.concatenate([a.max(axis=1) for a in alphas])
                results[name].update(bleu=report["bleu"], chrf=report["chrf"],
                                     entropy=float(entropy.mean()), largest=float(largest.mean()))

            print(f"{'':9s} {'µs/step (512)':>13s} {'tokens/s':>9s} {'dev loss':>9s} {'BLEU':>6s} "
                  f"{'chrF':>6s} {'entropy':>8s} {'max α':>6s}")
            for name, r in results.items():
                print(f"{name:9s} {timing[name]:13.0f} {r['tokens_per_s']:9,.0f} {r['dev_loss']:9.3f} "
                      f"{r['bleu']:6.2f} {r['chrf']:6.2f} {r['entropy']:8.3f} {r['largest']:6.3f}")
        """),
        code("""
            from bahdanau_keras.plot import plot_attention

            figure, axes = plt.subplots(1, 2, figsize=(10, 4))
            for ax, (name, translation) in zip(axes, translations.items()):
                result = translation.translate(["John loves Mary."])[0]
                plot_attention(result["attention"], result["source_tokens"], result["target_tokens"],
                               ax=ax, title=f"{name}: {result['translation']}")
            plt.show()
        """),
        md("""
            ## Reading the numbers

            One seed and a few minutes of training per model: differences of a few tenths of a
            BLEU point are within the noise of such a run, while the time per attention step is
            a direct measurement. The comparison the introductions make in words is above in
            numbers; a fair verdict on quality would repeat the training with several seeds and
            the full corpus (`bahdanau-keras train` trains the Bahdanau model at full size).
        """),
        code("""
            faster, slower = sorted(timing, key=timing.get)
            bleu = {name: results[name]["bleu"] for name in results}
            better = "equal" if len(set(bleu.values())) == 1 else max(bleu, key=bleu.get)
            print(f"The {faster} score took {timing[faster] / timing[slower]:.0%} of the time of the "
                  f"{slower} score per attention step; whole training steps ran at "
                  f"{results['Bahdanau']['tokens_per_s']:,.0f} (Bahdanau) and "
                  f"{results['Luong']['tokens_per_s']:,.0f} (Luong) target tokens/s.")
            print(f"BLEU: Bahdanau {results['Bahdanau']['bleu']:.2f}, Luong {results['Luong']['bleu']:.2f} "
                  f"(higher: {better}); dev loss {results['Bahdanau']['dev_loss']:.3f} against "
                  f"{results['Luong']['dev_loss']:.3f}.")
        """),
    ]


NOTEBOOKS = {
    "01_attention_from_scratch": notebook_01,
    "02_data_and_text": notebook_02,
    "03_the_model": notebook_03,
    "04_training": notebook_04,
    "05_decoding": notebook_05,
    "06_export_and_serving": notebook_06,
    "07_bahdanau_vs_luong": notebook_07,
}


def build(name):
    """The notebook `name`, without outputs, with stable cell ids."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = NOTEBOOKS[name]()
    for number, cell in enumerate(notebook.cells):
        cell.id = f"{name[:2]}-{number:02d}"
    notebook.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
        "colab": {"provenance": []},
    }
    return notebook


def execute(notebook, timeout=1800):
    """Run `notebook` top to bottom in a fresh kernel, in `notebooks/`; raises on an error."""
    from nbclient import NotebookClient

    NotebookClient(notebook, timeout=timeout, kernel_name="python3", record_timing=False,
                   resources={"metadata": {"path": str(NOTEBOOKS_DIR)}}).execute()
    return notebook


# Log lines that say nothing about the tutorial: TensorFlow's C++ start-up messages (printed
# before its logging is configured, whatever TF_CPP_MIN_LOG_LEVEL says) and SentencePiece's.
NOISE = re.compile(r"(WARNING: All log messages before absl::InitializeLog|"
                   r"[IWE]\d{4} [\d:.]+ +\d+ \S+:\d+\]|normalizer\.cc\(\d+\) LOG\(INFO\))")


def clean_outputs(notebook):
    """Drop log noise from the saved outputs and merge consecutive stream outputs.

    stderr lines that repeat a stdout line of the same cell go too (in a notebook, TensorFlow's
    Python logger writes each message to both streams)."""
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        printed = {line for output in cell.outputs
                   if output.output_type == "stream" and output.name == "stdout"
                   for line in output.text.splitlines()}
        outputs = []
        for output in cell.outputs:
            if output.output_type == "stream":
                lines = output.text.splitlines(keepends=True)
                if output.name == "stderr":
                    lines = [line for line in lines
                             if not NOISE.match(line) and line.rstrip("\n") not in printed]
                output.text = "".join(lines)
                if not output.text.strip():
                    continue
                if (outputs and outputs[-1].output_type == "stream"
                        and outputs[-1].name == output.name):
                    outputs[-1].text += output.text
                    continue
            outputs.append(output)
        cell.outputs = outputs
    return notebook


def sources(notebook):
    return [(cell.cell_type, cell.source) for cell in notebook.cells]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebook name prefixes (default: all)")
    parser.add_argument("--execute", action="store_true", help="run and keep the outputs")
    parser.add_argument("--check", action="store_true",
                        help="only compare the .ipynb files' cells with this script")
    args = parser.parse_args(argv)
    names = [n for n in NOTEBOOKS if not args.names or any(n.startswith(p) for p in args.names)]
    stale = []
    for name in names:
        path = NOTEBOOKS_DIR / f"{name}.ipynb"
        notebook = build(name)
        if args.check:
            if not path.exists() or sources(nbformat.read(path, as_version=4)) != sources(notebook):
                stale.append(path.name)
            continue
        if args.execute:
            print(f"executing {path.name} ...", flush=True)
            clean_outputs(execute(notebook))
        elif path.exists() and sources(nbformat.read(path, as_version=4)) == sources(notebook):
            print(f"{path.name} is up to date (its outputs are kept)")
            continue
        nbformat.validate(notebook)
        nbformat.write(notebook, path)
        print(f"wrote {path}")
    if stale:
        print("out of date (run notebooks/build_notebooks.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
