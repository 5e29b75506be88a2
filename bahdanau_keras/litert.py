"""Translate with the LiteRT (TensorFlow Lite) models that `export_litert` writes.

This is what a phone app does, in Python: normalise the text and cut it into subwords with
SentencePiece, run `encoder.tflite` once, then run `decoder_step.tflite` once per output token
while a greedy or beam search (NumPy) chooses the tokens, and join the chosen subwords back
into text. The searches follow `bahdanau_keras.decode` rule for rule (the output limit
`ceil(a * source_length + b)`, the tokens never chosen, the GNMT length and coverage
penalties), so the translations are those of the exported SavedModel.

The module needs only NumPy, `sentencepiece` and `ai-edge-litert`: it imports neither
TensorFlow nor Keras, and `from bahdanau_keras.litert import LiteTranslator` works where
TensorFlow is not installed.

    from bahdanau_keras.litert import LiteTranslator

    translator = LiteTranslator("exports/en-fr-litert")
    translator.translate(["John loves Mary."], beam_width=4)
"""

import json
import os
import unicodedata

import numpy as np

METADATA_FILE = "litert.json"
FORMAT = "bahdanau_keras.litert"
FORMAT_VERSION = 1
# A score no real hypothesis reaches (as in `bahdanau_keras.decode`).
NEG_INF = np.float32(-1e9)

# The source text's normalisation, `bahdanau_keras.text.normalize`, as data: the export writes
# it into `litert.json`, and an app (like `normalize` below) applies the steps in order
# before SentencePiece.
NORMALIZATION = [
    {"step": "decode_utf8", "doc": "invalid UTF-8 byte sequences become U+FFFD"},
    {"step": "unicode_normalize", "form": "NFKC"},
    {"step": "replace", "characters": "\u2018\u2019\u201a\u201b\u02bc\u0060\u00b4", "with": "'"},
    {"step": "replace", "characters": "\u201c\u201d\u201e\u201f", "with": '"'},
    {"step": "replace", "characters": "\u200b\u200c\u200d\u2060\ufeff", "with": ""},
    {"step": "collapse", "categories": ["Zs", "Zl", "Zp", "Cc"], "characters": "\u2581",
     "with": " ", "doc": "each run of characters of these categories, or of these "
                        "characters, becomes one space"},
    {"step": "strip", "characters": " "},
]


def normalize(text, steps=None):
    """Apply the normalisation `steps` (by default `NORMALIZATION`) to one string or UTF-8
    bytes; returns a string, the same as `bahdanau_keras.text.normalize` gives."""
    for step in NORMALIZATION if steps is None else steps:
        kind = step["step"]
        if kind == "decode_utf8":
            if isinstance(text, (bytes, bytearray)):
                text = bytes(text).decode("utf-8", errors="replace")
        elif kind == "unicode_normalize":
            text = unicodedata.normalize(step["form"], text)
        elif kind == "replace":
            text = text.translate({ord(c): step["with"] for c in step["characters"]})
        elif kind == "collapse":
            categories, characters = set(step["categories"]), set(step["characters"])
            pieces, in_run = [], False
            for character in text:
                if character in characters or unicodedata.category(character) in categories:
                    if not in_run:
                        pieces.append(step["with"])
                    in_run = True
                else:
                    pieces.append(character)
                    in_run = False
            text = "".join(pieces)
        elif kind == "strip":
            text = text.strip(step["characters"])
        else:
            raise ValueError(f"Unknown normalisation step. Expected one of decode_utf8, "
                             f"unicode_normalize, replace, collapse, strip. Received: {kind!r}")
    return text


def length_penalty(lengths, alpha):
    """GNMT length penalty `((5 + |Y|) / 6)^α` (Wu et al. 2016, eq. 14), in float32."""
    return np.power((np.float32(5.0) + lengths.astype(np.float32)) / np.float32(6.0),
                    np.float32(alpha))


def coverage_penalty(coverage, source_mask, beta):
    """GNMT coverage penalty `β Σ_j log(min(Σ_i α_ij, 1))` over the real source positions;
    `coverage` `[batch, beam, src_len]`, `source_mask` bool `[batch, 1, src_len]`."""
    logs = np.log(np.clip(coverage, np.float32(1e-10), np.float32(1.0)))
    return np.float32(beta) * np.sum(np.where(source_mask, logs, np.float32(0.0)), axis=-1)


def top_k(values, k):
    """`tf.math.top_k` on the last axis of a 2-D array: the `k` largest values in decreasing
    order, equal values in increasing index order. Returns `(values, indices)`."""
    if k >= values.shape[-1]:
        indices = np.argsort(-values, axis=-1, kind="stable")[:, :k]
    elif k <= 8:
        # A beam's few: k passes of argmax (whose first maximum is the lowest index), each
        # taken entry set to -inf; 4x faster than a partition of [batch * beam, vocab].
        rows = np.arange(values.shape[0])
        remaining = values.copy()
        indices = np.empty([values.shape[0], k], np.int64)
        exhausted = np.zeros([values.shape[0]], bool)
        for j in range(k):
            indices[:, j] = np.argmax(remaining, axis=-1)
            # Where the largest value left is -inf itself, argmax may pick a taken entry:
            # those rows are sorted in full below.
            exhausted |= remaining[rows, indices[:, j]] == -np.inf
            remaining[rows, indices[:, j]] = -np.inf
        if np.any(exhausted):
            indices[exhausted] = np.argsort(-values[exhausted], axis=-1, kind="stable")[:, :k]
    else:
        indices = np.argpartition(-values, k - 1, axis=-1)[:, :k]
        chosen = np.take_along_axis(values, indices, axis=-1)
        # Sort the k by value, then index (np.lexsort sorts by its last key first).
        indices = np.take_along_axis(indices, np.lexsort((indices, -chosen), axis=-1), axis=-1)
        # A value equal to the k-th largest may have been left out for a larger index:
        # those rows are sorted in full.
        kth = np.take_along_axis(values, indices[:, -1:], axis=-1)
        ties = np.sum(values >= kth, axis=-1) > k
        if np.any(ties):
            indices[ties] = np.argsort(-values[ties], axis=-1, kind="stable")[:, :k]
    return np.take_along_axis(values, indices, axis=-1), indices


class LiteTranslator:
    """Translate with an exported LiteRT directory, on the host, without TensorFlow.

    Args:
        path: A directory written by `bahdanau_keras.litert_export.export_litert` (its
            `litert.json`, `encoder.tflite`, `decoder_step.tflite`, `source.model` and
            `target.model`).
        num_threads: Threads of each LiteRT interpreter (`None`: LiteRT's default).

    Example:

    >>> translator = LiteTranslator("exports/en-fr-litert")  # doctest: +SKIP
    >>> translator.translate(["John loves Mary."])  # doctest: +SKIP
    ['John aime Marie.']
    """

    def __init__(self, path, num_threads=None):
        try:
            import sentencepiece
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as error:
            raise ImportError(
                "LiteTranslator needs `ai-edge-litert` and `sentencepiece` "
                f"(pip install ai-edge-litert sentencepiece). Received: {error}") from None
        metadata_path = os.path.join(path, METADATA_FILE)
        if not os.path.isfile(metadata_path):
            raise FileNotFoundError(
                f"{path}: not a LiteRT export (no {METADATA_FILE}); write one with "
                "`bahdanau-keras export --format litert`")
        with open(metadata_path, encoding="utf-8") as f:
            self.metadata = json.load(f)
        if (self.metadata.get("format") != FORMAT
                or self.metadata.get("version") != FORMAT_VERSION):
            raise ValueError(
                f"{metadata_path}: expected format {FORMAT!r} version {FORMAT_VERSION}. "
                f"Received: format={self.metadata.get('format')!r}, "
                f"version={self.metadata.get('version')!r}")
        self.path = path
        files = {name: os.path.join(path, entry["path"])
                 for name, entry in self.metadata["files"].items()}
        ids = self.metadata["special_ids"]
        self.pad_id, self.start_id, self.end_id = ids["pad"], ids["start"], ids["end"]
        self.search_limits = self.metadata["search"]
        self.normalization = self.metadata["normalization"]
        self.source_vocab = sentencepiece.SentencePieceProcessor(
            model_file=files["source_vocab"])
        self.target_vocab = sentencepiece.SentencePieceProcessor(
            model_file=files["target_vocab"])
        self.encoder_interpreter = Interpreter(model_path=files["encoder"],
                                               num_threads=num_threads)
        self.decoder_step_interpreter = Interpreter(model_path=files["decoder_step"],
                                                    num_threads=num_threads)
        self._encode = self.encoder_interpreter.get_signature_runner()
        self._step = self.decoder_step_interpreter.get_signature_runner()
        vocab = self.metadata["sizes"]["target_vocab_size"]
        # Tokens never chosen (the model is never trained to predict them): [vocab]
        self.forbidden = np.zeros([vocab], np.float32)
        self.forbidden[self.search_limits["forbidden_ids"]] = NEG_INF

    # -- text <-> ids ----------------------------------------------------------------------------

    def source_ids(self, sentences):
        """Normalised, tokenised, cut to `max_source_length - 1` subwords and ended with
        `END_ID`, as the SavedModel does: one list of ids per sentence."""
        limit = self.search_limits["max_source_length"] - 1
        texts = [normalize(s, self.normalization) for s in sentences]
        return [pieces[:limit] + [self.end_id] for pieces in self.source_vocab.encode(texts)]

    def detokenize(self, tokens):
        """Ids `[tgt_len]` -> text: cut at the first `END_ID`, `PAD_ID` and `START_ID` left
        out."""
        tokens = [int(t) for t in tokens]
        if self.end_id in tokens:
            tokens = tokens[:tokens.index(self.end_id)]
        return self.target_vocab.decode(
            [t for t in tokens if t not in (self.pad_id, self.start_id)])

    # -- the two models ----------------------------------------------------------------------

    def encode(self, source_ids):
        """Run `encoder.tflite` on int32 `[batch, src_len]` (0-padded) ids.

        Returns a dict: `annotations` `[batch, src_len, context_dim]`, `keys` (`U_a h_j`)
        `[batch, src_len, attention_units]`, `initial_state` (`s_0`) `[batch, units]` and
        `source_mask` float32 `[batch, src_len]`.
        """
        source_ids = np.asarray(source_ids, np.int32)
        if source_ids.ndim != 2 or source_ids.shape[0] < 1 or source_ids.shape[1] < 1:
            raise ValueError("`source_ids` must be [batch, src_len] with batch, src_len >= 1 "
                             f"(every sentence ends with END_ID). Received: shape "
                             f"{source_ids.shape}")
        outputs = self._encode(source_ids=source_ids)
        outputs["source_mask"] = (source_ids != self.pad_id).astype(np.float32)
        return outputs

    def step(self, previous_tokens, state, encoded):
        """Run `decoder_step.tflite` once: `(log_probs, new_state, attention)`,
        `[batch, vocab]`, `[batch, units]`, `[batch, src_len]`."""
        outputs = self._step(
            previous_tokens=np.asarray(previous_tokens, np.int32), state=state,
            keys=encoded["keys"], annotations=encoded["annotations"],
            source_mask=encoded["source_mask"])
        return outputs["log_probs"], outputs["state"], outputs["attention"]

    def max_output_lengths(self, source_mask):
        """Per-sentence limit `ceil(a * source_length + b)` output tokens with the end token,
        in `[1, max_length]` (`bahdanau_keras.decode.max_output_lengths`): `[batch]`."""
        limits = self.search_limits
        source_lengths = np.sum(source_mask, axis=1, dtype=np.float32)
        lengths = np.ceil(np.float32(limits["max_length_a"]) * source_lengths
                          + np.float32(limits["max_length_b"]))
        return np.clip(lengths.astype(np.int32), 1, max(limits["max_length"], 1))

    # -- searches ----------------------------------------------------------------------------

    def greedy_search(self, source_ids):
        """Greedy decoding of int32 `[batch, src_len]` source ids.

        Returns a dict: `tokens` int32 `[batch, tgt_len]` (ending with `END_ID`, then
        `PAD_ID`), `lengths` `[batch]` (with the end token), `scores` `[batch]` (summed
        log-probability) and `attention` `[batch, tgt_len, src_len]`.
        """
        encoded = self.encode(source_ids)
        batch, src_len = encoded["source_mask"].shape
        limits = self.max_output_lengths(encoded["source_mask"])
        state = encoded["initial_state"]
        previous = np.full([batch], self.start_id, np.int32)
        scores = np.zeros([batch], np.float32)
        lengths = np.zeros([batch], np.int32)
        tokens, attention = [], []
        active = np.arange(batch)  # sentences not ended: only these run the step
        for i in range(max(int(limits.max()), 1)):
            if i > 0 and active.size == 0:
                break
            log_probs, new_state, weights = self.step(
                previous[active], state[active], {k: v[active] for k, v in encoded.items()})
            chosen = np.argmax(log_probs + self.forbidden, axis=-1).astype(np.int32)
            # The length limit ends a sentence.
            chosen = np.where(i + 1 >= limits[active], self.end_id, chosen).astype(np.int32)
            step_tokens = np.full([batch], self.pad_id, np.int32)
            step_tokens[active] = chosen
            step_weights = np.zeros([batch, src_len], np.float32)
            step_weights[active] = weights
            scores[active] += log_probs[np.arange(active.size), chosen]
            lengths[active] += 1
            state = state.copy()
            state[active] = new_state
            previous = step_tokens
            tokens.append(step_tokens)
            attention.append(step_weights)
            active = active[chosen != self.end_id]
        return {"tokens": np.stack(tokens, axis=1), "lengths": lengths, "scores": scores,
                "attention": np.stack(attention, axis=1)}

    def beam_search(self, source_ids, beam_width=4, alpha=0.6, beta=0.0):
        """Beam search over int32 `[batch, src_len]` source ids, as
        `bahdanau_keras.decode.beam_search_decode`.

        Hypotheses are ranked by `log P(Y|X) / lp(Y) + cp(X; Y)` with the GNMT length penalty
        `lp(Y) = ((5 + |Y|) / 6)^alpha` (`|Y|` counts the end token) and coverage penalty
        `cp(X; Y) = beta Σ_j log(min(Σ_i α_ij, 1))`. An ended hypothesis keeps its score
        and competes with the others until every hypothesis of its sentence has ended or
        the length limit is reached.

        Returns a dict with the best hypothesis: `tokens` `[batch, tgt_len]`, `lengths`,
        `scores` (penalised), `log_probs` `[batch]`, `attention` `[batch, tgt_len, src_len]`.
        """
        if (not isinstance(beam_width, (int, np.integer)) or isinstance(beam_width, bool)
                or beam_width < 1):
            raise ValueError(f"`beam_width` must be a positive integer. Received: {beam_width!r}")
        encoded = self.encode(source_ids)
        source_mask = encoded["source_mask"] > 0.5
        batch, src_len = source_mask.shape
        beam = int(beam_width)
        limits = self.max_output_lengths(encoded["source_mask"])
        vocab = self.forbidden.shape[0]
        per_beam = min(beam, vocab)  # tokens looked at per hypothesis and step
        # Every sentence repeated `beam` times: [batch * beam, ...]
        tiled = {key: np.repeat(value, beam, axis=0) for key, value in encoded.items()}
        state = tiled.pop("initial_state")
        mask3 = source_mask[:, None, :]  # [batch, 1, src_len]
        first = np.arange(per_beam) == 0  # the one candidate of an ended hypothesis
        end_only = np.where(first, self.end_id, self.pad_id).astype(np.int32)
        first_only = np.where(first, np.float32(0.0), NEG_INF).astype(np.float32)
        # Only the first beam is alive at the start, so the first step picks no duplicates.
        log_probs = np.tile(np.where(np.arange(beam) == 0, np.float32(0.0), NEG_INF)
                            .astype(np.float32)[None, :], [batch, 1])
        previous = np.full([batch * beam], self.start_id, np.int32)
        finished = np.zeros([batch, beam], bool)
        lengths = np.zeros([batch, beam], np.int32)
        coverage = np.zeros([batch, beam, src_len], np.float32)
        sequences = np.zeros([batch, beam, 0], np.int32)
        attention = np.zeros([batch, beam, 0, src_len], np.float32)

        def gather_beams(x, parents):  # x [batch, beam, ...] indexed by parents [batch, beam]
            return x[np.arange(batch)[:, None], parents]

        for i in range(max(int(limits.max()), 1)):
            if i > 0 and finished.all():
                break
            all_log_probs, new_state, weights = self.step(previous, state, tiled)
            top_log_probs, top_tokens = top_k(all_log_probs + self.forbidden, per_beam)
            shape = [batch, beam, per_beam]
            step_log_probs = top_log_probs.reshape(shape)
            step_tokens = top_tokens.astype(np.int32).reshape(shape)
            end_log_probs = all_log_probs[:, self.end_id].reshape([batch, beam, 1])
            weights = weights.reshape([batch, beam, src_len])
            # At its length limit a hypothesis can only end (scored with END's log-prob).
            at_limit = (i + 1 >= limits)[:, None, None]
            step_tokens = np.where(at_limit, end_only, step_tokens)
            step_log_probs = np.where(at_limit, end_log_probs + first_only, step_log_probs)
            # An ended hypothesis continues with PAD at no cost and does not grow.
            ended = finished[:, :, None]
            step_tokens = np.where(ended, self.pad_id, step_tokens)
            step_log_probs = np.where(ended, first_only, step_log_probs)
            candidates = log_probs[:, :, None] + step_log_probs  # [batch, beam, per_beam]
            new_lengths = lengths + (~finished).astype(np.int32)
            weights = np.where(ended, np.float32(0.0), weights)
            new_coverage = coverage + weights  # [batch, beam, src_len]
            ranking = candidates / length_penalty(new_lengths, alpha)[:, :, None]
            ranking = ranking + coverage_penalty(new_coverage, mask3, beta)[:, :, None]
            _, flat_indices = top_k(ranking.reshape([batch, -1]), beam)
            parents = flat_indices // per_beam  # [batch, beam]
            chosen = np.take_along_axis(step_tokens.reshape([batch, -1]), flat_indices, axis=1)
            log_probs = np.take_along_axis(candidates.reshape([batch, -1]), flat_indices,
                                           axis=1)
            finished = gather_beams(finished, parents)
            lengths = gather_beams(new_lengths, parents)
            coverage = gather_beams(new_coverage, parents)
            sequences = np.concatenate(
                [gather_beams(sequences, parents), chosen[:, :, None]], axis=2)
            attention = np.concatenate(
                [gather_beams(attention, parents), gather_beams(weights, parents)[:, :, None]],
                axis=2)
            state = gather_beams(new_state.reshape([batch, beam, -1]), parents).reshape(
                [batch * beam, -1])
            finished = finished | (chosen == self.end_id)
            previous = chosen.reshape([-1]).astype(np.int32)

        scores = (log_probs / length_penalty(lengths, alpha)
                  + coverage_penalty(coverage, mask3, beta))
        # A hypothesis that had to take a forbidden or impossible step is no hypothesis.
        valid = log_probs > NEG_INF / 2
        scores = np.where(valid, scores, -np.inf).astype(np.float32)
        _, order = top_k(scores, beam)
        best = order[:, 0]
        rows = np.arange(batch)
        return {"tokens": sequences[rows, best], "lengths": lengths[rows, best],
                "scores": scores[rows, best], "log_probs": log_probs[rows, best],
                "attention": attention[rows, best]}

    # -- text in, text out -------------------------------------------------------------------

    def translate(self, sentences, beam_width=1, alpha=0.6, beta=0.0, batch_size=32):
        """Translate a list of strings; returns a list of strings.

        Args:
            sentences: Strings (or UTF-8 bytes).
            beam_width: 1 for greedy decoding, more for beam search.
            alpha, beta: GNMT length and coverage penalty weights (beam search only).
            batch_size: Sentences run through the models together (sentences of similar
                length are batched; the translations do not depend on it).
        """
        if isinstance(sentences, (str, bytes)):
            raise ValueError("`sentences` must be a list of strings, not one string. "
                             f"Received: {sentences!r}")
        if (not isinstance(beam_width, (int, np.integer)) or isinstance(beam_width, bool)
                or beam_width < 1):
            raise ValueError(f"`beam_width` must be a positive integer. Received: {beam_width!r}")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive integer. Received: {batch_size!r}")
        ids = self.source_ids(sentences)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        translations = [""] * len(ids)
        for begin in range(0, len(order), batch_size):
            chosen = order[begin:begin + batch_size]
            src_len = max(len(ids[i]) for i in chosen)
            source = np.full([len(chosen), src_len], self.pad_id, np.int32)
            for row, i in enumerate(chosen):
                source[row, :len(ids[i])] = ids[i]
            if beam_width > 1:
                result = self.beam_search(source, beam_width, alpha, beta)
            else:
                result = self.greedy_search(source)
            for row, i in enumerate(chosen):
                # Nothing to translate gives nothing (not the model's guess for an empty
                # sentence), as in the SavedModel.
                if len(ids[i]) > 1:
                    translations[i] = self.detokenize(result["tokens"][row])
        return translations

    def __repr__(self):
        return f"LiteTranslator({self.path!r}, weights={self.metadata.get('weights')!r})"

