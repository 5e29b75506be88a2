"""Text processing inside the TensorFlow graph: Unicode normalisation and subword tokenizers.

Everything here is made of TensorFlow and tensorflow-text ops, so the exact same processing
runs when training, when translating in Python and inside an exported SavedModel.
"""

import hashlib
import io
import logging

import tensorflow as tf
import tensorflow_text as tf_text
from tensorflow_text.python.ops import sentencepiece_tokenizer as sentencepiece_ops

# Special token ids, shared by both vocabularies (and by `../shared/peers/make_ids.py`).
PAD_ID, START_ID, END_ID, UNKNOWN_ID = 0, 1, 2, 3


def normalize(text):
    """Normalise a string tensor of any shape, keeping case, accents and punctuation.

    1. Invalid UTF-8 byte sequences become U+FFFD instead of failing the batch.
    2. NFKC: compatibility characters become their plain form; in the Tatoeba corpora this
       turns the narrow and no-break spaces before `? ! : ;` (U+202F, U+00A0) into spaces.
    3. Typographic apostrophes and quotes become ASCII ones (`’` -> `'`), so "t’aime" and
       "t'aime" are the same text.
    4. Runs of white space (any Unicode space, and U+2581, which SentencePiece reserves for
       the word boundary) become one space; both ends are stripped.
    """
    text = tf.convert_to_tensor(text, tf.string)
    text = tf.strings.unicode_transcode(
        text, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD)
    text = tf_text.normalize_utf8(text, "NFKC")
    text = tf.strings.regex_replace(text, "[\u2018\u2019\u201a\u201b\u02bc\u0060\u00b4]", "'")
    text = tf.strings.regex_replace(text, "[\u201c\u201d\u201e\u201f]", '"')
    text = tf.strings.regex_replace(text, r"[\x{200b}-\x{200d}\x{2060}\x{feff}]", "")
    # U+2581 is SentencePiece's word boundary: it could never come back out of the tokenizer.
    text = tf.strings.regex_replace(text, r"[\s\p{Z}\p{Cc}\x{2581}]+", " ")
    return tf.strings.strip(text)


def normalize_python(sentences):
    """`normalize` applied to a list of Python strings (or bytes); returns Python strings."""
    sentences = list(sentences)
    if not sentences:
        return []
    out = normalize(tf.constant(sentences, tf.string)).numpy()
    return [s.decode("utf-8") for s in out]


def train_sentencepiece(sentences, vocab_size=8000, model_type="unigram"):
    """Learn a SentencePiece model from normalised sentences; returns the serialised model.

    The model keeps case and accents (no normalisation rule of its own: `normalize` has already
    run), reserves the ids `PAD_ID, START_ID, END_ID, UNKNOWN_ID` and falls back to UTF-8
    bytes for characters it never saw, so any input round-trips (an emoji is not `⁇`).
    `vocab_size` is an upper bound: a small corpus gets the vocabulary it can support.
    """
    import sentencepiece as spm

    sentences = [s for s in sentences if s]
    if not sentences:
        raise ValueError("Cannot learn a vocabulary from an empty list of sentences.")
    # SentencePiece needs a piece for every character it saw (character_coverage=1.0), the
    # 256 bytes of the fallback and the 4 special ids: a smaller size is raised to that.
    characters = set().union(*map(set, sentences)) - {" "}
    required = len(characters) + 1 + 256 + 4  # + 1: the word boundary "▁"
    if vocab_size < required:
        logging.getLogger("bahdanau_keras").warning(
            "vocab_size %d is smaller than the %d pieces this text needs (its characters, the "
            "256 byte pieces and 4 special ids): using %d", vocab_size, required, required)
        vocab_size = required
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        model_type=model_type,
        character_coverage=1.0,
        byte_fallback=True,
        split_digits=True,
        normalization_rule_name="identity",
        pad_id=PAD_ID, bos_id=START_ID, eos_id=END_ID, unk_id=UNKNOWN_ID,
        input_sentence_size=2_000_000,
        shuffle_input_sentence=True,
        num_threads=2,
        minloglevel=2,
    )
    return model.getvalue()


def _share_model_resource(tokenizer, model_proto, name):
    """Give `tokenizer`'s SentencePiece model resource a shared name.

    tensorflow-text creates it private to the kernel that made it, and eager TensorFlow drops
    its cached kernels when the global seed is set (`tf.random.set_seed`,
    `keras.utils.set_random_seed`): the resource went with them, and the next `tokenize`
    failed with "Resource .../SentencepieceOp/... does not exist". A shared resource stays in
    the resource manager. (Left as it is if tensorflow-text's internals change.)
    """
    resource = getattr(tokenizer, "_model_resource", None)
    op_library = getattr(sentencepiece_ops, "gen_sentencepiece_tokenizer", None)
    if resource is None or op_library is None:
        return

    class SharedModelResource(type(resource)):
        def _create_resource(self):
            with tf.name_scope(self._name):
                return op_library.sentencepiece_op(model=self._model, shared_name=self._name)

    tokenizer._model_resource = SharedModelResource(model_proto, name)


class SubwordTokenizer(tf.Module):
    """A SentencePiece subword tokenizer that lives in the graph and saves in a SavedModel.

    Args:
        model_proto: The serialised SentencePiece model (`train_sentencepiece` gives one).

    `tokenize(text)` normalises and splits a `[batch]` string tensor into a `RaggedTensor` of
    ids `[batch, (len)]`; `detokenize(ids)` joins ids back into natural text, stopping at the
    first `END_ID` and ignoring `PAD_ID` and `START_ID`.
    """

    def __init__(self, model_proto, name=None):
        super().__init__(name=name)
        if not isinstance(model_proto, bytes) or not model_proto:
            raise ValueError(
                f"`model_proto` must be a non-empty serialised SentencePiece model (bytes). "
                f"Received: {type(model_proto).__name__}")
        self.model_proto = model_proto
        # The op's resource is shared by node name when a SavedModel is restored: a name of
        # its own per model keeps a source and a target tokenizer apart after reloading.
        digest = hashlib.sha1(model_proto).hexdigest()[:12]
        self.sentencepiece = tf_text.SentencepieceTokenizer(
            model=model_proto, out_type=tf.int32, add_bos=False, add_eos=False,
            name=f"sentencepiece_{digest}")
        _share_model_resource(self.sentencepiece, model_proto, f"sentencepiece_{digest}")
        self.vocab_size = int(self.sentencepiece.vocab_size())

    @classmethod
    def load(cls, path):
        """Read a tokenizer from a `.model` file written by `save`."""
        with tf.io.gfile.GFile(path, "rb") as f:
            return cls(f.read())

    def save(self, path):
        with tf.io.gfile.GFile(path, "wb") as f:
            f.write(self.model_proto)

    def tokenize(self, text):
        """`[batch]` strings -> `RaggedTensor` `[batch, (len)]` of int32 ids (no start/end)."""
        return self.sentencepiece.tokenize(normalize(text))

    def detokenize(self, ids):
        """`[batch, len]` (dense or ragged) ids -> `[batch]` strings, cut at the end token."""
        if isinstance(ids, tf.RaggedTensor):
            ids = ids.to_tensor(default_value=PAD_ID)  # PAD_ID is dropped below
        ids = tf.cast(tf.convert_to_tensor(ids), tf.int32)
        # Keep everything before the first END_ID.
        before_end = tf.math.cumsum(tf.cast(ids == END_ID, tf.int32), axis=-1) == 0
        ids = tf.RaggedTensor.from_tensor(ids, lengths=tf.reduce_sum(
            tf.cast(before_end, tf.int32), axis=-1))
        ids = tf.ragged.boolean_mask(ids, (ids != PAD_ID) & (ids != START_ID))
        return self.sentencepiece.detokenize(ids)

    def id_to_piece(self, ids):
        """Ids (any shape) -> their subword pieces as strings (for plots and token outputs)."""
        return self.sentencepiece.id_to_string(ids)
