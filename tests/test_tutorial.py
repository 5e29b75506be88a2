"""bahdanau_keras.tutorial: the corpus, model and set-up cell that the notebooks share."""

import importlib.metadata
import os
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import pytest

from bahdanau_keras import data, tutorial

REPO = Path(__file__).resolve().parents[1]
REPOSITORY = "https://github.com/bahdanau-keras/bahdanau_keras"


@pytest.fixture
def corpus_zip(tmp_path):
    """A small `fra-eng.zip` in the Anki format (the sample corpus inside)."""
    folder = tmp_path / "data"
    folder.mkdir()
    path = folder / "fra-eng.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.write(data.SAMPLE_CORPUS, "fra.txt")
    return path


@pytest.fixture
def no_download(monkeypatch):
    def download_corpus(*args, **kwargs):
        raise AssertionError("download_corpus must not be called when a local copy exists")

    monkeypatch.setattr(data, "download_corpus", download_corpus, raising=False)


def test_fast_mode(monkeypatch):
    monkeypatch.delenv("BAHDANAU_KERAS_FAST", raising=False)
    assert tutorial.fast_mode() is False
    monkeypatch.setenv("BAHDANAU_KERAS_FAST", "1")
    assert tutorial.fast_mode() is True
    monkeypatch.setenv("BAHDANAU_KERAS_FAST", "0")
    assert tutorial.fast_mode() is False


def test_local_corpus_beside_the_repository(tmp_path, monkeypatch, corpus_zip):
    monkeypatch.delenv("BAHDANAU_KERAS_DATA", raising=False)
    repository = tmp_path / "bahdanau_keras"
    repository.mkdir()
    assert tutorial.local_corpus(repository) is None
    (tmp_path / "shared").mkdir()
    corpus_zip.parent.rename(tmp_path / "shared" / "data")
    assert tutorial.local_corpus(repository) == tmp_path / "shared" / "data" / "fra-eng.zip"


def test_local_corpus_from_the_variable(tmp_path, monkeypatch, corpus_zip):
    monkeypatch.setenv("BAHDANAU_KERAS_DATA", str(corpus_zip.parent))
    assert tutorial.local_corpus(tmp_path / "anywhere") == corpus_zip
    monkeypatch.setenv("BAHDANAU_KERAS_DATA", str(tmp_path / "empty"))
    assert tutorial.local_corpus(REPO) is None


def test_load_tatoeba_reads_the_local_copy(monkeypatch, corpus_zip, no_download, capsys):
    monkeypatch.setenv("BAHDANAU_KERAS_DATA", str(corpus_zip.parent))
    corpus = tutorial.load_tatoeba(REPO)
    expected = data.read_corpus(data.SAMPLE_CORPUS).pairs
    assert corpus.pairs == expected
    assert capsys.readouterr().out == (
        f"Corpus: Tatoeba fra-eng.zip, {len(expected):,} pairs ({corpus_zip})\n")


def test_load_tatoeba_downloads_without_a_local_copy(tmp_path, monkeypatch, corpus_zip, capsys):
    monkeypatch.setenv("BAHDANAU_KERAS_DATA", str(tmp_path / "empty"))
    calls = []

    def download_corpus(cache_dir=None):
        calls.append(cache_dir)
        return str(corpus_zip)

    monkeypatch.setattr(data, "download_corpus", download_corpus, raising=False)
    corpus = tutorial.load_tatoeba(REPO)
    assert calls == [None]
    assert len(corpus.pairs) == len(data.read_corpus(data.SAMPLE_CORPUS).pairs)
    assert capsys.readouterr().out.startswith("Corpus: Tatoeba fra-eng.zip, ")


def test_load_tatoeba_through_download_corpus(tmp_path, monkeypatch, corpus_zip, capsys):
    """No local copy: the real `data.download_corpus`, from `$BAHDANAU_KERAS_CORPUS_URL`."""
    monkeypatch.setenv("BAHDANAU_KERAS_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("BAHDANAU_KERAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BAHDANAU_KERAS_CORPUS_URL", corpus_zip.as_uri())
    corpus = tutorial.load_tatoeba(REPO)
    assert corpus.pairs == data.read_corpus(data.SAMPLE_CORPUS).pairs
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1].startswith(f"Corpus: Tatoeba fra-eng.zip, {len(corpus.pairs):,} pairs (")
    assert str(tmp_path / "cache") in printed[-1]


def test_load_tatoeba_never_falls_back_by_itself(tmp_path, monkeypatch):
    monkeypatch.setenv("BAHDANAU_KERAS_DATA", str(tmp_path / "empty"))

    def download_corpus(cache_dir=None):
        raise data.CorpusError("No URL gave the Tatoeba English-French corpus: ...")

    monkeypatch.setattr(data, "download_corpus", download_corpus, raising=False)
    with pytest.raises(data.CorpusError, match="No URL gave"):
        tutorial.load_tatoeba(REPO)


def test_use_sample_corpus_outside_a_notebook_warns_on_stderr(capsys):
    corpus = tutorial.use_sample_corpus(data.CorpusError("offline"))
    captured = capsys.readouterr()
    assert corpus.pairs == data.read_corpus(data.SAMPLE_CORPUS).pairs
    assert "WARNING: No Tatoeba corpus" in captured.err and "offline" in captured.err
    assert captured.out == (
        f"Corpus: built-in sample corpus (not Tatoeba), {len(corpus.pairs):,} pairs\n")


def test_use_sample_corpus_in_a_notebook_shows_a_box(monkeypatch, capsys):
    IPython = pytest.importorskip("IPython")
    display = pytest.importorskip("IPython.display")

    shown = []
    monkeypatch.setattr(IPython, "get_ipython", lambda: object())
    monkeypatch.setattr(display, "display",
                        lambda bundle, raw=False: shown.append((bundle, raw)))
    tutorial.use_sample_corpus("https://x.test/<fra-eng>.zip: HTTP Error 403")
    [(bundle, raw)] = shown
    assert raw is True
    assert "No Tatoeba corpus" in bundle["text/html"]
    assert "&lt;fra-eng&gt;" in bundle["text/html"]  # the message is escaped
    assert bundle["text/plain"].startswith("WARNING: No Tatoeba corpus")
    assert capsys.readouterr().err == ""  # the box, not a print


def test_shipped_model(capsys):
    path = tutorial.shipped_model(REPO)
    assert path == REPO / "saved_models" / "en-fr"
    assert capsys.readouterr().out == "Model: saved_models/en-fr (shipped)\n"


def test_shipped_model_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="shipped model is missing.*Received"):
        tutorial.shipped_model(tmp_path)


def test_plot_encoder_decoder():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    ax = Figure().subplots()
    weights = [0.1, 0.7, 0.2]
    result = tutorial.plot_encoder_decoder(["a", "b", "c"], ["x", "y"], 2, weights, ax=ax)
    assert result is ax
    texts = [text.get_text() for text in ax.texts]
    assert {"a", "b", "c", "x", "y"} <= set(texts)  # x_j, then y_{i-1} = "x" and y_i = "y"
    lines = sorted(ax.lines, key=lambda line: line.get_linewidth())
    assert lines[-1].get_xdata()[0] == 1  # the widest line leaves the largest weight's h_j
    assert ax.get_title() == "Step i = 2: writing 'y'"


@pytest.mark.parametrize("step, weights, message", [
    (0, [0.5, 0.5], "`step` must be between 1 and 2"),
    (3, [0.5, 0.5], "Received: step=3"),
    (1, [1.0], r"shape \(2,\). Received: shape \(1,\)"),
])
def test_plot_encoder_decoder_errors(step, weights, message):
    with pytest.raises(ValueError, match=message):
        tutorial.plot_encoder_decoder(["a", "b"], ["x", "y"], step, weights)


def test_colab_badge_and_url():
    assert tutorial.colab_url(REPOSITORY, "05_decoding") == (
        "https://colab.research.google.com/github/bahdanau-keras/bahdanau_keras/blob/main/"
        "notebooks/05_decoding.ipynb")
    assert tutorial.colab_badge(REPOSITORY, "05_decoding") == (
        "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        f"({tutorial.colab_url(REPOSITORY, '05_decoding')})")


@pytest.mark.parametrize("repository", [
    "https://gitlab.com/a/b", "https://github.com/only-owner", "github.com/a/b",
    "https://github.com/a/b/c"])
def test_repository_must_be_a_github_url(repository):
    with pytest.raises(ValueError, match="Received: repository="):
        tutorial.colab_setup_cell(repository)


def test_declared_urls():
    urls = tutorial.declared_urls(REPO / "pyproject.toml")
    assert urls["Repository"] == REPOSITORY


# -- the set-up cell, run as in Colab (git and pip replaced by a recorder) ----------------------


class FakeColab:
    """Runs the set-up cell with `google.colab` importable and git and pip recorded."""

    def __init__(self, monkeypatch, tmp_path, versions, fail=None):
        self.commands = []
        self.fail = fail or {}
        self.checkout = tmp_path / "clone"
        self.versions = versions
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
        monkeypatch.setenv("BAHDANAU_KERAS_CHECKOUT", str(self.checkout))
        monkeypatch.setattr(subprocess, "run", self.run)
        monkeypatch.setattr(importlib.metadata, "version", self.version)
        monkeypatch.setattr(sys, "path", list(sys.path))
        monkeypatch.chdir(tmp_path)

    def version(self, package):
        if self.versions.get(package) is None:
            raise importlib.metadata.PackageNotFoundError(package)
        return self.versions[package]

    def run(self, command, **kwargs):
        assert kwargs == {"capture_output": True, "text": True}
        self.commands.append(list(command))
        tool = "git" if command[0] == "git" else "pip"
        if self.fail.get(tool) == "missing":
            raise FileNotFoundError(2, "No such file or directory", command[0])
        if tool in self.fail:
            return subprocess.CompletedProcess(command, 1, "", self.fail[tool])
        if tool == "git":  # a clone: the checkout appears
            (self.checkout / "notebooks").mkdir(parents=True)
            (self.checkout / "pyproject.toml").write_text("[project]\n")
        if tool == "pip":
            constraints = command[command.index("--constraint") + 1]
            self.constraints = Path(constraints).read_text()
        return subprocess.CompletedProcess(command, 0, "", "")

    def setup(self):
        namespace = {}
        exec(tutorial.colab_setup_cell(REPOSITORY), namespace)
        return namespace


COLAB_2026 = {"tensorflow": "2.20.0", "keras": "3.13.2", "tensorflow-text": "2.20.1"}


def test_setup_cell_in_colab(monkeypatch, tmp_path, capsys):
    colab = FakeColab(monkeypatch, tmp_path, COLAB_2026)
    namespace = colab.setup()
    assert capsys.readouterr().out == (f"Set-up: {colab.checkout} (cloned) installed, with "
                                       "Colab's TensorFlow 2.20.0 and Keras 3.13.2\n")
    clone, pip = colab.commands
    assert clone == ["git", "clone", "--depth", "1", REPOSITORY, str(colab.checkout)]
    assert pip[:3] == [sys.executable, "-m", "pip"] and pip[3] == "install"
    assert pip[-1] == str(colab.checkout)  # the checkout, and no tensorflow-text: it matches
    assert not any(arg.startswith("tensorflow-text") for arg in pip)
    assert colab.constraints == "tensorflow==2.20.0\nkeras==3.13.2\n"
    assert namespace["REPO"] == colab.checkout
    assert Path.cwd() == colab.checkout / "notebooks"
    assert sys.path[0] == str(colab.checkout)


def test_setup_cell_reuses_a_clone(monkeypatch, tmp_path, capsys):
    colab = FakeColab(monkeypatch, tmp_path, COLAB_2026)
    (colab.checkout / "notebooks").mkdir(parents=True)
    (colab.checkout / "pyproject.toml").write_text("[project]\n")
    colab.setup()
    assert [command[0] for command in colab.commands] == [sys.executable]  # pip only
    assert "(reused) installed" in capsys.readouterr().out


@pytest.mark.parametrize("text_version", [None, "2.19.0"])
def test_setup_cell_installs_the_matching_tensorflow_text(monkeypatch, tmp_path, text_version):
    colab = FakeColab(monkeypatch, tmp_path, {**COLAB_2026, "tensorflow-text": text_version})
    colab.setup()
    pip = colab.commands[-1]
    assert pip[-2:] == ["tensorflow-text>=2.20,<2.21", str(colab.checkout)]
    assert colab.constraints == "tensorflow==2.20.0\nkeras==3.13.2\n"


def test_setup_cell_clone_failure_is_one_clear_error(monkeypatch, tmp_path):
    colab = FakeColab(monkeypatch, tmp_path, COLAB_2026,
                      fail={"git": "Cloning into 'clone'...\nfatal: repository not found\n"})
    with pytest.raises(RuntimeError) as caught:
        colab.setup()
    message = str(caught.value)
    assert message.startswith(f"Set-up failed while cloning {REPOSITORY} (git exited with 1)")
    assert message.endswith("fatal: repository not found")
    assert len(colab.commands) == 1  # pip never ran


def test_setup_cell_pip_failure_is_one_clear_error(monkeypatch, tmp_path):
    lines = "".join(f"line {n}\n" for n in range(40)) + "ERROR: ResolutionImpossible\n"
    colab = FakeColab(monkeypatch, tmp_path, COLAB_2026, fail={"pip": lines})
    with pytest.raises(RuntimeError) as caught:
        colab.setup()
    message = str(caught.value)
    assert message.startswith(f"Set-up failed while installing {colab.checkout} (")
    assert "exited with 1" in message and message.endswith("ERROR: ResolutionImpossible")
    assert "line 26\n" in message and "line 25\n" not in message  # pip's last 15 lines only


def test_setup_cell_without_git(monkeypatch, tmp_path):
    colab = FakeColab(monkeypatch, tmp_path, COLAB_2026, fail={"git": "missing"})
    with pytest.raises(RuntimeError, match=f"Set-up failed while cloning {REPOSITORY}: .*git"):
        colab.setup()


def test_setup_cell_without_tensorflow(monkeypatch, tmp_path):
    colab = FakeColab(monkeypatch, tmp_path, {**COLAB_2026, "tensorflow": None})
    with pytest.raises(RuntimeError, match="lacks Colab's TensorFlow or Keras"):
        colab.setup()


def test_setup_cell_outside_colab(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("no command outside Colab"))
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(REPO)])
    monkeypatch.chdir(REPO / "notebooks")
    namespace = {}
    exec(tutorial.colab_setup_cell(REPOSITORY), namespace)
    assert namespace["REPO"] == REPO
    assert sys.path[0] == str(REPO)
    assert Path.cwd() == REPO / "notebooks"
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"]
