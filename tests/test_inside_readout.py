"""The label readout rule of the inside probes is recorded in the run and shown next to the lens figure."""

from __future__ import annotations


def test_lens_run_records_the_label_readout_and_the_figure_says_it(tiny_manifest, tmp_path):
    from probes.cli import main
    from probes.plots.runs import FIGURE_SETS, RunTables
    from probes.store import read_manifest

    out = tmp_path / "lens"
    assert main(["run", "logit-lens", "--model", "qwen2-audio", "--tiny", "--data", str(tiny_manifest),
                 "--out", str(out), "--quiet", "--strict", "--limit", "2", "--length-norm", "mean"]) == 0
    model = read_manifest(out)["model"]
    assert model["length_norm"] == "mean" and "whole label string" in model["label_readout"]
    caps = [f.caption for f in FIGURE_SETS["depth"](RunTables(out))]
    assert caps and "Labels read as: whole label string" in caps[0]
