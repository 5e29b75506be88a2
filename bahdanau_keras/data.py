"""Parallel corpora in the manythings.org / Tatoeba "Anki" format, splits and `tf.data` input.

A corpus file holds one pair a line, `English<TAB>translation`, optionally followed by a third
column with the attribution. It can be read from a `.txt`, from a `.zip` holding one, or from a
URL that is downloaded once into a cache and checked. `download_corpus` fetches the Tatoeba
English-French corpus from the first of its mirrors that works:

>>> corpus = read_corpus(download_corpus())  # doctest: +SKIP
"""

import collections
import dataclasses
import hashlib
import logging
import os
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import zipfile
import zlib

import numpy as np
import tensorflow as tf

from bahdanau_keras.text import END_ID, START_ID

logger = logging.getLogger("bahdanau_keras")

SAMPLE_CORPUS = os.path.join(os.path.dirname(__file__), "resources", "sample_en_fr.tsv")
DEFAULT_CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "bahdanau_keras")


class CorpusError(ValueError):
    """A corpus that cannot be read; the message names the file (and line) at fault."""


@dataclasses.dataclass
class Corpus:
    """Pairs read from a corpus file and what was dropped on the way."""

    pairs: list  # [(source, target)] raw strings, in file order, duplicates removed
    path: str  # where the pairs were read from (with the member of a zip file)
    origin: str = ""  # the path or URL as given
    blank_lines: int = 0  # empty lines, skipped
    duplicates: int = 0  # repeated (source, target) pairs, skipped
    bad_lines: list = dataclasses.field(default_factory=list)  # (line, reason) skipped


# -- downloading ------------------------------------------------------------------------------

# The Tatoeba English-French corpus, in the order `download_corpus` tries them. The second is a
# different, newer release (its zip holds `fra-eng/fra.txt` or `fra.txt`).
CORPUS_MIRRORS = (
    "https://www.manythings.org/anki/fra-eng.zip",
    "https://storage.googleapis.com/download.tensorflow.org/data/fra-eng.zip",
)
CORPUS_URL_VARIABLE = "BAHDANAU_KERAS_CORPUS_URL"  # one URL, tried before the mirrors
CACHE_VARIABLE = "BAHDANAU_KERAS_CACHE"
# manythings.org refuses many scripted downloads: ask as a browser does.
REQUEST_HEADERS = {
    "User-Agent": ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                   "Chrome/126.0 Safari/537.36"),
    "Accept": "application/zip,application/octet-stream,text/plain,*/*",
}
DOWNLOAD_TIMEOUT = 60  # seconds without data before a download is given up
PROGRESS_SECONDS = 2.0  # a download that takes longer shows its progress on stderr


def is_url(path):
    return urllib.parse.urlparse(str(path)).scheme in ("http", "https", "ftp", "file")


def cache_path(url, cache_dir=None):
    """Where `download` keeps the file of `url`: `cache_dir` (default `$BAHDANAU_KERAS_CACHE`,
    else `~/.cache/bahdanau_keras`), a short hash of the URL and its file name."""
    cache_dir = cache_dir or os.environ.get(CACHE_VARIABLE) or DEFAULT_CACHE_DIR
    name = os.path.basename(urllib.parse.urlparse(url).path) or "corpus"
    digest = hashlib.sha1(url.encode("utf-8")).hexdigest()[:10]
    return os.path.join(os.fspath(cache_dir), f"{digest}-{name}")


def download(url, cache_dir=None, md5=None, out=None, zip_only=False):
    """Download `url` once into the cache, check it, and return the local path.

    The file is checked before it enters the cache: a `.zip` (by name or content) must be a
    readable zip file whose corpus (its largest `.txt`, as `read_corpus` reads it) is in the
    Anki format; anything else must be Anki-format text. An HTML error page, a truncated file
    or a damaged zip file is refused. It is written
    under a temporary name and renamed only when complete and checked, so an interrupted
    download never leaves a file in the cache. A file already in the cache is checked again
    (no request is made); one that fails the check is deleted and downloaded again.

    Args:
        url: An `http(s)://`, `ftp://` or `file://` URL.
        cache_dir: The cache folder. Defaults to `$BAHDANAU_KERAS_CACHE`, else
            `~/.cache/bahdanau_keras`.
        md5: The expected md5 of the file (hex), or `None`.
        out: A callable given one line (the URL, its pair count, sha256 and cache path) once
            the file is ready, or `None`.
        zip_only: Refuse a file that is not a zip file.

    Returns:
        The path of the file in the cache.

    Raises:
        CorpusError: naming the URL and what was wrong ("download failed: HTTP Error 404: Not
            Found", "not a valid zip file: received an HTML page ...").
    """
    path = cache_path(url, cache_dir)
    if os.path.exists(path):
        try:
            summary = _check_download(path, path, md5, zip_only)
        except CorpusError as error:
            logger.warning("%s; downloading %s again", error, url)
            os.remove(path)
        else:
            if out is not None:
                out(_summary_line(url, path, summary, "in the cache"))
            return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    logger.info("Downloading %s into %s", url, path)
    request = urllib.request.Request(url, headers=REQUEST_HEADERS)
    fd, partial = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".partial-")
    try:
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(
                request, timeout=DOWNLOAD_TIMEOUT) as response:
            expected = response.headers.get("Content-Length")
            _copy_with_progress(response, f, url, expected)
            size = f.tell()
        # urllib does not notice a connection closed early: compare with the announced size.
        if expected is not None and expected.isdigit() and size != int(expected):
            raise CorpusError(f"{url}: download failed: received {size} of {expected} bytes")
        summary = _check_download(partial, url, md5, zip_only)
        os.replace(partial, path)
    except CorpusError:
        raise
    except Exception as error:
        raise CorpusError(f"{url}: download failed: {error}") from None
    finally:  # after an error, or an interruption, nothing is left
        if os.path.exists(partial):
            os.remove(partial)
    if out is not None:
        out(_summary_line(url, path, summary, "downloaded into"))
    return path


def corpus_urls(urls=None):
    """The URLs `download_corpus` tries, in order: `$BAHDANAU_KERAS_CORPUS_URL` when set, then
    `urls` (default `CORPUS_MIRRORS`)."""
    if isinstance(urls, (str, bytes)):
        raise CorpusError(f"`urls` must be a list of URLs, not one string. Received: {urls!r}")
    urls = list(CORPUS_MIRRORS if urls is None else urls)
    for url in urls:
        if not is_url(url):
            raise CorpusError(f"`urls` must hold http(s), ftp or file URLs. Received: {url!r}")
    override = os.environ.get(CORPUS_URL_VARIABLE, "").strip()
    if override:
        if not is_url(override):
            raise CorpusError(f"${CORPUS_URL_VARIABLE} must be an http(s), ftp or file URL. "
                              f"Received: {override!r}")
        urls = [override] + [url for url in urls if url != override]
    if not urls:
        raise CorpusError(f"No URL to download the corpus from: `urls` is empty and "
                          f"${CORPUS_URL_VARIABLE} is not set.")
    return urls


def download_corpus(cache_dir=None, urls=None, out=print):
    """Download the Tatoeba English-French corpus (`fra-eng.zip`) from the first mirror that
    works, once, and return the path of the checked zip file in the cache.

    The URLs are tried in order: `$BAHDANAU_KERAS_CORPUS_URL` (one URL, for a private mirror
    or a test), then `urls`, by default manythings.org and the TensorFlow storage mirror
    (`CORPUS_MIRRORS`; the two hold different releases). When one of them is already in the
    cache, the first such one is used and no request is made. Each download must be a
    readable zip file holding an Anki-format corpus (an HTML error page, a truncated file or a
    zip without a corpus moves on to the next URL); see `download`.

    Args:
        cache_dir: The cache folder. Defaults to `$BAHDANAU_KERAS_CACHE`, else
            `~/.cache/bahdanau_keras`.
        urls: The mirrors to try after the variable, in order. Defaults to `CORPUS_MIRRORS`.
        out: A callable given one line once the corpus is ready: the URL, the pair lines of the
            corpus file (duplicates included), its sha256 and its path; `None` for silence.

    Returns:
        The path of the zip file, for `read_corpus`.

    Raises:
        CorpusError: when no URL gives a corpus; the message lists each URL and its failure.

    Example:

    >>> corpus = read_corpus(download_corpus())  # doctest: +SKIP
    https://www.manythings.org/anki/fra-eng.zip: 142,787 pairs (fra.txt), sha256 16c4f7d0...
    """
    urls = corpus_urls(urls)
    cached = [url for url in urls if os.path.exists(cache_path(url, cache_dir))]
    failures = []
    for url in cached + [url for url in urls if url not in cached]:
        try:
            return download(url, cache_dir, out=out, zip_only=True)
        except CorpusError as error:
            reason = str(error)
            prefix = f"{url}: "
            failures.append((url, reason.removeprefix(prefix)))
    lines = [f"  {url}: {reason}" for url, reason in failures]
    raise CorpusError("\n".join(
        ["No URL gave the Tatoeba English-French corpus:", *lines,
         f"Set ${CORPUS_URL_VARIABLE} to a mirror of fra-eng.zip, or give a local copy."]))


def _copy_with_progress(response, file, url, total):
    """Copy the response into `file`; after `PROGRESS_SECONDS`, show the bytes so far on
    stderr (a local or fast download prints nothing)."""
    last = time.monotonic()
    shown = False
    while True:
        chunk = response.read(1 << 16)
        if not chunk:
            break
        file.write(chunk)
        if time.monotonic() - last >= PROGRESS_SECONDS:
            last = time.monotonic()
            of = f" of {int(total) / 1e6:.1f}" if total and total.isdigit() else ""
            sys.stderr.write(f"\r{url}: {file.tell() / 1e6:.1f}{of} MB")
            sys.stderr.flush()
            shown = True
    if shown:
        sys.stderr.write("\n")


def _received(content):
    """What `content` (bytes) looks like, for an error message."""
    if content.startswith(b"PK"):
        return f"received {len(content):,} bytes of a damaged or incomplete zip file"
    try:
        head = content.lstrip()[:60].decode("utf-8")
    except UnicodeDecodeError:
        return f"received {len(content):,} bytes of binary data"
    kind = "an HTML page" if head.startswith("<") else f"{len(content):,} bytes"
    more = "..." if len(content.lstrip()) > 60 else ""
    return f"received {kind} ({head!r}{more})"


def _check_download(path, name, md5=None, zip_only=False):
    """Check a downloaded file (see `download`); returns `(pairs, sha256, member)`."""
    with open(path, "rb") as f:
        content = f.read()
    if md5 is not None:
        actual = hashlib.md5(content).hexdigest()
        if actual != md5:
            raise CorpusError(f"{name}: md5 {actual} does not match the expected {md5}")
    member = None
    if zipfile.is_zipfile(path):
        try:
            text, member = _read_zip(path)
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()  # every member's CRC, not only the corpus's
        except CorpusError as error:  # named after the URL, not the temporary file
            raise CorpusError(str(error).replace(path, name, 1)) from None
        except (zipfile.BadZipFile, zlib.error, EOFError) as error:
            raise CorpusError(f"{name}: not a valid zip file ({error})") from None
        if bad is not None:
            raise CorpusError(f"{name}: not a valid zip file (corrupt member {bad!r})")
        member = member[len(path) + 1:]
        text_name = f"{name}:{member}"
    elif zip_only or urllib.parse.urlparse(name).path.lower().endswith(".zip"):
        raise CorpusError(f"{name}: not a valid zip file: {_received(content)}")
    else:
        text, text_name = content, name
    return _count_pairs(text, text_name), hashlib.sha256(content).hexdigest(), member


def _count_pairs(text, name):
    """The lines of `text` (bytes) that hold a tab; `CorpusError` unless its first line is an
    Anki-format pair (`English<TAB>translation`, maybe an attribution)."""
    lines = text.removeprefix(b"\xef\xbb\xbf").split(b"\n")
    first = next((line for line in lines if line.strip()), b"")
    columns = first.rstrip().split(b"\t")  # trailing tabs: an empty attribution
    if not (2 <= len(columns) <= 3 and columns[0].strip() and columns[1].strip()):
        raise CorpusError(f"{name}: not an Anki-format corpus (English<TAB>translation): "
                          f"{_received(text)}")
    return sum(1 for line in lines if b"\t" in line)


def _summary_line(url, path, summary, where):
    pairs, sha256, member = summary
    inside = f" ({member})" if member else ""
    return f"{url}: {pairs:,} pairs{inside}, sha256 {sha256}, {where} {path}"


def _read_zip(archive, member=None):
    """The bytes of `member` of the zip file `archive` (default: its largest `.txt` that is
    not an `_about.txt`-style note, at any depth: `fra.txt` or `fra-eng/fra.txt`), and the
    name `archive:member`."""
    try:
        with zipfile.ZipFile(archive) as opened:
            if member is None:
                members = [m for m in opened.infolist()
                           if m.filename.endswith(".txt")
                           and not os.path.basename(m.filename).startswith("_")]
                if not members:
                    raise CorpusError(f"{archive}: the zip file holds no corpus .txt file")
                member = max(members, key=lambda m: m.file_size).filename
            return opened.read(member), f"{archive}:{member}"
    except KeyError:
        raise CorpusError(f"{archive}: the zip file holds no {member}") from None
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise CorpusError(f"{archive}: not a valid zip file ({error})") from None


# -- reading ---------------------------------------------------------------------------------


def zip_member(path):
    """`(archive, member)` when `path` is no file but names a member of an existing file in
    the form `corpus.zip:fra.txt` (the name that messages, and older model directories,
    give); otherwise None."""
    archive, _, member = os.fspath(path).rpartition(":")
    if not os.path.exists(path) and archive and os.path.isfile(archive) and member:
        return archive, member
    return None


def _read_bytes(path):
    """The corpus text as bytes, and the name to use in messages."""
    if is_url(path):
        path = download(path, out=logger.info)
    member = zip_member(path)
    if member:
        return _read_zip(*member)
    if not os.path.exists(path):
        raise CorpusError(f"{path}: no such file")
    if os.path.isdir(path):
        raise CorpusError(f"{path}: is a directory, expected a .txt or .zip corpus file")
    if zipfile.is_zipfile(path):
        return _read_zip(path)
    if path.lower().endswith(".zip"):
        raise CorpusError(f"{path}: not a valid zip file (truncated or corrupt)")
    with open(path, "rb") as f:
        return f.read(), path


def read_corpus(path, source_column=1, target_column=2, skip_bad_lines=False,
                max_line_chars=5000):
    """Read an Anki/Tatoeba-format corpus.

    Args:
        path: A `.txt` file, a `.zip` holding one (its largest `.txt`; `corpus.zip:fra.txt`
            names a member), or a URL (downloaded once into the cache and checked, see
            `download`).
        source_column, target_column: 1-based columns of the source and the target
            (English is column 1 in these files; 2 and 1 translate into English).
        skip_bad_lines: Skip malformed lines (and count them) instead of raising.
        max_line_chars: Longer lines are malformed (a missing line break, not a sentence).

    A byte-order mark, CRLF line ends and trailing tabs are accepted; blank lines and repeated
    pairs are skipped and counted. A line with no tab, an empty side or invalid UTF-8 raises
    `CorpusError` naming the file and the line, or is skipped with `skip_bad_lines`.
    """
    for name, column in (("source_column", source_column), ("target_column", target_column)):
        if column not in (1, 2):
            raise CorpusError(
                f"`{name}` must be 1 or 2 (column 3 holds the attribution). Received: {column!r}")
    if source_column == target_column:
        raise CorpusError(f"source and target are the same column ({source_column})")
    data, name = _read_bytes(os.fspath(path) if not is_url(path) else path)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    origin = path if is_url(path) else os.path.abspath(os.fspath(path))
    corpus = Corpus(pairs=[], path=name, origin=origin)
    seen = set()
    lines = data.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()  # the text after the final line break
    for number, raw in enumerate(lines, start=1):
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            corpus.blank_lines += 1
            continue
        try:
            line = raw.decode("utf-8")
            if len(line) > max_line_chars:
                raise CorpusError(f"line longer than {max_line_chars} characters")
            columns = line.split("\t")
            if len(columns) < 2:
                raise CorpusError("no tab between source and target")
            if len(columns) > 3 and any(c.strip() for c in columns[3:]):
                raise CorpusError(f"{len(columns)} columns, expected 2 or 3")
            source = columns[source_column - 1].strip()
            target = columns[target_column - 1].strip()
            if not source or not target:
                raise CorpusError(f"empty {'source' if not source else 'target'} side")
        except (UnicodeDecodeError, CorpusError) as error:
            reason = "invalid UTF-8" if isinstance(error, UnicodeDecodeError) else str(error)
            if not skip_bad_lines:
                raise CorpusError(
                    f"{name}, line {number}: {reason} (use --skip-bad-lines to skip such lines)"
                ) from None
            corpus.bad_lines.append((number, reason))
            continue
        if (source, target) in seen:
            corpus.duplicates += 1
            continue
        seen.add((source, target))
        corpus.pairs.append((source, target))
    if corpus.bad_lines:
        logger.warning("%s: skipped %d malformed lines (first: line %d, %s)", name,
                       len(corpus.bad_lines), *corpus.bad_lines[0])
    if not corpus.pairs:
        raise CorpusError(f"{name}: the corpus holds no sentence pairs")
    return corpus


# -- splitting --------------------------------------------------------------------------------


def split_of(source, dev_fraction=0.01, test_fraction=0.02):
    """'train', 'dev' or 'test' for a source sentence, from a hash of its text alone, so every
    pair with that source lands in the same split, whatever the file order."""
    bucket = int(hashlib.md5(source.encode("utf-8")).hexdigest()[:8], 16) / 2**32
    if bucket < test_fraction:
        return "test"
    if bucket < test_fraction + dev_fraction:
        return "dev"
    return "train"


def split_pairs(pairs, dev_fraction=0.01, test_fraction=0.02):
    """Deterministic train/dev/test split in which no source sentence is in two splits.

    The key is the source with case and surrounding space ignored. Returns a dict of lists.
    """
    splits = {"train": [], "dev": [], "test": []}
    for source, target in pairs:
        key = " ".join(source.lower().split())
        splits[split_of(key, dev_fraction, test_fraction)].append((source, target))
    return splits


def group_references(pairs):
    """`[(source, target)]` -> `(sources, [references...])` with each source once, in order of
    first appearance, and all its targets as references (Tatoeba has many)."""
    references = collections.OrderedDict()
    for source, target in pairs:
        references.setdefault(source, []).append(target)
    return list(references), list(references.values())


# -- token ids and tf.data ----------------------------------------------------------------------


def encode_pairs(pairs, source_tokenizer, target_tokenizer, max_length=None, chunk=20000):
    """Tokenize pairs into int32 `RaggedTensor`s: source `y_1..y_n END`, target
    `START y_1..y_n END`. Pairs with a side longer than `max_length` tokens are dropped (and
    counted in the log). Returns `(source, target)`, each `[num_pairs, (len)]`."""
    sources, targets = [], []
    for begin in range(0, len(pairs), chunk):
        part = pairs[begin:begin + chunk]
        sources.append(source_tokenizer.tokenize(tf.constant([s for s, _ in part])))
        targets.append(target_tokenizer.tokenize(tf.constant([t for _, t in part])))
    source = tf.concat(sources, axis=0)
    target = tf.concat(targets, axis=0)
    n = source.nrows()
    end = tf.fill([n, 1], END_ID)
    source = tf.concat([source, end], axis=1)
    target = tf.concat([tf.fill([n, 1], START_ID), target, end], axis=1)
    if max_length is not None:
        keep = (source.row_lengths() <= max_length + 1) & (target.row_lengths() <= max_length + 2)
        dropped = int(n) - int(tf.reduce_sum(tf.cast(keep, tf.int32)))
        if dropped:
            logger.info("Dropped %d pairs longer than %d tokens", dropped, max_length)
        source = tf.ragged.boolean_mask(source, keep)
        target = tf.ragged.boolean_mask(target, keep)
    return source, target


def length_buckets(max_length):
    """Bucket boundaries: every length up to 24 tokens, then growing by about 20%."""
    boundaries = list(range(4, 25))
    while boundaries[-1] < max_length:
        boundaries.append(int(boundaries[-1] * 1.2) + 1)
    return boundaries


def batches(source, target, batch_size, seed=0, shuffle=True, first_epoch=0, epochs=1):
    """A `tf.data` pipeline of padded `(epoch, source, target)` batches, batched by length.

    Each epoch draws a fresh permutation from `(seed, epoch)` with a stateless shuffle and
    groups sentences of similar length into batches of `batch_size` (so padding wastes little);
    batches leave as their bucket fills, so lengths come mixed. The pipeline prefetches.
    Everything is deterministic given `seed`,
    and an iterator over it can be saved in a `tf.train.Checkpoint` to resume mid-epoch.

    Args:
        source, target: int32 `RaggedTensor`s `[num_pairs, (len)]` from `encode_pairs`.
        batch_size: Sentences per batch.
        seed: Python int.
        shuffle: `False` gives the same batches in the same order every epoch (for dev sets).
        first_epoch, epochs: The epochs `first_epoch .. epochs - 1` are produced in sequence.

    Yields:
        `(epoch, source, target)`: int64 scalar, int32 `[batch, src_len]`, `[batch, tgt_len]`.
    """
    num_pairs = int(source.nrows())
    if num_pairs == 0:
        raise ValueError("Cannot batch an empty set of pairs.")
    lengths = tf.maximum(source.row_lengths(), target.row_lengths())
    boundaries = length_buckets(int(tf.reduce_max(lengths)))

    def one_epoch(epoch):
        if shuffle:
            order = tf.random.experimental.stateless_shuffle(
                tf.range(num_pairs, dtype=tf.int64),
                seed=tf.stack([tf.cast(seed, tf.int64), epoch]))
        else:
            order = tf.argsort(lengths, stable=True)
        indices, starts, sizes = _length_batches(
            order, tf.gather(lengths, order), boundaries, batch_size)

        def gather(start, size):
            rows = indices[start:start + size]
            return (epoch, tf.gather(source, rows).to_tensor(),
                    tf.gather(target, rows).to_tensor())

        return tf.data.Dataset.from_tensor_slices((starts, sizes)).map(gather)

    return tf.data.Dataset.range(first_epoch, epochs).flat_map(one_epoch).prefetch(4)


def _length_batches(order, lengths, boundaries, batch_size):
    """Group the pairs `order` (lengths `lengths`, in that order) into batches by length.

    The batches are those that streaming the pairs in `order` into one bucket per length
    range would give (`tf.data.Dataset.bucket_by_sequence_length`): a bucket's batch leaves
    when its `batch_size`-th pair arrives, and at the end the incomplete batches leave in
    bucket order. Computed for the whole epoch at once with a few vector operations, instead
    of pair by pair through a `tf.data` pipeline (several milliseconds of CPU a batch).

    Returns `(indices, starts, sizes)`: batch `k` holds the pairs
    `indices[starts[k]:starts[k] + sizes[k]]`.
    """
    count = tf.shape(order, out_type=tf.int64)[0]
    position = tf.range(count)
    bucket = tf.searchsorted(tf.constant(boundaries, lengths.dtype), lengths, side="right",
                             out_type=tf.int64)
    num_buckets = len(boundaries) + 1
    bucket_sizes = tf.math.bincount(bucket, minlength=num_buckets, maxlength=num_buckets,
                                    dtype=tf.int64)
    bucket_starts = tf.cumsum(bucket_sizes, exclusive=True)
    # The rank of each pair among the pairs of its bucket, in stream order.
    by_bucket = tf.argsort(bucket, stable=True)
    rank = tf.scatter_nd(by_bucket[:, None], position - tf.gather(
        bucket_starts, tf.gather(bucket, by_bucket)), [count])
    batch_in_bucket = rank // batch_size
    complete = batch_in_bucket < tf.gather(bucket_sizes // batch_size, bucket)
    # A complete batch leaves at its last pair's position; the others after every pair.
    group = bucket * (count // batch_size + 1) + batch_in_bucket
    leaves = tf.math.unsorted_segment_max(
        tf.where(complete, position, count + bucket), group,
        num_segments=num_buckets * (count // batch_size + 1))
    leaves = tf.gather(leaves, group)
    sorted_positions = tf.argsort(leaves * count + position)
    _, _, sizes = tf.unique_with_counts(tf.gather(leaves, sorted_positions), out_idx=tf.int64)
    starts = tf.cumsum(sizes, exclusive=True)
    return tf.gather(order, sorted_positions), starts, sizes


def load_ids(path):
    """Read a token-id `.npz` as written by `../shared/peers/make_ids.py` (`src`, `tgt`,
    int32, 0-padded, start 1 and end 2) as `(source, target)` `RaggedTensor`s."""
    with np.load(path) as data:
        src, tgt = data["src"], data["tgt"]
    source = tf.RaggedTensor.from_tensor(tf.constant(src, tf.int32), padding=0)
    target = tf.RaggedTensor.from_tensor(tf.constant(tgt, tf.int32), padding=0)
    return source, target


__all__ = [
    "CORPUS_MIRRORS", "Corpus", "CorpusError", "SAMPLE_CORPUS", "batches", "download",
    "download_corpus", "encode_pairs", "group_references", "load_ids", "read_corpus",
    "split_pairs",
]
