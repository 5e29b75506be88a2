"""BLEU and chrF with several references per sentence, and the evaluate report and command."""

import json

import pytest
import sacrebleu

from bahdanau_keras import cli, data
from bahdanau_keras import evaluate as evaluate_lib
from bahdanau_keras.evaluate import corpus_scores, evaluate
from bahdanau_keras.train import TrainConfig

HYPOTHESES = ["Jean aime Marie.", "Je vois la voiture rouge.", "As-tu un chat ?",
              "Il fait froid aujourd'hui.", "Où est la gare ?"]
REFERENCES = [
    ["Jean aime Marie."],
    ["Je vois la voiture rouge.", "Je vois l'auto rouge.", "Je vois une voiture rouge."],
    ["Avez-vous un chat ?", "As-tu un chat ?"],
    ["Il fait frais aujourd'hui.", "Aujourd'hui il fait froid.", "Il fait très froid.",
     "Il gèle aujourd'hui."],
    ["Où se trouve la gare ?"],
]


def direct(hypotheses, references):
    """sacreBLEU called directly, the missing references of a stream given as ''."""
    width = max(len(r) for r in references)
    streams = [[r[k] if k < len(r) else "" for r in references] for k in range(width)]
    return (sacrebleu.corpus_bleu(hypotheses, streams).score,
            sacrebleu.corpus_chrf(hypotheses, streams).score)


def test_several_references_match_sacrebleu():
    scores = corpus_scores(HYPOTHESES, REFERENCES)
    bleu, chrf = direct(HYPOTHESES, REFERENCES)
    assert scores["bleu"] == pytest.approx(bleu, abs=0.01)
    assert scores["chrf"] == pytest.approx(chrf, abs=0.01)
    assert 0 < scores["bleu"] < 100
    assert "nrefs:var" in scores["bleu_signature"] and "case:mixed" in scores["bleu_signature"]
    # More references can only find more matches here; a single reference finds fewer.
    only_first = corpus_scores(HYPOTHESES, [r[:1] for r in REFERENCES])
    assert only_first["bleu"] < scores["bleu"]
    assert only_first["bleu"] == pytest.approx(
        sacrebleu.corpus_bleu(HYPOTHESES, [[r[0] for r in REFERENCES]]).score, abs=0.01)


def test_order_of_references_does_not_matter():
    shuffled = [list(reversed(r)) for r in REFERENCES]
    assert corpus_scores(HYPOTHESES, shuffled)["bleu"] == corpus_scores(
        HYPOTHESES, REFERENCES)["bleu"]
    assert corpus_scores(HYPOTHESES, shuffled)["chrf"] == corpus_scores(
        HYPOTHESES, REFERENCES)["chrf"]


def test_perfect_hypotheses_score_100():
    # Each hypothesis equals one of its references (not always the first).
    perfect = [r[-1] for r in REFERENCES]
    scores = corpus_scores(perfect, REFERENCES)
    assert scores["bleu"] == 100.0 and scores["chrf"] == 100.0
    assert corpus_scores(["a b c d e"], [["x y z"]])["bleu"] == 0.0


def test_true_case():
    lower = [h.lower() for h in HYPOTHESES]
    assert corpus_scores(lower, REFERENCES)["bleu"] < corpus_scores(HYPOTHESES,
                                                                     REFERENCES)["bleu"]


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError, match="5 hypotheses but 4 reference lists"):
        corpus_scores(HYPOTHESES, REFERENCES[:4])


class FakeTranslation:
    """Greedy gives the first word only; beam search gives a hypothesis that is a reference."""

    def __init__(self, references):
        self.references = references
        self.calls = []

    def translate_iter(self, sentences, beam_width=1, alpha=0.6, beta=0.0, batch_size=64,
                       progress=None, workers=1):
        self.workers = workers
        for begin in range(0, len(sentences), batch_size):
            chunk = sentences[begin:begin + batch_size]
            self.calls.append((len(chunk), beam_width, alpha))
            for s in chunk:
                reference = self.references[int(s)][0]
                yield {"translation": reference if beam_width > 1 else reference.split()[0]}
            progress(begin + len(chunk), len(sentences))


def test_evaluate_reports_greedy_and_beam_side_by_side():
    sources = [str(i) for i in range(len(REFERENCES))]
    translation = FakeTranslation(REFERENCES)
    report = evaluate(translation, sources, REFERENCES, beam_widths=(1, 4), alpha=0.7,
                      batch_size=2, verbose=False, workers=3)
    assert translation.workers == 3
    assert report["sentences"] == 5 and report["references"] == sum(map(len, REFERENCES))
    assert report["beam4"]["bleu"] == 100.0
    assert report["greedy"]["bleu"] == corpus_scores(
        [r[0].split()[0] for r in REFERENCES], REFERENCES)["bleu"]
    assert report["greedy"]["beam_width"] == 1 and report["greedy"]["alpha"] is None
    assert report["beam4"]["alpha"] == 0.7
    for name in ("greedy", "beam4"):
        assert report[name]["sentences_per_s"] > 0
        assert len(report[name]["examples"]) == 5
    # Batches of 2: every sentence translated once per decoder.
    assert sum(n for n, b, _ in translation.calls if b == 1) == 5
    assert sum(n for n, b, _ in translation.calls if b == 4) == 5
    json.dumps(report)  # JSON-ready


def test_the_test_split_is_the_training_split(tmp_path):
    config = TrainConfig(dev_fraction=0.05, test_fraction=0.1)
    corpus = data.read_corpus(data.SAMPLE_CORPUS)
    splits = data.split_pairs(corpus.pairs, config.dev_fraction, config.test_fraction)
    sources, references = evaluate_lib.test_split(data.SAMPLE_CORPUS, config)
    assert sources and len(sources) == len(references)
    assert not set(sources) & {s for s, _ in splits["train"]}
    assert sum(map(len, references)) == len(splits["test"])


@pytest.mark.slow
def test_cli_evaluate_on_a_file(tiny_model_dir, tmp_path, capsys):
    lines = open(data.SAMPLE_CORPUS, encoding="utf-8").read().splitlines()[:12]
    source, target = lines[0].split("\t")[:2]
    lines.append(f"{source}\t{target} Oui.")  # a second reference for the first source
    tsv = tmp_path / "eval.tsv"
    tsv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    output = tmp_path / "report.json"
    assert cli.main(["evaluate", "--model-dir", str(tiny_model_dir), "--file", str(tsv),
                     "--beam", "3", "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "greedy: BLEU" in printed and "beam3: BLEU" in printed
    report = json.loads(output.read_text(encoding="utf-8"))
    assert report["sentences"] == 12 and report["references"] == 13
    for name in ("greedy", "beam3"):
        assert 0 <= report[name]["bleu"] <= 100 and 0 <= report[name]["chrf"] <= 100
        assert f"BLEU {report[name]['bleu']:.2f}" in printed
    assert report["greedy"]["examples"][0]["references"] == [target, f"{target} Oui."]
    assert report["greedy"]["examples"][0]["source"] == source


# -- paired bootstrap resampling -----------------------------------------------------------------


def sample_systems():
    """60 sentences of the sample corpus, their references, a perfect system and one that
    drops the last word of every third sentence."""
    sources, references = data.group_references(data.read_corpus(data.SAMPLE_CORPUS).pairs[:80])
    sources, references = sources[:60], references[:60]
    perfect = [r[0] for r in references]
    worse = [" ".join(r[0].split()[:-1]) if i % 3 == 0 else r[0]
             for i, r in enumerate(references)]
    return references, perfect, worse


def test_paired_bootstrap_finds_a_clear_difference():
    references, perfect, worse = sample_systems()
    result = evaluate_lib.paired_bootstrap(perfect, worse, references, samples=300)
    assert result["bleu_a"] == corpus_scores(perfect, references)["bleu"] == 100.0
    assert result["bleu_b"] == corpus_scores(worse, references)["bleu"] < 100.0
    assert result["difference"] == pytest.approx(result["bleu_b"] - result["bleu_a"], abs=0.01)
    low, high = result["interval"]
    assert low < result["difference"] < high < 0 and result["significant"]
    assert result["p_value"] < 0.05
    assert result["sentences"] == 60 and result["samples"] == 300
    assert "bs:300" in result["signature"] and "seed:12345" in result["signature"]
    # Swapping the systems mirrors the interval.
    swapped = evaluate_lib.paired_bootstrap(worse, perfect, references, samples=300)
    assert swapped["interval"] == [-high, -low] and swapped["significant"]


def test_paired_bootstrap_resamples_are_sacrebleus():
    # The differences are computed on sacreBLEU's resamples: their mean is the difference of
    # the bootstrap means that sacreBLEU's own test reports for each system.
    references, perfect, worse = sample_systems()
    result = evaluate_lib.paired_bootstrap(worse, perfect, references, samples=200)
    assert result["mean_difference"] == pytest.approx(
        result["mean_b"] - result["mean_a"], abs=0.02)
    assert result["mean_a"] < 100.0 and result["ci_a"] > 0
    assert result["mean_b"] == 100.0 and result["ci_b"] == 0.0


def test_paired_bootstrap_calls_a_small_difference_no_difference():
    references, perfect, _ = sample_systems()
    # One sentence in 60 differs: the interval holds 0.
    almost = list(perfect)
    almost[5] = " ".join(almost[5].split()[:-1])
    result = evaluate_lib.paired_bootstrap(perfect, almost, references, samples=300)
    low, high = result["interval"]
    assert result["difference"] < 0 and low < 0 <= high and not result["significant"]
    same = evaluate_lib.paired_bootstrap(perfect, perfect, references, samples=100)
    assert same["difference"] == 0.0 and same["interval"] == [0.0, 0.0]
    assert not same["significant"]


def test_paired_bootstrap_seed(monkeypatch):
    references, perfect, worse = sample_systems()
    first = evaluate_lib.paired_bootstrap(perfect, worse, references, samples=100)
    assert evaluate_lib.paired_bootstrap(perfect, worse, references, samples=100) == first
    monkeypatch.setenv("SACREBLEU_SEED", "7")
    other = evaluate_lib.paired_bootstrap(perfect, worse, references, samples=100)
    assert other["seed"] == 7 and "seed:7" in other["signature"]
    assert other["interval"] != first["interval"]
    assert other["mean_difference"] == pytest.approx(other["mean_b"] - other["mean_a"],
                                                     abs=0.02)


@pytest.mark.parametrize("arguments, message", [
    ((["a"], ["a", "b"], [["a"]]), "one entry per sentence. Received: 1, 2 and 1"),
    (([], [], []), "at least one sentence"),
    ((["a", "b"], ["a", "b"], [["a"], []]), "none for sentence 1"),
])
def test_paired_bootstrap_checks_its_input(arguments, message):
    with pytest.raises(ValueError, match=message):
        evaluate_lib.paired_bootstrap(*arguments)


@pytest.mark.parametrize("samples", [0, -3, 1.5, True])
def test_paired_bootstrap_checks_samples(samples):
    with pytest.raises(ValueError, match="`samples` must be a positive integer"):
        evaluate_lib.paired_bootstrap(["a"], ["a"], [["a"]], samples=samples)
