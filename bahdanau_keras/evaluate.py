"""BLEU and chrF (sacreBLEU) of a translator, greedy and beam search side by side.

Tatoeba often has several translations of one source sentence; they are grouped so that each
source is translated once and scored against all its references.
"""

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


def evaluate(translation, sources, references, beam_widths=(1, 4), alpha=0.6, beta=0.0,
             batch_size=64, verbose=True):
    """Translate `sources` with each beam width (1 is greedy) and score them.

    Returns a dict: `sentences`, `references` (total), and per decoder (`greedy`, `beam4`,
    ...) `bleu`, `chrf`, `seconds`, `sentences_per_s`, and a few `examples`.
    """
    import keras

    report = {"sentences": len(sources), "references": sum(len(r) for r in references)}
    for beam in beam_widths:
        name = "greedy" if beam == 1 else f"beam{beam}"
        hypotheses = []
        progress = keras.utils.Progbar(len(sources), verbose=1 if verbose else 0,
                                       unit_name="sentence")
        started = time.perf_counter()
        for begin in range(0, len(sources), batch_size):
            chunk = sources[begin:begin + batch_size]
            results = translation.translate(chunk, beam_width=beam, alpha=alpha, beta=beta,
                                            batch_size=batch_size)
            hypotheses.extend(r["translation"] for r in results)
            progress.add(len(chunk))
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
