"""Run tutorial notebooks from their sources and keep the outputs in their `.ipynb` files.

    python notebooks/execute.py            # every notebook
    python notebooks/execute.py 03 05      # the notebooks whose names start so

Each notebook is read from its source, `NN_name.py` (jupytext's percent format), run top to
bottom in a fresh kernel with the working directory `notebooks/`, as `tests/test_notebooks.py`
runs it (set `BAHDANAU_KERAS_FAST=1` for the tests' smaller sizes), and written to
`NN_name.ipynb` with its outputs, without TensorFlow's and SentencePiece's start-up log lines.
A notebook that fails is not written. The time each took is printed and recorded, with the
mode (`full`, or `fast` under `BAHDANAU_KERAS_FAST=1`), in the notebook's metadata under
`bahdanau_keras.run`; `tests/test_notebooks.py` checks that every committed notebook holds the
outputs of a full run.
"""

import argparse
import datetime
import os
import platform
import re
import sys
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from bahdanau_keras import tutorial

NOTEBOOKS_DIR = Path(__file__).resolve().parent
CELL_TIMEOUT = 3600  # seconds

# Log lines that say nothing about the tutorial: TensorFlow's C++ start-up messages (printed
# before its logging is configured, whatever TF_CPP_MIN_LOG_LEVEL says) and SentencePiece's.
NOISE = re.compile(r"(WARNING: All log messages before absl::InitializeLog|"
                   r"[IWE]\d{4} [\d:.]+ +\d+ \S+:\d+\]|normalizer\.cc\(\d+\) LOG\(INFO\))")


def sources():
    """The notebooks' source files, `NN_name.py`, in order."""
    return sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.py"))


def clean_outputs(notebook):
    """Drop log noise from the outputs and merge consecutive outputs of one stream.

    stderr lines that repeat a stdout line of the same cell go too (in a notebook,
    TensorFlow's Python logger writes each message to both streams)."""
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        printed = {line for output in cell.outputs
                   if output.output_type == "stream" and output.name == "stdout"
                   for line in output.text.splitlines()}
        outputs = []
        for output in cell.outputs:
            if output.output_type == "stream":
                lines = output.text.splitlines(keepends=True)
                if output.name == "stderr":
                    lines = [line for line in lines
                             if not NOISE.match(line) and line.rstrip("\n") not in printed]
                output.text = "".join(lines)
                if not output.text.strip():
                    continue
                if (outputs and outputs[-1].output_type == "stream"
                        and outputs[-1].name == output.name):
                    outputs[-1].text += output.text
                    continue
            outputs.append(output)
        cell.outputs = outputs
    return notebook


def execute(source):
    """Run the notebook of `source` (a `.py` path) and return it with its outputs.

    Raises:
        nbclient.exceptions.CellExecutionError: at the first cell that fails.
    """
    notebook = jupytext.read(source)
    for number, cell in enumerate(notebook.cells):
        cell.id = f"{source.stem[:2]}-{number:02d}"  # stable ids: small diffs
    NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name="python3", record_timing=False,
                   resources={"metadata": {"path": str(NOTEBOOKS_DIR)}}).execute()
    return clean_outputs(notebook)


def run_record(seconds):
    """What `execute` ran: the mode, how long it took, when, and on what (notebook metadata)."""
    from importlib import metadata

    def version(package):
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    return {
        "mode": "fast" if tutorial.fast_mode() else "full",
        "seconds": round(seconds),
        "date": datetime.date.today().isoformat(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "tensorflow": version("tensorflow"),
        "keras": version("keras"),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebook name prefixes (default: all)")
    args = parser.parse_args(argv)
    chosen = [path for path in sources()
              if not args.names or any(path.stem.startswith(name) for name in args.names)]
    if not chosen:
        parser.error(f"no notebook starts with {' or '.join(args.names)}")
    failed = []
    for path in chosen:
        print(f"{path.stem}: running ...", flush=True)
        started = time.perf_counter()
        try:
            notebook = execute(path)
        except CellExecutionError as error:
            print(f"{path.stem}: failed, {path.with_suffix('.ipynb').name} not written\n{error}")
            failed.append(path.stem)
            continue
        record = run_record(time.perf_counter() - started)
        notebook.metadata["bahdanau_keras"] = {"run": record}
        nbformat.validate(notebook)
        jupytext.write(notebook, path.with_suffix(".ipynb"))
        print(f"{path.stem}: {record['seconds']} s ({record['mode']} mode), wrote "
              f"{path.with_suffix('.ipynb').name}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
