"""bahdanau_keras: Bahdanau attention for neural machine translation, in Keras 3 / TensorFlow.

Named dimensions used in every shape comment of the package:

- `batch`: sentences in a batch (`batch * beam` inside beam search);
- `src_len`: source tokens (subwords), padding included;
- `tgt_len`: target tokens, padding included;
- `units`: a hidden size (`encoder_units`, `decoder_units` or `attention_units`, as named);
- `vocab`: a vocabulary size.

The public names below are imported on first use, so `import bahdanau_keras` (and the command
line's `--help`) does not load TensorFlow.
"""

import importlib

__version__ = "0.1.0"

_PUBLIC = {
    "BahdanauAttention": "attention",
    "Encoder": "encoder",
    "Decoder": "decoder",
    "ModelConfig": "model",
    "Translator": "model",
    "SubwordTokenizer": "text",
    "normalize": "text",
    "train_sentencepiece": "text",
    "PAD_ID": "text",
    "START_ID": "text",
    "END_ID": "text",
    "UNKNOWN_ID": "text",
    "Corpus": "data",
    "CorpusError": "data",
    "read_corpus": "data",
    "split_pairs": "data",
    "encode_pairs": "data",
    "batches": "data",
    "SAMPLE_CORPUS": "data",
    "TrainConfig": "train",
    "TrainingError": "train",
    "load_trained": "train",
    "greedy_decode": "decode",
    "beam_search_decode": "decode",
    "TranslatorModule": "export",
    "Translation": "translate",
    "plot_attention": "plot",
    "export_model": "export",
    "LiteTranslator": "litert",
    "export_litert": "litert_export",
    "evaluate_model": "evaluate",
    "train_model": "train",
}

# Public names that differ from the function's name in its module (which is named as the
# function: `bahdanau_keras.train` is the module, `bahdanau_keras.train_model` its function).
_ALIASES = {"export_model": "export", "evaluate_model": "evaluate", "train_model": "train"}

__all__ = sorted(_PUBLIC)


def __getattr__(name):
    if name in _PUBLIC:
        module = importlib.import_module(f"bahdanau_keras.{_PUBLIC[name]}")
        return getattr(module, _ALIASES.get(name, name))
    raise AttributeError(f"module 'bahdanau_keras' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
