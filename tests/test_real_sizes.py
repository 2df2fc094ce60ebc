"""Real-size instances on the meta device: parameter counts vs the published sizes (whole model and
published parts, 1 %), stable names resolving to real modules, the memory figures, and the table of
docs/models.md being the generator's output (no memory allocated)."""

from __future__ import annotations

import pytest

from probes.models.configs import BUILDABLE, memory_table, meta_instance, n_params
from probes.models.configs import table as size_table

BUILT: dict = {}   # family -> meta_instance(), shared with the docs-table test below


@pytest.fixture(scope="module", params=sorted(BUILDABLE))
def meta(request):
    if request.param not in BUILT:
        BUILT[request.param] = meta_instance(request.param)
    return (request.param, *BUILT[request.param])


def test_parameter_count_matches_the_published_size(meta):
    family, model, cfg, rec = meta
    checks = size_table.size_checks(model, rec)
    p = n_params(model)
    print(f"\n{family}: {p:,} parameters on the meta device; "
          + "; ".join(f"{c['part']}: {c['measured']:,} vs {c['published']:,.0f} ({c['rel'] * 100:+.2f} %)" for c in checks))
    if not checks:
        pytest.skip(f"{family}: no published parameter count was found ({rec.get('published_params_note', '')}); "
                    f"measured {p:,}")
    for c in checks:
        assert c["ok"], (family, c["part"], c["measured"], c["published"], c["source"])


def test_real_shapes_come_from_the_record(meta):
    family, model, cfg, rec = meta
    t = rec["config"].get("text_config", rec["config"])
    tc = getattr(cfg, "text_config", None) or cfg
    assert model.get_input_embeddings().weight.shape[0] == t["vocab_size"]
    for k in ("num_hidden_layers", "hidden_size", "intermediate_size", "num_key_value_heads", "num_experts",
              "moe_intermediate_size"):
        if k in t:
            assert getattr(tc, k) == t[k], k


def test_every_stable_name_resolves_to_a_real_module(meta):
    import torch

    from probes.registry import MODELS

    family, model, cfg, rec = meta
    cls = MODELS[family]
    paths = {**cls.default_paths, **cls.paths_override}
    for stable, path in paths.items():
        if stable == "decoder.attn":
            block = model.get_submodule(paths["decoder.blocks"])[0]
            assert isinstance(block.get_submodule(path), torch.nn.Module)
            continue
        mod = model.get_submodule(path)
        assert isinstance(mod, torch.nn.Module), (family, stable, path)
    tc = getattr(cfg, "text_config", None) or cfg
    assert len(model.get_submodule(paths["decoder.blocks"])) == tc.num_hidden_layers


def test_memory_table_figures(meta):
    family, model, cfg, rec = meta
    m = memory_table(family, model)
    print(f"\n{m}")
    assert m["weights_gb"] == pytest.approx(m["params"] * 2 / 1e9)
    assert m["kv_per_audio_second_mb"] > 0 and m["attn_answer_row_kb_per_layer"] > 0


def test_memory_known_answers():
    """Hand arithmetic from the published shapes: Qwen2-Audio's decoder has 32 layers x 32 KV heads x 128
    dims (no grouping) at 25 audio tokens/s; Qwen3-Omni's 48 layers x 4 KV heads x 128 at 13 tokens/s."""
    if "qwen2-audio" not in BUILT:
        BUILT["qwen2-audio"] = meta_instance("qwen2-audio")
    m = memory_table("qwen2-audio", BUILT["qwen2-audio"][0])
    assert m["kv_per_audio_second_mb"] == pytest.approx(25 * 32 * 2 * 32 * 128 * 2 / 1e6)
    assert m["seq_for_row"] == 750 + 60 and m["attn_answer_row_kb_per_layer"] == pytest.approx(32 * 810 * 2 / 1e3)
    if "qwen3-omni" not in BUILT:
        BUILT["qwen3-omni"] = meta_instance("qwen3-omni")
    m = memory_table("qwen3-omni", BUILT["qwen3-omni"][0])
    assert m["kv_per_audio_second_mb"] == pytest.approx(13 * 48 * 2 * 4 * 128 * 2 / 1e6)


def test_published_components_name_real_modules():
    """A published part whose module path matches nothing is an error, not a silent 0."""
    if "voxtral" not in BUILT:
        BUILT["voxtral"] = meta_instance("voxtral")
    model, cfg, rec = BUILT["voxtral"]
    bad = {**rec, "published_components": {"x": {"modules": ["model.no_such_tower"], "params": 1e6}}}
    with pytest.raises(ValueError, match="no parameters under"):
        size_table.size_checks(model, bad)


def test_records_that_cannot_be_built_say_why():
    from probes.models.configs import meta_config

    for fam in size_table.families():
        if fam not in BUILDABLE:
            with pytest.raises(NotImplementedError, match=fam):
                meta_config(fam)


def test_docs_table_is_the_generated_one():
    """docs/models.md carries exactly what `python -m probes.models.configs --table` prints for every
    record (a record added or changed without regenerating fails here)."""
    from pathlib import Path

    doc = Path(__file__).resolve().parents[1] / "docs" / "models.md"
    got = size_table.generated_block(str(doc))
    want = size_table.table(built=BUILT)
    assert got == want, ("docs/models.md's size table is stale: run `python -m probes.models.configs --table "
                         "--write docs/models.md`")
