"""BLEU and chrF (sacreBLEU) of a translator, greedy and beam search side by side.

Tatoeba often has several translations of one source sentence; they are grouped so that each
source is translated once and scored against all its references. `paired_bootstrap` says
whether two systems' BLEU differ by more than the choice of test sentences explains.
"""

import os
import time

from bahdanau_keras import data as data_lib


def corpus_scores(hypotheses, references):
    """sacreBLEU BLEU and chrF (true case, default tokenisation) with a variable number of
    references per sentence. `references[i]` is the list of references of `hypotheses[i]`."""
    from sacrebleu.metrics import BLEU, CHRF

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
    streams = max((len(r) for r in references), default=1)
    reference_streams = [[r[k] if k < len(r) else None for r in references]
                         for k in range(streams)]
    bleu, chrf = BLEU(), CHRF()
    return {"bleu": round(bleu.corpus_score(hypotheses, reference_streams).score, 2),
            "chrf": round(chrf.corpus_score(hypotheses, reference_streams).score, 2),
            "bleu_signature": str(bleu.get_signature()),
            "chrf_signature": str(chrf.get_signature())}


def _reference_streams(references):
    """`references[i]` (the list of references of sentence `i`) as sacreBLEU's streams: stream
    `k` holds the `k`-th reference of every sentence, `None` where a sentence has fewer."""
    streams = max((len(r) for r in references), default=1)
    return [[r[k] if k < len(r) else None for r in references] for k in range(streams)]


def sacrebleu_seed():
    """The seed of sacreBLEU's resampling: `$SACREBLEU_SEED` (`none`: unseeded), else 12345,
    as `sacrebleu.significance` reads it."""
    seed = os.environ.get("SACREBLEU_SEED", "12345")
    return None if seed.lower() == "none" else int(seed)


def paired_bootstrap(hypotheses_a, hypotheses_b, references, samples=1000):
    """Paired bootstrap resampling of the BLEU difference of two systems (Koehn, 2004).

    Both systems translated the same sentences. A resample draws as many sentences as there
    are, with replacement, and scores both systems on it: the difference of their corpus BLEU
    on `samples` resamples shows how much of the difference comes from the choice of test
    sentences. The resamples are those of sacreBLEU's paired bootstrap test
    (`sacrebleu.significance.PairedTest(..., test_type="bs")`, the command line's
    `--paired-bs`), which gives the p-value and each system's mean and 95% interval; the 95%
    interval of the difference is computed here on the same resamples, from each sentence's
    BLEU statistics (matched and total n-grams, lengths). An interval that contains 0 means no
    difference at this test size.

    Args:
        hypotheses_a, hypotheses_b: The two systems' translations, one string per sentence
            (`a` is the baseline of sacreBLEU's test).
        references: `references[i]` is the list of references of sentence `i` (any number,
            at least one).
        samples: Positive int, the number of resamples (sacreBLEU's default is 1000).

    Returns:
        A dict: `bleu_a`, `bleu_b` (corpus BLEU on all the sentences), `difference`
        (`bleu_b - bleu_a`), `interval` (`[low, high]`, the 2.5th and 97.5th percentiles of
        the resampled differences), `mean_difference` (their mean), `significant` (whether 0
        is outside `interval`), `p_value` (sacreBLEU's, of `b` against `a`), `mean_a`,
        `ci_a`, `mean_b`, `ci_b` (sacreBLEU's bootstrap mean of each system and the
        half-width of its 95% interval), `sentences`, `samples`, `seed` (`sacrebleu_seed()`)
        and `signature` (sacreBLEU's).

    Raises:
        ValueError: the three lists differ in length or are empty, a sentence has no
            reference, or `samples` is not a positive integer.
    """
    import numpy as np
    from sacrebleu.metrics import BLEU
    from sacrebleu.significance import PairedTest

    hypotheses_a, hypotheses_b = list(hypotheses_a), list(hypotheses_b)
    references = [list(r) for r in references]
    if not len(hypotheses_a) == len(hypotheses_b) == len(references):
        raise ValueError(
            "`hypotheses_a`, `hypotheses_b` and `references` must have one entry per sentence. "
            f"Received: {len(hypotheses_a)}, {len(hypotheses_b)} and {len(references)}")
    if not references:
        raise ValueError("`paired_bootstrap` needs at least one sentence. Received: none")
    if not all(references):
        empty = next(i for i, r in enumerate(references) if not r)
        raise ValueError(f"Every sentence needs a reference. Received: none for sentence "
                         f"{empty}")
    if not isinstance(samples, int) or isinstance(samples, bool) or samples <= 0:
        raise ValueError(f"`samples` must be a positive integer. Received: {samples!r}")
    metric = BLEU()
    signatures, results = PairedTest(
        [("a", hypotheses_a), ("b", hypotheses_b)], {"BLEU": metric},
        _reference_streams(references), test_type="bs", n_samples=samples)()
    baseline, system = results["BLEU"]

    # Each sentence's statistics (sacreBLEU's sufficient statistics of BLEU), [sentences, 10]:
    # hypothesis length, closest reference length, matched n-grams (n = 1..4), total n-grams.
    sentence_bleu = BLEU(effective_order=True)  # the statistics do not depend on it

    def statistics(hypotheses):
        scores = [sentence_bleu.sentence_score(h, r) for h, r in zip(hypotheses, references)]
        return np.array([[s.sys_len, s.ref_len, *s.counts, *s.totals] for s in scores],
                        dtype=np.float64)

    def corpus_bleu(summed):  # BLEU of summed statistics, as sacreBLEU computes it
        orders = metric.max_ngram_order
        return BLEU.compute_bleu(
            correct=list(summed[2:2 + orders]), total=list(summed[2 + orders:]),
            sys_len=int(summed[0]), ref_len=int(summed[1]), smooth_method=metric.smooth_method,
            smooth_value=metric.smooth_value, effective_order=metric.effective_order,
            max_ngram_order=orders).score

    count = len(references)
    seed = sacrebleu_seed()
    # The resamples of sacreBLEU's test: [samples, sentences] indices, drawn as it draws them.
    indices = np.random.default_rng(seed).choice(count, size=(samples, count), replace=True)
    # How often each sentence is drawn in each resample: [samples, sentences].
    draws = np.stack([np.bincount(row, minlength=count) for row in indices]).astype(np.float64)
    resampled = {}
    for name, hypotheses in (("a", hypotheses_a), ("b", hypotheses_b)):
        summed = draws @ statistics(hypotheses)  # [samples, 10]
        resampled[name] = np.array([corpus_bleu(row) for row in summed])
    differences = resampled["b"] - resampled["a"]
    low, high = (float(x) for x in np.percentile(differences, [2.5, 97.5]))
    return {"bleu_a": round(baseline.score, 2), "bleu_b": round(system.score, 2),
            "difference": round(system.score - baseline.score, 2),
            "interval": [round(low, 2), round(high, 2)],
            "mean_difference": round(float(differences.mean()), 2),
            "significant": not low <= 0.0 <= high,
            "p_value": float(system.p_value),
            "mean_a": round(float(baseline.mean), 2), "ci_a": round(float(baseline.ci), 2),
            "mean_b": round(float(system.mean), 2), "ci_b": round(float(system.ci), 2),
            "sentences": count, "samples": samples, "seed": seed,
            "signature": str(signatures["BLEU"])}


def evaluate(translation, sources, references, beam_widths=(1, 4), alpha=0.6, beta=0.0,
             batch_size=64, verbose=True, workers=1):
    """Translate `sources` with each beam width (1 is greedy) and score them, `batch_size`
    sentences a call to the model and `workers` calls at once (`Translation.translate_iter`).

    Returns a dict: `sentences`, `references` (total), and per decoder (`greedy`, `beam4`,
    ...) `bleu`, `chrf`, `seconds`, `sentences_per_s`, and a few `examples`.
    """
    import keras

    report = {"sentences": len(sources), "references": sum(len(r) for r in references)}
    for beam in beam_widths:
        name = "greedy" if beam == 1 else f"beam{beam}"
        progress = keras.utils.Progbar(len(sources), verbose=1 if verbose else 0,
                                       unit_name="sentence")
        started = time.perf_counter()
        results = translation.translate_iter(
            sources, beam_width=beam, alpha=alpha, beta=beta, batch_size=batch_size,
            progress=lambda done, _, bar=progress: bar.update(done), workers=workers)
        hypotheses = [r["translation"] for r in results]
        seconds = time.perf_counter() - started
        scores = corpus_scores(hypotheses, references)
        report[name] = {**scores, "beam_width": beam, "alpha": alpha if beam > 1 else None,
                        "seconds": round(seconds, 2),
                        "sentences_per_s": round(len(sources) / max(seconds, 1e-9), 1),
                        "examples": [{"source": s, "translation": h, "references": r}
                                     for s, h, r in list(zip(sources, hypotheses,
                                                             references))[:5]]}
    return report


def test_split(corpus_path, train_config, split="test"):
    """The sources and grouped references of a split of a corpus, exactly as `train` split it."""
    corpus = data_lib.read_corpus(corpus_path, train_config.source_column,
                                  train_config.target_column, skip_bad_lines=True)
    splits = data_lib.split_pairs(corpus.pairs, train_config.dev_fraction,
                                  train_config.test_fraction)
    return data_lib.group_references(splits[split])


test_split.__test__ = False  # a library function, not a pytest test
