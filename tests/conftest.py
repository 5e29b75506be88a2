"""Shared fixtures: the Tatoeba corpus (required under CI) and a tiny trained model."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("BAHDANAU_KERAS_DATA", REPO.parent / "shared" / "data"))
TINY_MODEL = dict(embedding_dim=32, encoder_units=32, decoder_units=64, attention_units=32)


def shared_corpus(name):
    """Path of a corpus in ../shared/data; skipped when missing, a failure under CI."""
    path = SHARED_DATA / name
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing: CI must run the corpus tests")
        pytest.skip(f"{path} not found (set BAHDANAU_KERAS_DATA)")
    return path


@pytest.fixture(scope="session")
def fra_eng_zip():
    return shared_corpus("fra-eng.zip")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A small model trained for a few epochs on the sample corpus (about 15 s)."""
    from bahdanau_keras import data, train

    model_dir = tmp_path_factory.mktemp("tiny") / "model"
    corpus = data.read_corpus(data.SAMPLE_CORPUS)
    train.train(str(model_dir), corpus, TINY_MODEL,
                train.TrainConfig(epochs=8, vocab_size=600, seed=0), verbose=0)
    return model_dir


@pytest.fixture(scope="session")
def tiny_trained(tiny_model_dir):
    from bahdanau_keras.train import load_trained

    return load_trained(str(tiny_model_dir))
