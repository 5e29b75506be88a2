"""Export a trained translator to LiteRT (TensorFlow Lite): an encoder and one decoder step.

A search loop does not convert to LiteRT in a useful form (its output length, the beam and
the tokenizers would all be inside one graph), so the export writes the two pieces a search
calls, and the app runs the loop (`bahdanau_keras.litert.LiteTranslator` is that loop in
Python, with NumPy and `sentencepiece`):

    encoder.tflite       source_ids int32 `[batch, src_len]` (subwords, `END_ID`, 0-padding)
                         -> annotations `h_j` `[batch, src_len, context_dim]`,
                            keys `U_a h_j` `[batch, src_len, attention_units]`,
                            initial_state `s_0` `[batch, units]`
    decoder_step.tflite  previous_tokens int32 `[batch]` (`y_{i-1}`), state `s_{i-1}`
                         `[batch, units]`, keys, annotations, source_mask float32
                         `[batch, src_len]` (1 at real tokens, 0 at padding)
                         -> log_probs `log p(y_i | y_<i, x)` `[batch, vocab]`,
                            state `s_i` `[batch, units]`, attention `α_i` `[batch, src_len]`

Both are one signature each (`serving_default`), with the names above. `batch` and `src_len`
are dynamic (`-1` in the shape signature): the interpreter resizes the inputs to each
sentence, so a 6-subword sentence runs 6 encoder steps and attends over 6 positions, where a
fixed maximum length with a mask would run 128 steps and attend over 128 positions every
time. The source mask is a float input (rather than bool) because every LiteRT binding
(Java, Kotlin, Swift, C) fills float buffers directly.

The graphs are written here from the model's weights rather than traced from
`Translator`: the model's own code relies on operations that the converter maps to
TensorFlow ops only (a `StridedSlice` adding an axis to a tensor with two unknown
dimensions; `TensorArray`s of unknown element shape), and a phone app must not need the
TensorFlow ops delegate. Only LiteRT's built-in operations are allowed (no
`SELECT_TF_OPS`); the tests hold the converted models to the SavedModel's translations.

The converter is TensorFlow's `tf.lite.TFLiteConverter.from_concrete_functions`
(`ai-edge-litert` ships the interpreter, not a TensorFlow converter).
"""

import inspect
import json
import os

import numpy as np
import tensorflow as tf

from bahdanau_keras.litert import FORMAT, FORMAT_VERSION, METADATA_FILE, NORMALIZATION
from bahdanau_keras.text import END_ID, PAD_ID, START_ID, UNKNOWN_ID

FILES = {"encoder": "encoder.tflite", "decoder_step": "decoder_step.tflite",
         "source_vocab": "source.model", "target_vocab": "target.model"}
# Weight formats: float32; float16 weights (computed in float32 on CPU); int8 weights with
# dynamic-range quantisation (activations quantised on the fly in the large products).
WEIGHT_TYPES = ("float32", "float16", "int8")

def _defaults(function, *names):
    parameters = inspect.signature(function).parameters
    return {name: parameters[name].default for name in names}


def search_limits():
    """The limits the SavedModel's signatures apply: `TranslatorModule`'s source cut and
    output rule, and `decode`'s hard maximum (read from their defaults, so that they stay
    one definition)."""
    from bahdanau_keras.decode import greedy_decode
    from bahdanau_keras.export import TranslatorModule

    return {**_defaults(TranslatorModule, "max_source_length", "max_length_a", "max_length_b"),
            **_defaults(greedy_decode, "max_length")}


# -- the model's weights, by the paper's names --------------------------------------------------

def model_weights(translator):
    """The weights of a `Translator` as float32 NumPy arrays, with its sizes.

    Returns a dict: `sizes` (a dict of ints and bools) and the arrays named as in
    arXiv:1409.0473 (Appendix A) and Keras' GRU (`reset_after`, gates ordered z, r, h).
    """
    def array(variable):
        return np.asarray(tf.convert_to_tensor(variable), np.float32)

    encoder, decoder = translator.encoder, translator.decoder
    forward = encoder.bidirectional_gru.forward_layer.cell
    backward = encoder.bidirectional_gru.backward_layer.cell
    attention = decoder.attention
    weights = {
        "source_embeddings": array(encoder.embedding.embeddings),  # E (source)
        "forward_kernel": array(forward.kernel),  # [emb, 3 units], z r h
        "forward_recurrent_kernel": array(forward.recurrent_kernel),  # [units, 3 units]
        "forward_bias": array(forward.bias),  # [2, 3 units]: input, recurrent
        "backward_kernel": array(backward.kernel),
        "backward_recurrent_kernel": array(backward.recurrent_kernel),
        "backward_bias": array(backward.bias),
        "initial_state_kernel": array(encoder.initial_state_dense.kernel),  # W_s
        "initial_state_bias": array(encoder.initial_state_dense.bias),
        "key_kernel": array(attention.key_dense.kernel),  # U_a
        "query_kernel": array(attention.query_dense.kernel),  # W_a
        "target_embeddings": array(decoder.embedding.embeddings),  # E (target)
        "input_kernel": array(decoder.input_kernel),  # [W_z; W_r; W]
        "input_bias": array(decoder.input_bias),
        "context_kernel": array(decoder.context_kernel),  # [C_z; C_r; C]
        "recurrent_kernel": array(decoder.recurrent_kernel),  # [U_z; U_r; U]
        "readout_kernel": array(decoder.readout_dense.kernel),  # [U_o; V_o; C_o]
        "readout_bias": array(decoder.readout_dense.bias),
    }
    score_vector = array(attention.score_vector)  # v_a
    if attention.normalize:
        # g v_a / ||v_a||, and the bias b inside the tanh (the weight-normalised variant)
        scale = float(array(attention.score_scale))
        score_vector = (scale * score_vector / np.sqrt(np.sum(np.square(score_vector)))
                        ).astype(np.float32)
        weights["score_bias"] = array(attention.score_bias)
    weights["score_vector"] = score_vector
    if decoder.tie_embeddings:
        weights["output_bias"] = array(decoder.output_bias)  # W_o = E^T: no kernel of its own
    else:
        # W_o as [vocab, readout_dim], the layout of E (LiteRT's FULLY_CONNECTED reads [out, in])
        weights["output_kernel"] = array(decoder.output_dense.kernel).T
        weights["output_bias"] = array(decoder.output_dense.bias)
    weights["sizes"] = {
        "source_vocab_size": int(weights["source_embeddings"].shape[0]),
        "target_vocab_size": int(weights["target_embeddings"].shape[0]),
        "encoder_units": int(encoder.units),
        "units": int(decoder.units),
        "attention_units": int(decoder.attention_units),
        "context_dim": int(weights["key_kernel"].shape[0]),
        "readout_dim": int(decoder.readout_dim),
        "maxout": bool(decoder.maxout),
        "tie_embeddings": bool(decoder.tie_embeddings),
    }
    return weights


# -- the two graphs -----------------------------------------------------------------------------

def encoder_function(weights):
    """A `tf.function` over `source_ids` `[batch, src_len]`: the encoder with `U_a h_j`."""
    sizes = weights["sizes"]
    units = sizes["encoder_units"]
    constant = {name: tf.constant(value) for name, value in weights.items() if name != "sizes"}
    # Both directions' input projections in one product: [emb, 6 units] and [6 units].
    input_kernel = tf.concat([constant["forward_kernel"], constant["backward_kernel"]], axis=1)
    input_bias = tf.concat([constant["forward_bias"][0], constant["backward_bias"][0]], axis=0)
    recurrent = [(constant[f"{name}_recurrent_kernel"], constant[f"{name}_bias"][1])
                 for name in ("forward", "backward")]

    def gru_step(state, projected_input, kernel, bias, real):
        """Keras' GRU (`reset_after=True`), keeping the state where `real` is False."""
        input_gates, input_candidate = tf.split(projected_input, [2 * units, units], axis=1)
        recurrent_gates, recurrent_candidate = tf.split(
            tf.matmul(state, kernel) + bias, [2 * units, units], axis=1)
        update, reset = tf.split(tf.sigmoid(input_gates + recurrent_gates), 2, axis=1)
        candidate = tf.tanh(input_candidate + reset * recurrent_candidate)
        new_state = update * state + (1.0 - update) * candidate
        return tf.where(real, new_state, state)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name="source_ids")])
    def encode(source_ids):
        batch, src_len = tf.shape(source_ids)[0], tf.shape(source_ids)[1]
        mask = tf.not_equal(source_ids, PAD_ID)  # [batch, src_len]
        embedded = tf.gather(constant["source_embeddings"], source_ids)  # E x_j
        flat = tf.reshape(embedded, [-1, embedded.shape[-1]])  # [batch * src_len, emb]
        projected = tf.reshape(tf.matmul(flat, input_kernel) + input_bias,
                               tf.stack([batch, src_len, 6 * units]))
        projected = tf.transpose(projected, [1, 0, 2])  # time-major [src_len, batch, 6 units]
        real = tf.expand_dims(tf.transpose(mask), 2)  # [src_len, batch, 1]
        def directions(t, forward_state, backward_state):
            """Step t: the forward GRU reads position t, the backward one src_len - 1 - t."""
            reverse_t = src_len - 1 - t
            forward_input, _ = tf.split(tf.gather(projected, t), 2, axis=1)
            _, backward_input = tf.split(tf.gather(projected, reverse_t), 2, axis=1)
            return (gru_step(forward_state, forward_input, *recurrent[0], tf.gather(real, t)),
                    gru_step(backward_state, backward_input, *recurrent[1],
                             tf.gather(real, reverse_t)))

        # The states are gathered by concatenation rather than in TensorArrays: LiteRT
        # lowers a TensorArray to built-in operations only when its element shape is static
        # (`batch` is not), and its WHILE fails on a loop variable that starts empty, so the
        # first step runs before the loop (`source_ids` has at least one column, `END_ID`).
        zeros = tf.zeros(tf.stack([batch, units]))
        forward_state, backward_state = directions(0, zeros, zeros)

        def body(t, forward_state, backward_state, forward_states, backward_states):
            forward_state, backward_state = directions(t, forward_state, backward_state)
            # →h_1..→h_{t+1} and ←h_{src_len-t}..←h_{src_len}: [t + 1, batch, units]
            forward_states = tf.concat([forward_states, tf.expand_dims(forward_state, 0)], 0)
            backward_states = tf.concat([tf.expand_dims(backward_state, 0), backward_states], 0)
            return t + 1, forward_state, backward_state, forward_states, backward_states

        state_shape, states_shape = tf.TensorShape([None, units]), tf.TensorShape(
            [None, None, units])
        _, _, first_backward_state, forward_states, backward_states = tf.while_loop(
            lambda t, *_: t < src_len, body,
            (1, forward_state, backward_state, tf.expand_dims(forward_state, 0),
             tf.expand_dims(backward_state, 0)),
            shape_invariants=(tf.TensorShape([]), state_shape, state_shape, states_shape,
                              states_shape))
        # h_j = [→h_j; ←h_j], zero at padding: [src_len, batch, 2 units] -> batch-major
        annotations = tf.concat([forward_states, backward_states], axis=2)
        annotations = tf.transpose(annotations * tf.cast(real, tf.float32), [1, 0, 2])
        # s_0 = tanh(W_s ←h_1)
        initial_state = tf.tanh(tf.matmul(first_backward_state, constant["initial_state_kernel"])
                                + constant["initial_state_bias"])
        # U_a h_j, computed once per sentence: [batch, src_len, attention_units]
        keys = tf.reshape(
            tf.matmul(tf.reshape(annotations, [-1, sizes["context_dim"]]), constant["key_kernel"]),
            tf.stack([batch, src_len, sizes["attention_units"]]))
        return {"annotations": annotations, "keys": keys, "initial_state": initial_state}

    return encode


def decoder_step_function(weights):
    """A `tf.function`: one decoder step (Appendix A.2.2 of arXiv:1409.0473) and the
    log-probabilities of the next token."""
    sizes = weights["sizes"]
    units, attention_units = sizes["units"], sizes["attention_units"]
    context_dim, readout_dim = sizes["context_dim"], sizes["readout_dim"]
    constant = {name: tf.constant(value) for name, value in weights.items() if name != "sizes"}
    # [W_a, U_z, U_r]: W_a s_{i-1} and [U_z; U_r] s_{i-1} in one product
    state_kernel = tf.concat(
        [constant["query_kernel"], constant["recurrent_kernel"][:, :2 * units]], axis=1)
    candidate_kernel = constant["recurrent_kernel"][:, 2 * units:]  # U
    score_column = constant["score_vector"][:, None]  # v_a: [attention_units, 1]
    output_kernel = constant["output_kernel" if "output_kernel" in constant
                             else "target_embeddings"]  # [vocab, readout_dim]

    @tf.function(input_signature=[
        tf.TensorSpec([None], tf.int32, name="previous_tokens"),
        tf.TensorSpec([None, units], tf.float32, name="state"),
        tf.TensorSpec([None, None, attention_units], tf.float32, name="keys"),
        tf.TensorSpec([None, None, context_dim], tf.float32, name="annotations"),
        tf.TensorSpec([None, None], tf.float32, name="source_mask")])
    def step(previous_tokens, state, keys, annotations, source_mask):
        batch, src_len = tf.shape(keys)[0], tf.shape(keys)[1]
        embedded = tf.gather(constant["target_embeddings"], previous_tokens)  # E y_{i-1}
        projected_state = tf.matmul(state, state_kernel)
        query, recurrent_gates = tf.split(projected_state, [attention_units, 2 * units], axis=1)
        features = tf.expand_dims(query, 1) + keys  # W_a s_{i-1} + U_a h_j
        if "score_bias" in constant:
            features += constant["score_bias"]
        # e_ij = v_a^T tanh(W_a s_{i-1} + U_a h_j): [batch, src_len]
        scores = tf.reshape(
            tf.matmul(tf.reshape(tf.tanh(features), [-1, attention_units]), score_column),
            tf.stack([batch, src_len]))
        # α_ij = exp(e_ij) / Σ_k exp(e_ik) over the real positions (eq. 6), 0 at padding
        real = source_mask > 0.5
        weights = tf.nn.softmax(tf.where(real, scores, tf.float32.min)) * source_mask
        # c_i = Σ_j α_ij h_j (eq. 5): [batch, 1, src_len] x [batch, src_len, context_dim]
        context = tf.reshape(tf.matmul(tf.expand_dims(weights, 1), annotations),
                             tf.stack([batch, context_dim]))
        gates_input, candidate_input = tf.split(
            tf.matmul(embedded, constant["input_kernel"]) + constant["input_bias"]
            + tf.matmul(context, constant["context_kernel"]), [2 * units, units], axis=1)
        # z_i = σ(W_z E y_{i-1} + U_z s_{i-1} + C_z c_i), r_i likewise
        update, reset = tf.split(tf.sigmoid(gates_input + recurrent_gates), 2, axis=1)
        # s̃_i = tanh(W E y_{i-1} + U [r_i ∘ s_{i-1}] + C c_i)
        candidate = tf.tanh(candidate_input + tf.matmul(reset * state, candidate_kernel))
        # s_i = (1 - z_i) ∘ s_{i-1} + z_i ∘ s̃_i
        new_state = state + update * (candidate - state)
        # t̃_i = U_o s_i + V_o E y_{i-1} + C_o c_i
        readout = tf.matmul(tf.concat([new_state, embedded, context], axis=1),
                            constant["readout_kernel"]) + constant["readout_bias"]
        if sizes["maxout"]:
            # t_i,k = max(t̃_i,2k-1, t̃_i,2k)
            readout = tf.reduce_max(tf.reshape(readout, tf.stack([batch, readout_dim, 2])),
                                    axis=2)
        else:
            readout = tf.tanh(readout)
        # p(y_i | y_<i, x) = softmax(W_o t_i), W_o = E^T when tied (one buffer for both uses)
        logits = tf.matmul(readout, output_kernel, transpose_b=True) + constant["output_bias"]
        return {"log_probs": tf.nn.log_softmax(logits), "state": new_state,
                "attention": weights}

    return step


# -- conversion ---------------------------------------------------------------------------------

def convert(function, weight_type="float32"):
    """Convert a `tf.function` with an input signature to a LiteRT flatbuffer (bytes), with
    LiteRT's built-in operations only."""
    if weight_type not in WEIGHT_TYPES:
        raise ValueError(f"`weight_type` must be one of {WEIGHT_TYPES}. "
                         f"Received: weight_type={weight_type!r}")
    # With a trackable object the converter goes through a SavedModel and keeps the
    # function's signature (input and output names); without one it is deprecated.
    module = tf.Module()
    module.function = function
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function()], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if weight_type != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if weight_type == "float16":
        converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


# -- reading a model directory or a SavedModel ------------------------------------------------

def _sentencepiece_models(saved_model_dir):
    """The serialised SentencePiece models of a SavedModel written by `export`:
    `(source, target)` bytes, read from the `SentencepieceOp` that creates each tokenizer's
    resource (found through the object graph: `source_tokenizer` -> `sentencepiece` ->
    `_model_resource` -> `_create_resource`)."""
    from tensorflow.core.protobuf import saved_model_pb2

    from bahdanau_keras.train import TrainingError

    path = os.path.join(saved_model_dir, "saved_model.pb")
    saved_model = saved_model_pb2.SavedModel()
    with open(path, "rb") as f:
        saved_model.ParseFromString(f.read())
    graph = saved_model.meta_graphs[0]
    nodes = graph.object_graph_def.nodes
    functions = {function.signature.name: function for function in graph.graph_def.library.function}

    def child(node_id, name):
        for reference in nodes[node_id].children:
            if reference.local_name == name:
                return reference.node_id
        raise KeyError(name)

    protos = []
    for tokenizer in ("source_tokenizer", "target_tokenizer"):
        try:
            resource = child(child(child(0, tokenizer), "sentencepiece"), "_model_resource")
            creator = nodes[child(resource, "_create_resource")].function.concrete_functions[0]
            models = [node.attr["model"].s for node in functions[creator].node_def
                      if node.op == "SentencepieceOp"]
        except (KeyError, IndexError):
            models = []
        if len(models) != 1:
            raise TrainingError(
                f"{saved_model_dir}: not a translator SavedModel written by "
                f"`bahdanau-keras export` (no SentencePiece model for its {tokenizer})")
        protos.append(models[0])
    return tuple(protos)


def load_for_export(model_path):
    """`(translator, source_model, target_model)` of a trained model directory (with
    `config.json`) or of a SavedModel written by `export` (its `assets/config.json`, its
    variables and the SentencePiece models inside its graph)."""
    from bahdanau_keras.model import ModelConfig, Translator
    from bahdanau_keras.train import TrainingError, load_trained

    if os.path.isfile(os.path.join(model_path, "config.json")):
        trained = load_trained(model_path)  # a TrainingError names what is unreadable
        return (trained.translator, trained.source_tokenizer.model_proto,
                trained.target_tokenizer.model_proto)
    if not os.path.isfile(os.path.join(model_path, "saved_model.pb")):
        raise TrainingError(f"{model_path}: neither a model directory (no config.json) nor a "
                            "SavedModel (no saved_model.pb)")
    config_path = os.path.join(model_path, "assets", "config.json")
    try:
        with open(config_path, encoding="utf-8") as f:
            model_config = ModelConfig(**json.load(f)["model"])
    except FileNotFoundError:
        raise TrainingError(f"{model_path}: the SavedModel has no assets/config.json (the "
                            "model sizes `bahdanau-keras export` writes there)") from None
    except (ValueError, KeyError, TypeError) as error:
        raise TrainingError(f"{config_path}: corrupt model configuration ({error})") from None
    translator = Translator.from_model_config(model_config)
    try:
        # A SavedModel's variables are an object-based checkpoint rooted at the exported
        # `TranslatorModule`, whose `translator` is the Keras model.
        tf.train.Checkpoint(translator=translator).read(
            os.path.join(model_path, "variables", "variables")).assert_existing_objects_matched()
    except (tf.errors.OpError, ValueError, AssertionError) as error:
        raise TrainingError(f"{model_path}: cannot read the SavedModel's weights "
                            f"({str(error).strip().splitlines()[0]})") from None
    return (translator, *_sentencepiece_models(model_path))


def export_litert(model_path, output, weight_type="float32"):
    """Write the LiteRT models of a trained model to the directory `output`.

    Args:
        model_path: A trained model directory, or a SavedModel written by `export` (such
            as the shipped `saved_models/en-fr`).
        output: The directory to write: `encoder.tflite`, `decoder_step.tflite`,
            `source.model`, `target.model` (SentencePiece) and `litert.json` (file sizes,
            special ids, model sizes, the search limits and the source normalisation).
        weight_type: `"float32"`, `"float16"` (weights stored in half precision, computed
            in float32) or `"int8"` (dynamic-range quantisation: int8 weights, activations
            quantised on the fly in the large products).

    Returns:
        `output`.
    """
    if weight_type not in WEIGHT_TYPES:
        raise ValueError(f"`weight_type` must be one of {WEIGHT_TYPES}. "
                         f"Received: weight_type={weight_type!r}")
    translator, source_model, target_model = load_for_export(model_path)
    weights = model_weights(translator)
    contents = {
        "encoder": convert(encoder_function(weights), weight_type),
        "decoder_step": convert(decoder_step_function(weights), weight_type),
        "source_vocab": source_model,
        "target_vocab": target_model,
    }
    os.makedirs(output, exist_ok=True)
    for name, content in contents.items():
        with open(os.path.join(output, FILES[name]), "wb") as f:
            f.write(content)
    metadata = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "weights": weight_type,
        "files": {name: {"path": FILES[name], "bytes": len(content)}
                  for name, content in contents.items()},
        "special_ids": {"pad": PAD_ID, "start": START_ID, "end": END_ID,
                        "unknown": UNKNOWN_ID},
        "sizes": weights["sizes"],
        "search": {**search_limits(), "forbidden_ids": [PAD_ID, START_ID]},
        "inputs": {
            "encoder": {"source_ids": "int32 [batch, src_len]: subwords, then END, 0-padded"},
            "decoder_step": {
                "previous_tokens": "int32 [batch]: START at the first step",
                "state": "float32 [batch, units]: the encoder's initial_state at the first step",
                "keys": "float32 [batch, src_len, attention_units]: the encoder's keys",
                "annotations": "float32 [batch, src_len, context_dim]: the encoder's",
                "source_mask": "float32 [batch, src_len]: 1 at real tokens, 0 at padding"},
        },
        "outputs": {
            "encoder": ["annotations", "keys", "initial_state"],
            "decoder_step": {"log_probs": "float32 [batch, vocab]: log softmax",
                             "state": "float32 [batch, units]: the next step's state",
                             "attention": "float32 [batch, src_len]"},
        },
        "normalization": NORMALIZATION,
    }
    with open(os.path.join(output, METADATA_FILE), "w", encoding="utf-8") as f:
        json.dump(metadata, f, indent=2, ensure_ascii=False)
    return output
