"""Gemma 4 (``gemma-4``): the eighth ALM family (issue 12).

The registry loops of tests/test_alm_adapters.py, tests/test_inside_models.py and
tests/test_alm_probes.py already cover the tiny instance (native-forward equivalence, shared-prefix
scoring, capture, ablation, patching, every inside probe). What is here:

- prompt equality against the published chat template (probes/models/configs/gemma-4.json) at
  TEMPLATE level: Gemma's 262k SentencePiece vocabulary is not available offline, so the reference
  is tokenized with an offline tokenizer that carries the real special tokens at their real ids;
- the per-layer inputs: token ids recovered from the rows, audio rows read as pad, residual-0 edits
  reaching both routes into the decoder;
- shared-prefix scoring with padding inside the sliding window (a bug found here: fails without
  the position-based masks of ``Gemma4._masks``);
- the real-size instances on the meta device against the published sizes (E2B 5.1 B, E4B 8 B);
- batch invariance: a batch of 8 with audio of 0.4-1.9 s vs one at a time (tolerance 1e-4 on
  label log-probabilities, float32).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.fixtures.alm import PROMPT_CASES as CASES, alm_examples, tone
from tests.fixtures.alm import mixed_examples as _mixed_examples, prompt_example as _example

TOL = 1e-4
N_AUDIO = 7




@pytest.fixture(scope="module")
def gemma_real_ids():
    """Gemma 4's tiny model around the offline tokenizer with the real special ids (0-4, 100, 101, 105, 106, 256000, ...)."""
    from probes.models.gemma4 import Gemma4
    from probes.models.tokenizers import offline_tokenizer

    tok = offline_tokenizer("gemma-4")
    model, tok, fe = Gemma4.build_tiny(tokenizer=tok)
    assert model.get_input_embeddings().weight.shape[0] == 258885
    return Gemma4(model, tok, fe, weights="random", source="tiny+real-special-ids")


def test_gemma_offline_tokenizer_has_the_published_special_ids():
    from probes.models.tokenizers import GEMMA4_SPECIALS, offline_tokenizer, real_config

    tok = offline_tokenizer("gemma-4")
    rec = real_config("gemma-4")
    for s, i in rec["special_ids"].items():
        assert tok.convert_tokens_to_ids(s) == i == {v: k for k, v in GEMMA4_SPECIALS.items()}[s]
    cfg = rec["config"]
    assert (cfg["audio_token_id"], cfg["boa_token_id"], cfg["eoa_token_index"]) == (258881, 256000, 258883)
    assert [tok.convert_tokens_to_ids(s) for s in rec["audio_wrap"]] == [256000, 258883]
    # a special written in text is one token, never split into characters
    assert tok("<|turn>user\n<|audio><|audio|><audio|>", add_special_tokens=False)["input_ids"][-3:] == [256000, 258881, 258883]


@pytest.mark.parametrize("system", [None, "You are a careful listener."], ids=["no-system", "system"])
@pytest.mark.parametrize("case", CASES, ids=[c["template"] for c in CASES])
def test_gemma_prompt_equals_the_published_template(gemma_real_ids, case, system):
    from probes.models.tokenizers import render_template

    a = gemma_real_ids
    a.system = system or ""
    try:
        ex = _example(case)
        p = a.prompt(ex, N_AUDIO)
        built = p.head + [a.audio_token_id] * N_AUDIO + p.tail
        text, want = render_template("gemma-4", a.user_text(ex), N_AUDIO, a.tokenizer, system=system)
    finally:
        a.system = ""
    assert built == want, f"adapter:  {a.tokenizer.decode(built)!r}\nreference: {text!r}"
    assert a.tokenizer.decode(built) == text
    assert text.startswith("<bos>") and text.endswith("<|turn>model\n<|channel>thought\n<channel|>")
    # the answer row is <channel|>; the audio span is exactly the placeholders, wrapped by <|audio> ... <audio|>
    sp = a._row_spans(p)
    row = np.array(built)
    assert row[sp["answer"]].tolist() == [101]
    assert (row[sp["audio"]] == 258881).all() and len(sp["audio"]) == N_AUDIO == int((row == 258881).sum())
    assert row[sp["audio"][0] - 1] == 256000 and row[sp["audio"][-1] + 1] == 258883
    for name in ("transcript", "cues"):
        if case.get(name):
            assert case[name] in a.tokenizer.decode(row[sp[name]].tolist())


def test_gemma_audio_token_count_is_the_processors():
    """The adapter's count (two stride-2 convolutions over the frame mask) equals the audio tower's own
    valid outputs, and is 25 per second (configs: audio_tokens_per_second)."""
    from probes.models.gemma4 import Gemma4, n_audio_tokens

    a = Gemma4.tiny()
    for sec in (0.4, 1.0, 1.9):
        w = tone(200.0, sec)
        f = a.audio_features([w])
        m = f["input_features_mask"][0]
        n = n_audio_tokens(int(m.shape[0]), int(m.sum()))
        assert a.encode_audio([w])[0].shape[0] == n
        assert abs(n - 25 * sec) <= 2
    assert n_audio_tokens(3000, 3000) == 750  # 30 s of 10 ms frames: the processor's cap (audio_seq_length)


def test_gemma_token_ids_behind_the_rows(gemma_real_ids):
    a = gemma_real_ids
    ex = _example(dict(template="plain"))
    b = a.encode([ex])
    ids = a.token_ids_of(b.embeds)[0]
    audio = b.spans[0]["audio"]
    text = np.setdiff1d(np.arange(b.lengths[0]), audio)
    assert (ids[text] == b.ids[0, text]).all(), "text rows are recovered exactly"
    assert (ids[audio] == 0).all(), "audio rows read the pad id, as the model's own forward gives them"
    moved = b.embeds.clone()
    moved[0, text[3]] *= 1.0001                         # an edited row is no token any more
    assert a.token_ids_of(moved)[0, text[3]] == 0


def test_gemma_residual0_ablation_reaches_the_per_layer_inputs():
    """Zeroing the audio span at residual 0 equals feeding zero audio rows: the context half of the
    per-layer inputs is projected from what block 0 receives, after the edit."""
    from probes.models.gemma4 import Gemma4

    a = Gemma4.tiny()
    A = alm_examples(1)[0]
    b = a.encode([A])
    zeroed = b.embeds.clone()
    zeroed[0, b.spans[0]["audio"]] = 0
    with torch.no_grad():
        ref = a.forward_embeds(zeroed, b)[0]
    got = a.ablate([A], 0, mode="zero")[0]
    assert torch.allclose(got, ref, atol=1e-5), (got - ref).abs().max()
    assert not torch.allclose(got, a.answer_logits([A])[0], atol=1e-5)


def test_gemma_shared_prefix_scoring_with_padding_inside_the_sliding_window():
    """Bug found here: the shared-prefix scorer leaves padding between real tokens (right-padded
    suffixes of different lengths, then the label tokens); transformers' sliding cache and masks count
    the 24-token window in cache slots, so a padded row lost real keys (0.11 off in log-probability).
    Masks by position (``Gemma4._masks``) and an uncropped cache give one plain forward per label."""
    from probes.models.gemma4 import Gemma4

    a = Gemma4.tiny()
    ex = alm_examples(1, seconds=(1.0,))[0]
    pair = [ex, ex.with_(cues="[energy: high] [pitch: low] [rate: fast]")]
    b = a.encode(pair)
    assert min(b.lengths) > a.module("decoder").config.sliding_window
    assert b.lengths[0] != b.lengths[1]
    lp, ref = a.label_logprobs(pair), a.label_logprobs_full(pair)
    assert torch.allclose(lp, ref, atol=1e-4), (lp - ref).abs().max()


def test_gemma_meta_size_matches_the_published_sizes():
    from transformers import Gemma4Config, Gemma4ForConditionalGeneration

    from probes.models.configs import meta_instance, n_params
    from probes.models.gemma4 import Gemma4

    model, cfg, rec = meta_instance("gemma-4")
    p = n_params(model)
    lm = model.model.language_model
    emb = lm.embed_tokens.weight.numel() + lm.embed_tokens_per_layer.weight.numel()
    print(f"\ngemma-4 E2B: {p:,} parameters, {p - emb:,} without the two embedding tables "
          f"(published 5.1 B with embeddings, 2.3 B effective)")
    assert abs(p - rec["published_params"]) / rec["published_params"] < 0.01
    assert abs((p - emb) - 2.3e9) / 2.3e9 < 0.03        # '2.3B effective' has two significant digits
    assert cfg.text_config.num_hidden_layers == 35 and len(lm.layers) == 35
    # every stable name resolves to a real module of the real-size class
    paths = {**Gemma4.default_paths, **Gemma4.paths_override}
    for stable, path in paths.items():
        if stable != "decoder.attn":
            assert isinstance(model.get_submodule(path), torch.nn.Module), stable
    assert isinstance(model.get_submodule(paths["decoder.blocks"])[34].get_submodule(paths["decoder.attn"]), torch.nn.Module)
    # E4B: the same record with the published text differences (42 layers, width 2560): published 8 B
    t = dict(rec["config"]["text_config"], **{k: v for k, v in rec["e4b_text_config_differs"].items() if k != "layer_types"})
    t["layer_types"] = (["sliding_attention"] * 5 + ["full_attention"]) * 7
    with torch.device("meta"):
        e4b = Gemma4ForConditionalGeneration(Gemma4Config(**dict(rec["config"], text_config=t)))
    p4 = n_params(e4b)
    print(f"gemma-4 E4B: {p4:,} parameters (published 8 B with embeddings)")
    assert abs(p4 - 8e9) / 8e9 < 0.01


def test_gemma_batch_invariance_mixed_lengths(gemma_real_ids):
    a = gemma_real_ids
    ex = _mixed_examples()
    batched = a.label_logprobs(ex)
    single = torch.cat([a.label_logprobs([e]) for e in ex])
    diff = float((batched - single).abs().max())
    print(f"\ngemma-4: max |batch 8 - batch 1| = {diff:.2e}")
    assert diff < TOL
    perm = [3, 0, 7, 1, 6, 2, 5, 4]
    assert float((a.label_logprobs([ex[i] for i in perm]) - batched[perm]).abs().max()) < TOL
    assert float((batched[0] - batched[1]).abs().max()) > 1e-6


def test_gemma_memory_figures_count_only_the_layers_that_store_keys_and_values():
    """Hand arithmetic from the published E2B shapes: 15 of 35 layers store K / V (layers 0-14: 12 sliding
    with 1 KV head x 256, 3 full with 1 x 512); 25 audio tokens per second, bf16."""
    from probes.models.configs import memory_table, meta_instance

    model = meta_instance("gemma-4")[0]
    m = memory_table("gemma-4", model)
    assert m["kv_per_audio_second_mb"] == pytest.approx(25 * 2 * (12 * 256 + 3 * 512) * 2 / 1e6)
    assert m["audio_tokens_per_second"] == 25 and m["seq_for_row"] == 750 + 60


def test_real_model_check_wraps_the_audio_run(tmp_path, capsys, monkeypatch):
    """The GPU-day script compares the adapter's prompt with the template: for Gemma 4 the processor writes
    <|audio> ... <audio|> around the placeholders (configs: audio_wrap), which the check did not add, so it
    reported a difference although the adapter's prompt is right."""
    import importlib.util
    from pathlib import Path

    from tests.fixtures.interventions import make_cue_manifest

    monkeypatch.setenv("DISSONANCE_CACHE", str(tmp_path / "cache"))
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "real_model_check.py"
    spec = importlib.util.spec_from_file_location("real_model_check_gemma", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    manifest = make_cue_manifest(tmp_path / "data")
    rc = mod.main(["--model", "gemma-4", "--tiny", "--manifest", str(manifest), "--n", "3", "--min-agreement", "0",
                   "--skip", "token-shuffle,batch-invariance,closed-vs-generated"])
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.strip().startswith("prompt-equality"))
    assert " PASS " in line, line
    assert rc == 0


def test_gemma_forward_kwargs_run_the_models_own_forward():
    """``forward_kwargs`` (plain calls, benchmarks/alm_conditions.py) carry the per-layer inputs: without
    them the model tries to invert the embeddings and fails on the audio rows."""
    from probes.models.gemma4 import Gemma4

    a = Gemma4.tiny()
    ex = alm_examples(2, seconds=(1.0, 0.75))
    b = a.encode(ex)
    with torch.no_grad():
        logits = a.model(**a.forward_kwargs(b)).logits
    got = logits[torch.arange(2), b.answer]
    assert torch.allclose(got, a.answer_logits(ex), atol=1e-4), (got - a.answer_logits(ex)).abs().max()
    with pytest.raises(RuntimeError, match="inputs_embeds"):
        with torch.no_grad():
            a.model(inputs_embeds=b.embeds, attention_mask=b.mask)
