"""Attention heatmaps and loss curves."""

import matplotlib
import numpy as np
import pytest

from bahdanau_keras.plot import plot_attention, plot_history

SOURCE = ["\u2581John", "\u2581loves", "\u2581Mary", ".", "</s>"]
TARGET = ["\u2581Jean", "\u2581aime", "\u2581Marie", ".", "</s>", "\u2581"]


def attention_of(source, target, seed=0):
    weights = np.random.default_rng(seed).random((len(target), len(source)))
    return weights / weights.sum(axis=1, keepdims=True)


def labels(ticks):
    return [t.get_text() for t in ticks]


def test_plot_attention_writes_a_png_with_token_labels(tmp_path):
    path = tmp_path / "attention.png"
    backend = matplotlib.get_backend()
    figure = plot_attention(attention_of(SOURCE, TARGET), SOURCE, TARGET, path=str(path),
                            title="Jean aime Marie.")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000
    assert matplotlib.get_backend() == backend  # nothing global was switched
    ax = figure.axes[0]
    assert labels(ax.get_xticklabels()) == ["John", "loves", "Mary", ".", "</s>"]
    assert labels(ax.get_yticklabels()) == ["Jean", "aime", "Marie", ".", "</s>", "\u2423"]
    assert ax.get_title() == "Jean aime Marie."
    image = ax.get_images()[0]
    np.testing.assert_allclose(image.get_array(), attention_of(SOURCE, TARGET), atol=1e-6)
    # The PNG is as large as the figure at 120 dpi (the height grows with the tokens).
    width, height = (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big"))
    assert (width, height) == tuple(round(v * 120) for v in figure.get_size_inches())


def test_plot_attention_draws_into_given_axes():
    from matplotlib.figure import Figure

    figure = Figure()
    left, right = figure.subplots(1, 2)
    returned = plot_attention(attention_of(SOURCE[:2], TARGET[:3]), SOURCE[:2], TARGET[:3],
                              ax=right)
    assert returned is figure
    assert labels(right.get_xticklabels()) == ["John", "loves"]
    assert labels(right.get_yticklabels()) == ["Jean", "aime", "Marie"]
    assert not left.get_images()


@pytest.mark.parametrize("shape", [(6, 4), (5, 5), (7, 5), (6,), (6, 5, 1)])
def test_plot_attention_rejects_mismatched_shapes(shape):
    with pytest.raises(ValueError) as raised:
        plot_attention(np.zeros(shape), SOURCE, TARGET)
    message = str(raised.value)
    assert str(tuple(shape)) in message and "(6, 5)" in message


def test_plot_history(tmp_path):
    history = [{"epoch": 1, "train_loss": 5.0, "dev_loss": 4.5},
               {"epoch": 2, "train_loss": 4.0, "dev_loss": 4.1},
               {"epoch": 3, "train_loss": 3.5, "dev_loss": 4.0}]
    path = tmp_path / "history.png"
    figure = plot_history(history, path=str(path))
    assert path.read_bytes().startswith(b"\x89PNG")
    ax = figure.axes[0]
    train, dev = ax.get_lines()
    np.testing.assert_array_equal(train.get_xdata(), [1, 2, 3])
    np.testing.assert_array_equal(train.get_ydata(), [5.0, 4.0, 3.5])
    np.testing.assert_array_equal(dev.get_ydata(), [4.5, 4.1, 4.0])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train", "dev"]


@pytest.mark.slow
def test_plot_history_of_a_trained_model(tiny_model_dir, tmp_path):
    import json

    with open(tiny_model_dir / "history.json", encoding="utf-8") as f:
        history = json.load(f)
    figure = plot_history(history, path=str(tmp_path / "h.png"))
    train, dev = figure.axes[0].get_lines()
    assert len(train.get_xdata()) == len(history) > 1
    assert train.get_ydata()[-1] < train.get_ydata()[0]  # it learned something
