"""What the tutorial notebooks share: the corpus, the shipped model, fast mode, the Colab set-up.

Every notebook starts with the same set-up cell, `colab_setup_cell(repository)`: it runs before
this package is installed (in Colab it is what installs it), so it cannot be imported and is
kept, identical, in each notebook; `tests/test_notebooks.py` checks that it equals the text
rendered here from the repository URL declared in `pyproject.toml`. The other shared cells are
functions of this module:

```python
from bahdanau_keras import data, tutorial

FAST = tutorial.fast_mode()  # BAHDANAU_KERAS_FAST=1: smaller data and fewer steps
try:
    corpus = tutorial.load_tatoeba(REPO)  # prints "Corpus: Tatoeba fra-eng.zip, ... pairs"
except data.CorpusError as error:
    corpus = tutorial.use_sample_corpus(error)  # says so in a warning box first
MODEL = tutorial.shipped_model(REPO)  # prints "Model: saved_models/en-fr (shipped)"
```
"""

import html
import os
import sys
from pathlib import Path

import numpy as np

FAST_VARIABLE = "BAHDANAU_KERAS_FAST"
DATA_VARIABLE = "BAHDANAU_KERAS_DATA"  # a folder holding fra-eng.zip
CORPUS_FILE = "fra-eng.zip"
SHIPPED_MODEL = "saved_models/en-fr"  # relative to the repository
COLAB_CHECKOUT = "/content/bahdanau_keras"
CHECKOUT_VARIABLE = "BAHDANAU_KERAS_CHECKOUT"  # where the set-up cell clones, in Colab
COLAB_URL = "https://colab.research.google.com/github"
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"


# -- fast mode, corpus and model ---------------------------------------------------------------


def fast_mode():
    """Whether `$BAHDANAU_KERAS_FAST` is `1`: the notebooks then use smaller data and fewer
    steps (the tests set it); the code they run is the same."""
    return os.environ.get(FAST_VARIABLE) == "1"


def local_corpus(repository):
    """The path of a local `fra-eng.zip`, or `None` when there is none.

    It is looked for in `$BAHDANAU_KERAS_DATA` when that is set, else in `shared/data` beside
    the repository (`../shared/data` from its root), where the project's machines keep it.

    Args:
        repository: The root of the repository (the notebooks' `REPO`).

    Returns:
        A `pathlib.Path`, or `None`.
    """
    folder = os.environ.get(DATA_VARIABLE)
    folder = Path(folder) if folder else Path(repository).resolve().parent / "shared" / "data"
    path = folder / CORPUS_FILE
    return path if path.is_file() else None


def load_tatoeba(repository, skip_bad_lines=True):
    """Read the Tatoeba English-French corpus: the local copy if there is one, else downloaded.

    The local copy is `local_corpus(repository)`; without one, `data.download_corpus()` fetches
    the corpus once into its cache (trying `$BAHDANAU_KERAS_CORPUS_URL`, then the mirrors) and
    prints where from, its pair count and sha256. Then one line says which corpus is used:
    `Corpus: Tatoeba fra-eng.zip, 142,787 pairs (PATH)`.

    Args:
        repository: The root of the repository (the notebooks' `REPO`).
        skip_bad_lines: Passed to `data.read_corpus`: skip and count malformed lines.

    Returns:
        A `data.Corpus`.

    Raises:
        data.CorpusError: there is no local copy and no mirror gave the corpus (the message
            lists each URL and why), or the file is not a readable corpus.
    """
    from bahdanau_keras import data

    path = local_corpus(repository)
    if path is None:
        path = Path(data.download_corpus())
    corpus = data.read_corpus(path, skip_bad_lines=skip_bad_lines)
    print(f"Corpus: Tatoeba {CORPUS_FILE}, {len(corpus.pairs):,} pairs ({path})")
    return corpus


def use_sample_corpus(error):
    """Show `error` in a warning box, then read the package's small sample corpus.

    For a notebook that could not have the Tatoeba corpus (`load_tatoeba` raised): the box
    says so where a reader sees it, and that every number that follows comes from the sample
    corpus, so nothing changes silently. Then one line says which corpus is used:
    `Corpus: built-in sample corpus (not Tatoeba), N pairs`.

    Args:
        error: The exception (or message) that `load_tatoeba` raised.

    Returns:
        The `data.Corpus` of `data.SAMPLE_CORPUS`.
    """
    from bahdanau_keras import data

    corpus = data.read_corpus(data.SAMPLE_CORPUS)
    show_warning(
        "No Tatoeba corpus: this notebook continues with the built-in sample corpus",
        f"{error}\n\nThe sample corpus holds {len(corpus.pairs):,} pairs written for this "
        "package: every result below comes from it and is not comparable with Tatoeba's. "
        "Rerun the notebook once the corpus can be had.")
    print(f"Corpus: built-in sample corpus (not Tatoeba), {len(corpus.pairs):,} pairs")
    return corpus


def shipped_model(repository):
    """The path of the shipped English-French SavedModel, `saved_models/en-fr`.

    It comes with the repository (in Colab, with the set-up cell's clone); the pip-installed
    package alone does not carry it. Prints `Model: saved_models/en-fr (shipped)`.

    Args:
        repository: The root of the repository (the notebooks' `REPO`).

    Returns:
        A `pathlib.Path`.

    Raises:
        FileNotFoundError: the folder holds no `saved_model.pb`.
    """
    path = Path(repository) / SHIPPED_MODEL
    if not (path / "saved_model.pb").is_file():
        raise FileNotFoundError(
            f"The shipped model is missing: there is no {path / 'saved_model.pb'}. It comes "
            f"with a clone of the repository (in Colab, the set-up cell makes one); `REPO` must "
            f"be the root of that clone. Received: repository={str(repository)!r}")
    print(f"Model: {SHIPPED_MODEL} (shipped)")
    return path


def show_warning(title, message):
    """Display a warning box in a notebook (HTML, with a plain-text form for other
    front ends); outside IPython, print it to stderr."""
    plain = f"WARNING: {title}\n{message}"
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        get_ipython = None
    if get_ipython is None or get_ipython() is None:
        print(plain, file=sys.stderr)
        return
    body = "<br>".join(html.escape(line) for line in message.splitlines())
    box = ('<div style="border-left: 6px solid #d9534f; background: #fdecea; color: #222; '
           f'padding: 10px 14px; margin: 6px 0"><b>&#9888; {html.escape(title)}</b>'
           f'<div style="margin-top: 6px; font-family: monospace; white-space: pre-wrap">'
           f'{body}</div></div>')
    display({"text/html": box, "text/plain": plain}, raw=True)


# -- the encoder-decoder diagram -----------------------------------------------------------------


def plot_encoder_decoder(source_words, target_words, step, weights, ax=None):
    """Draw one decoder step of the model as in the paper's Figure 1.

    From the bottom: the source words `x_j`, the forward and backward GRU states that make
    the annotations `h_j = [→h_j; ←h_j]`, the attention weights `α_ij` (line widths) that
    mix them into the context `c_i`, and the decoder state `s_i`, computed from `s_{i-1}`,
    the previous word `y_{i-1}` and `c_i`, which scores the next word `y_i`.

    Args:
        source_words: The `T_x` source words, e.g. `["John", "loves", "Mary", "<end>"]`.
        target_words: The target words written so far and next; `target_words[step - 1]` is
            the word `y_i` being written (`<start>` is shown before the first).
        step: `i`, from 1 to `len(target_words)`.
        weights: The `T_x` weights `α_ij` of that step.
        ax: Draw into this matplotlib axes instead of a new figure.

    Returns:
        The matplotlib axes.

    Raises:
        ValueError: `step` is out of range, or `weights` does not have one entry per source
            word.
    """
    from bahdanau_keras.plot import _figure

    source_words, target_words = list(source_words), list(target_words)
    weights = np.asarray(weights, dtype=np.float64)
    if not 1 <= step <= len(target_words):
        raise ValueError(f"`step` must be between 1 and {len(target_words)} (one per target "
                         f"word). Received: step={step}")
    if weights.shape != (len(source_words),):
        raise ValueError(f"`weights` must hold one weight per source word, shape "
                         f"({len(source_words)},). Received: shape {weights.shape}")
    _, ax = _figure((1.3 * len(source_words) + 3.5, 5.5), None, ax)
    ax.set_axis_off()
    length = len(source_words)
    centre = (length - 1) / 2

    def box(x, y, label, colour):
        ax.text(x, y, label, ha="center", va="center", fontsize=11, zorder=3,
                bbox=dict(boxstyle="round,pad=0.35", facecolor=colour, edgecolor="0.3"))

    def arrow(start, end, **style):
        ax.annotate("", xy=end, xytext=start, zorder=2,
                    arrowprops=dict(arrowstyle="->", color="0.35", shrinkA=12, shrinkB=12,
                                    **style))

    for j, word in enumerate(source_words):
        box(j, 0.0, word, "white")  # x_j
        box(j, 1.0, rf"$\overrightarrow{{h}}_{j + 1}$", "#dbe9f6")
        box(j, 2.0, rf"$\overleftarrow{{h}}_{j + 1}$", "#dbe9f6")
        arrow((j, 0.0), (j, 1.0))
        arrow((j, 0.0), (j, 2.0), connectionstyle="arc3,rad=0.35")
        if j > 0:
            arrow((j - 1, 1.0), (j, 1.0))  # the forward GRU reads left to right
            arrow((j, 2.0), (j - 1, 2.0))  # the backward GRU reads right to left
    context = (centre, 3.6)
    largest = max(float(weights.max()), 1e-9)
    for j, weight in enumerate(weights):  # c_i = Σ_j α_ij h_j
        ax.plot([j, context[0]], [2.25, context[1] - 0.2], color="#c0392b", zorder=1,
                linewidth=0.5 + 6 * weight / largest, alpha=0.35 + 0.65 * weight / largest)
        left = j <= centre  # the label on the side away from the line
        ax.text(j - 0.1 if left else j + 0.1, 2.55, rf"$\alpha_{{{step},{j + 1}}}$ = {weight:.2f}",
                fontsize=9, color="#c0392b", ha="right" if left else "left")
    box(*context, rf"$c_{step}$", "#f9e0dc")
    previous = (centre - 1.6, 4.9)
    state = (centre + 1.0, 4.9)
    box(*previous, rf"$s_{{{step - 1}}}$", "#e3f1df")
    box(*state, rf"$s_{step}$", "#e3f1df")
    arrow(previous, state)
    arrow(previous, context, linestyle="--")  # attention is asked with s_{i-1}
    arrow(context, state)
    words = ["<start>"] + target_words
    box(previous[0], 6.0, f"{words[step - 1]}", "white")  # y_{i-1}, fed back
    box(state[0], 6.0, f"{words[step]}", "#fff4cc")  # y_i, scored from s_i
    arrow((previous[0], 6.0), state)
    arrow(state, (state[0], 6.0))
    notes = [
        (1.5, "black", "encoder: bidirectional GRU\n"
                       r"$h_j = [\overrightarrow{h}_j; \overleftarrow{h}_j]$"),
        (3.1, "#c0392b", "attention\n" rf"$c_{step} = \sum_j \alpha_{{{step}j}} h_j$"),
        (5.45, "black", rf"decoder GRU: $s_{step}$ from $s_{{{step - 1}}}$," "\n"
                        rf"$y_{{{step - 1}}}$ and $c_{step}$; it scores $y_{step}$"),
    ]
    for y, colour, note in notes:
        ax.text(length - 0.35, y, note, fontsize=10, va="center", color=colour)
    ax.set_xlim(-0.8, length + 2.0)
    ax.set_ylim(-0.5, 6.5)
    ax.set_title(f"Step i = {step}: writing {words[step]!r}")
    return ax


# -- badges and the Colab set-up cell -------------------------------------------------------------


def declared_urls(pyproject):
    """The `[project.urls]` table of a `pyproject.toml` file, as a dict (Python 3.11+)."""
    import tomllib

    with open(pyproject, "rb") as file:
        return dict(tomllib.load(file).get("project", {}).get("urls", {}))


def _github_path(repository):
    """`owner/name` of a `https://github.com/owner/name` URL."""
    prefix = "https://github.com/"
    path = repository.removeprefix(prefix).strip("/")
    if not repository.startswith(prefix) or path.count("/") != 1:
        raise ValueError(f"`repository` must be a URL of the form https://github.com/OWNER/NAME. "
                         f"Received: repository={repository!r}")
    return path


def colab_url(repository, notebook):
    """The Colab address that opens `notebooks/{notebook}.ipynb` of `repository`'s main branch."""
    return f"{COLAB_URL}/{_github_path(repository)}/blob/main/notebooks/{notebook}.ipynb"


def colab_badge(repository, notebook):
    """The Markdown "Open In Colab" badge of a notebook (its name without `.ipynb`)."""
    return f"[![Open In Colab]({COLAB_BADGE})]({colab_url(repository, notebook)})"


def colab_setup_cell(repository):
    """The source of the set-up cell that starts every notebook.

    In Colab (`"google.colab" in sys.modules`) it makes one shallow clone of `repository`
    into `/content/bahdanau_keras` (or `$BAHDANAU_KERAS_CHECKOUT`), reusing a clone already
    there, and pip-installs that checkout, which brings the shipped model and assets. Colab's
    own TensorFlow and Keras are kept (a pip constraints file pins their installed versions)
    and the tensorflow-text release that matches TensorFlow is installed only when it is
    missing. A failed step stops the notebook with one `RuntimeError` naming the step and
    quoting the last lines of git's or pip's output. Then the working directory becomes the
    clone's `notebooks/`. Everywhere, the repository (`REPO`) goes first on `sys.path`.

    Args:
        repository: The repository's URL, `https://github.com/OWNER/NAME`.

    Returns:
        The cell's Python source (no trailing newline).
    """
    _github_path(repository)  # checks the form
    return _SETUP_CELL.replace("@REPOSITORY@", repository).strip("\n")


_SETUP_CELL = '''
# Set-up, the same in every notebook. In Colab: clone the repository once (it brings the shipped
# model), pip-install it while keeping Colab's TensorFlow and Keras, and work in the clone.
# Anywhere else: only make the repository importable.
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up messages
REPOSITORY = "@REPOSITORY@"


def colab_install(checkout):
    """Clone REPOSITORY into `checkout` (unless a clone is there) and pip-install it."""
    import subprocess
    import tempfile
    from importlib import metadata

    def run(step, command):
        try:
            done = subprocess.run(command, capture_output=True, text=True)
        except OSError as error:
            raise RuntimeError(f"Set-up failed while {step}: {error}") from None
        if done.returncode != 0:
            tail = "\\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise RuntimeError(f"Set-up failed while {step} ({command[0]} exited with "
                               f"{done.returncode}). Its last lines:\\n{tail}")

    def version(package):
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    reused = (checkout / "pyproject.toml").is_file()  # a clone made earlier is reused
    if not reused:
        run(f"cloning {REPOSITORY}", ["git", "clone", "--depth", "1", REPOSITORY, str(checkout)])
    tensorflow, keras = version("tensorflow"), version("keras")
    if tensorflow is None or keras is None:
        raise RuntimeError(f"Set-up failed: this runtime lacks Colab's TensorFlow or Keras "
                           f"(tensorflow {tensorflow}, keras {keras}).")
    major, minor = tensorflow.split(".")[:2]
    packages = [str(checkout)]
    text = version("tensorflow-text")
    if text is None or text.split(".")[:2] != [major, minor]:  # the release that matches
        packages.insert(0, f"tensorflow-text>={major}.{minor},<{major}.{int(minor) + 1}")
    constraints = Path(tempfile.mkdtemp()) / "constraints.txt"  # pip must not replace them
    constraints.write_text(f"tensorflow=={tensorflow}\\nkeras=={keras}\\n")
    run(f"installing {' and '.join(packages)}",
        [sys.executable, "-m", "pip", "install", "--quiet", "--constraint", str(constraints),
         *packages])
    print(f"Set-up: {checkout} ({'reused' if reused else 'cloned'}) installed, with Colab's "
          f"TensorFlow {tensorflow} and Keras {keras}")


if "google.colab" in sys.modules:
    REPO = Path(os.environ.get("BAHDANAU_KERAS_CHECKOUT", "/content/bahdanau_keras"))
    colab_install(REPO)
    os.chdir(REPO / "notebooks")
else:
    REPO = next((p for p in (Path.cwd(), *Path.cwd().parents)
                 if (p / "bahdanau_keras" / "__init__.py").exists()), Path.cwd())
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
'''
