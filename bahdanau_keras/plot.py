"""Attention heatmaps and training curves with matplotlib.

With `path` (and no `ax`) a figure is drawn without pyplot and written to the file: nothing
global changes (no backend switch, no open figure), so it works on a machine with no display
and does not disturb a notebook. Without `path` the figure comes from pyplot, for `plt.show()`.
"""

import numpy as np


def _pieces(tokens):
    """SentencePiece pieces as readable labels: the word-start mark becomes nothing."""
    return [t.replace("\u2581", " ").strip() or "\u2423" for t in tokens]


def _figure(figsize, path, ax):
    """`(figure, ax)`: the given axes, a pyplot-free figure to save, or a pyplot figure."""
    if ax is not None:
        return ax.figure, ax
    if path is not None:
        from matplotlib.figure import Figure

        figure = Figure(figsize=figsize)
        return figure, figure.subplots()
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=figsize)


def plot_attention(attention, source_tokens, target_tokens, path=None, title=None, ax=None):
    """Draw the attention weights `α_ij` of one translation as a heatmap.

    Args:
        attention: `[tgt_len, src_len]` weights (rows: output tokens, columns: input tokens),
            exactly one row per target token and one column per source token.
        source_tokens, target_tokens: Subword strings for the x and y axes.
        path: If given, the figure is written there (PNG).
        title: Optional title.
        ax: Draw into this matplotlib axes instead of a new figure.

    Returns:
        The matplotlib figure.

    Raises:
        ValueError: `attention` is not `[len(target_tokens), len(source_tokens)]`.
    """
    attention = np.asarray(attention, dtype=np.float32)
    expected = (len(target_tokens), len(source_tokens))
    if attention.ndim != 2 or attention.shape != expected:
        raise ValueError(
            f"`attention` of shape {attention.shape} does not match {expected[0]} target and "
            f"{expected[1]} source tokens: expected shape {expected} ([tgt_len, src_len])")
    width = max(4.0, 0.45 * len(source_tokens) + 1.5)
    height = max(3.0, 0.4 * len(target_tokens) + 1.5)
    figure, ax = _figure((width, height), path, ax)
    image = ax.imshow(attention, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(source_tokens)), _pieces(source_tokens), rotation=60, ha="right")
    ax.set_yticks(range(len(target_tokens)), _pieces(target_tokens))
    ax.set_xlabel("source")
    ax.set_ylabel("translation")
    if title:
        ax.set_title(title)
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    figure.tight_layout()
    if path is not None:
        figure.savefig(path, dpi=120)
    return figure


def plot_history(history, path=None, ax=None):
    """Train and dev loss by epoch from a `history.json` list (as `train` returns)."""
    figure, ax = _figure((6, 4), path, ax)
    epochs = [r["epoch"] for r in history]
    ax.plot(epochs, [r["train_loss"] for r in history], marker="o", label="train")
    ax.plot(epochs, [r["dev_loss"] for r in history], marker="o", label="dev")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy per target token")
    ax.legend()
    ax.grid(alpha=0.3)
    figure.tight_layout()
    if path is not None:
        figure.savefig(path, dpi=120)
    return figure
