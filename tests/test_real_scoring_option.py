"""The closed-set scoring policy (length normalisation) is a run option recorded in the model settings."""

from __future__ import annotations

import pytest


def _args(*extra):
    from probes.cli import build_parser

    return build_parser().parse_args(["run", "predict", "--data", "m.csv", "--out", "o", *extra])


def test_length_norm_option_reaches_the_adapter_and_its_description():
    from probes.cli import _load_model
    from probes.registry import MODELS

    m = _load_model(MODELS["qwen2-audio"], _args("--model", "qwen2-audio", "--tiny", "--length-norm", "mean"))
    try:
        assert m.length_norm == "mean" and m.describe()["length_norm"] == "mean"
    finally:
        m.length_norm = "sum"  # the tiny instance is shared by the process
    assert _args("--model", "qwen2-audio", "--tiny").length_norm is None


def test_length_norm_refused_for_models_without_label_scoring():
    from probes.cli import CLIError, _load_model
    from probes.registry import MODELS

    with pytest.raises(CLIError, match="--length-norm applies"):
        _load_model(MODELS["fas"], _args("--model", "fas", "--tiny", "--length-norm", "mean"))


def test_length_norm_choices_are_checked():
    with pytest.raises(SystemExit):
        _args("--model", "qwen2-audio", "--tiny", "--length-norm", "max")
