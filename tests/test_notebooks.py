"""The tutorial notebooks: each `.ipynb` in sync with its source, one declared home for every
link, the same set-up cell everywhere, and (slow) each runs top to bottom as CI runs it.

A notebook is a pair: `notebooks/NN_name.py` (jupytext's percent format), the source that is
edited and linted, and `notebooks/NN_name.ipynb`, the same cells with the outputs of a run
(see notebooks/README.md). The slow test executes each notebook in a fresh kernel, with the
working directory `notebooks/` and `BAHDANAU_KERAS_FAST=1`, which only shrinks data sizes and
step counts (the code is the same).
"""

import re
from pathlib import Path

import pytest

from bahdanau_keras import tutorial

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = REPO / "notebooks"
SOURCES = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.py"))
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
CELL_TIMEOUT = 600  # seconds, per cell
# Words that stand for a value nobody filled in.
PLACEHOLDER = re.compile(r"\b(OWNER|USER(NAME)?|YOUR[_-]?\w*|ORG|example\.(com|org|net))\b")
URL = re.compile(r"https?://[^\s)\"'<>`\\\]]+")


def declared_repository():
    return tutorial.declared_urls(REPO / "pyproject.toml")["Repository"]


def cell_sources(notebook):
    return [(cell.cell_type, cell.source) for cell in notebook.cells]


def read_pair(source):
    jupytext = pytest.importorskip("jupytext")
    nbformat = pytest.importorskip("nbformat")
    return jupytext.read(source), nbformat.read(source.with_suffix(".ipynb"), as_version=4)


def test_every_notebook_is_a_pair():
    assert SOURCES, "no notebook sources in notebooks/"
    assert [p.stem for p in SOURCES] == [p.stem for p in NOTEBOOKS]


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_matches_its_source(source):
    """The .ipynb holds exactly the cells of its .py source (outputs aside)."""
    from_source, saved = read_pair(source)
    assert cell_sources(saved) == cell_sources(from_source), (
        f"notebooks/{source.stem}.ipynb is out of sync with {source.name}: run "
        f"`jupytext --to ipynb --update notebooks/{source.name}` (keeps the outputs of "
        f"unchanged cells), or `python notebooks/execute.py {source.stem[:2]}` to run it again")


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_starts_with_badge_and_setup_cell(source):
    """Each notebook opens with its Colab badge, then the one canonical set-up cell."""
    notebook, _ = read_pair(source)
    repository = declared_repository()
    first = notebook.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    assert tutorial.colab_badge(repository, source.stem) in first.source
    setup = next(cell.source for cell in notebook.cells if cell.cell_type == "code")
    expected = tutorial.colab_setup_cell(repository)
    assert setup == expected, (
        f"the set-up cell of {source.name} differs from the canonical one: replace it with "
        f"the output of `python -c \"from bahdanau_keras import tutorial; "
        f"print(tutorial.colab_setup_cell({repository!r}))\"`")


def test_declared_home():
    urls = tutorial.declared_urls(REPO / "pyproject.toml")
    repository = urls["Repository"]
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", repository), repository
    assert not PLACEHOLDER.search(repository), repository
    for name, url in urls.items():  # Homepage, Issues, ...: the same home
        assert url.startswith(repository), f"[project.urls] {name} = {url} is not {repository}"


def documents():
    """The files a reader follows links in: the notebooks, the READMEs and docs/."""
    paths = [REPO / "README.md", REPO / "saved_models" / "en-fr" / "README.md",
             *NOTEBOOKS_DIR.glob("*.md"), *sorted((REPO / "docs").rglob("*.md")), *SOURCES]
    for path in paths:
        if path.exists():
            yield path, path.read_text(encoding="utf-8")
    nbformat = pytest.importorskip("nbformat")
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        yield path, "\n".join(cell.source for cell in notebook.cells)


def wrong_link(url, repository):
    """Why `url` disagrees with the declared `repository`, or `None`."""
    owner_name = repository.removeprefix("https://github.com/")
    if PLACEHOLDER.search(url):
        return "a placeholder"
    github = re.match(r"https?://(?:www\.)?github\.com/([\w.-]+/[\w.-]+)", url)
    if github and github.group(1).lower().replace("-", "_").endswith("/bahdanau_keras"):
        if not (url == repository or url.startswith(repository + "/")):
            return f"another repository than {repository}"
    colab = re.match(r"https://colab\.research\.google\.com/github/([\w.-]+/[\w.-]+)", url)
    if colab and colab.group(1) != owner_name:
        return f"a Colab link to another repository than {repository}"
    raw = re.match(r"https://raw\.githubusercontent\.com/([\w.-]+/[\w.-]+)", url)
    if raw and raw.group(1) != owner_name:
        return f"a file of another repository than {repository}"
    return None


def test_every_link_agrees_with_the_declared_home():
    repository = declared_repository()
    wrong = [f"{path.relative_to(REPO)}: {url} ({reason})"
             for path, text in documents() for url in URL.findall(text)
             if (reason := wrong_link(url.rstrip(".,;:"), repository))]
    assert not wrong, "links that disagree with [project.urls] Repository:\n" + "\n".join(wrong)


@pytest.mark.parametrize("url, reason", [
    ("https://github.com/OWNER/bahdanau_keras", "a placeholder"),
    ("https://colab.research.google.com/github/USER/bahdanau_keras/blob/main/x.ipynb",
     "a placeholder"),
    ("https://example.com/fra-eng.zip", "a placeholder"),
    ("https://github.com/someone/bahdanau_keras", "another repository"),
    ("https://github.com/someone/bahdanau-keras/tree/main", "another repository"),
    ("https://colab.research.google.com/github/someone/other/blob/main/x.ipynb", "a Colab link"),
    ("https://raw.githubusercontent.com/someone/bahdanau_keras/main/x.png", "a file of another"),
])
def test_wrong_links_are_found(url, reason):
    assert reason in (wrong_link(url, "https://github.com/bahdanau-keras/bahdanau_keras") or "")


@pytest.mark.parametrize("url", [
    "https://github.com/bahdanau-keras/bahdanau_keras",
    "https://github.com/bahdanau-keras/bahdanau_keras/issues",
    "https://colab.research.google.com/github/bahdanau-keras/bahdanau_keras/blob/main/n.ipynb",
    "https://github.com/keras-team/keras",  # another project, linked as such
    "https://arxiv.org/abs/1409.0473",
])
def test_right_links_pass(url):
    assert wrong_link(url, "https://github.com/bahdanau-keras/bahdanau_keras") is None


def test_readme_links_every_notebook_to_colab():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    missing = [p.stem for p in SOURCES
               if tutorial.colab_url(declared_repository(), p.stem) not in readme]
    assert not missing, f"README.md has no Colab link for {missing}"


# What a learner should not have to read: the machinery of the fast paths.
INTERNALS = re.compile(r"inspect\.getsource\((?!Decoder\.cell\b|train\.train_step\b)|"
                       r"query_offset|replica|"
                       r"loss.scal|jit_compile|tracing|traced|kernel cache|thread pool",
                       re.IGNORECASE)


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_teaches_without_production_internals(source):
    found = [f"line {number}: {line.strip()}"
             for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), 1)
             if INTERNALS.search(line)]
    assert not found, f"{source.name} shows production internals:\n" + "\n".join(found)


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_ends_with_exercises(source):
    notebook, _ = read_pair(source)
    last = notebook.cells[-1]
    assert last.cell_type == "markdown" and last.source.startswith("## Exercises")
    assert len(re.findall(r"^\d\. ", last.source, re.MULTILINE)) >= 2


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_committed_outputs_are_a_full_run(source):
    """The outputs a reader sees come from a full run of `notebooks/execute.py` (which records
    its mode and time in the notebook's metadata), not from fast mode or a hand edit."""
    _, notebook = read_pair(source)
    run = notebook.metadata.get("bahdanau_keras", {}).get("run")
    assert run is not None, (f"{source.stem}.ipynb has no record of its run: execute it with "
                             f"`python notebooks/execute.py {source.stem[:2]}`")
    assert run["mode"] == "full", (f"{source.stem}.ipynb holds the outputs of a {run['mode']} "
                                   f"run; execute it without BAHDANAU_KERAS_FAST")


def test_comparison_notebook_lists_its_committed_run():
    """Notebook 7's text gives the BLEU scores of the runs it discusses; the scores its
    committed outputs print are one of those rows, so that text and outputs agree."""
    source = NOTEBOOKS_DIR / "07_bahdanau_vs_luong.py"
    notebook, committed = read_pair(source)
    printed = "".join(output.get("text", "") for cell in committed.cells
                      if cell.cell_type == "code" for output in cell.outputs)
    scores = [re.search(rf"^{name} +BLEU (\d+\.\d\d) ", printed, re.MULTILINE)
              for name in ("Bahdanau", "Luong")]
    assert all(scores), "notebook 7's outputs print no `Bahdanau BLEU` / `Luong BLEU` line"
    bahdanau, luong = (score.group(1) for score in scores)
    text = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    row = rf"^\|[^|\n]+\| {re.escape(bahdanau)} \| {re.escape(luong)} \|"
    assert re.search(row, text, re.MULTILINE), (
        f"notebook 7's committed run prints Bahdanau {bahdanau} and Luong {luong} BLEU; add "
        f"that run to the table under 'Reading the numbers' in {source.name}")


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_states_its_measured_run_time(source):
    """Near the top, each notebook says how long it takes on a CPU runtime and whether a GPU
    helps; the time it states is the one its committed run recorded."""
    notebook, committed = read_pair(source)
    intro = next(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    assert "**Run time.**" in intro and "GPU" in intro, (
        f"{source.name}: the first cell should say how long the notebook takes (**Run "
        f"time.**) and whether a GPU runtime helps")
    run = committed.metadata.get("bahdanau_keras", {}).get("run", {})
    stated = re.search(r"measured: ([\d,]+) s\b", intro)
    assert stated, f"{source.name}: the run time should read `measured: N s`"
    assert int(stated.group(1).replace(",", "")) == run.get("seconds"), (
        f"{source.name} states {stated.group(1)} s; its committed run took "
        f"{run.get('seconds')} s")


@pytest.mark.slow
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_runs(source, monkeypatch, tmp_path):
    pytest.importorskip("nbclient")
    jupytext = pytest.importorskip("jupytext")
    import nbclient

    monkeypatch.setenv("BAHDANAU_KERAS_FAST", "1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the models the notebooks train go there
    notebook = jupytext.read(source)
    client = nbclient.NotebookClient(
        notebook, timeout=CELL_TIMEOUT, kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}})
    try:
        client.execute()  # raises CellExecutionError at the first cell that fails
    except nbclient.exceptions.CellExecutionError as error:
        pytest.fail(f"{source.name} failed under BAHDANAU_KERAS_FAST=1:\n{error}", pytrace=False)
    printed = [line for cell in notebook.cells if cell.cell_type == "code"
               for output in cell.outputs if output.output_type == "stream"
               for line in output.text.splitlines()]
    code = source.read_text(encoding="utf-8")
    if "tutorial.load_tatoeba(" in code and tutorial.local_corpus(REPO) is not None:
        assert any(line.startswith("Corpus: Tatoeba fra-eng.zip, ") for line in printed)
        assert not any(line.startswith("Corpus: built-in sample") for line in printed)
    if "tutorial.shipped_model(" in code:
        assert "Model: saved_models/en-fr (shipped)" in printed
