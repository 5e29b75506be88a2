"""`TrainConfig`: each field's check, help and rule on resume, and `resumed`."""

import dataclasses
import json
import re
import subprocess
import sys

import pytest

from bahdanau_keras import config
from bahdanau_keras.config import FIXED, KEPT, PER_RUN, ResumeConflict, TrainConfig

FIELDS = {field.name: field for field in dataclasses.fields(TrainConfig)}


def test_every_field_has_a_check_a_rule_and_a_help_text():
    for name, field in FIELDS.items():
        assert field.metadata["check"].accepts(field.default), name
        assert field.metadata["rule"] in (FIXED, KEPT, PER_RUN), name
        assert field.metadata["help"] and "%" not in field.metadata["help"], name  # argparse


def test_what_may_change_on_resume():
    rules = {name: field.metadata["rule"] for name, field in FIELDS.items()}
    assert {name for name, rule in rules.items() if rule == FIXED} == {
        "source_column", "target_column", "dev_fraction", "test_fraction", "vocab_size",
        "max_length", "seed", "batch_size", "label_smoothing", "clipnorm"}
    assert {name for name, rule in rules.items() if rule == PER_RUN} == {
        "max_steps", "time_limit"}


def test_implementations_are_the_kernels():
    from bahdanau_keras import kernels

    assert config.IMPLEMENTATIONS == kernels.IMPLEMENTATIONS


@pytest.mark.parametrize("name, bad", [
    ("epochs", 0), ("epochs", 2.0), ("epochs", True), ("batch_size", -1), ("seed", "0"),
    ("patience", -1), ("learning_rate", 0.0), ("learning_rate", "1e-3"), ("clipnorm", 0),
    ("label_smoothing", 1.0), ("dev_fraction", -0.1), ("source_column", 3),
    ("implementation", "fast"), ("mixed_precision", 1), ("time_limit", -1.0),
    ("loss_chunks", 0), ("intra_op_threads", -1),
])
def test_bad_values_name_the_field_and_the_value(name, bad):
    expected = FIELDS[name].metadata["check"].expected
    with pytest.raises(ValueError, match=re.escape(f"`{name}` must be {expected}. Received: ")):
        TrainConfig(**{name: bad})


def test_cross_field_checks():
    with pytest.raises(ValueError, match="same column"):
        TrainConfig(source_column=2, target_column=2)
    with pytest.raises(ValueError, match="sum to less than 1"):
        TrainConfig(dev_fraction=0.6, test_fraction=0.5)


def test_resumed_keeps_takes_and_resets():
    saved = TrainConfig(vocab_size=400, epochs=5, learning_rate=0.01, max_steps=7,
                        time_limit=2.0, loop_shards=1)
    resumed = config.resumed(saved, {})
    # Kept: the model's; a limit of one run: gone.
    assert resumed == dataclasses.replace(saved, max_steps=0, time_limit=0.0)
    resumed = config.resumed(saved, {"epochs": 8, "learning_rate": 1e-4, "time_limit": 1.0,
                                     "implementation": "reference", "vocab_size": 400})
    assert (resumed.epochs, resumed.learning_rate, resumed.time_limit, resumed.max_steps) == (
        8, 1e-4, 1.0, 0)
    assert (resumed.implementation, resumed.loop_shards, resumed.vocab_size) == (
        "reference", 1, 400)
    # A whole configuration (the library's `train(..., resume=True, train_config=...)`).
    assert config.resumed(saved, dataclasses.asdict(saved)) == saved


@pytest.mark.parametrize("name", [name for name, field in FIELDS.items()
                                  if field.metadata["rule"] == FIXED])
def test_resumed_refuses_another_value_of_a_fixed_field(name):
    saved = TrainConfig()
    other = {"source_column": 2, "target_column": 1}.get(name)
    if other is None:
        other = saved.__dict__[name] + (1 if isinstance(saved.__dict__[name], int) else 0.125)
    with pytest.raises(ResumeConflict) as error:
        config.resumed(saved, {name: other})
    assert (error.value.name, error.value.saved, error.value.given) == (
        name, getattr(saved, name), other)
    assert str(error.value) == (f"`{name}` cannot change on resume: the model has "
                                f"{getattr(saved, name)!r}, received {other!r}")


def test_require_unchanged_on_a_model_config():
    from bahdanau_keras.model import ModelConfig

    saved = ModelConfig(40, 50, decoder_units=32)
    config.require_unchanged(saved, {"decoder_units": 32, "dropout": 0.0})
    with pytest.raises(ResumeConflict, match="`decoder_units` cannot change"):
        config.require_unchanged(saved, {"dropout": 0.0, "decoder_units": 64})


def test_the_command_line_parses_train_options_without_tensorflow():
    code = ("import json, sys\n"
            "from bahdanau_keras import cli\n"
            "args = cli.build_parser().parse_args(['train', '--model-dir', 'm', '--epochs', '3',"
            " '--units', '64'])\n"
            "print(json.dumps([args.epochs, args.units, args.vocab_size,"
            " sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))]))")
    process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=120)
    assert process.returncode == 0, process.stderr
    assert json.loads(process.stdout.splitlines()[-1]) == [3, 64, None, []]
