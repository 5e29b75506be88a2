"""The whole translation pipeline as one `tf.Module`, and its export as a SavedModel.

`TranslatorModule` takes raw strings and returns translations: normalisation, tokenisation,
encoding, decoding and detokenisation all run inside the graph. The same module translates in
memory and, saved with `export`, in any process that imports only `tensorflow` and
`tensorflow_text` (for the SentencePiece and normalisation ops):

    import tensorflow as tf, tensorflow_text  # noqa: F401 (registers the ops)
    reloaded = tf.saved_model.load("saved_models/en-fr")
    reloaded.translate(tf.constant(["John loves Mary."]))["translation"]
"""

import os

import tensorflow as tf

from bahdanau_keras.decode import (
    BEAM_OUTPUTS,
    GREEDY_OUTPUTS,
    beam_search_decode,
    decode_sorted,
    greedy_decode,
)
from bahdanau_keras.text import END_ID, PAD_ID

TEXTS = tf.TensorSpec([None], tf.string, name="texts")


class TranslatorModule(tf.Module):
    """Raw strings in, translations out, with the attention of every chosen token.

    Args:
        translator: A trained `Translator`.
        source_tokenizer, target_tokenizer: `SubwordTokenizer`s it was trained with.
        max_source_length: Longer inputs are cut to this many subwords (a 2,000-character
            sentence still translates, from its beginning).
        max_length_a, max_length_b: Output limit `a * source_length + b` subwords.
        batch_size, beam_batch_size: Sentences that greedy and beam search decode at once:
            the sentences of a call are sorted by length and decoded in batches of this many
            (`decode.decode_sorted`), which gives the same results as one batch, faster and in
            bounded memory. The defaults were measured fastest on the 2-core CPU of
            `docs/benchmarks.md` (a beam multiplies the rows of each step by its width).

    Every method takes `texts`, a `[batch]` string tensor, and returns a dict:
    `translation` `[batch]` strings, `score` `[batch]` (log-probability, length-penalised for
    beam search), `attention` `[batch, tgt_len, src_len]`, `source_tokens` `[batch, src_len]`
    and `target_tokens` `[batch, tgt_len]` (subword strings, `""` for padding).
    """

    def __init__(self, translator, source_tokenizer, target_tokenizer, max_source_length=128,
                 max_length_a=2.0, max_length_b=10, batch_size=256, beam_batch_size=64,
                 name=None):
        super().__init__(name=name)
        for option, value in (("batch_size", batch_size), ("beam_batch_size", beam_batch_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"`{option}` must be a positive integer. Received: "
                                 f"{option}={value!r}")
        self.translator = translator
        self.source_tokenizer = source_tokenizer
        self.target_tokenizer = target_tokenizer
        self.max_source_length = max_source_length
        self.max_length_a = max_length_a
        self.max_length_b = max_length_b
        self.batch_size = batch_size
        self.beam_batch_size = beam_batch_size

    def _source_ids(self, texts):
        """`[batch]` strings -> int32 `[batch + 1, src_len]`: subwords (cut), `END_ID`,
        padding. One empty sentence is appended so that an empty batch still runs the
        recurrent layers on a well-formed input; `_outputs` drops it."""
        texts = tf.concat([texts, [""]], axis=0)
        pieces = self.source_tokenizer.tokenize(texts)[:, : self.max_source_length - 1]
        end = tf.fill([pieces.nrows(), 1], END_ID)
        return tf.concat([pieces, end], axis=1).to_tensor(default_value=PAD_ID)

    @staticmethod
    def _empty(source):
        """`[batch]` bool: the sentence has no subword (only the end token)."""
        return tf.equal(source[:, 0], END_ID)

    def _outputs(self, texts, source, result):
        count = tf.shape(texts)[0]
        result = {key: value[:count] for key, value in result.items()}
        source = source[:count]
        tokens = result["tokens"]
        translation = self.target_tokenizer.detokenize(tokens)
        # Nothing to translate gives nothing (not the model's guess for an empty sentence).
        translation = tf.where(self._empty(source), "", translation)
        source_tokens = tf.where(source == PAD_ID, "",
                                 self.source_tokenizer.id_to_piece(source))
        target_tokens = tf.where(tokens == PAD_ID, "", self.target_tokenizer.id_to_piece(tokens))
        return {"translation": translation, "score": result["scores"],
                "attention": result["attention"], "source_tokens": source_tokens,
                "target_tokens": target_tokens}

    @tf.function(input_signature=[TEXTS])
    def translate(self, texts):
        """Greedy translation of a batch of raw strings."""
        source = self._source_ids(texts)
        result = decode_sorted(
            lambda batch: greedy_decode(self.translator, batch, max_length_a=self.max_length_a,
                                        max_length_b=self.max_length_b),
            source, self.batch_size, GREEDY_OUTPUTS)
        return self._outputs(texts, source, result)

    @tf.function(input_signature=[
        TEXTS, tf.TensorSpec([], tf.int32, name="beam_width"),
        tf.TensorSpec([], tf.float32, name="alpha"), tf.TensorSpec([], tf.float32, name="beta")])
    def translate_beam(self, texts, beam_width, alpha, beta):
        """Beam search with GNMT length (`alpha`) and coverage (`beta`) penalties; adds the
        n-best list: `nbest_translations` `[batch, beam]` and `nbest_scores`."""
        source = self._source_ids(texts)
        beam_width = tf.maximum(beam_width, 1)
        result = decode_sorted(
            lambda batch: beam_search_decode(
                self.translator, batch, beam_width, alpha, beta,
                max_length_a=self.max_length_a, max_length_b=self.max_length_b),
            source, self.beam_batch_size, BEAM_OUTPUTS)
        outputs = self._outputs(texts, source, result)
        count = tf.shape(texts)[0]
        nbest = result["nbest_tokens"][:count]  # [batch, beam, tgt_len]
        shape = tf.shape(nbest)
        flat = self.target_tokenizer.detokenize(tf.reshape(nbest, [-1, shape[2]]))
        # Nothing to translate gives nothing, in the n-best list too.
        empty = self._empty(source[:count])[:, None]
        outputs["nbest_translations"] = tf.where(empty, "", tf.reshape(flat, shape[:2]))
        outputs["nbest_scores"] = result["nbest_scores"][:count]
        return outputs

    @tf.function(input_signature=[
        TEXTS, tf.TensorSpec([], tf.float32, name="temperature"),
        tf.TensorSpec([2], tf.int64, name="seed")])
    def translate_sample(self, texts, temperature, seed):
        """Sampled translation: tokens drawn from `softmax(logits / temperature)`. The call's
        sentences are one batch, in their order (a drawn token depends on its row)."""
        source = self._source_ids(texts)
        result = greedy_decode(self.translator, source, temperature=temperature, seed=seed,
                               max_length_a=self.max_length_a, max_length_b=self.max_length_b)
        return self._outputs(texts, source, result)


def export(module, path):
    """Write `module` as a SavedModel with the signatures `serving_default` (greedy),
    `translate_beam` and `translate_sample`."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    # The functions themselves, not concrete functions traced here: those would be saved
    # beside the functions' own (traced again when saving), twice the graph to load.
    signatures = {
        "serving_default": module.translate,
        "translate_beam": module.translate_beam,
        "translate_sample": module.translate_sample,
    }
    # Inference only: the training kernels have gradients of their own
    # (`bahdanau_keras.kernels`), which read the forward loop's TensorArrays and cannot be
    # saved as functions of their own.
    tf.saved_model.save(module, path, signatures=signatures,
                        options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))
    return path


def load(path):
    """Load an exported translator (needs only `tensorflow` and `tensorflow_text`)."""
    import tensorflow_text  # noqa: F401  (registers the SentencePiece and normalisation ops)

    return tf.saved_model.load(path)


def export_model_dir(model_dir, output, keras_path=None):
    """Export a trained model directory as a SavedModel at `output`; the model's
    `config.json` and `history.json` go into its `assets/`. With `keras_path`, also save the
    Keras `Translator` in the native `.keras` format."""
    import shutil

    from bahdanau_keras.train import CONFIG_FILE, load_trained

    trained = load_trained(model_dir)  # a TrainingError names what is unreadable
    module = TranslatorModule(trained.translator, trained.source_tokenizer,
                              trained.target_tokenizer)
    export(module, output)
    os.makedirs(os.path.join(output, "assets"), exist_ok=True)
    for name in (CONFIG_FILE, "history.json"):
        if os.path.exists(os.path.join(model_dir, name)):
            shutil.copy(os.path.join(model_dir, name), os.path.join(output, "assets", name))
    if keras_path:
        trained.translator.save(keras_path)
    return output
