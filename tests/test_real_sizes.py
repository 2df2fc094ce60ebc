"""Real-size instances on the meta device: parameter count vs the published size, stable names
resolving to real modules, and the memory figures of docs/real-models.md (no memory allocated)."""

from __future__ import annotations

import pytest

from probes.models.configs import BUILDABLE, memory_table, meta_instance, n_params


@pytest.fixture(scope="module", params=sorted(BUILDABLE))
def meta(request):
    return (request.param, *meta_instance(request.param))


def test_parameter_count_matches_the_published_size(meta):
    family, model, cfg, rec = meta
    p = n_params(model)
    print(f"\n{family}: {p:,} parameters on the meta device")
    if "published_params" not in rec:
        pytest.skip(f"{family}: no published parameter count was read ({rec.get('not_found', '')}); measured {p:,}")
    assert abs(p - rec["published_params"]) / rec["published_params"] < 0.01


def test_real_shapes_come_from_the_record(meta):
    family, model, cfg, rec = meta
    t = rec["config"]["text_config"]
    assert model.get_input_embeddings().weight.shape[0] == t["vocab_size"]
    for k in ("num_hidden_layers", "hidden_size", "intermediate_size", "num_key_value_heads"):
        if k in t:
            assert getattr(cfg.text_config, k) == t[k], k


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
    assert len(model.get_submodule(paths["decoder.blocks"])) == cfg.text_config.num_hidden_layers


def test_memory_table_figures(meta):
    family, model, cfg, rec = meta
    m = memory_table(family, model)
    print(f"\n{m}")
    assert m["weights_gb"] == pytest.approx(m["params"] * 2 / 1e9)
    assert m["kv_per_audio_second_mb"] > 0 and m["attn_answer_row_kb_per_layer"] > 0


def test_families_without_a_complete_config_say_why():
    from probes.models.configs import meta_config

    for fam in ("qwen2.5-omni", "qwen3-omni"):
        with pytest.raises(NotImplementedError, match="not"):
            meta_config(fam)
