"""Attention heatmaps and training curves with matplotlib."""

import numpy as np


def _pieces(tokens):
    """SentencePiece pieces as readable labels: the word-start mark becomes nothing."""
    return [t.replace("\u2581", " ").strip() or "\u2423" for t in tokens]


def plot_attention(attention, source_tokens, target_tokens, path=None, title=None, ax=None):
    """Draw the attention weights `α_ij` of one translation as a heatmap.

    Args:
        attention: `[tgt_len, src_len]` weights (rows: output tokens, columns: input tokens).
        source_tokens, target_tokens: Subword strings for the axes (lengths must match).
        path: If given, the figure is written there (PNG) and closed.
        title: Optional title.
        ax: Draw into this matplotlib axes instead of a new figure.

    Returns:
        The matplotlib figure.
    """
    import matplotlib

    if path is not None and ax is None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    attention = np.asarray(attention, dtype=np.float32)
    if attention.ndim != 2:
        raise ValueError(
            f"`attention` must be [tgt_len, src_len]. Received shape {attention.shape}")
    attention = attention[: len(target_tokens), : len(source_tokens)]
    if attention.shape != (len(target_tokens), len(source_tokens)):
        raise ValueError(
            f"attention {attention.shape} does not match {len(target_tokens)} target and "
            f"{len(source_tokens)} source tokens")
    if ax is None:
        width = max(4.0, 0.45 * len(source_tokens) + 1.5)
        height = max(3.0, 0.4 * len(target_tokens) + 1.5)
        figure, ax = plt.subplots(figsize=(width, height))
    else:
        figure = ax.figure
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
        plt.close(figure)
    return figure


def plot_history(history, path=None, ax=None):
    """Train and dev loss by epoch from a `history.json` list (as `train` returns)."""
    import matplotlib

    if path is not None and ax is None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if ax is None:
        figure, ax = plt.subplots(figsize=(6, 4))
    else:
        figure = ax.figure
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
        plt.close(figure)
    return figure
