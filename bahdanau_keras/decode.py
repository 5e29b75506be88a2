"""Decoding whole batches inside the graph: greedy, sampling and beam search.

Every search here is one `tf.while_loop` over output steps (no Python loop is unrolled at trace
time), works on a batch of sentences at once, stops each sentence at its end token (and the
loop when every sentence has ended), and returns the attention weights of what it chose.
Wrap the calls in `tf.function` (the export module does) for speed.

The searches never choose `PAD_ID` or `START_ID` as an output token (the model is never trained
to predict them), but every score is the model's own log-probability `log softmax(logits)`, so
that it equals what teacher forcing through `Translator.call` gives for the chosen tokens.
"""

import tensorflow as tf

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
    batch = tf.shape(source)[0]
    limits = max_output_lengths(source_mask, max_length_a, max_length_b, max_length)
    total_steps = tf.maximum(tf.reduce_max(limits), 1)
    temperature = tf.convert_to_tensor(temperature, tf.float32)
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    forbidden = _forbidden_bias(decoder.vocab_size)  # loop-invariant
    kernels = decoder.loop_kernels()  # C, [U_z; U_r], U, split once

    def body(i, previous, state, finished, scores, lengths, tokens_array, attention_array):
        logits, state, weights = decoder.step(
            previous, state, keys, annotations, source_mask, kernels)
        logits = tf.cast(logits, tf.float32)  # [batch, vocab]
        log_probs = tf.nn.log_softmax(logits)
        allowed = log_probs + forbidden

        def sample():
            return tf.random.stateless_categorical(
                allowed / tf.maximum(temperature, 1e-6), 1,
                seed=tf.random.experimental.stateless_fold_in(seed, i),
                dtype=tf.int32)[:, 0]

        def most_likely():
            return tf.argmax(allowed, axis=-1, output_type=tf.int32)

        chosen = tf.cond(temperature > 0, sample, most_likely)
        chosen = tf.where(i + 1 >= limits, END_ID, chosen)  # the length limit ends a sentence
        chosen = tf.where(finished, PAD_ID, chosen)
        token_log_prob = tf.gather(log_probs, chosen, batch_dims=1)
        scores += tf.where(finished, 0.0, token_log_prob)
        lengths += tf.cast(~finished, tf.int32)
        weights = tf.where(finished[:, None], tf.zeros_like(weights), weights)
        tokens_array = tokens_array.write(i, chosen)
        attention_array = attention_array.write(i, tf.cast(weights, tf.float32))
        finished |= tf.equal(chosen, END_ID)
        return i + 1, chosen, state, finished, scores, lengths, tokens_array, attention_array

    def cond(i, previous, state, finished, *_):
        # One step at least, so that an empty batch still gives well-shaped outputs.
        return (i < total_steps) & ((i == 0) | ~tf.reduce_all(finished))

    loop_vars = (
        tf.constant(0), tf.fill([batch], START_ID), state, tf.zeros([batch], tf.bool),
        tf.zeros([batch], tf.float32), tf.zeros([batch], tf.int32),
        tf.TensorArray(tf.int32, size=0, dynamic_size=True, element_shape=[None]),
        tf.TensorArray(tf.float32, size=0, dynamic_size=True, element_shape=[None, None]))
    _, _, _, _, scores, lengths, tokens_array, attention_array = tf.while_loop(
        cond, body, loop_vars)
    tokens = tf.transpose(tokens_array.stack(), [1, 0])  # [batch, tgt_len]
    attention = tf.transpose(attention_array.stack(), [1, 0, 2])  # [batch, tgt_len, src_len]
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

    # Every sentence repeated `beam` times: [batch * beam, ...]
    def tile(x):
        return tf.repeat(x, beam, axis=0)

    annotations, keys, flat_mask, state = tile(annotations), tile(keys), tile(source_mask), tile(
        state)
    mask3 = source_mask[:, None, :]  # [batch, 1, src_len]
    # Loop-invariant pieces.
    forbidden = _forbidden_bias(vocab)  # [vocab]
    kernels = decoder.loop_kernels()  # C, [U_z; U_r], U, split once
    first = tf.range(per_beam) == 0  # [per_beam]: the one candidate of an ended hypothesis
    end_only = tf.where(first, END_ID, PAD_ID)
    pad_only = tf.fill([per_beam], PAD_ID)
    first_only = tf.where(first, 0.0, NEG_INF)  # [per_beam]
    # Only the first beam is alive at the start, so the first step does not pick duplicates.
    log_probs = tf.tile(tf.where(tf.range(beam) == 0, 0.0, NEG_INF)[None, :], [batch, 1])

    def gather_beams(x, parents):
        """x [batch, beam, ...] indexed by parents [batch, beam]."""
        return tf.gather(x, parents, batch_dims=1)

    def body(i, previous, state, log_probs, finished, lengths, coverage, sequences, attention):
        logits, new_state, weights = decoder.step(
            previous, state, keys, annotations, flat_mask, kernels)
        all_log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32))  # [batch * beam, vocab]
        top_log_probs, top_tokens = tf.math.top_k(all_log_probs + forbidden, k=per_beam)
        shape = [batch, beam, per_beam]
        step_log_probs = tf.reshape(top_log_probs, shape)  # [batch, beam, per_beam]
        step_tokens = tf.reshape(top_tokens, shape)
        end_log_probs = tf.reshape(all_log_probs[:, END_ID], [batch, beam, 1])
        weights = tf.reshape(tf.cast(weights, tf.float32), [batch, beam, src_len])
        # At its length limit a hypothesis can only end (scored with the end token's log-prob).
        at_limit = (i + 1 >= limits)[:, None, None]
        step_tokens = tf.where(at_limit, end_only, step_tokens)
        step_log_probs = tf.where(at_limit, end_log_probs + first_only, step_log_probs)
        # An ended hypothesis continues with PAD at no cost and does not grow.
        ended = finished[:, :, None]
        step_tokens = tf.where(ended, pad_only, step_tokens)
        step_log_probs = tf.where(ended, first_only, step_log_probs)
        candidates = log_probs[:, :, None] + step_log_probs  # [batch, beam, per_beam]
        new_lengths = lengths + tf.cast(~finished, tf.int32)  # [batch, beam]
        weights = tf.where(ended, 0.0, weights)
        new_coverage = coverage + weights  # [batch, beam, src_len]
        ranking = candidates / length_penalty(new_lengths, alpha)[:, :, None]
        ranking += coverage_penalty(new_coverage, mask3, beta)[:, :, None]
        _, flat_indices = tf.math.top_k(tf.reshape(ranking, [batch, -1]), k=beam)
        parents = flat_indices // per_beam  # [batch, beam]
        chosen = tf.gather(tf.reshape(step_tokens, [batch, -1]), flat_indices, batch_dims=1)
        log_probs = tf.gather(tf.reshape(candidates, [batch, -1]), flat_indices, batch_dims=1)
        finished = gather_beams(finished, parents)
        lengths = gather_beams(new_lengths, parents)
        coverage = gather_beams(new_coverage, parents)
        sequences = tf.concat([gather_beams(sequences, parents), chosen[:, :, None]], axis=2)
        attention = tf.concat(
            [gather_beams(attention, parents), gather_beams(weights, parents)[:, :, None, :]],
            axis=2)
        state = tf.reshape(gather_beams(
            tf.reshape(new_state, [batch, beam, units]), parents), [batch * beam, units])
        finished |= tf.equal(chosen, END_ID)
        return (i + 1, tf.reshape(chosen, [-1]), state, log_probs, finished, lengths, coverage,
                sequences, attention)

    def cond(i, previous, state, log_probs, finished, *_):
        return (i < total_steps) & ((i == 0) | ~tf.reduce_all(finished))

    loop_vars = (
        tf.constant(0), tf.fill([batch * beam], START_ID), state, log_probs,
        tf.zeros([batch, beam], tf.bool), tf.zeros([batch, beam], tf.int32),
        tf.zeros([batch, beam, src_len], tf.float32), tf.zeros([batch, beam, 0], tf.int32),
        tf.zeros([batch, beam, 0, src_len], tf.float32))
    invariants = (
        tf.TensorShape([]), tf.TensorShape([None]), tf.TensorShape([None, units]),
        tf.TensorShape([None, None]), tf.TensorShape([None, None]), tf.TensorShape([None, None]),
        tf.TensorShape([None, None, None]), tf.TensorShape([None, None, None]),
        tf.TensorShape([None, None, None, None]))
    _, _, _, log_probs, _, lengths, coverage, sequences, attention = tf.while_loop(
        cond, body, loop_vars, shape_invariants=invariants)
    scores = log_probs / length_penalty(lengths, alpha) + coverage_penalty(coverage, mask3, beta)
    # A hypothesis that had to take a forbidden or impossible step is no hypothesis at all.
    valid = log_probs > NEG_INF / 2
    scores = tf.where(valid, scores, float("-inf"))
    scores, order = tf.math.top_k(scores, k=beam)  # sort the n-best list
    valid = gather_beams(valid, order)
    sequences = tf.where(valid[:, :, None], gather_beams(sequences, order), PAD_ID)
    attention = tf.where(valid[:, :, None, None], gather_beams(attention, order), 0.0)
    lengths = tf.where(valid, gather_beams(lengths, order), 0)
    log_probs = tf.where(valid, gather_beams(log_probs, order), float("-inf"))
    return {
        "tokens": sequences[:, 0],
        "lengths": lengths[:, 0],
        "scores": scores[:, 0],
        "log_probs": log_probs[:, 0],
        "attention": attention[:, 0],
        "nbest_tokens": sequences,
        "nbest_scores": scores,
        "nbest_log_probs": log_probs,
        "nbest_lengths": lengths,
    }
