"""The notebooks as Colab runs them: a stand-in for a fresh Colab runtime, run by CI.

Each notebook is executed top to bottom (`BAHDANAU_KERAS_FAST=1`) in a kernel that looks to it
like Colab's, and its outputs must show the Tatoeba corpus and the shipped model, never the
sample corpus or a warning box. What stands in for Colab:

- **Colab's packages**: a virtual environment built from `tests/colab/requirements.txt` alone
  (TensorFlow, tensorflow-text and Keras at Colab's versions; the file says where they come
  from). Built once (a few minutes) into `~/.cache/bahdanau_keras/colab-venv-pyXY-HASH`, keyed by
  the file's hash and reused while it is unchanged; `$BAHDANAU_KERAS_COLAB_VENV` names another
  folder. The notebooks' set-up cell pip-installs into a layer of its own over it, made anew each
  test session (a venv that sees the cached one's packages through a `.pth` file), so that every
  session starts from the file's packages only, as a fresh Colab runtime does.
- **`google.colab`**: the kernel imports a fake (`tests/colab/google/colab`) when it starts.
- **GitHub's notebook**: each notebook is read as committed (`git show HEAD:...`), as Colab
  opens it from the repository, and runs with a fresh kernel.
- **An empty `/content`**: each notebook starts in an empty working directory, with
  `$BAHDANAU_KERAS_CHECKOUT` (where the set-up cell clones) in a temporary folder of the session:
  the first notebook clones, the others reuse that clone as the set-up cell does.
- **GitHub**: git resolves the declared repository URL (`[project.urls] Repository` in
  pyproject.toml) to this repository through `url.<base>.insteadOf` in the environment
  (`GIT_CONFIG_COUNT`; the user's git configuration is not touched), and no other transport is
  allowed, so nothing reaches the network. The clone gets this repository's last COMMIT:
  uncommitted changes are not in it (a warning says so when the package or notebooks have any).
- **The corpus mirrors**: `../shared/data/fra-eng.zip` is served by a local HTTP server through
  `$BAHDANAU_KERAS_CORPUS_URL`, with an empty download cache (`$BAHDANAU_KERAS_CACHE`) and no
  local copy in sight, so the notebooks download it as they would in Colab.

A probe cell appended to each notebook (run after the notebook's own cells) reports that the
kernel had `google.colab`, imported the package from the clone and kept Colab's TensorFlow,
tensorflow-text and Keras. Building the environment needs PyPI; deselect these tests with
`-m "not colab"` on a machine without it.
"""

import fcntl
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]
COLAB_DIR = Path(__file__).resolve().parent / "colab"  # the fake google.colab, the pins
REQUIREMENTS = COLAB_DIR / "requirements.txt"
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
KERNEL_NAME = "bahdanau-keras-colab-stand-in"
CELL_TIMEOUT = 900  # seconds, per cell: the first set-up cell clones and pip-installs
BUILD_TIMEOUT = 1800  # seconds for the virtual environment
PROBE_TAG = "COLAB STAND-IN PROBE "
PROBE = f'''
import json, sys
from importlib import metadata
import bahdanau_keras
print({PROBE_TAG!r} + json.dumps({{
    "google.colab": getattr(sys.modules.get("google.colab"), "IS_STAND_IN", None),
    "package": bahdanau_keras.__file__,
    "versions": {{name: metadata.version(name)
                 for name in ("tensorflow", "tensorflow-text", "keras")}},
}}))
'''
# What the notebooks print (bahdanau_keras.tutorial) when they use the corpus or the model.
TATOEBA_LINE = "Corpus: Tatoeba fra-eng.zip, "
MODEL_LINE = "Model: saved_models/en-fr (shipped)"
FALLBACKS = ("Corpus: built-in sample corpus", "No Tatoeba corpus")


def run(command, timeout, **kwargs):
    """Run `command`; on failure, fail the test with the last lines of its output."""
    done = subprocess.run([str(part) for part in command], capture_output=True, text=True,
                          timeout=timeout, **kwargs)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-30:])
        pytest.fail(f"{' '.join(map(str, command))} exited with {done.returncode}:\n{tail}",
                    pytrace=False)
    return done.stdout


def site_packages(python):
    return Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                    60).strip())


def colab_packages_folder():
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    default = Path.home() / ".cache" / "bahdanau_keras" / f"colab-venv-{tag}-{digest}"
    return Path(os.environ.get("BAHDANAU_KERAS_COLAB_VENV") or default)


def build_colab_packages(folder):
    """The virtual environment of `tests/colab/requirements.txt` in `folder`, built unless a
    complete one is there (one builder at a time: a lock file beside it). Returns the seconds
    the build took (0 when reused)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    started = folder / "stand-in-build.txt"  # written first: a folder this function made
    complete = folder / "complete.txt"  # written last: the pins it was built from
    with open(f"{folder}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if complete.is_file() and complete.read_bytes() == REQUIREMENTS.read_bytes():
            return 0.0
        if folder.exists():
            if not started.is_file():
                pytest.fail(f"{folder} exists and was not built by the Colab stand-in: remove "
                            "it, or set $BAHDANAU_KERAS_COLAB_VENV to another folder",
                            pytrace=False)
            shutil.rmtree(folder)  # an interrupted build
        start = time.monotonic()
        folder.mkdir()
        started.write_text(f"built from {REQUIREMENTS} by {__file__}\n")
        run([sys.executable, "-m", "venv", folder], 300)
        run([folder / "bin" / "python", "-m", "pip", "install", "--quiet",
             "--disable-pip-version-check", "-r", REQUIREMENTS], BUILD_TIMEOUT)
        complete.write_bytes(REQUIREMENTS.read_bytes())
        return time.monotonic() - start


@pytest.fixture(scope="session")
def colab_python(tmp_path_factory):
    """The Python of this session's Colab stand-in: a fresh layer over the cached packages."""
    base = colab_packages_folder()
    seconds = build_colab_packages(base)
    if seconds:
        print(f"\nColab stand-in: built {base} in {seconds:.0f} s", file=sys.stderr)
    layer = tmp_path_factory.mktemp("colab") / "python"
    run([base / "bin" / "python", "-m", "venv", "--without-pip", layer], 300)
    python = layer / "bin" / "python"
    # The layer's own packages come first; the cached ones (pip included) after them.
    (site_packages(python) / "colab_packages.pth").write_text(
        f"{site_packages(base / 'bin' / 'python')}\n")
    # The cached packages' commands (saved_model_cli, pip, ...) beside the layer's Python, run
    # by it, as Colab's are beside its Python.
    shebang = re.compile(rb"#!" + re.escape(bytes(base / "bin")) + rb"/python[\d.]*\n")
    for script in (base / "bin").iterdir():
        target = layer / "bin" / script.name
        if script.is_symlink() or not script.is_file() or target.exists():
            continue
        text = script.read_bytes()
        if shebang.match(text):
            target.write_bytes(b"#!" + bytes(python) + b"\n" + text[shebang.match(text).end():])
            target.chmod(0o755)
    return python


@pytest.fixture(scope="session")
def colab_kernels(colab_python, tmp_path_factory):
    """A folder for `$JUPYTER_PATH` holding the stand-in's kernelspec."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(colab_python), "-m", "ipykernel_launcher", "-f", "{connection_file}",
                 "--IPKernelApp.exec_lines=import google.colab"],  # as in Colab: imported
        "display_name": "Colab stand-in",
        "language": "python",
    }))
    return root


class CorpusServer:
    """Serves one file at `/fra-eng.zip` on 127.0.0.1 (an ephemeral port) and counts requests."""

    def __init__(self, path):
        body = Path(path).read_bytes()
        self.sha256 = hashlib.sha256(body).hexdigest()
        self.requests = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests += 1
                if self.path != "/fra-eng.zip":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/fra-eng.zip"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def corpus_server(fra_eng_zip):
    server = CorpusServer(fra_eng_zip)
    yield server
    server.close()


def declared_repository():
    with open(REPO / "pyproject.toml", "rb") as file:
        urls = tomllib.load(file).get("project", {}).get("urls", {})
    if "Repository" not in urls:
        pytest.fail("pyproject.toml declares no [project.urls] Repository", pytrace=False)
    return urls["Repository"]


@pytest.fixture(scope="session")
def colab_environment(colab_python, colab_kernels, corpus_server, tmp_path_factory):
    """The environment variables of the stand-in's kernel (set over the test process's)."""
    changed = run(["git", "-C", REPO, "status", "--porcelain", "--", "bahdanau_keras",
                   "notebooks", "saved_models", "pyproject.toml", "requirements.txt"], 60)
    changed = [line[3:] for line in changed.splitlines()]
    if changed:
        more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        warnings.warn("The Colab stand-in runs the last commit; uncommitted changes are not in "
                      f"it: {', '.join(changed[:5])}{more}", stacklevel=1)
    session = tmp_path_factory.mktemp("colab-runtime")
    return {
        "set": {
            "PATH": f"{colab_python.parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(COLAB_DIR),  # the fake google.colab
            "PYTHONNOUSERSITE": "1",
            "JUPYTER_PATH": str(colab_kernels),
            "BAHDANAU_KERAS_FAST": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "BAHDANAU_KERAS_CHECKOUT": str(session / "content" / "bahdanau_keras"),
            "BAHDANAU_KERAS_CORPUS_URL": corpus_server.url,
            "BAHDANAU_KERAS_CACHE": str(session / "cache"),
            # git: the declared URL is this repository; no transport but local files.
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": f"url.{REPO.as_uri()}.insteadOf",
            "GIT_CONFIG_VALUE_0": declared_repository(),
            "GIT_ALLOW_PROTOCOL": "file",
            "GIT_TERMINAL_PROMPT": "0",
        },
        "unset": ["VIRTUAL_ENV", "PYTHONHOME", "BAHDANAU_KERAS_DATA", "BAHDANAU_KERAS_MODEL",
                  "MPLBACKEND"],
        "checkout": session / "content" / "bahdanau_keras",
    }


def pins():
    """`{package: version}` of tests/colab/requirements.txt."""
    lines = REQUIREMENTS.read_text().splitlines()
    return dict(line.split("==") for line in lines if line and not line.startswith("#"))


def set_environment(monkeypatch, environment):
    for name, value in environment["set"].items():
        monkeypatch.setenv(name, value)
    for name in environment["unset"]:
        monkeypatch.delenv(name, raising=False)


def output_texts(notebook):
    """`(output_type, text)` of every output: streams, and the plain and HTML forms of
    results and displays."""
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                yield output.output_type, output.text
            else:
                data = output.get("data", {})
                for kind in ("text/plain", "text/html"):
                    if kind in data:
                        yield output.output_type, data[kind]


@pytest.mark.colab
@pytest.mark.slow
def test_stand_in_kernel_is_colab_like(colab_python, colab_environment, monkeypatch, tmp_path):
    """The kernel's Python has Colab's pins, `google.colab` is the fake, git resolves the
    declared URL to this repository (checked with `git ls-remote`, no clone)."""
    set_environment(monkeypatch, colab_environment)
    script = ("import json, sys; from importlib import metadata; import google.colab; "
              "print(json.dumps({'prefix': sys.prefix, 'colab': google.colab.IS_STAND_IN, "
              f"'versions': {{n: metadata.version(n) for n in {sorted(pins())!r}}}}}))")
    seen = json.loads(run([colab_python, "-c", script], 120, cwd=tmp_path))
    assert seen["prefix"] == str(colab_python.parent.parent) and seen["colab"] is True
    assert seen["versions"] == pins()
    head = run(["git", "-C", REPO, "rev-parse", "HEAD"], 60).strip()
    remote = run(["git", "ls-remote", colab_environment["set"]["GIT_CONFIG_VALUE_0"], "HEAD"],
                 60, cwd=tmp_path)
    # {ref: commit}; a clone also lists its refs/remotes/origin/HEAD, which matches "HEAD" too
    refs = {ref: commit for commit, ref in (line.split() for line in remote.splitlines())}
    assert refs["HEAD"] == head


@pytest.mark.colab
@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_the_colab_stand_in(path, colab_environment, corpus_server,
                                             monkeypatch, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    set_environment(monkeypatch, colab_environment)
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # what the notebook trains goes there
    content = tmp_path / "content"  # the working directory, empty, as Colab's /content
    content.mkdir()
    # The committed notebook, as Colab opens it from GitHub (the clone is of that commit too).
    committed = subprocess.run(["git", "-C", str(REPO), "show", f"HEAD:notebooks/{path.name}"],
                               capture_output=True, text=True, timeout=60)
    if committed.returncode != 0:
        pytest.fail(f"notebooks/{path.name} is not committed: the stand-in runs what Colab "
                    f"would open, the last commit's", pytrace=False)
    notebook = nbformat.reads(committed.stdout, as_version=4)
    sources = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    notebook.cells.append(nbformat.v4.new_code_cell(PROBE))
    client = nbclient.NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name=KERNEL_NAME,
                                     resources={"metadata": {"path": str(content)}})
    try:
        client.execute()  # raises CellExecutionError at the first cell that fails
    except nbclient.exceptions.CellExecutionError as error:
        pytest.fail(f"{path.name} failed in the Colab stand-in:\n{error}", pytrace=False)
    finally:  # to read after a failure: pytest keeps the last runs' tmp_path
        nbformat.write(notebook, tmp_path / path.name)
    problems = colab_problems(notebook, sources, colab_environment["checkout"],
                              corpus_server.url, corpus_server.sha256)
    assert not problems, f"{path.name} in the Colab stand-in:\n" + "\n".join(problems)


def colab_problems(notebook, sources, checkout, corpus_url, corpus_sha256):
    """What is wrong with the outputs of a notebook run in the stand-in (an empty list: all
    is well). `sources`: its code; `checkout`: where the set-up cell clones."""
    outputs = list(output_texts(notebook))
    everything = "\n".join(text for _, text in outputs)
    problems = []
    if PROBE_TAG not in everything:
        return ["the probe cell printed nothing"]
    probe = json.loads(everything.split(PROBE_TAG, 1)[1].splitlines()[0])
    if probe["google.colab"] is not True:
        problems.append("the kernel did not import the stand-in google.colab")
    if not Path(probe["package"]).is_relative_to(checkout):
        problems.append(f"bahdanau_keras came from {probe['package']}, not from the set-up "
                        f"cell's clone {checkout}")
    expected = {name: pins()[name] for name in probe["versions"]}
    if probe["versions"] != expected:
        problems.append(f"the set-up cell let pip replace Colab's packages: {probe['versions']} "
                        f"instead of {expected}")
    problems += [f"it fell back: {fallback!r} in its outputs"
                 for fallback in FALLBACKS if fallback in everything]
    problems += [f"it shows a warning box: {text.splitlines()[0]}" for kind, text in outputs
                 if kind in ("display_data", "execute_result") and text.startswith("WARNING:")]
    if "tutorial.load_tatoeba(" in sources:
        if TATOEBA_LINE not in everything:
            problems.append(f"it does not say it uses Tatoeba ({TATOEBA_LINE!r})")
        # Downloaded from the stand-in's mirror by data.download_corpus (its one line).
        line = rf"{re.escape(corpus_url)}: [\d,]+ pairs \(fra.txt\), sha256 {corpus_sha256}"
        if not re.search(line, everything):
            problems.append(f"it did not download the corpus from {corpus_url}")
    if "tutorial.shipped_model(" in sources and MODEL_LINE not in everything:
        problems.append(f"it does not say it uses the shipped model ({MODEL_LINE!r})")
    return problems


@pytest.mark.parametrize("case", ["good", "sample", "box", "no model", "pip", "not colab"])
def test_colab_problems_are_found(case, tmp_path):
    """The checks on a run's outputs, on outputs made up here (no kernel)."""
    nbformat = pytest.importorskip("nbformat")
    checkout = tmp_path / "content" / "bahdanau_keras"
    url, sha256 = "http://127.0.0.1:8/fra-eng.zip", "ab" * 32
    versions = {name: pins()[name] for name in ("tensorflow", "tensorflow-text", "keras")}
    if case == "pip":
        versions["tensorflow"] = "2.21.0"
    probe = {"google.colab": None if case == "not colab" else True,
             "package": str(checkout / "bahdanau_keras" / "__init__.py"), "versions": versions}
    corpus = (f"{url}: 142,787 pairs (fra.txt), sha256 {sha256}, downloaded into /c/x.zip\n"
              f"{TATOEBA_LINE}142,782 pairs (/c/x.zip)\n")
    if case == "sample":
        corpus = "Corpus: built-in sample corpus (not Tatoeba), 150 pairs\n"
    cells = [nbformat.v4.new_code_cell("corpus = tutorial.load_tatoeba(REPO)", outputs=[
                 nbformat.v4.new_output("stream", name="stdout", text=corpus)]),
             nbformat.v4.new_code_cell("MODEL = tutorial.shipped_model(REPO)", outputs=[
                 nbformat.v4.new_output("stream", name="stdout",
                                        text="" if case == "no model" else MODEL_LINE)]),
             nbformat.v4.new_code_cell(PROBE, outputs=[nbformat.v4.new_output(
                 "stream", name="stdout", text=PROBE_TAG + json.dumps(probe) + "\n")])]
    if case == "box":
        cells[0].outputs.append(nbformat.v4.new_output("display_data", data={
            "text/plain": "WARNING: something is off\nmore", "text/html": "<div>...</div>"}))
    notebook = nbformat.v4.new_notebook(cells=cells)
    sources = "\n".join(cell.source for cell in cells)
    problems = colab_problems(notebook, sources, checkout, url, sha256)
    expected = {
        "good": [],
        "sample": ["it fell back: 'Corpus: built-in sample corpus' in its outputs",
                   f"it does not say it uses Tatoeba ({TATOEBA_LINE!r})",
                   f"it did not download the corpus from {url}"],
        "box": ["it shows a warning box: WARNING: something is off"],
        "no model": [f"it does not say it uses the shipped model ({MODEL_LINE!r})"],
        "pip": [f"the set-up cell let pip replace Colab's packages: {versions} instead of "
                f"{dict(versions, tensorflow=pins()['tensorflow'])}"],
        "not colab": ["the kernel did not import the stand-in google.colab"],
    }[case]
    assert problems == expected
