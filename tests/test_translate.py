"""`Translation`: a model directory and its exported SavedModel give the same results; bad
model directories give one-line errors; the CLI's --plot and --nbest."""

import json
import os
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from test_export import export_tiny

from bahdanau_keras import cli
from bahdanau_keras.train import TrainingError
from bahdanau_keras.translate import (
    QUICK_START_SENTENCES,
    Translation,
    _in_order,
    _to_python,
    quick_start,
)

pytestmark = pytest.mark.slow
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SENTENCES = ["John loves Mary.", "I see the red car.", "", "Do you have a cat?",
             "Where is the station?"]


@pytest.fixture(scope="module")
def saved_model_dir(tiny_model_dir, tmp_path_factory):
    return export_tiny(tiny_model_dir, tmp_path_factory)["saved"]


@pytest.fixture(scope="module")
def from_directory(tiny_model_dir):
    return Translation.open(str(tiny_model_dir))


@pytest.fixture(scope="module")
def from_saved_model(saved_model_dir):
    return Translation.open(saved_model_dir)


def check_same_results(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert a["translation"] == b["translation"]
        assert a["source_tokens"] == b["source_tokens"]
        assert a["target_tokens"] == b["target_tokens"]
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)
        np.testing.assert_allclose(a["attention"], b["attention"], atol=1e-5)
        if "nbest" in a or "nbest" in b:
            assert [t for t, _ in a["nbest"]] == [t for t, _ in b["nbest"]]
            np.testing.assert_allclose([s for _, s in a["nbest"]], [s for _, s in b["nbest"]],
                                       atol=1e-4)


def test_model_directory_and_saved_model_give_the_same_results(from_directory,
                                                              from_saved_model):
    for options in ({}, {"beam_width": 3, "alpha": 0.6}, {"beam_width": 2, "beta": 0.3},
                    {"temperature": 0.8, "seed": 7}):
        check_same_results(from_directory.translate(SENTENCES, **options),
                           from_saved_model.translate(SENTENCES, **options))


def test_results_are_plain_python_and_well_shaped(from_directory):
    results = from_directory.translate(SENTENCES, beam_width=3)
    assert len(results) == len(SENTENCES)
    for result in results:
        assert isinstance(result["translation"], str) and isinstance(result["score"], float)
        attention = np.asarray(result["attention"])
        assert attention.shape == (len(result["target_tokens"]), len(result["source_tokens"]))
        if result["target_tokens"]:
            np.testing.assert_allclose(attention.sum(axis=1), 1.0, atol=1e-5)
        scores = [s for _, s in result["nbest"]]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True)
        assert result["nbest"][0][0] == result["translation"]
    assert results[2]["translation"] == ""  # nothing to translate
    assert all(r["translation"] for i, r in enumerate(results) if i != 2)


def test_batches_do_not_change_results(from_directory):
    check_same_results(from_directory.translate(SENTENCES, batch_size=2),
                       from_directory.translate(SENTENCES, batch_size=64))
    check_same_results(from_directory.translate(SENTENCES, beam_width=3, batch_size=3),
                       from_directory.translate(SENTENCES, beam_width=3))


def test_sampling_depends_on_the_seed_only(from_directory):
    sentences = SENTENCES * 4
    first = from_directory.translate(sentences, temperature=1.5, seed=1)
    again = from_directory.translate(sentences, temperature=1.5, seed=1)
    other = from_directory.translate(sentences, temperature=1.5, seed=2)
    assert [r["translation"] for r in first] == [r["translation"] for r in again]
    assert [r["translation"] for r in first] != [r["translation"] for r in other]


# -- several calls at once ---------------------------------------------------------------------


@pytest.mark.parametrize("source", ["saved_model", "directory"])
@pytest.mark.parametrize("options", [{}, {"beam_width": 3, "alpha": 0.6},
                                     {"temperature": 0.8, "seed": 7}])
def test_workers_do_not_change_results(source, options, from_saved_model, tiny_model_dir):
    # A fresh in-memory model: its functions are traced by the concurrent calls themselves.
    translation = (from_saved_model if source == "saved_model"
                   else Translation.open(str(tiny_model_dir)))
    sentences = SENTENCES * 5  # 25
    sampling = "temperature" in options
    batch_size = 4 if sampling else 64
    seen = []
    concurrent = list(translation.translate_iter(
        sentences, batch_size=batch_size, workers=3, **options,
        progress=lambda done, total: seen.append((done, total))))
    check_same_results(concurrent, from_saved_model.translate(sentences, batch_size=batch_size,
                                                              **options))
    # Sampling keeps its calls of `batch_size` (its samples depend on them); a search shares
    # its sentences out, so that each of the 3 workers has a call of 9 at most.
    expected = [4, 8, 12, 16, 20, 24, 25] if sampling else [9, 18, 25]
    assert seen == [(done, len(sentences)) for done in expected]


def test_workers_and_batch_size_must_be_positive_integers(from_saved_model):
    for name in ("workers", "batch_size"):
        for value in (0, -1, 1.5, True):
            with pytest.raises(ValueError, match=rf"`{name}` .* Received: {value!r}"):
                from_saved_model.translate_iter(SENTENCES, **{name: value})  # before next()


def test_calls_run_side_by_side_and_come_back_in_order():
    running, most, lock = [0], [0], threading.Lock()

    def call(index):
        def run():
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            time.sleep(0.05 if index % 3 == 0 else 0.01)  # some end before earlier ones
            with lock:
                running[0] -= 1
            return index
        return run

    assert list(_in_order((call(i) for i in range(12)), 3)) == list(range(12))
    assert most[0] == 3
    assert list(_in_order((call(i) for i in range(4)), 1)) == list(range(4))


def blocking_calls(count, fail=None):
    """`count` calls that each wait for their own `threading.Event`; call `fail` raises."""
    started, release = [], [threading.Event() for _ in range(count)]

    def call(index):
        def run():
            started.append(index)
            release[index].wait(10)
            if index == fail:
                raise ValueError(f"call {index} failed")
            return index
        return run

    return (call(i) for i in range(count)), started, release


def test_a_failed_call_is_raised_in_order_and_no_later_call_starts():
    calls, started, release = blocking_calls(20, fail=1)
    results = _in_order(calls, 2)
    release[0].set()
    assert next(results) == 0  # calls 0, 1 and 2 submitted (2 running at most)
    for event in release:
        event.set()
    with pytest.raises(ValueError, match="call 1 failed"):
        next(results)  # call 3 submitted before call 1's turn came
    # Nothing is submitted after the failure; what was submitted and not started is dropped.
    assert {0, 1} <= set(started) <= {0, 1, 2, 3}
    assert not [t for t in threading.enumerate() if t.name.startswith("translate")]


def test_closing_the_results_early_starts_no_more_calls():
    calls, started, release = blocking_calls(20)
    results = _in_order(calls, 2)
    release[0].set()
    assert next(results) == 0
    for event in release:
        event.set()
    results.close()  # waits for the running calls
    assert {0, 1} <= set(started) <= {0, 1, 2}
    assert not [t for t in threading.enumerate() if t.name.startswith("translate")]


def test_the_command_line_shares_many_sentences_between_threads(tmp_path):
    """`translate --input` of more than QUICK_START_SENTENCES lines runs one thread per op and
    a call per core at once (`configure_decoding_threads`), in its own process: the same
    translations as this process gives one call at a time."""
    sentences = ["John loves Mary.", "Look at that red building.", "", "I have a red car.",
                 "Where did you put the keys you found this morning?", "Tom is tired."] * 15
    path = tmp_path / "input.txt"
    path.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": os.pathsep.join(
        [REPO] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
    env.pop("TF_NUM_INTRAOP_THREADS", None)
    env.pop("TF_NUM_INTEROP_THREADS", None)
    def probe(code):
        done = subprocess.run(
            [sys.executable, "-c", "import tensorflow as tf; from bahdanau_keras.translate "
             "import configure_decoding_threads as configure; " + code + "; print(workers, "
             "tf.config.threading.get_intra_op_parallelism_threads(), "
             "tf.config.threading.get_inter_op_parallelism_threads())"],
            capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        return tuple(map(int, done.stdout.split()))

    import tensorflow as tf

    cores = len(os.sched_getaffinity(0))
    workers = 1 if tf.config.list_physical_devices("GPU") else min(cores, 4)
    expected = (workers, cores // workers, workers) if workers > 1 else (1, 0, 0)
    assert probe("workers = configure()") == expected
    # After an op TensorFlow's pools are what they are: 1 worker.
    assert probe("tf.constant(1.0) + 1; workers = configure()") == (1, 0, 0)
    # The environment's sizes are left alone.
    for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        assert probe(f"import os; os.environ['{name}'] = '2'; workers = configure()")[0] == 1
    for beam in (1, 3):
        command = [sys.executable, "-m", "bahdanau_keras", "translate", "--json", "--beam",
                   str(beam), "--input", str(path)]
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
        shared = [json.loads(line) for line in done.stdout.splitlines()]
        alone = Translation.open(cli.DEFAULT_MODEL).translate(sentences, beam_width=beam)
        assert [r["translation"] for r in shared] == [r["translation"] for r in alone]
        np.testing.assert_allclose([r["score"] for r in shared], [r["score"] for r in alone],
                                   rtol=1e-5, atol=1e-5)


@pytest.fixture
def spied_workers(monkeypatch):
    """The `workers` that the command line passes to `translate_iter`, with
    `configure_decoding_threads` answering 3 (this process's pools stay as they are)."""
    from bahdanau_keras import translate

    seen = []
    translate_iter = Translation.translate_iter

    def spy(self, *args, workers=1, **kwargs):
        seen.append(workers)
        return translate_iter(self, *args, workers=workers, **kwargs)

    monkeypatch.setattr(translate, "configure_decoding_threads", lambda workers=None: 3)
    monkeypatch.setattr(Translation, "translate_iter", spy)
    return seen


def test_the_command_line_uses_workers_for_many_sentences_only(spied_workers, saved_model_dir,
                                                                tmp_path, capsys):
    many = tmp_path / "many.txt"
    many.write_text("John loves Mary.\n" * (QUICK_START_SENTENCES + 1), encoding="utf-8")
    assert cli.main(["translate", "--model-dir", saved_model_dir, "--input", str(many)]) == 0
    assert cli.main(["translate", "--model-dir", saved_model_dir, "John loves Mary."]) == 0
    assert spied_workers == [3, 1]
    out = capsys.readouterr().out.splitlines()
    assert len(out) == QUICK_START_SENTENCES + 2 and len(set(out)) == 1


def test_evaluate_uses_workers(spied_workers, saved_model_dir, tmp_path, capsys):
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("John loves Mary.\tJean aime Marie.\nI see.\tJe vois.\n", encoding="utf-8")
    assert cli.main(["evaluate", "--model-dir", saved_model_dir, "--file", str(pairs),
                     "--beam", "2"]) == 0
    assert spied_workers == [3, 3]  # greedy, then beam search
    capsys.readouterr()


def test_missing_nbest_entries_are_left_out():
    out = {"translation": np.array([b"a"]), "score": np.array([-1.0]),
           "attention": np.zeros([1, 2, 2]), "source_tokens": np.array([[b"x", b"</s>"]]),
           "target_tokens": np.array([[b"a", b"</s>"]]),
           "nbest_translations": np.array([[b"a", b"b", b""]]),
           "nbest_scores": np.array([[-1.0, -2.0, -np.inf]])}

    class Fake:
        def __init__(self, value):
            self.value = value

        def numpy(self):
            return self.value

    (result,) = _to_python({k: Fake(v) for k, v in out.items()})
    assert result["nbest"] == [("a", -1.0), ("b", -2.0)]


# -- bad model directories -------------------------------------------------------------------


def truncate(path):
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def first_file(directory, suffix):
    return os.path.join(directory, next(n for n in sorted(os.listdir(directory))
                                        if n.endswith(suffix)))


SAVED_MODEL_DAMAGE = {
    "garbage saved_model.pb": lambda d: write(os.path.join(d, "saved_model.pb"),
                                              b"\x08garbage\xff" * 50),
    "empty saved_model.pb": lambda d: write(os.path.join(d, "saved_model.pb"), b""),
    "truncated variables": lambda d: truncate(
        os.path.join(d, "variables", "variables.data-00000-of-00001")),
    "no variables": lambda d: shutil.rmtree(os.path.join(d, "variables")),
}
MODEL_DIRECTORY_DAMAGE = {
    "truncated checkpoint": lambda d: [
        truncate(first_file(os.path.join(d, name), ".data-00000-of-00001"))
        for name in ("best", "checkpoints")],
    "garbage checkpoint index": lambda d: write(first_file(os.path.join(d, "best"), ".index"),
                                                b"x" * 100),
    "corrupt config.json": lambda d: write(os.path.join(d, "config.json"), b"{not json"),
    "no weights": lambda d: [shutil.rmtree(os.path.join(d, n)) for n in ("best", "checkpoints")],
    "missing vocabulary": lambda d: os.remove(os.path.join(d, "target.model")),
}


def check_one_line_error(path):
    with pytest.raises(TrainingError) as raised:
        Translation.open(path)
    message = str(raised.value)
    assert "\n" not in message and message.startswith(str(path)), message
    return message


@pytest.mark.parametrize("damage", sorted(SAVED_MODEL_DAMAGE))
def test_damaged_saved_model_gives_a_one_line_error(damage, saved_model_dir, tmp_path):
    path = tmp_path / "saved"
    shutil.copytree(saved_model_dir, path)
    SAVED_MODEL_DAMAGE[damage](str(path))
    check_one_line_error(str(path))


@pytest.mark.parametrize("damage", sorted(MODEL_DIRECTORY_DAMAGE))
def test_damaged_model_directory_gives_a_one_line_error(damage, tiny_model_dir, tmp_path):
    path = tmp_path / "model"
    shutil.copytree(tiny_model_dir, path, ignore=shutil.ignore_patterns("logs"))
    MODEL_DIRECTORY_DAMAGE[damage](str(path))
    check_one_line_error(str(path))


def test_missing_or_unknown_directories(tmp_path):
    assert "no such model directory" in check_one_line_error(str(tmp_path / "nothing"))
    assert "neither a model directory" in check_one_line_error(str(tmp_path))


def test_cli_corrupt_saved_model_is_one_stderr_line(saved_model_dir, tmp_path, capsys):
    path = tmp_path / "saved"
    shutil.copytree(saved_model_dir, path)
    truncate(os.path.join(path, "variables", "variables.data-00000-of-00001"))
    assert cli.main(["translate", "--model-dir", str(path), "John loves Mary."]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "corrupt SavedModel" in lines[0], captured.err
    assert "Traceback" not in captured.err and captured.out == ""


# -- the command line: --plot and --nbest ---------------------------------------------------------


def test_cli_nbest_and_plot(saved_model_dir, from_saved_model, tmp_path, capsys):
    png = tmp_path / "attention.png"
    sentences = ["John loves Mary.", "I see the red car."]
    assert cli.main(["translate", "--model-dir", saved_model_dir, "--beam", "3", "--nbest",
                     "--plot", str(png), *sentences]) == 0
    out = capsys.readouterr().out
    groups = [g.splitlines() for g in out.strip("\n").split("\n\n")]
    assert len(groups) == len(sentences)
    expected = from_saved_model.translate(sentences, beam_width=3)
    for group, result in zip(groups, expected):
        assert len(group) == 3
        scores = [float(line.split("\t")[0]) for line in group]
        assert scores == sorted(scores, reverse=True)
        assert [line.split("\t", 1)[1] for line in group] == [t for t, _ in result["nbest"]]
        np.testing.assert_allclose(scores, [s for _, s in result["nbest"]], atol=1e-4)
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 2000


def test_cli_plot_with_greedy_output(tiny_model_dir, tmp_path, capsys):
    png = tmp_path / "plot.png"
    assert cli.main(["translate", "--model-dir", str(tiny_model_dir), "--plot", str(png),
                     "John loves Mary."]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0]
    assert png.read_bytes().startswith(b"\x89PNG")


# -- a short command skips graph optimisation ---------------------------------------------------


def test_quick_start_turns_graph_optimisation_off_for_a_few_sentences_only():
    import tensorflow as tf

    def optimisation_off():
        return tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)

    assert not optimisation_off()
    with quick_start(QUICK_START_SENTENCES + 1) as skipped:
        assert not skipped and not optimisation_off()
    with quick_start(QUICK_START_SENTENCES) as skipped:
        assert skipped and optimisation_off()
    assert not optimisation_off()  # restored: the rest of the process is not affected
    with pytest.raises(RuntimeError), quick_start(1):
        raise RuntimeError("a failed translation")
    assert not optimisation_off()


@pytest.mark.parametrize("beam", [1, 4])
def test_a_short_command_translates_as_the_optimised_model_does(beam):
    """`bahdanau-keras translate` with a few sentences runs the shipped SavedModel without
    graph optimisation (its own process): the same translations as this process gives with it,
    the scores equal to rounding."""
    sentences = ["John loves Mary.", "Look at that red building.", "", "I have a red car.",
                 "Where did you put the keys you found this morning?"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": os.pathsep.join(
        [REPO] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
    command = [sys.executable, "-m", "bahdanau_keras", "translate", "--json", "--beam",
               str(beam), *sentences]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    quick = [json.loads(line) for line in done.stdout.splitlines()]
    optimised = Translation.open(cli.DEFAULT_MODEL).translate(sentences, beam_width=beam)
    assert [r["translation"] for r in quick] == [r["translation"] for r in optimised]
    assert [r["translation"] for r in quick][0] == "John aime Marie."
    np.testing.assert_allclose([r["score"] for r in quick], [r["score"] for r in optimised],
                               rtol=1e-5, atol=1e-5)
