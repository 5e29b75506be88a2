"""Keep TensorFlow's and SentencePiece's native log lines off a command's standard error.

TensorFlow's C++ runtime writes start-up lines straight to file descriptor 2 while it is
imported, before `TF_CPP_MIN_LOG_LEVEL` is read ("All log messages before absl::InitializeLog()
is called are written to STDERR", "oneDNN custom operations are on", "Could not find cuda
drivers", "failed call to cuInit"), and the SentencePiece op of tensorflow-text prints
`normalizer.cc(51) LOG(INFO) precompiled_charsmap is empty` whenever it loads a model. Python's
`sys.stderr` never sees those bytes, so they can only be kept out at the file-descriptor level.

`native_logs_filtered()` points descriptor 2 at a pipe read by a small filter process (this
file, run as a script with only the standard library), which forwards everything to the real
standard error except the lines `is_native_log_line` recognises:

- absl/TensorFlow records of severity `I`, `W` or `E`
  (`I0000 00:00:1796142267.884813    9377 port.cc:153] ...`), the start-up banner above, and the
  second line of TensorFlow's CPU-instructions notice ("To enable the following
  instructions: ..."). Fatal records (`F...`) are kept: they explain a crash.
- SentencePiece's glog-style records of level `INFO`, `WARNING` or `ERROR`
  (`normalizer.cc(51) LOG(INFO) ...`); `LOG(FATAL)` is kept.

Everything else, Python's own output included (error messages, tracebacks, a progress bar),
passes through unchanged and in order; a line that has not ended is passed on after
`PARTIAL_LINE_SECONDS` (a progress bar redrawn with `\\r`). A separate process, not a thread,
reads the pipe, so that what a crashing process wrote last (a fatal record before an abort)
still arrives: the filter stops only when every writer has closed the pipe.
"""

import contextlib
import os
import re
import select
import signal
import subprocess
import sys

# A line that has not ended by then is forwarded as it is (a progress bar redrawn with "\r").
PARTIAL_LINE_SECONDS = 0.1

# absl's record prefix: severity (I, W, E), MMDD hh:mm:ss.micros (before absl is initialised
# the seconds count from the epoch: 00:00:1796142267.884813), thread id, file:line]
_ABSL_RECORD = re.compile(rb"[IWE]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [^\s:\]]+:\d+\] ")
_ABSL_BANNER = b"WARNING: All log messages before absl::InitializeLog() is called are written " \
    b"to STDERR"
# The second line of TensorFlow's cpu_feature_guard.cc record.
_CPU_NOTICE = re.compile(rb"To enable the following instructions: .* rebuild TensorFlow with "
                         rb"the appropriate compiler flags\.")
# SentencePiece's own logging: `file.cc(line) LOG(LEVEL) message`
_SENTENCEPIECE_RECORD = re.compile(rb"[\w./-]+\.cc\(\d+\) LOG\((?:INFO|WARNING|ERROR)\) ")


def is_native_log_line(line):
    """Whether `line` (bytes or str, with or without its line ending) is a TensorFlow or
    SentencePiece log line that `native_logs_filtered` keeps off standard error."""
    if isinstance(line, str):
        line = line.encode("utf-8", "replace")
    line = line.rstrip(b"\r\n")
    return bool(line == _ABSL_BANNER or _ABSL_RECORD.match(line)
                or _CPU_NOTICE.fullmatch(line) or _SENTENCEPIECE_RECORD.match(line))


def filter_stream(read_fd, write_fd, partial_line_seconds=PARTIAL_LINE_SECONDS):
    """Copy `read_fd` to `write_fd` until end of file, leaving out native log lines.

    Complete lines are checked with `is_native_log_line`; a line still without its end after
    `partial_line_seconds` is written as it is (it may be a prompt or a progress bar).
    """
    pending = b""
    while True:
        timeout = partial_line_seconds if pending else None
        readable, _, _ = select.select([read_fd], [], [], timeout)
        if not readable:  # a line left unfinished: pass it on now
            _write_all(write_fd, pending)
            pending = b""
            continue
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        kept = b"".join(line + b"\n" for line in lines if not is_native_log_line(line))
        if kept:
            _write_all(write_fd, kept)
    if pending and not is_native_log_line(pending):
        _write_all(write_fd, pending)


def _write_all(fd, data):
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:  # the reader of standard error has gone: nothing can be shown anyway
        pass


@contextlib.contextmanager
def native_logs_filtered(enabled=True):
    """A context in which native log lines written to descriptor 2 are left out.

    Start it before TensorFlow is imported to catch the start-up lines. Python's `sys.stderr`
    keeps writing to descriptor 2, through the filter (everything it writes is kept). On
    exit, descriptor 2 is restored and the filter has written everything it received.

    Args:
        enabled: `False` leaves standard error alone (`--verbose`).

    Yields:
        Whether the filter is on (`False` when disabled, when descriptor 2 is closed, or when
        the filter process cannot start: then everything is shown, as without it).
    """
    if not enabled:
        yield False
        return
    try:
        original = os.dup(2)
    except OSError:  # no standard error at all
        yield False
        return
    read_end, write_end = os.pipe()
    try:
        # -I -S: the standard library only, whatever the environment says.
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", os.path.abspath(__file__)], stdin=read_end,
            stdout=original, close_fds=True)
    except OSError:
        for fd in (read_end, write_end, original):
            os.close(fd)
        yield False
        return
    os.close(read_end)
    _flush_stderr()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield True
    finally:
        _flush_stderr()
        os.dup2(original, 2)  # closes the last write end held here: the filter sees the end
        os.close(original)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # a child of this process still holds the pipe
            pass


def _flush_stderr():
    with contextlib.suppress(Exception):
        sys.stderr.flush()


def _main():
    # Ctrl-C reaches the whole process group: keep forwarding what the interrupted command
    # still writes (its own message, then the end of the pipe).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    filter_stream(0, 1)


if __name__ == "__main__":
    _main()
