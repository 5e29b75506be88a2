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

The decoder step is the model's own `Decoder.step` (the readable cell), traced. The encoder
is the model's embedding, `W_s` and `U_a` layers around a GRU loop written here: both of the
model's GRU loops (Keras' `GRU` and `kernels.bidirectional_gru`) keep their steps in
`TensorArray`s whose element shape (`[batch, units]`, `batch` unknown) is not static, which
the converter maps to TensorFlow ops only, and a phone app must not need the TensorFlow ops
delegate. Only LiteRT's built-in operations are allowed (no `SELECT_TF_OPS`); the tests hold
the converted models to the Keras model and to the SavedModel's translations.

The converter is TensorFlow's `tf.lite.TFLiteConverter.from_concrete_functions`
(`ai-edge-litert` ships the interpreter, not a TensorFlow converter).
"""

import inspect
import json
import os

import tensorflow as tf

# What the LiteRT converter itself uses to freeze a function's variables (no public alias).
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

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


def model_sizes(translator):
    """The sizes an app needs to allocate its buffers (written into `litert.json`)."""
    config, decoder = translator.config, translator.decoder
    return {
        "source_vocab_size": config.source_vocab_size,
        "target_vocab_size": config.target_vocab_size,
        "encoder_units": config.encoder_units,
        "units": config.decoder_units,
        "attention_units": config.attention_units,
        "context_dim": 2 * config.encoder_units,
        "readout_dim": decoder.readout_dim,
        "maxout": config.maxout,
        "tie_embeddings": config.tie_embeddings,
    }


def _check_float32(translator):
    for layer in (translator.encoder, translator.decoder):
        if layer.compute_dtype != "float32":
            raise ValueError(
                "LiteRT export needs a float32 model (load it under the float32 dtype policy; "
                f"the weights are float32 either way). Received: {layer.name} computing in "
                f"{layer.compute_dtype}")


# -- the two graphs -----------------------------------------------------------------------------

def encoder_function(translator):
    """A `tf.function` over `source_ids` `[batch, src_len]`: the encoder and `U_a h_j`."""
    _check_float32(translator)
    if translator.decoder.attention is None:
        raise ValueError("The LiteRT models' signatures carry the attention's keys `U_a h_j`: a "
                         "model without attention cannot be exported to LiteRT (export it as a "
                         "SavedModel). Received: attention=None")
    encoder = translator.encoder
    units = encoder.units
    cells = (encoder.bidirectional_gru.forward_layer.cell,
             encoder.bidirectional_gru.backward_layer.cell)
    for cell in cells:
        if not (cell.reset_after and cell.use_bias):
            raise ValueError("The LiteRT encoder computes Keras' GRU with `reset_after=True` "
                             f"and a bias. Received: reset_after={cell.reset_after}, "
                             f"use_bias={cell.use_bias}")

    def gru_step(state, projected_input, recurrent_kernel, recurrent_bias, real):
        """Keras' GRU (`reset_after=True`, gates z, r, h) from `projected_input`
        `x_t W + b_x`, keeping the state where `real` is False."""
        input_gates, input_candidate = tf.split(projected_input, [2 * units, units], axis=1)
        recurrent_gates, recurrent_candidate = tf.split(
            tf.matmul(state, recurrent_kernel) + recurrent_bias, [2 * units, units], axis=1)
        update, reset = tf.split(tf.sigmoid(input_gates + recurrent_gates), 2, axis=1)
        candidate = tf.tanh(input_candidate + reset * recurrent_candidate)
        new_state = update * state + (1.0 - update) * candidate
        return tf.where(real, new_state, state)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name="source_ids")])
    def encode(source_ids):
        batch, src_len = tf.shape(source_ids)[0], tf.shape(source_ids)[1]
        mask = tf.not_equal(source_ids, PAD_ID)  # [batch, src_len]
        embedded = encoder.embedding(source_ids)  # E x_j: [batch, src_len, emb]
        # Both directions' input projections in one product: [emb, 6 units] and [6 units]
        # (Keras' GRU bias is [2, 3 units]: row 0 for the input, row 1 for the recurrence).
        kernel = tf.concat([cell.kernel for cell in cells], axis=1)
        bias = tf.concat([cell.bias[0] for cell in cells], axis=0)
        recurrent = [(cell.recurrent_kernel, cell.bias[1]) for cell in cells]
        flat = tf.reshape(embedded, [-1, encoder.embedding_dim])  # [batch * src_len, emb]
        projected = tf.reshape(tf.matmul(flat, kernel) + bias,
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

        # The states are gathered by concatenation rather than in TensorArrays (see the
        # module's docstring), and LiteRT's WHILE fails on a loop variable that starts empty,
        # so the first step runs before the loop (`source_ids` has at least one column,
        # `END_ID`).
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
        return {
            "annotations": annotations,
            # U_a h_j, once per sentence: [batch, src_len, attention_units]
            "keys": translator.decoder.attention.project_keys(annotations),
            # s_0 = tanh(W_s ←h_1): [batch, units]
            "initial_state": encoder.initial_state_dense(first_backward_state),
        }

    return encode


def decoder_step_function(translator):
    """A `tf.function`: the model's `Decoder.step` (Appendix A.2.2 of arXiv:1409.0473) and
    the log-probabilities of the next token."""
    _check_float32(translator)
    decoder = translator.decoder
    sizes = model_sizes(translator)

    @tf.function(input_signature=[
        tf.TensorSpec([None], tf.int32, name="previous_tokens"),
        tf.TensorSpec([None, sizes["units"]], tf.float32, name="state"),
        tf.TensorSpec([None, None, sizes["attention_units"]], tf.float32, name="keys"),
        tf.TensorSpec([None, None, sizes["context_dim"]], tf.float32, name="annotations"),
        tf.TensorSpec([None, None], tf.float32, name="source_mask")])
    def step(previous_tokens, state, keys, annotations, source_mask):
        logits, new_state, weights = decoder.step(
            previous_tokens, state, keys, annotations, source_mask > 0.5,
            decoder.loop_kernels())
        # log p(y_i | y_<i, x) = log softmax(W_o t_i)
        return {"log_probs": tf.nn.log_softmax(logits), "state": new_state,
                "attention": weights}

    return step


# -- conversion ---------------------------------------------------------------------------------

def convert(function, translator, weight_type="float32"):
    """Convert a `tf.function` with an input signature (`encoder_function` or
    `decoder_step_function` of `translator`) to a LiteRT flatbuffer (bytes), with LiteRT's
    built-in operations only and the function's signature (`serving_default`, its input and
    output names)."""
    from ai_edge_litert.interpreter import Interpreter

    if weight_type not in WEIGHT_TYPES:
        raise ValueError(f"`weight_type` must be one of {WEIGHT_TYPES}. "
                         f"Received: weight_type={weight_type!r}")
    # The weights become constants of the graph here: the converter's own path keeps Keras'
    # variables as LiteRT resource variables, which nothing would initialise.
    concrete = function.get_concrete_function()
    frozen = convert_variables_to_constants_v2(concrete, lower_control_flow=False)
    # The frozen function returns a flat list (the outputs' sorted names); `named` gives
    # them their names again, and the signature has them.
    names = sorted(concrete.structured_outputs)

    @tf.function(input_signature=concrete.structured_input_signature[0])
    def named(*inputs):
        return dict(zip(names, frozen(*inputs)))

    # With a trackable object the converter goes through a SavedModel, which keeps the
    # signature (without one the signature is lost, and that path is deprecated).
    module = tf.Module()
    module.function = named
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [named.get_concrete_function()], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if weight_type != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if weight_type == "float16":
        converter.target_spec.supported_types = [tf.float16]
    content = converter.convert()
    # The converter falls back to a path without signatures when it cannot save the module.
    signatures = Interpreter(model_content=content).get_signature_list()
    if sorted(signatures.get("serving_default", {}).get("outputs", [])) != names:
        raise RuntimeError("The LiteRT converter lost the function's signature. Expected "
                           f"serving_default with outputs {names}. Received: {signatures}")
    return content


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
    contents = {
        "encoder": convert(encoder_function(translator), translator, weight_type),
        "decoder_step": convert(decoder_step_function(translator), translator, weight_type),
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
        "sizes": model_sizes(translator),
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
