"""`bahdanau_keras.quiet`: native log lines are left out of standard error, nothing else is."""

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from bahdanau_keras import quiet

REPO = Path(__file__).resolve().parents[1]

# Lines seen on this project's machine (TensorFlow 2.21, tensorflow-text 2.21).
NATIVE_LINES = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796142267.884813    9377 port.cc:153] oneDNN custom operations are on. You "
    "may see slightly different numerical results due to floating-point round-off errors.",
    "I0000 00:00:1796142267.885325    9377 cudart_stub.cc:31] Could not find cuda drivers on "
    "your machine, GPU will not be used.",
    "I0000 00:00:1796142267.989338    9377 cpu_feature_guard.cc:227] This TensorFlow binary is "
    "optimized to use available CPU instructions in performance-critical operations.",
    "To enable the following instructions: AVX2 AVX512F AVX512_VNNI AVX512_BF16 FMA, in other "
    "operations, rebuild TensorFlow with the appropriate compiler flags.",
    "E0000 00:00:1796142298.681036    9661 cuda_platform.cc:52] failed call to cuInit: "
    "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
    "W1126 14:02:11.123456   12345 some/dir/op_kernel.cc:1857] a warning",
    "normalizer.cc(51) LOG(INFO) precompiled_charsmap is empty. use identity normalization.",
]
KEPT_LINES = [
    "bahdanau-keras: error: x.txt: no such file",
    "Traceback (most recent call last):",
    "WARNING: skipped 3 malformed corpus lines",
    "F0000 00:00:1796142298.681036    9661 op_kernel.cc:52] Check failed: fatal, kept",
    "normalizer.cc(51) LOG(FATAL) kept too",
    "I like log lines: I0000 00:00:1.5 x.cc:1] is not at the start",
    "",
]


@pytest.mark.parametrize("line", NATIVE_LINES)
def test_native_log_lines_are_recognised(line):
    assert quiet.is_native_log_line(line)
    assert quiet.is_native_log_line(line.encode() + b"\n")


@pytest.mark.parametrize("line", KEPT_LINES)
def test_other_lines_are_not(line):
    assert not quiet.is_native_log_line(line)


def filtered(chunks, partial_line_seconds=quiet.PARTIAL_LINE_SECONDS, pause=0.0):
    """What `filter_stream` forwards when `chunks` (bytes) are written to its pipe, with
    `pause` seconds between chunks."""
    source_read, source_write = os.pipe()
    sink_read, sink_write = os.pipe()
    worker = threading.Thread(target=quiet.filter_stream,
                              args=(source_read, sink_write, partial_line_seconds))
    worker.start()
    for chunk in chunks:
        os.write(source_write, chunk)
        time.sleep(pause)
    os.close(source_write)
    worker.join(timeout=10)
    os.close(sink_write)
    with os.fdopen(sink_read, "rb") as sink:
        forwarded = sink.read()
    os.close(source_read)
    return forwarded


def test_filter_stream_keeps_everything_else_in_order():
    lines = [NATIVE_LINES[0], KEPT_LINES[0], NATIVE_LINES[1], NATIVE_LINES[4], KEPT_LINES[3],
             NATIVE_LINES[-1], "last line, no end"]
    text = "\n".join(lines).encode()
    # Written whole, and in pieces that cut lines anywhere.
    expected = f"{KEPT_LINES[0]}\n{KEPT_LINES[3]}\nlast line, no end".encode()
    assert filtered([text]) == expected
    assert filtered([text[i:i + 7] for i in range(0, len(text), 7)]) == expected


def test_filter_stream_passes_an_unfinished_line_on_after_a_pause():
    source_read, source_write = os.pipe()
    sink_read, sink_write = os.pipe()
    worker = threading.Thread(target=quiet.filter_stream, args=(source_read, sink_write, 0.05))
    worker.start()
    try:
        os.write(source_write, b"  512/1500 sentences\r")
        # The line has not ended, the writer is still there: it arrives anyway.
        assert os.read(sink_read, 100) == b"  512/1500 sentences\r"
    finally:
        os.close(source_write)
        worker.join(timeout=10)
        for fd in (source_read, sink_read, sink_write):
            os.close(fd)


def run_python(code, **kwargs):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          env=env, timeout=300, **kwargs)


def test_native_writes_are_filtered_python_writes_kept_even_across_an_abort():
    # os.write(2, ...) stands for the C++ runtime; the fatal record before an abort must still
    # arrive (the filter is a process of its own that reads until every writer is gone).
    process = run_python(f"""
        import os, sys
        from bahdanau_keras import quiet
        with quiet.native_logs_filtered() as on:
            assert on
            os.write(2, {NATIVE_LINES[1].encode()!r} + b"\\n")
            print("a Python message", file=sys.stderr, flush=True)
            os.write(2, {NATIVE_LINES[-1].encode()!r} + b"\\n" + {KEPT_LINES[3].encode()!r}
                     + b"\\n")
            os.abort()
    """)
    assert process.returncode != 0
    assert process.stderr.decode().splitlines() == ["a Python message", KEPT_LINES[3]]


def test_disabled_and_restored():
    process = run_python(f"""
        import os, sys
        from bahdanau_keras import quiet
        with quiet.native_logs_filtered(enabled=False) as on:
            assert not on
            os.write(2, {NATIVE_LINES[1].encode()!r} + b"\\n")
        with quiet.native_logs_filtered():
            pass
        os.write(2, b"after: " + {NATIVE_LINES[2].encode()!r} + b"\\n")
    """)
    assert process.returncode == 0, process.stderr
    assert process.stderr.decode().splitlines() == [NATIVE_LINES[1],
                                                    "after: " + NATIVE_LINES[2]]


@pytest.mark.slow
def test_tensorflow_and_sentencepiece_start_up_is_silent():
    """The real thing: importing TensorFlow and tensorflow-text and running a SentencePiece
    model prints native lines (checked: without the filter the run is not silent)."""
    code = """
        import contextlib, sys
        from bahdanau_keras import quiet
        with quiet.native_logs_filtered(enabled=sys.argv[1] == "quiet"):
            import tensorflow as tf
            from bahdanau_keras import data, text
            pairs = data.read_corpus(data.SAMPLE_CORPUS).pairs[:300]
            tokenizer = text.SubwordTokenizer(
                text.train_sentencepiece([s for s, _ in pairs], vocab_size=400))
            print(tokenizer.tokenize(tf.constant(["John loves Mary."])).shape[0])
    """
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    for mode in ("quiet", "verbose"):
        process = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code), mode], capture_output=True,
            timeout=300, env=dict(env, PYTHONPATH=str(REPO)))
        assert process.returncode == 0, process.stderr.decode()[-2000:]
        assert process.stdout.decode().split() == ["1"]
        lines = process.stderr.decode().splitlines()
        if mode == "quiet":
            assert lines == []
        else:
            assert lines and all(quiet.is_native_log_line(line) for line in lines), lines


# -- the command line ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_model(tiny_model_dir, tmp_path_factory):
    from bahdanau_keras.export import export_model_dir

    return export_model_dir(str(tiny_model_dir), str(tmp_path_factory.mktemp("saved") / "m"))


@pytest.fixture(scope="module")
def many_lines(tmp_path_factory):
    """An --input file of 600 lines (enough for a progress bar and three batches)."""
    from bahdanau_keras import data

    sources = [source for source, _ in data.read_corpus(data.SAMPLE_CORPUS).pairs]
    path = tmp_path_factory.mktemp("input") / "many.txt"
    path.write_text("\n".join((sources * 10)[:600]) + "\n", encoding="utf-8")
    return path


def cli_command(*argv):
    return [sys.executable, "-m", "bahdanau_keras", *map(str, argv)]


def cli_env():
    # As a user runs it: no TF_CPP_MIN_LOG_LEVEL of the test session's.
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


@pytest.mark.slow
def test_translate_writes_nothing_on_stderr_unless_verbose(saved_model):
    for verbose in ([], ["--verbose"]):
        process = subprocess.run(
            cli_command("translate", "--model-dir", saved_model, *verbose, "John loves Mary."),
            capture_output=True, text=True, env=cli_env(), timeout=300)
        assert process.returncode == 0, process.stderr[-2000:]
        assert len(process.stdout.splitlines()) == 1
        if verbose:
            assert any(quiet.is_native_log_line(line) for line in process.stderr.splitlines())
        else:
            assert process.stderr == ""


@pytest.mark.slow
def test_errors_still_reach_stderr(tmp_path):
    process = subprocess.run(
        cli_command("translate", "--model-dir", tmp_path / "missing", "Hello."),
        capture_output=True, text=True, env=cli_env(), timeout=300)
    assert process.returncode == 2
    assert process.stderr.splitlines() == [
        f"bahdanau-keras: error: {tmp_path / 'missing'}: no such model directory"]


@pytest.mark.slow
def test_a_closed_pipe_ends_translate_quietly(saved_model, many_lines):
    """`bahdanau-keras translate --input FILE | head -1`: the command stops when its reader
    has gone, with SIGPIPE's exit status and no traceback."""
    process = subprocess.Popen(
        cli_command("translate", "--model-dir", saved_model, "--input", many_lines,
                    "--batch-size", "64"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env())
    first = process.stdout.readline()
    process.stdout.close()  # as `head -1` does after its line
    _, err = process.communicate(timeout=300)
    assert first.strip()
    assert process.returncode == 128 + signal.SIGPIPE
    assert err.decode() == ""


@pytest.mark.slow
def test_progress_bar_on_a_terminal_only(saved_model, many_lines):
    import pty

    command = cli_command("translate", "--model-dir", saved_model, "--input", many_lines)
    # stderr a file: no bar.
    plain = subprocess.run(command, capture_output=True, text=True, env=cli_env(), timeout=300)
    assert plain.returncode == 0 and plain.stderr == ""
    assert len(plain.stdout.splitlines()) == 600
    # stderr a terminal: the bar, ending at 600/600 on a line of its own.
    primary, secondary = pty.openpty()
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=secondary,
                                   env=cli_env())
        os.close(secondary)
        out, _ = process.communicate(timeout=300)
        shown = b""
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the terminal's other end has closed
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(primary)
    assert process.returncode == 0
    assert out.decode().splitlines() == plain.stdout.splitlines()
    lines = shown.decode().replace("\r\n", "\n").split("\n")
    assert "256/600 sentences" in shown.decode()
    assert re.fullmatch(r".*\[=+\] 600/600 sentences, [0-9]+/s", lines[-2].split("\r")[-1])
