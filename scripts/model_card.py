"""Write the model card of an exported model from its measured files (nothing typed by hand).

    python scripts/model_card.py saved_models/en-fr report.json "COMMAND" WALL_MINUTES \
        > saved_models/en-fr/README.md

Reads `assets/config.json` and `assets/history.json` of the SavedModel and the JSON report of
`bahdanau-keras evaluate --output`.
"""

import json
import os
import sys


def main(model_path, report_path, command, wall_minutes,
         hardware="2 CPU cores (x86_64, AVX-512), no GPU"):
    with open(os.path.join(model_path, "assets", "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    with open(os.path.join(model_path, "assets", "history.json"), encoding="utf-8") as f:
        history = json.load(f)
    with open(report_path, encoding="utf-8") as f:
        report = json.load(f)
    model, train, data = config["model"], config["train"], config["data"]
    size = sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(model_path) for name in names)
    beams = [k for k in report if k.startswith("beam")]
    rows = "\n".join(
        f"| {name} | {report[name]['bleu']:.1f} | {report[name]['chrf']:.1f} | "
        f"{report[name]['sentences_per_s']:.0f} |" for name in ["greedy", *beams])
    epochs = "\n".join(
        f"| {r['epoch']} | {r['step']} | {r['train_loss']:.3f} | {r['dev_loss']:.3f} | "
        f"{r['tokens_per_s']:.0f} | {r.get('learning_rate') or train['learning_rate']:g} |"
        for r in history)
    print(f"""# English→French Bahdanau-attention translator

A `bahdanau_keras` model: bidirectional GRU encoder ({model['encoder_units']} units per
direction), GRU decoder ({model['decoder_units']} units) with Bahdanau attention
({model['attention_units']} alignment units), deep output with maxout, embeddings of
{model['embedding_dim']}, SentencePiece vocabularies of {model['source_vocab_size']:,} (English)
and {model['target_vocab_size']:,} (French) subwords with byte fallback; dropout
{model['dropout']}. It is a TensorFlow SavedModel that takes raw strings; load it with only
`tensorflow` and `tensorflow_text`:

```python
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the SentencePiece ops)

model = tf.saved_model.load("saved_models/en-fr")
model.translate(tf.constant(["John loves Mary."]))["translation"]
model.translate_beam(tf.constant(["John loves Mary."]), 4, 0.6, 0.0)["translation"]
```

Size on disk: {size / 2**20:.1f} MiB.

## Data

The manythings.org English–French Tatoeba pairs (`fra-eng.zip`, {data.get('pairs', 0):,} distinct
pairs), split by a hash of the English sentence so that no source sentence is in two splits:
{data.get('train_pairs', 0):,} training, {data.get('dev_pairs', 0):,} dev and
{data.get('test_pairs', 0):,} test pairs. The test split was never used for training or model
selection.

Licence of the data: Creative Commons Attribution 2.0 France (CC-BY 2.0 FR). Attribution:
www.manythings.org/anki and tatoeba.org.

## Training

{len(history)} epochs ({history[-1]['step']:,} steps of {train['batch_size']} sentences batched by
length), Adam (learning rate per epoch below) with gradient-norm clipping {train['clipnorm']},
label smoothing {train['label_smoothing']}, in {float(wall_minutes):.0f} minutes of wall-clock
time on {hardware}, TensorFlow 2.21, with other work sharing the machine. The weights are those
of the lowest dev loss. Losses are label-smoothed cross-entropy per target subword; tokens/s
is the process's own rate over the epoch (lower while other jobs shared the two cores).

| epoch | step | train loss | dev loss | target tokens/s | learning rate |
| --- | --- | --- | --- | --- | --- |
{epochs}

## Evaluation

sacreBLEU (true case, default 13a tokenisation) and chrF on the test split:
{report['sentences']:,} English sentences with {report['references']:,} French references in all
(Tatoeba often has several translations of a sentence; all count as references).
Beam search uses the GNMT length penalty with α = {report[beams[0]]['alpha'] if beams else 'n/a'}.

| decoding | BLEU | chrF | sentences/s |
| --- | --- | --- | --- |
{rows}

Signature: `{report['greedy']['bleu_signature']}`.

## Reproduce

```bash
{command}
```
""")


if __name__ == "__main__":
    main(*sys.argv[1:5])
