"""Decoding whole batches inside the graph: greedy, sampling and beam search.

Every search here is one `tf.while_loop` over output steps (no Python loop is unrolled at trace
time), works on a batch of sentences at once, stops each sentence at its end token (and the
loop when every sentence has ended), and returns the attention weights of what it chose.
Wrap the calls in `tf.function` (the export module does) for speed.

The searches never choose `PAD_ID` or `START_ID` as an output token (the model is never trained
to predict them), but every score is the model's own log-probability `log softmax(logits)`, so
that it equals what teacher forcing through `Translator.call` gives for the chosen tokens.

What does not change from step to step is computed once, before the loop: the encoder, the
keys `U_a h_j` and the step's weights (`step_function`: `kernels.decoding` where it applies,
`Decoder.step` otherwise). The sentences that have ended leave the loop's batch (once at least
an eighth of it has ended: a step then computes only the sentences still being translated,
and the translations of a batch can differ in length by a factor of two or more). Greedy search
records what a step chose for the sentences still in the loop only, and puts the records in
the batch's places once, after the loop; its sentences leave the loop, and the loop ends, one
step after they end, so that the next step need not wait for this step's choice. Beam
search keeps the encoder's outputs once per sentence and reorders only what the hypotheses
own.
"""

import tensorflow as tf

from bahdanau_keras.kernels import decoding, use_kernel
from bahdanau_keras.text import END_ID, PAD_ID, START_ID

NEG_INF = -1e9


def max_output_lengths(source_mask, max_length_a=2.0, max_length_b=10, max_length=256):
    """Per-sentence limit `ceil(a * source_length + b)` output tokens counting the end token
    (the source length counts its end token too), at least 1 and at most `max_length`:
    `[batch]`."""
    source_lengths = tf.reduce_sum(tf.cast(source_mask, tf.float32), axis=1)
    limits = tf.math.ceil(tf.cast(max_length_a, tf.float32) * source_lengths
                          + tf.cast(max_length_b, tf.float32))
    return tf.clip_by_value(tf.cast(limits, tf.int32), 1, tf.maximum(max_length, 1))


def encode(translator, source):
    """Run the encoder and everything loop-invariant for the decoder.

    Returns `(annotations, source_mask, initial_state, keys)` with keys `U_a h_j` (without
    attention, the encoder's summary `c`: `Decoder.project_keys`).
    """
    annotations, source_mask, initial_state = translator.encoder(source, training=False)
    keys = translator.decoder.project_keys(annotations, source_mask)  # [batch, src_len, att]
    return annotations, source_mask, initial_state, keys


def step_function(decoder):
    """The decoding step of the searches, its weights prepared once before a search's loop.

    `kernels.decoding.DecodingStep` where the decoder's `implementation` chooses its kernel
    (`kernels.use_kernel`), else `ReferenceStep`, which calls `Decoder.step`. Both give the
    same logits, states and weights, and have the same interface:
    `sentences = step.prepare(annotations, source_mask, keys)` once, then
    `step(previous_tokens, state, sentences) -> (logits, new_state, attention_weights)` at
    every step, with the rows of `sentences` of the sentences being decoded and their
    hypotheses' rows (sentence-major). The logits are `[rows, padded_vocab_size(vocab)]`,
    their extra columns `NEG_INF` (what `top_tokens` reads).
    """
    width = padded_vocab_size(decoder.vocab_size)
    if use_kernel(decoder.implementation, decoding.unsupported(decoder), decoder.name):
        return decoding.DecodingStep(decoder, logits_width=width, padding_logit=NEG_INF)
    return ReferenceStep(decoder, logits_width=width)


class ReferenceStep:
    """The readable decoding step: `Decoder.step`, with the encoder's outputs of a sentence
    repeated for each of its hypotheses (see `step_function` for the interface)."""

    def __init__(self, decoder, logits_width):
        self.decoder = decoder
        self.padding = [[0, 0], [0, logits_width - decoder.vocab_size]]
        self.kernels = decoder.loop_kernels()  # C, [U_z; U_r], U, split once

    def prepare(self, annotations, source_mask, keys):
        return annotations, source_mask, keys

    def __call__(self, previous_tokens, state, sentences):
        # Hypotheses per sentence: 1 (greedy) or the beam width.
        per_sentence = tf.shape(state)[0] // tf.maximum(tf.shape(sentences[0])[0], 1)
        annotations, source_mask, keys = (
            tf.repeat(x, per_sentence, axis=0) for x in sentences)
        logits, new_state, weights = self.decoder.step(
            previous_tokens, state, keys, annotations, source_mask, self.kernels)
        logits = tf.pad(tf.cast(logits, tf.float32), self.padding, constant_values=NEG_INF)
        return logits, new_state, weights


def _loop_shape(x):
    """The shape invariant of a loop variable whose first axis (sentences) shrinks."""
    return tf.TensorShape([None]).concatenate(x.shape[1:])


def _drop_ended(ended, *tensors):
    """The rows of `tensors` (nested tuples too) where `ended` (`[sentences]`) is False, once
    at least an eighth of the sentences have ended; the tensors as they are otherwise."""
    count = tf.reduce_sum(tf.cast(ended, tf.int32))
    keep = tf.where(~ended)[:, 0]
    total = count + tf.shape(keep)[0]  # sizes computed at run time (see `n` in beam search)
    return tf.cond(
        (count > 0) & (count * 8 >= total),
        lambda: tf.nest.map_structure(lambda x: tf.gather(x, keep), tensors),
        lambda: tensors)


# The logits are read in blocks of this many tokens (see `top_tokens`).
VOCAB_BLOCK = 64


def padded_vocab_size(vocab):
    """`vocab` rounded up to a multiple of `VOCAB_BLOCK`: the width of a step's logits."""
    return -(-vocab // VOCAB_BLOCK) * VOCAB_BLOCK


def top_tokens(logits, k, vocab):
    """The `k` most likely tokens that a search may choose (never `PAD_ID` or `START_ID`),
    their logits, and each row's log-normaliser `log Σ_v exp(logit_v)` over the whole
    vocabulary, in about two passes over the logits.

    The logits are read in blocks of `VOCAB_BLOCK` tokens: a token among the `k` best that
    may be chosen has at most `k + 1` tokens above it (`k - 1` others, `PAD_ID` and
    `START_ID`), so it is in one of the `k + 2` blocks of the highest maxima; the tokens are
    chosen among those blocks only (the same tokens as `tf.math.top_k` over the whole row,
    which is several times slower here). The row maximum, the largest block maximum, shifts
    the log-normaliser.

    Args:
        logits: float32 `[rows, padded_vocab_size(vocab)]`, `NEG_INF` after the vocabulary.
        k: Tokens per row (an int or a scalar tensor), at most `vocab`.
        vocab: The vocabulary size.

    Returns:
        `(top_logits, top_ids, log_normalizer)`: `[rows, k]`, int32 `[rows, k]` (best first)
        and `[rows]`. When fewer than `k` tokens may be chosen (a tiny vocabulary), the rest
        are `PAD_ID` with logit `NEG_INF`.
    """
    rows, width = tf.shape(logits)[0], logits.shape[-1]
    blocks = tf.reshape(logits, [rows, width // VOCAB_BLOCK, VOCAB_BLOCK])
    maxima = tf.reduce_max(blocks, axis=2)  # [rows, blocks]
    _, best_blocks = tf.math.top_k(maxima, k=tf.minimum(k + 2, width // VOCAB_BLOCK))
    candidates = tf.reshape(tf.gather(blocks, best_blocks, batch_dims=1), [rows, -1])
    ids = tf.reshape(best_blocks[:, :, None] * VOCAB_BLOCK + tf.range(VOCAB_BLOCK), [rows, -1])
    never = (ids == PAD_ID) | (ids == START_ID) | (ids >= vocab)
    top_logits, picked = tf.math.top_k(tf.where(never, NEG_INF, candidates), k=k)
    # A token that may not be chosen is taken only when nothing else is left: PAD_ID then.
    top_ids = tf.where(tf.gather(never, picked, batch_dims=1), PAD_ID,
                       tf.gather(ids, picked, batch_dims=1))
    # log Σ_v exp(l_v) = m + log Σ_v exp(l_v - m), m the row maximum (NEG_INF columns add 0)
    maximum = tf.reduce_max(maxima, axis=1)
    log_normalizer = maximum + tf.math.log(
        tf.reduce_sum(tf.exp(logits - maximum[:, None]), axis=1))
    return top_logits, top_ids, log_normalizer


def _forbidden_bias(vocab):
    """`[vocab]`: `NEG_INF` at `PAD_ID` and `START_ID`, 0 elsewhere (tokens never chosen)."""
    ids = tf.range(vocab)
    return tf.where((ids == PAD_ID) | (ids == START_ID), NEG_INF, 0.0)


def greedy_decode(translator, source, temperature=0.0, seed=(0, 0), max_length_a=2.0,
                  max_length_b=10, max_length=256):
    """Greedy decoding, or sampling when `temperature > 0`.

    Args:
        translator: A `Translator`.
        source: int32 `[batch, src_len]` (0-padded, ending with `END_ID`).
        temperature: 0 picks the most likely token; otherwise tokens are sampled from
            `softmax(logits / temperature)` with the stateless `seed` (two ints): one seed
            gives one result, whatever ran before.
        max_length_a, max_length_b, max_length: per-sentence output limit, see
            `max_output_lengths`; a sentence that reaches it ends with `END_ID`.

    Returns:
        A dict: `tokens` int32 `[batch, tgt_len]` (ending with `END_ID`, then `PAD_ID`),
        `lengths` `[batch]` (with the end token), `scores` `[batch]` (summed log-probability),
        `attention` `[batch, tgt_len, src_len]` (zero after the end).
    """
    decoder = translator.decoder
    annotations, source_mask, state, keys = encode(translator, source)
    batch, src_len = tf.shape(source)[0], tf.shape(source)[1]
    limits = max_output_lengths(source_mask, max_length_a, max_length_b, max_length)
    total_steps = tf.maximum(tf.reduce_max(limits), 1)
    temperature = tf.convert_to_tensor(temperature, tf.float32)
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    vocab = decoder.vocab_size
    forbidden = _forbidden_bias(vocab)  # loop-invariant
    step = step_function(decoder)
    # The tokens greedy search may choose: the logits' padding columns are NEG_INF already.
    choosable = tf.pad(forbidden, [[0, padded_vocab_size(vocab) - vocab]])
    # A sampled token depends on its row in the batch: sampling keeps every sentence in it.
    drop = temperature <= 0

    def body(i, rows, previous, state, finished, ended, row_limits, sentences, records):
        # rows: [n] the sentences still in the loop, with their previous tokens, states, flags
        # and length limits: `finished`, the sentence has ended before step i; `ended`, before
        # step i - 1. What a step chooses is recorded for those rows only and put in the whole
        # batch's place once, after the loop.
        logits, state, weights = step(previous, state, sentences)  # [n, padded vocab]
        log_probs = tf.nn.log_softmax(logits)  # log p(y_i = v) (0 at the padding columns)

        def sample():
            return tf.random.stateless_categorical(
                (tf.nn.log_softmax(logits[:, :vocab]) + forbidden)
                / tf.maximum(temperature, 1e-6), 1,
                seed=tf.random.experimental.stateless_fold_in(seed, i), dtype=tf.int32)[:, 0]

        def most_likely():
            return tf.argmax(logits + choosable, axis=1, output_type=tf.int32)

        chosen = tf.cond(temperature > 0, sample, most_likely)
        # The length limit ends a sentence.
        chosen = tf.where(i + 1 >= row_limits, END_ID, chosen)
        chosen = tf.where(finished, PAD_ID, chosen)
        records = {
            "indices": records["indices"].write(i, tf.stack([rows, tf.fill(tf.shape(rows), i)], 1)),
            "tokens": records["tokens"].write(i, chosen),
            "log_probs": records["log_probs"].write(i, tf.where(
                finished, 0.0, tf.gather(log_probs, chosen, batch_dims=1))),
            "alive": records["alive"].write(i, tf.cast(~finished, tf.int32)),
            "attention": records["attention"].write(
                i, tf.where(finished[:, None], 0.0, tf.cast(weights, tf.float32))),
        }
        # Sentences leave the loop, and the loop ends, one step after they end: what decides
        # it does not wait for this step's choice, so the next step's state path (its products
        # with s_i, the attention) can run while this step's vocabulary product and argmax do.
        ended = finished
        finished |= tf.equal(chosen, END_ID)
        rows, chosen, state, finished, ended, row_limits, sentences = _drop_ended(
            ended & drop, rows, chosen, state, finished, ended, row_limits, sentences)
        return i + 1, rows, chosen, state, finished, ended, row_limits, sentences, records

    def cond(i, rows, previous, state, finished, ended, *_):
        # One step at least, so that an empty batch still gives well-shaped outputs. Greedy
        # search runs one step more than its longest sentence (that step's records are all
        # padding, cut below); sampling, which keeps every row, stops when the last ends.
        done = tf.cond(drop, lambda: ended, lambda: finished)
        return (i < total_steps) & ((i == 0) | ~tf.reduce_all(done))

    def record(dtype, shape):
        return tf.TensorArray(dtype, size=0, dynamic_size=True, infer_shape=False,
                              element_shape=shape)

    sentences = step.prepare(annotations, source_mask, keys)
    records = {"indices": record(tf.int32, [None, 2]), "tokens": record(tf.int32, [None]),
               "log_probs": record(tf.float32, [None]), "alive": record(tf.int32, [None]),
               "attention": record(tf.float32, [None, None])}
    loop_vars = (
        tf.constant(0), tf.range(batch), tf.fill([batch], START_ID), state,
        tf.zeros([batch], tf.bool), tf.zeros([batch], tf.bool), limits, sentences, records)
    invariants = (
        tf.TensorShape([]), tf.TensorShape([None]), tf.TensorShape([None]),
        _loop_shape(state), tf.TensorShape([None]), tf.TensorShape([None]),
        tf.TensorShape([None]),
        tf.nest.map_structure(_loop_shape, sentences),
        tf.nest.map_structure(lambda _: tf.TensorShape(None), records))
    steps, *_, records = tf.while_loop(cond, body, loop_vars, shape_invariants=invariants)
    # Every (sentence, step) pair was recorded once at most: [total, 2]
    indices = records["indices"].concat()
    sentence = indices[:, 0]
    # Each sentence's log-probabilities and steps, summed: its score and its length.
    scores = tf.math.unsorted_segment_sum(records["log_probs"].concat(), sentence, batch)
    lengths = tf.math.unsorted_segment_sum(records["alive"].concat(), sentence, batch)
    # The output is as long as the longest sentence (one step at least): the loop may have run
    # one step more, after every sentence had ended.
    width = tf.maximum(tf.reduce_max(lengths), 1)
    tokens = tf.scatter_nd(indices, records["tokens"].concat(), [batch, steps])  # PAD_ID = 0
    attention = tf.scatter_nd(indices, records["attention"].concat(), [batch, steps, src_len])
    tokens, attention = tokens[:, :width], attention[:, :width]
    return {"tokens": tokens, "lengths": lengths, "scores": scores, "attention": attention}


def length_penalty(lengths, alpha):
    """GNMT length penalty `((5 + |Y|) / 6)^α` (Wu et al. 2016, eq. 14)."""
    return tf.pow((5.0 + tf.cast(lengths, tf.float32)) / 6.0, alpha)


def coverage_penalty(coverage, source_mask, beta):
    """GNMT coverage penalty `β Σ_j log(min(Σ_i α_ij, 1))` over the real source positions.

    `coverage` is `[batch, beam, src_len]`, `source_mask` `[batch, 1, src_len]`."""
    logs = tf.math.log(tf.clip_by_value(coverage, 1e-10, 1.0))
    return beta * tf.reduce_sum(tf.where(source_mask, logs, 0.0), axis=-1)


def beam_search_decode(translator, source, beam_width=4, alpha=0.6, beta=0.0,
                       max_length_a=2.0, max_length_b=10, max_length=256):
    """Beam search over a batch, in one `tf.while_loop`.

    Hypotheses are ranked by `log P(Y|X) / lp(Y) + cp(X; Y)` with the GNMT length penalty
    `lp(Y) = ((5 + |Y|) / 6)^alpha` (`|Y|` counts the end token) and coverage penalty
    `cp(X; Y) = beta Σ_j log(min(Σ_i α_ij, 1))` over the real source positions `j` (0 disables
    it). An ended hypothesis keeps its score and competes with the others until every
    hypothesis of its sentence has ended or the length limit is reached.

    Each step only looks at the `beam_width` best tokens of each hypothesis (the penalties are
    the same for every token of one hypothesis, so no other token can enter the beam); the
    search is the same as ranking all `beam_width × vocab` candidates.

    The encoder's outputs stay one per sentence (every hypothesis of a sentence reads the same
    ones); a step reorders only the hypotheses' own values: states, scores, lengths, coverage,
    chosen tokens and the slot of each step's parent, from which the attention of every
    hypothesis is gathered once, after the loop.

    Args:
        translator: A `Translator`.
        source: int32 `[batch, src_len]`.
        beam_width: Hypotheses kept per sentence (a scalar, may be a tensor).
        alpha, beta: Length and coverage penalty weights.
        max_length_a, max_length_b, max_length: See `max_output_lengths`.

    Returns:
        A dict with the best hypothesis, `tokens` `[batch, tgt_len]`, `lengths` `[batch]`,
        `scores` `[batch]` (penalised), `log_probs` `[batch]`, `attention`
        `[batch, tgt_len, src_len]`, and the n-best list sorted by score: `nbest_tokens`
        `[batch, beam, tgt_len]`, `nbest_scores`, `nbest_log_probs` and `nbest_lengths`
        `[batch, beam]`. When fewer than `beam_width` hypotheses exist (a tiny vocabulary or
        a very short limit), the missing entries of the n-best list have score `-inf`,
        length 0 and only `PAD_ID` tokens.
    """
    decoder = translator.decoder
    annotations, source_mask, state, keys = encode(translator, source)
    batch = tf.shape(source)[0]
    beam = tf.convert_to_tensor(beam_width, tf.int32)
    alpha = tf.convert_to_tensor(alpha, tf.float32)
    beta = tf.convert_to_tensor(beta, tf.float32)
    src_len = tf.shape(source)[1]
    limits = max_output_lengths(source_mask, max_length_a, max_length_b, max_length)  # [batch]
    total_steps = tf.maximum(tf.reduce_max(limits), 1)
    vocab = decoder.vocab_size
    units = decoder.units
    # Tokens looked at per hypothesis and step: its best `beam` (at most the vocabulary).
    per_beam = tf.minimum(beam, vocab)
    step = step_function(decoder)
    mask3 = source_mask[:, None, :]  # [batch, 1, src_len]
    # Loop-invariant pieces.
    first = tf.range(per_beam) == 0  # [per_beam]: the one candidate of an ended hypothesis
    end_only = tf.where(first, END_ID, PAD_ID)
    pad_only = tf.fill([per_beam], PAD_ID)
    first_only = tf.where(first, 0.0, NEG_INF)  # [per_beam]
    # A sentence out of the loop keeps its hypotheses in their places.
    same_places = tf.tile(tf.range(beam)[None, :], [batch, 1])  # [batch, beam]

    def gather_beams(x, parents):
        """x [sentences, beam, ...] indexed by parents [sentences, beam]."""
        return tf.gather(x, parents, batch_dims=1)

    def body(i, rows, previous, state, sentences, log_probs, finished, lengths, coverage,
             sequences, ancestry, attention_array):
        # rows: [n] the sentences still in the loop, with their hypotheses' previous tokens
        # [n, beam] and states [n, beam, units]; the rest is the whole batch's.
        # (tf.shape, not tf.size: Grappler's constant folding gave the loop variable's first
        # size, not its size in this step, for `tf.size` with static input shapes.)
        n = tf.shape(rows)[0]
        index = rows[:, None]
        logits, new_state, weights = step(
            tf.reshape(previous, [-1]), tf.reshape(state, [-1, units]), sentences)
        top_logits, top_ids, log_normalizer = top_tokens(logits, per_beam, vocab)
        shape = [n, beam, per_beam]
        # log p(y) = logit(y) - log Σ_v exp(logit_v): [n, beam, per_beam]
        step_log_probs = tf.reshape(top_logits - log_normalizer[:, None], shape)
        step_tokens = tf.reshape(top_ids, shape)
        end_log_probs = tf.reshape(logits[:, END_ID] - log_normalizer, [n, beam, 1])
        weights = tf.reshape(tf.cast(weights, tf.float32), [n, beam, src_len])
        # At its length limit a hypothesis can only end (scored with the end token's log-prob).
        at_limit = (i + 1 >= tf.gather(limits, rows))[:, None, None]
        step_tokens = tf.where(at_limit, end_only, step_tokens)
        step_log_probs = tf.where(at_limit, end_log_probs + first_only, step_log_probs)
        # An ended hypothesis continues with PAD at no cost and does not grow.
        finished_here = tf.gather(finished, rows)  # [n, beam]
        ended = finished_here[:, :, None]
        step_tokens = tf.where(ended, pad_only, step_tokens)
        step_log_probs = tf.where(ended, first_only, step_log_probs)
        candidates = tf.gather(log_probs, rows)[:, :, None] + step_log_probs
        new_lengths = tf.gather(lengths, rows) + tf.cast(~finished_here, tf.int32)  # [n, beam]
        weights = tf.where(ended, 0.0, weights)
        new_coverage = tf.gather(coverage, rows) + weights  # [n, beam, src_len]
        ranking = candidates / length_penalty(new_lengths, alpha)[:, :, None]
        ranking += coverage_penalty(new_coverage, tf.gather(mask3, rows), beta)[:, :, None]
        _, flat_indices = tf.math.top_k(tf.reshape(ranking, [n, -1]), k=beam)
        parents = flat_indices // per_beam  # [n, beam]
        chosen = tf.gather(tf.reshape(step_tokens, [n, -1]), flat_indices, batch_dims=1)
        finished_here = gather_beams(finished_here, parents) | tf.equal(chosen, END_ID)
        log_probs = tf.tensor_scatter_nd_update(log_probs, index, tf.gather(
            tf.reshape(candidates, [n, -1]), flat_indices, batch_dims=1))
        finished = tf.tensor_scatter_nd_update(finished, index, finished_here)
        lengths = tf.tensor_scatter_nd_update(lengths, index, gather_beams(new_lengths, parents))
        coverage = tf.tensor_scatter_nd_update(
            coverage, index, gather_beams(new_coverage, parents))
        # The tokens of every hypothesis, and the slot of the hypothesis each one extended at
        # every step (its attention there, gathered after the loop): [batch, beam, steps]
        all_parents = tf.tensor_scatter_nd_update(same_places, index, parents)
        sequences = tf.concat([gather_beams(sequences, all_parents),
                               tf.scatter_nd(index, chosen, [batch, beam])[:, :, None]], axis=2)
        ancestry = tf.concat([gather_beams(ancestry, all_parents), all_parents[:, :, None]],
                             axis=2)
        attention_array = attention_array.write(
            i, tf.scatter_nd(index, weights, [batch, beam, src_len]))
        state = gather_beams(tf.reshape(new_state, [n, beam, units]), parents)
        rows, chosen, state, sentences = _drop_ended(
            tf.reduce_all(finished_here, axis=1), rows, chosen, state, sentences)
        return (i + 1, rows, chosen, state, sentences, log_probs, finished, lengths, coverage,
                sequences, ancestry, attention_array)

    def cond(i, rows, previous, state, sentences, log_probs, finished, *_):
        return (i < total_steps) & ((i == 0) | ~tf.reduce_all(finished))

    # Only the first hypothesis of a sentence is alive at the start, so that the first step
    # does not pick duplicates; every one starts from s_0.
    log_probs = tf.tile(tf.where(tf.range(beam) == 0, 0.0, NEG_INF)[None, :], [batch, 1])
    state = tf.tile(state[:, None, :], [1, beam, 1])  # [batch, beam, units]
    sentences = step.prepare(annotations, source_mask, keys)
    loop_vars = (
        tf.constant(0), tf.range(batch), tf.fill([batch, beam], START_ID), state, sentences,
        log_probs, tf.zeros([batch, beam], tf.bool), tf.zeros([batch, beam], tf.int32),
        tf.zeros([batch, beam, src_len], tf.float32), tf.zeros([batch, beam, 0], tf.int32),
        tf.zeros([batch, beam, 0], tf.int32),
        tf.TensorArray(tf.float32, size=0, dynamic_size=True,
                       element_shape=[None, None, None]))
    invariants = (
        tf.TensorShape([]), tf.TensorShape([None]), tf.TensorShape([None, None]),
        tf.TensorShape([None, None, units]), tf.nest.map_structure(_loop_shape, sentences),
        tf.TensorShape([None, None]), tf.TensorShape([None, None]), tf.TensorShape([None, None]),
        tf.TensorShape([None, None, None]), tf.TensorShape([None, None, None]),
        tf.TensorShape([None, None, None]), tf.TensorShape(None))
    (_, _, _, _, _, log_probs, _, lengths, coverage, sequences, ancestry,
     attention_array) = tf.while_loop(cond, body, loop_vars, shape_invariants=invariants)
    scores = log_probs / length_penalty(lengths, alpha) + coverage_penalty(coverage, mask3, beta)
    # A hypothesis that had to take a forbidden or impossible step is no hypothesis at all.
    valid = log_probs > NEG_INF / 2
    scores = tf.where(valid, scores, float("-inf"))
    scores, order = tf.math.top_k(scores, k=beam)  # sort the n-best list
    valid = gather_beams(valid, order)
    sequences = tf.where(valid[:, :, None], gather_beams(sequences, order), PAD_ID)
    # α of the best hypothesis at step i: that step's weights of the hypothesis it extended.
    step_weights = tf.transpose(attention_array.stack(), [1, 0, 2, 3])  # [batch, steps, beam, s]
    best_ancestry = gather_beams(ancestry, order)[:, 0]  # [batch, steps]
    attention = tf.gather(step_weights, best_ancestry, axis=2, batch_dims=2)  # [batch, steps, s]
    attention = tf.where(valid[:, 0, None, None], attention, 0.0)
    lengths = tf.where(valid, gather_beams(lengths, order), 0)
    log_probs = tf.where(valid, gather_beams(log_probs, order), float("-inf"))
    return {
        "tokens": sequences[:, 0],
        "lengths": lengths[:, 0],
        "scores": scores[:, 0],
        "log_probs": log_probs[:, 0],
        "attention": attention,
        "nbest_tokens": sequences,
        "nbest_scores": scores,
        "nbest_log_probs": log_probs,
        "nbest_lengths": lengths,
    }


def _spec(rank, dtype):
    return tf.TensorSpec([None] * rank, dtype)


# The outputs of `greedy_decode` and `beam_search_decode`: their ranks and dtypes.
GREEDY_OUTPUTS = {"tokens": _spec(2, tf.int32), "lengths": _spec(1, tf.int32),
                  "scores": _spec(1, tf.float32), "attention": _spec(3, tf.float32)}
BEAM_OUTPUTS = {**GREEDY_OUTPUTS, "log_probs": _spec(1, tf.float32),
                "nbest_tokens": _spec(3, tf.int32), "nbest_scores": _spec(2, tf.float32),
                "nbest_log_probs": _spec(2, tf.float32), "nbest_lengths": _spec(2, tf.int32)}
# The axes of the outputs that grow with the translation (`tgt_len`) and with the source
# (`src_len`), for putting batches of different lengths together.
_OUTPUT_AXES = {"tokens": (1, None), "attention": (1, 2), "nbest_tokens": (2, None)}


def decode_sorted(search, source, batch_size, outputs=GREEDY_OUTPUTS):
    """`search` over the rows of `source` sorted by length, `batch_size` sentences at a time.

    Sentences of similar lengths decode together: each batch is cut to its longest source
    and its loop ends with its longest translation. The outputs come back in the order of
    `source`, padded (`PAD_ID` tokens, zero attention) to the longest translation and to
    `src_len`, as `search(source)` gives them; only the speed and the memory differ (the
    search holds one batch at a time).

    Args:
        search: A function of an int32 `[sentences, src_len]` batch returning a dict of
            outputs whose first axis is the sentence (`greedy_decode`, `beam_search_decode`
            with their options bound).
        source: int32 `[batch, src_len]`, 0-padded.
        batch_size: Sentences a batch (a positive int or scalar tensor).
        outputs: The keys of the dict `search` returns, each with a `tf.TensorSpec` of its
            rank and dtype (`GREEDY_OUTPUTS` or `BEAM_OUTPUTS`).

    Returns:
        The dict `search(source)` returns.
    """
    batch, src_len = tf.shape(source)[0], tf.shape(source)[1]
    lengths = tf.reduce_sum(tf.cast(source != PAD_ID, tf.int32), axis=1)
    order = tf.argsort(lengths, stable=True)
    sorted_source = tf.gather(source, order)
    sorted_lengths = tf.gather(lengths, order)
    batch_size = tf.maximum(tf.convert_to_tensor(batch_size, tf.int32), 1)
    count = tf.maximum((batch + batch_size - 1) // batch_size, 1)

    def part(index):
        begin = index * batch_size
        end = tf.minimum(begin + batch_size, batch)
        width = tf.reduce_max(tf.concat([[1], sorted_lengths[begin:end]], axis=0))
        return sorted_source[begin:end, :width]

    def arrays():  # one element a batch, of the batch's own lengths
        return {key: tf.TensorArray(spec.dtype, size=count, infer_shape=False,
                                    element_shape=spec.shape)
                for key, spec in outputs.items()}

    def body(index, steps, decoded):
        result = search(part(index))
        steps = tf.maximum(steps, tf.shape(result["tokens"])[-1])
        return index + 1, steps, {key: decoded[key].write(index, result[key]) for key in decoded}

    # One batch at a time (parallel_iterations=1): the memory of one batch's search.
    _, steps, decoded = tf.while_loop(lambda index, *_: index < count, body,
                                      (tf.constant(0), tf.constant(0), arrays()),
                                      parallel_iterations=1)

    def padded(key, value):
        time_axis, source_axis = _OUTPUT_AXES.get(key, (None, None))
        padding = [[0, 0]] * len(value.shape)
        if time_axis is not None:
            padding[time_axis] = [0, steps - tf.shape(value)[time_axis]]
        if source_axis is not None:
            padding[source_axis] = [0, src_len - tf.shape(value)[source_axis]]
        return tf.pad(value, padding)

    def pad_batch(index, padded_arrays):
        return index + 1, {key: padded_arrays[key].write(
            index, padded(key, decoded[key].read(index))) for key in padded_arrays}

    _, padded_arrays = tf.while_loop(lambda index, *_: index < count, pad_batch,
                                     (tf.constant(0), arrays()))
    restore = tf.math.invert_permutation(order)  # back to the order of `source`
    return {key: tf.gather(padded_arrays[key].concat(), restore) for key in padded_arrays}
