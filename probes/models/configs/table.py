"""The size and memory table of docs/models.md, computed from the meta-device instances.

``python -m probes.models.configs --table`` prints it (markdown) for every record in this folder;
``--write docs/models.md`` replaces the block between the ``size-table`` markers there. Nothing
is typed by hand: parameter counts come from the real-size instances on the meta device, the
memory figures from ``memory_table``, the published sizes and their sources from the records
(``published_params``, ``published_components``), each compared at 1 %.
"""

from __future__ import annotations

import os
from typing import Iterable

BEGIN = "<!-- size-table:begin (generated: python -m probes.models.configs --table --write docs/models.md) -->"
END = "<!-- size-table:end -->"
TOLERANCE = 0.01


def families() -> list[str]:
    """Every family with a configuration record in this folder (sorted)."""
    here = os.path.dirname(__file__)
    return sorted(f[:-5] for f in os.listdir(here) if f.endswith(".json"))


def component_params(model, modules: Iterable[str]) -> int:
    """Parameters under the given module paths (a path and everything below it)."""
    mods = tuple(modules)
    return sum(p.numel() for n, p in model.named_parameters()
               if any(n == m or n.startswith(m + ".") for m in mods))


def lora_params(model, lora: dict | None) -> int:
    """Parameters of LoRA adapters a published size counts but the checkpoint's base class does not build:
    rank x (in + out) per target linear layer, summed over the adapters of ``lora`` (``{"name": {"r": R},
    "target_modules": "a.N.b_(x|y), ..."}``, ``N`` = a block index)."""
    import re

    if not lora:
        return 0
    ranks = sum(int(v["r"]) for v in lora.values() if isinstance(v, dict) and "r" in v)
    pats = [re.compile(p.strip().replace(".", r"\.").replace("N", r"\d+") + "$")
            for p in str(lora.get("target_modules", "")).split(",") if p.strip()]
    per_rank = sum(m.in_features + m.out_features for n, m in model.named_modules()
                   if hasattr(m, "in_features") and any(p.match(n) for p in pats))
    if ranks and not per_rank:
        raise ValueError(f"lora target_modules {lora.get('target_modules')!r} match no linear layer")
    return ranks * per_rank


def size_checks(model, rec: dict) -> list[dict]:
    """Measured vs published, one entry per published number of the record (whole model, parts)."""
    from probes.models.configs import n_params

    out = []
    if rec.get("published_params"):
        lora = lora_params(model, rec.get("lora"))
        out.append({"part": "whole model" + (" + its LoRA adapters" if lora else ""), "measured": n_params(model) + lora,
                    "published": float(rec["published_params"]), "source": rec.get("published_params_source", "")})
    for part, c in (rec.get("published_components") or {}).items():
        got = component_params(model, c["modules"])
        if got == 0:
            raise ValueError(f"published component {part!r}: no parameters under {c['modules']} (wrong module path)")
        out.append({"part": part, "measured": got, "published": float(c["params"]), "source": c.get("source", "")})
    for e in out:
        e["rel"] = e["measured"] / e["published"] - 1
        e["ok"] = abs(e["rel"]) < TOLERANCE
    return out


def row(family: str, built: tuple | None = None) -> dict:
    """One family: its meta instance's size, the published comparison and the memory figures, or why not.
    ``built``: an already built ``meta_instance(family)`` result (tests reuse theirs)."""
    from probes.models.configs import memory_table, meta_instance, n_params

    try:
        model, cfg, rec = built if built is not None else meta_instance(family)
    except Exception as e:  # an incomplete record says why (NotImplementedError), a broken one shows its error
        return {"family": family, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"}
    r = {"family": family, "params": n_params(model), "checks": size_checks(model, rec),
         "published_note": rec.get("published_params_note", "")}
    try:
        r["memory"] = memory_table(family, model)
    except Exception as e:
        r["memory_error"] = f"{type(e).__name__}: {e}"
    return r


def _b(x: float) -> str:
    return f"{x / 1e9:.2f} B" if x >= 1e9 else f"{x / 1e6:.0f} M"


def markdown(rows: list[dict]) -> str:
    """The table (and its footnotes) as markdown."""
    head = ("| family | parameters (meta) | published, compared at 1 % | weights bf16 | audio tokens / s "
            "| KV cache per s of audio | eager attention, answer row, 30 s clip |\n|---|---|---|---|---|---|---|")
    lines = [head]
    notes = []
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['family']} | not built: {r['error']} | | | | | |")
            continue
        checks = "; ".join(f"{c['part']} {_b(c['published'])}: {c['rel'] * 100:+.2f} % {'ok' if c['ok'] else 'OFF'}"
                           for c in r["checks"]) or "none published"
        m = r.get("memory")
        if m:
            mem = (f"{m['weights_gb']:.1f} GB | {m['audio_tokens_per_second']:g} | "
                   f"{m['kv_per_audio_second_mb']:.2f} MB | {m['attn_answer_row_kb_per_layer']:.1f} kB per layer "
                   f"({m['seq_for_row']} positions)")
        else:
            mem = f"{r['params'] * 2 / 1e9:.1f} GB | n/a | n/a | n/a ({r.get('memory_error', '')})"
        lines.append(f"| {r['family']} | {r['params']:,} | {checks} | {mem} |")
        if r.get("published_note"):
            notes.append(f"- {r['family']}: {r['published_note']}")
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def table(fams: Iterable[str] | None = None, built: dict | None = None) -> str:
    return markdown([row(f, (built or {}).get(f)) for f in (fams or families())])


def write(path: str, text: str) -> bool:
    """Replace the generated block in ``path``; True when the file changed."""
    with open(path, encoding="utf-8") as fh:
        doc = fh.read()
    if BEGIN not in doc or END not in doc:
        raise ValueError(f"{path}: no generated size-table block ({BEGIN!r} ... {END!r}); add the two markers where "
                         "the table belongs")
    a, rest = doc.split(BEGIN, 1)
    _, b = rest.split(END, 1)
    new = a + BEGIN + "\n" + text + END + b
    if new != doc:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(new)
    return new != doc


def generated_block(path: str) -> str:
    """The table text currently between the markers of ``path``."""
    with open(path, encoding="utf-8") as fh:
        doc = fh.read()
    return doc.split(BEGIN, 1)[1].split(END, 1)[0].lstrip("\n")
