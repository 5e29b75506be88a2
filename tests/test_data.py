"""Corpus reading (files, zip, URL), the train/dev/test split and the tf.data batches."""

import collections
import hashlib
import http.server
import os
import random
import socket
import threading
import zipfile

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from bahdanau_keras import data
from bahdanau_keras.data import CorpusError, read_corpus
from bahdanau_keras.text import END_ID, PAD_ID, START_ID, normalize_python

ATTRIBUTION = "CC-BY 2.0 (France) Attribution: tatoeba.org #1 (a) & #2 (b)"


def write(tmp_path, content, name="corpus.txt"):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return str(path)


# -- reading files --------------------------------------------------------------------------


def test_two_and_three_columns(tmp_path):
    path = write(tmp_path, f"Hi.\tSalut.\nRun!\tCours\u202f!\t{ATTRIBUTION}\nWho?\tQui\u00a0?\n")
    corpus = read_corpus(path)
    assert corpus.pairs == [("Hi.", "Salut."), ("Run!", "Cours\u202f!"), ("Who?", "Qui\u00a0?")]
    assert corpus.path == path and corpus.origin == os.path.abspath(path)
    assert (corpus.blank_lines, corpus.duplicates, corpus.bad_lines) == (0, 0, [])
    swapped = read_corpus(path, source_column=2, target_column=1)
    assert swapped.pairs[1] == ("Cours\u202f!", "Run!")


def test_zip_with_about_file(tmp_path):
    path = str(tmp_path / "fra-eng.zip")
    with zipfile.ZipFile(path, "w") as archive:
        # `_about.txt` is bigger than the corpus: it must still not be taken for it.
        archive.writestr("_about.txt", "About this file.\n" * 500)
        archive.writestr("fra.txt", f"Go.\tVa !\t{ATTRIBUTION}\nHi.\tSalut !\t{ATTRIBUTION}\n")
    corpus = read_corpus(path)
    assert corpus.pairs == [("Go.", "Va !"), ("Hi.", "Salut !")]
    assert corpus.path == f"{path}:fra.txt"
    # That name reads the same member (model directories of older versions stored it).
    assert read_corpus(corpus.path).pairs == corpus.pairs
    with pytest.raises(CorpusError, match=r"fra-eng.zip: the zip file holds no spa.txt"):
        read_corpus(f"{path}:spa.txt")
    assert data.zip_member(corpus.path) == (path, "fra.txt")
    assert data.zip_member(path) is None  # a file itself
    assert data.zip_member(str(tmp_path / "missing.zip:fra.txt")) is None


def test_zip_without_corpus_and_corrupt_zip(tmp_path):
    path = str(tmp_path / "empty.zip")
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("_about.txt", "nothing here\n")
    with pytest.raises(CorpusError, match="holds no corpus .txt"):
        read_corpus(path)
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as archive:
        archive.writestr("fra.txt", "Hi.\tSalut.\n" * 100)
    truncated = write(tmp_path, good.read_bytes()[:-30], "truncated.zip")
    with pytest.raises(CorpusError, match="truncated.zip: not a valid zip file"):
        read_corpus(truncated)


def test_bom_crlf_trailing_tabs(tmp_path):
    path = write(tmp_path, b"\xef\xbb\xbfHi.\tSalut.\r\nGo.\tVa !\t\t\r\nRun.\tCours.\t"
                 + ATTRIBUTION.encode() + b"\t\r\n")
    corpus = read_corpus(path)
    assert corpus.pairs == [("Hi.", "Salut."), ("Go.", "Va !"), ("Run.", "Cours.")]
    assert corpus.bad_lines == []


def test_duplicates_and_blank_lines_are_skipped_and_counted(tmp_path):
    path = write(tmp_path, "Hi.\tSalut.\n\nHi.\tSalut.\t" + ATTRIBUTION + "\n   \n\t\n"
                 "Hi.\tSalut !\nHi.\tSalut.\nGo.\tVa.")  # no final line break
    corpus = read_corpus(path)
    assert corpus.pairs == [("Hi.", "Salut."), ("Hi.", "Salut !"), ("Go.", "Va.")]
    assert corpus.duplicates == 2
    assert corpus.blank_lines == 3


BAD_LINES = [
    (b"no tab on this line", "no tab"),
    (b"Hello.\t", "empty target"),
    (b"\tBonjour.", "empty source"),
    (b"  \t Bonjour.", "empty source"),
    (b"Caf\xe9.\tCaf\xc3\xa9.", "invalid UTF-8"),
    (b"A.\tB.\tC.\tD.", "4 columns"),
    (b"Long.\t" + b"tr\xc3\xa8s " * 2000, "longer than 5000"),
]


@pytest.mark.parametrize("line, reason", BAD_LINES)
def test_malformed_line_names_file_and_line(tmp_path, line, reason):
    path = write(tmp_path, b"\xef\xbb\xbfHi.\tSalut.\r\n\r\nGo.\tVa.\r\n" + line
                 + b"\r\nOk.\tOk.\r\n")
    with pytest.raises(CorpusError) as error:
        read_corpus(path)
    message = str(error.value)
    assert message.startswith(f"{path}, line 4: ")  # blank lines count as lines
    assert reason in message and "--skip-bad-lines" in message
    corpus = read_corpus(path, skip_bad_lines=True)
    assert corpus.pairs == [("Hi.", "Salut."), ("Go.", "Va."), ("Ok.", "Ok.")]
    assert len(corpus.bad_lines) == 1 and corpus.bad_lines[0][0] == 4
    assert reason in corpus.bad_lines[0][1]


def test_skip_bad_lines_counts_every_line_and_warns(tmp_path, caplog):
    lines = [b"Hi.\tSalut."] + [line for line, _ in BAD_LINES] + [b"Go.\tVa."]
    path = write(tmp_path, b"\n".join(lines) + b"\n")
    with caplog.at_level("WARNING", logger="bahdanau_keras"):
        corpus = read_corpus(path, skip_bad_lines=True)
    assert [n for n, _ in corpus.bad_lines] == list(range(2, 2 + len(BAD_LINES)))
    assert f"skipped {len(BAD_LINES)} malformed lines" in caplog.text
    assert len(corpus.pairs) == 2


def test_max_line_chars_is_an_option(tmp_path):
    path = write(tmp_path, "Hi.\tSalut.\nA rather long sentence.\tUne phrase assez longue.\n")
    with pytest.raises(CorpusError, match="line 2: line longer than 20"):
        read_corpus(path, max_line_chars=20)


@pytest.mark.parametrize("content", [b"", b"\n\n  \n", b"\xef\xbb\xbf"])
def test_empty_corpus(tmp_path, content):
    path = write(tmp_path, content)
    with pytest.raises(CorpusError, match="holds no sentence pairs"):
        read_corpus(path)


def test_only_bad_lines_with_skip_is_an_empty_corpus(tmp_path):
    path = write(tmp_path, "no tab\nnone here either\n")
    with pytest.raises(CorpusError, match="holds no sentence pairs"):
        read_corpus(path, skip_bad_lines=True)


def test_missing_path_and_directory(tmp_path):
    with pytest.raises(CorpusError, match="no such file"):
        read_corpus(tmp_path / "missing.txt")
    with pytest.raises(CorpusError, match="is a directory"):
        read_corpus(tmp_path)


@pytest.mark.parametrize("source, target, match", [
    (3, 1, "`source_column` must be 1 or 2"),
    (1, 0, "`target_column` must be 1 or 2"),
    (2, 2, "same column"),
])
def test_unknown_columns(tmp_path, source, target, match):
    path = write(tmp_path, "Hi.\tSalut.\n")
    with pytest.raises(CorpusError, match=match):
        read_corpus(path, source_column=source, target_column=target)


# -- URLs, with a local HTTP server ---------------------------------------------------------


class Server:
    """Serves `files` (name -> bytes) on 127.0.0.1 and counts the requests."""

    def __init__(self):
        self.files = {}
        self.requests = collections.Counter()
        self.log = []  # the names requested, in order
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.lstrip("/")
                server.requests[name] += 1
                server.log.append(name)
                if name not in server.files:
                    self.send_error(404)
                    return
                body = server.files[name]
                truncate = name.startswith("truncated")
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if truncate else body)
                if truncate:
                    self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    server = Server()
    yield server
    server.close()


def zip_bytes(tmp_path, text, folder=""):
    path = tmp_path / "made.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{folder}_about.txt", "about\n")
        archive.writestr(f"{folder}fra.txt", text)
    return path.read_bytes()


def cache_files(cache):
    return sorted(os.listdir(cache)) if os.path.isdir(cache) else []


def test_url_is_downloaded_once_into_the_cache(tmp_path, server, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("BAHDANAU_KERAS_CACHE", str(cache))
    server.files["fra-eng.zip"] = zip_bytes(tmp_path, "Hi.\tSalut.\nGo.\tVa !\n")
    url = server.url("fra-eng.zip")
    corpus = read_corpus(url)
    assert corpus.pairs == [("Hi.", "Salut."), ("Go.", "Va !")]
    assert corpus.origin == url and corpus.path.endswith("fra-eng.zip:fra.txt")
    assert server.requests["fra-eng.zip"] == 1
    assert [f for f in cache_files(cache)] == [os.path.basename(corpus.path.split(":")[0])]
    again = read_corpus(url)
    assert again.pairs == corpus.pairs
    assert server.requests["fra-eng.zip"] == 1  # served from the cache
    server.files["plain.txt"] = b"A.\tB.\n"
    assert read_corpus(server.url("plain.txt")).pairs == [("A.", "B.")]


def test_download_checks_md5(tmp_path, server):
    cache = str(tmp_path / "cache")
    body = zip_bytes(tmp_path, "Hi.\tSalut.\n")
    server.files["a.zip"] = body
    with pytest.raises(CorpusError, match="md5 .* does not match"):
        data.download(server.url("a.zip"), cache, md5="0" * 32)
    assert cache_files(cache) == []  # neither the file nor a partial one is kept
    path = data.download(server.url("a.zip"), cache, md5=hashlib.md5(body).hexdigest())
    with open(path, "rb") as f:
        assert f.read() == body
    assert cache_files(cache) == [os.path.basename(path)]


def test_corrupt_zip_is_rejected_and_not_cached(tmp_path, server):
    cache = str(tmp_path / "cache")
    body = bytearray(zip_bytes(tmp_path, "Hi.\tSalut.\n" * 200))
    server.files["garbage.zip"] = b"<html>not a zip</html>"
    with pytest.raises(CorpusError, match="not a valid zip file"):
        data.download(server.url("garbage.zip"), cache)
    middle = len(body) // 2
    body[middle:middle + 8] = b"\x00" * 8  # a corrupt member: CRC check fails
    server.files["corrupt.zip"] = bytes(body)
    with pytest.raises(CorpusError, match="corrupt.zip"):
        data.download(server.url("corrupt.zip"), cache)
    assert cache_files(cache) == []


def test_interrupted_download_leaves_nothing(tmp_path, server):
    cache = str(tmp_path / "cache")
    server.files["truncated.txt"] = b"Hi.\tSalut.\n" * 1000
    with pytest.raises(CorpusError, match="download failed"):
        data.download(server.url("truncated.txt"), cache)
    assert cache_files(cache) == []
    with pytest.raises(CorpusError, match="download failed.*404"):
        data.download(server.url("missing.zip"), cache)
    assert cache_files(cache) == []


def test_url_that_is_an_html_page_is_refused(tmp_path, server, monkeypatch):
    monkeypatch.setenv("BAHDANAU_KERAS_CACHE", str(tmp_path / "cache"))
    server.files["fra.txt"] = b"<!DOCTYPE html>\n<html><body>Access denied\tsorry</body></html>\n"
    with pytest.raises(CorpusError, match=r"fra.txt: not an Anki-format corpus .*HTML page"):
        read_corpus(server.url("fra.txt"))
    assert cache_files(tmp_path / "cache") == []


def test_cli_error_for_an_unreachable_url_is_one_line(tmp_path, capsys):
    from bahdanau_keras import cli

    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}/fra-eng.zip"
    code = cli.main(["train", "--data", url, "--model-dir", str(tmp_path / "model")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(f"bahdanau-keras: error: {url}: download failed")
    assert not (tmp_path / "model").exists()


# -- download_corpus: mirrors, checks and the cache -------------------------------------------

# Synthetic pairs in the Anki format (three columns, as in newer releases).
PAIRS = [(f"Sentence {i}.", f"Phrase {i}.") for i in range(50)]
ANKI = "".join(f"{en}\t{fr}\t{ATTRIBUTION}\n" for en, fr in PAIRS)


@pytest.fixture
def mirrors(tmp_path, server, monkeypatch):
    """The local server with a good corpus zip in each layout, an empty cache, no override."""
    monkeypatch.setenv("BAHDANAU_KERAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("BAHDANAU_KERAS_CORPUS_URL", raising=False)
    server.files["good.zip"] = zip_bytes(tmp_path, ANKI)
    server.files["tf.zip"] = zip_bytes(tmp_path, ANKI, folder="fra-eng/")  # the TF mirror's
    server.files["error.zip"] = b"<!DOCTYPE html>\n<html><title>403 Forbidden</title></html>\n"
    server.files["cut.zip"] = server.files["good.zip"][:-40]  # a whole response, but cut
    server.files["truncated.zip"] = server.files["good.zip"]  # the connection closes early
    server.files["notes.zip"] = zip_bytes(tmp_path, "About these files.\nNo tabs here.\n")
    return server


def test_download_corpus_checks_caches_and_prints_one_line(tmp_path, mirrors):
    lines = []
    path = data.download_corpus(urls=[mirrors.url("tf.zip")], out=lines.append)
    body = mirrors.files["tf.zip"]
    with open(path, "rb") as f:
        assert f.read() == body
    assert path == data.cache_path(mirrors.url("tf.zip")) and str(tmp_path / "cache") in path
    assert len(lines) == 1
    assert lines[0] == (f"{mirrors.url('tf.zip')}: 50 pairs (fra-eng/fra.txt), sha256 "
                        f"{hashlib.sha256(body).hexdigest()}, downloaded into {path}")
    corpus = read_corpus(path)
    assert corpus.pairs == PAIRS and corpus.path == f"{path}:fra-eng/fra.txt"
    # The next call reads the cache: no request, the same line but where the file is.
    again = data.download_corpus(urls=[mirrors.url("tf.zip")], out=lines.append)
    assert again == path and mirrors.log == ["tf.zip"]
    assert lines[1] == lines[0].replace("downloaded into", "in the cache")
    assert cache_files(tmp_path / "cache") == [os.path.basename(path)]  # no partial file left


@pytest.mark.parametrize("bad, reason", [
    ("error.zip", r"not a valid zip file: received an HTML page \('<!DOCTYPE html>"),
    ("cut.zip", "not a valid zip file: received [0-9]+ bytes of a damaged or incomplete zip"),
    ("truncated.zip", r"download failed: received \d+ of \d+ bytes"),
    ("notes.zip", r"notes.zip:fra.txt: not an Anki-format corpus .*'About these files"),
    ("missing.zip", "download failed: HTTP Error 404: Not Found"),
])
def test_download_corpus_moves_on_from_a_bad_mirror_in_order(tmp_path, mirrors, bad, reason):
    lines = []
    path = data.download_corpus(urls=[mirrors.url(bad), mirrors.url("good.zip")],
                                out=lines.append)
    assert mirrors.log == [bad, "good.zip"]
    assert path == data.cache_path(mirrors.url("good.zip"))
    assert read_corpus(path).pairs == PAIRS
    assert len(lines) == 1 and lines[0].startswith(f"{mirrors.url('good.zip')}: 50 pairs")
    assert cache_files(tmp_path / "cache") == [os.path.basename(path)]
    # Alone, the bad mirror gives the reason.
    with pytest.raises(CorpusError, match=reason):
        data.download_corpus(urls=[mirrors.url(bad)], out=None)


def test_download_corpus_reuses_the_cache_without_retrying_a_failed_mirror(mirrors):
    urls = [mirrors.url("missing.zip"), mirrors.url("good.zip")]
    first = data.download_corpus(urls=urls, out=None)
    assert data.download_corpus(urls=urls, out=None) == first
    assert mirrors.log == ["missing.zip", "good.zip"]  # nothing asked the second time


def test_override_variable_is_tried_first(mirrors, monkeypatch):
    monkeypatch.setenv("BAHDANAU_KERAS_CORPUS_URL", mirrors.url("tf.zip"))
    urls = [mirrors.url("good.zip")]
    assert data.corpus_urls(urls) == [mirrors.url("tf.zip"), mirrors.url("good.zip")]
    path = data.download_corpus(urls=urls, out=None)
    assert path == data.cache_path(mirrors.url("tf.zip")) and mirrors.log == ["tf.zip"]
    # A failing override is one mirror among the others, not the only one.
    monkeypatch.setenv("BAHDANAU_KERAS_CORPUS_URL", mirrors.url("error.zip"))
    path = data.download_corpus(urls=urls, out=None)
    assert path == data.cache_path(mirrors.url("good.zip"))
    assert mirrors.log == ["tf.zip", "error.zip", "good.zip"]


def test_default_mirrors_and_bad_url_lists(monkeypatch):
    monkeypatch.delenv("BAHDANAU_KERAS_CORPUS_URL", raising=False)
    assert data.corpus_urls() == [
        "https://www.manythings.org/anki/fra-eng.zip",
        "https://storage.googleapis.com/download.tensorflow.org/data/fra-eng.zip"]
    monkeypatch.setenv("BAHDANAU_KERAS_CORPUS_URL", "  ")  # blank: not set
    assert data.corpus_urls() == list(data.CORPUS_MIRRORS)
    monkeypatch.setenv("BAHDANAU_KERAS_CORPUS_URL", "https://example.org/mirror/fra-eng.zip")
    assert data.corpus_urls() == ["https://example.org/mirror/fra-eng.zip",
                                  *data.CORPUS_MIRRORS]
    monkeypatch.setenv("BAHDANAU_KERAS_CORPUS_URL", "fra-eng.zip")
    with pytest.raises(CorpusError, match=r"CORPUS_URL must be .* Received: 'fra-eng.zip'"):
        data.corpus_urls()
    monkeypatch.delenv("BAHDANAU_KERAS_CORPUS_URL")
    with pytest.raises(CorpusError, match="not one string"):
        data.corpus_urls("https://example.org/fra-eng.zip")
    with pytest.raises(CorpusError, match="Received: 'fra-eng.zip'"):
        data.corpus_urls(["fra-eng.zip"])
    with pytest.raises(CorpusError, match="`urls` is empty"):
        data.download_corpus(urls=[], out=None)


def test_no_mirror_works_lists_each_url_and_its_failure(tmp_path, mirrors, monkeypatch):
    monkeypatch.setenv("BAHDANAU_KERAS_CORPUS_URL", mirrors.url("missing.zip"))
    urls = [mirrors.url("error.zip"), mirrors.url("cut.zip")]
    with pytest.raises(CorpusError) as error:
        data.download_corpus(urls=urls, out=None)
    lines = str(error.value).splitlines()
    assert lines[0] == "No URL gave the Tatoeba English-French corpus:"
    assert lines[1] == f"  {mirrors.url('missing.zip')}: download failed: HTTP Error 404: Not Found"
    assert lines[2].startswith(f"  {mirrors.url('error.zip')}: not a valid zip file: received "
                               "an HTML page")
    assert lines[3].startswith(f"  {mirrors.url('cut.zip')}: not a valid zip file")
    assert "BAHDANAU_KERAS_CORPUS_URL" in lines[4] and len(lines) == 5
    assert mirrors.log == ["missing.zip", "error.zip", "cut.zip"]
    assert cache_files(tmp_path / "cache") == []


def test_a_damaged_cache_file_is_downloaded_again(tmp_path, mirrors, caplog):
    url = mirrors.url("good.zip")
    path = data.download_corpus(urls=[url], out=None)
    with open(path, "r+b") as f:
        f.truncate(100)
    with caplog.at_level("WARNING", logger="bahdanau_keras"):
        assert data.download_corpus(urls=[url], out=None) == path
    assert "not a valid zip file" in caplog.text and "downloading" in caplog.text
    assert mirrors.log == ["good.zip", "good.zip"]
    assert read_corpus(path).pairs == PAIRS


def test_download_progress_on_stderr_only_when_slow(mirrors, monkeypatch, capsys):
    data.download_corpus(urls=[mirrors.url("good.zip")], out=None)
    assert capsys.readouterr().err == ""  # fast: quiet
    monkeypatch.setattr(data, "PROGRESS_SECONDS", 0.0)  # as if every chunk were slow
    data.download_corpus(urls=[mirrors.url("tf.zip")], out=None)
    size = len(mirrors.files["tf.zip"]) / 1e6
    assert capsys.readouterr().err == f"\r{mirrors.url('tf.zip')}: {size:.1f} of {size:.1f} MB\n"


# -- splitting -------------------------------------------------------------------------------


def test_split_is_deterministic_and_keeps_each_source_in_one_split():
    rng = random.Random(0)
    pairs = []
    for i in range(6000):
        source = f"Sentence number {i}."
        variants = [source, source.upper(), f"  {source}  ".replace(" ", "  ")]
        for j in range(rng.randint(1, 3)):
            pairs.append((rng.choice(variants), f"Phrase {i} ({j})."))
    splits = data.split_pairs(pairs)
    assert sum(len(v) for v in splits.values()) == len(pairs)
    shuffled = pairs[:]
    rng.shuffle(shuffled)
    again = data.split_pairs(shuffled)
    for name in splits:
        assert sorted(again[name]) == sorted(splits[name])
    where = collections.defaultdict(set)
    for name, part in splits.items():
        for source, _ in part:
            where[" ".join(source.lower().split())].add(name)
    assert all(len(names) == 1 for names in where.values())
    sources = {name: {" ".join(s.lower().split()) for s, _ in part}
               for name, part in splits.items()}
    assert 0.005 < len(sources["dev"]) / 6000 < 0.02
    assert 0.01 < len(sources["test"]) / 6000 < 0.035
    bigger = data.split_pairs(pairs, dev_fraction=0.1, test_fraction=0.2)
    assert len(bigger["test"]) > 2 * len(splits["test"])


def test_group_references():
    sources, references = data.group_references(
        [("Hi.", "Salut."), ("Go.", "Va."), ("Hi.", "Bonjour."), ("Hi.", "Coucou.")])
    assert sources == ["Hi.", "Go."]
    assert references == [["Salut.", "Bonjour.", "Coucou."], ["Va."]]


# -- tf.data ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ids():
    rng = np.random.default_rng(0)
    source = [list(rng.integers(4, 50, rng.integers(1, 30))) + [END_ID] for _ in range(300)]
    target = [[START_ID] + list(rng.integers(4, 50, rng.integers(1, 30))) + [END_ID]
              for _ in range(300)]
    return (tf.ragged.constant(source, dtype=tf.int32),
            tf.ragged.constant(target, dtype=tf.int32))


def epochs_of(dataset):
    """{epoch: [(source rows, target rows), ...]} with padding removed."""
    out = collections.defaultdict(list)
    for epoch, source, target in dataset:
        rows = [(tuple(s[s != PAD_ID]), tuple(t[t != PAD_ID]))
                for s, t in zip(source.numpy(), target.numpy())]
        out[int(epoch)].append(rows)
    return out


def test_batches_are_padded_int32_and_grouped_by_length(ids):
    source, target = ids
    boundaries = data.length_buckets(31)
    sizes = []
    for epoch, s, t in data.batches(source, target, batch_size=16, seed=1):
        assert s.dtype == tf.int32 and t.dtype == tf.int32 and epoch.dtype == tf.int64
        s, t = s.numpy(), t.numpy()
        assert s.shape[0] == t.shape[0] <= 16
        sizes.append(s.shape[0])
        s_len, t_len = (s != PAD_ID).sum(1), (t != PAD_ID).sum(1)
        # Padding only at the end, and the longest row of each side is not padded.
        assert all((row[:n] != PAD_ID).all() and (row[n:] == PAD_ID).all()
                   for row, n in zip(s, s_len))
        assert s_len.max() == s.shape[1] and t_len.max() == t.shape[1]
        assert (s[np.arange(len(s)), s_len - 1] == END_ID).all()
        assert (t[:, 0] == START_ID).all()
        buckets = np.searchsorted(boundaries, np.maximum(s_len, t_len), side="right")
        assert len(set(buckets)) == 1  # one length bucket per batch
    assert max(sizes) == 16


def test_batches_cover_every_pair_once_per_epoch_and_change_order(ids):
    source, target = ids
    expected = collections.Counter(zip(
        (tuple(r) for r in source.to_list()), (tuple(r) for r in target.to_list())))
    epochs = epochs_of(data.batches(source, target, 16, seed=3, epochs=3))
    assert sorted(epochs) == [0, 1, 2]
    for batches in epochs.values():
        assert collections.Counter(p for batch in batches for p in batch) == expected
    assert epochs[0] != epochs[1] and epochs[1] != epochs[2]
    assert len({len(b) for b in epochs.values()}) == 1  # as many batches every epoch


def test_batches_are_deterministic_for_a_seed(ids):
    source, target = ids
    first = epochs_of(data.batches(source, target, 16, seed=5, epochs=2))
    assert epochs_of(data.batches(source, target, 16, seed=5, epochs=2)) == first
    assert epochs_of(data.batches(source, target, 16, seed=6, epochs=2)) != first
    # Starting at epoch 1 gives exactly the second epoch of the full run.
    assert epochs_of(data.batches(source, target, 16, seed=5, first_epoch=1, epochs=2)) == {
        1: first[1]}
    fixed = epochs_of(data.batches(source, target, 16, shuffle=False, epochs=2))
    assert fixed[0] == fixed[1]


def test_batches_iterator_resumes_from_a_checkpoint(ids, tmp_path):
    source, target = ids
    dataset = data.batches(source, target, 16, seed=2, epochs=2)
    expected = [(int(e), s.numpy().tolist()) for e, s, _ in dataset]
    iterator = iter(dataset)
    head = [(int(e), s.numpy().tolist()) for e, s, _ in (next(iterator) for _ in range(7))]
    path = tf.train.Checkpoint(data=iterator).write(str(tmp_path / "ckpt"))
    fresh = iter(data.batches(source, target, 16, seed=2, epochs=2))
    tf.train.Checkpoint(data=fresh).read(path).assert_consumed()
    tail = [(int(e), s.numpy().tolist()) for e, s, _ in fresh]
    assert head + tail == expected


def streamed_batches(order, lengths, boundaries, batch_size):
    """Reference for `data._length_batches`: the pairs arrive one at a time in `order`; each
    joins its length bucket, whose batch leaves when full; at the end the incomplete batches
    leave in bucket order."""
    buckets, batches = {}, []
    for index in order:
        bucket = buckets.setdefault(int(np.searchsorted(boundaries, lengths[index], "right")), [])
        bucket.append(int(index))
        if len(bucket) == batch_size:
            batches.append(bucket[:])
            bucket.clear()
    return batches + [buckets[b] for b in sorted(buckets) if buckets[b]]


@settings(max_examples=40, deadline=None)
@given(lengths=st.lists(st.integers(1, 60), min_size=1, max_size=300),
       batch_size=st.integers(1, 20), seed=st.integers(0, 2**16))
def test_length_batches_equal_streaming_into_buckets(lengths, batch_size, seed):
    lengths = np.array(lengths, np.int64)
    order = np.random.default_rng(seed).permutation(len(lengths))
    boundaries = data.length_buckets(int(lengths.max()))
    indices, starts, sizes = data._length_batches(
        tf.constant(order), tf.constant(lengths[order]), boundaries, batch_size)
    indices = indices.numpy()
    got = [indices[a:a + n].tolist() for a, n in zip(starts.numpy(), sizes.numpy())]
    assert got == streamed_batches(order, lengths, boundaries, batch_size)


def test_batches_of_nothing():
    empty = tf.ragged.constant([], dtype=tf.int32, ragged_rank=1)
    with pytest.raises(ValueError, match="empty"):
        data.batches(empty, empty, 4)


def test_encode_pairs(tmp_path):
    from bahdanau_keras.text import SubwordTokenizer, train_sentencepiece

    pairs = [("Hi.", "Salut."), ("Go away now, please.", "Va-t'en maintenant, s'il te pla\u00eet."),
             ("Run!", "Cours\u202f!")] * 10
    tok = SubwordTokenizer(train_sentencepiece(normalize_python(
        [s for p in pairs for s in p]), vocab_size=400))
    source, target = data.encode_pairs(pairs, tok, tok)
    assert source.nrows() == target.nrows() == 30
    assert all(row[-1] == END_ID for row in source.to_list())
    assert all(row[0] == START_ID and row[-1] == END_ID for row in target.to_list())
    assert tok.detokenize(target[2:3]).numpy()[0].decode() == "Cours !"
    # This vocabulary is about one piece a character: the long pair is left out.
    short_source, short_target = data.encode_pairs(pairs, tok, tok, max_length=8)
    assert short_source.nrows() == short_target.nrows() == 20
    assert max(len(r) for r in short_source.to_list()) <= 9
    assert max(len(r) for r in short_target.to_list()) <= 10


# -- the real corpus -------------------------------------------------------------------------


def test_real_corpus(fra_eng_zip):
    with zipfile.ZipFile(fra_eng_zip) as archive:
        lines = archive.read("fra.txt").decode("utf-8").splitlines()
    assert len(lines) == 142_787
    corpus = read_corpus(fra_eng_zip)
    assert corpus.path.endswith("fra-eng.zip:fra.txt")
    assert len(corpus.pairs) == 142_782
    assert (corpus.duplicates, corpus.blank_lines, corpus.bad_lines) == (5, 0, [])
    targets = [t for _, t in corpus.pairs]
    assert sum("\u202f" in t for t in targets) > 5000
    normalized = normalize_python(targets)
    assert not any("\u202f" in t or "\u00a0" in t or "\u2019" in t for t in normalized)
    splits = data.split_pairs(corpus.pairs)
    assert {name: len(part) for name, part in splits.items()} == {
        "train": 138_515, "dev": 1_436, "test": 2_831}
    keys = {name: {" ".join(s.lower().split()) for s, _ in part}
            for name, part in splits.items()}
    assert not keys["train"] & keys["dev"] and not keys["train"] & keys["test"]
    assert not keys["dev"] & keys["test"]


def test_real_corpus_through_download_corpus(fra_eng_zip, tmp_path, monkeypatch):
    """The shared copy, served as a private mirror (a file:// URL), passes the checks."""
    monkeypatch.setenv("BAHDANAU_KERAS_CORPUS_URL", fra_eng_zip.resolve().as_uri())
    lines = []
    path = data.download_corpus(tmp_path / "cache", urls=[], out=lines.append)
    with open(fra_eng_zip, "rb") as f:
        body = f.read()
    assert hashlib.md5(body).hexdigest() == "c49e6073dca8524c9230ee8f68c3cf32"  # its README's
    assert lines == [f"{fra_eng_zip.resolve().as_uri()}: 142,787 pairs (fra.txt), sha256 "
                     f"{hashlib.sha256(body).hexdigest()}, downloaded into {path}"]
    assert len(read_corpus(path).pairs) == 142_782
