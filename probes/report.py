"""``probe report RUN``: one self-contained HTML page per run folder.

The page reads only the run folder (and, for the text and audio of the conflict items, the
data manifest that ``manifest.json["data"]`` names); it never runs a model. Sections:

1. what was run: probe, model and its weights, data and its hash, seed, git SHA, config,
   versions; a banner when the weights are ``random`` (a tiny test instance) or ``oracle`` (a
   reference predictor) because then the numbers are checks, not results;
2. the headline table per condition, with bootstrap intervals;
3. every other entry of metrics.json, drawn generically as tables, so a new probe's
   numbers appear without a change here;
4. the error count and the error rows;
5. every figure the run supports (``probes.plots.figures_for_run``), embedded as PNG;
6. per-utterance browsing of the conflict items: text, the voice's label, the words' label, the
   prediction under each condition, an audio player.

Nothing is fetched from outside. Figures are embedded as PNG data URIs; audio is never embedded:
each conflict item has a play button that loads the recording on demand from its path relative to
the page (so the page of a 10k-item run stays small; keep the corpus beside the run folder, or
give ``--out`` inside the same tree). Wide tables scroll inside their own box. Every string that
comes from a file is escaped.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from pathlib import Path
from typing import Any

MAX_BROWSE = 2000   # conflict items listed in the browser
MAX_TABLE_ROWS = 200

WEIGHT_BANNERS = {
    "random": ("RANDOM WEIGHTS", "This run used a tiny random-weight instance of the model (a test fixture). "
                                 "Its numbers test the plumbing; they are not results."),
    "oracle": ("REFERENCE PREDICTOR", "This run used a reference predictor that reads the labels (or guesses by "
                                      "hash), not a model. Its numbers are a check of the metrics, not a result."),
    "organism (trained here)": ("MODEL ORGANISM", "This run used a small model of the real class trained here on the "
                                "synthetic corpus, with a known reliance on the words or the voice (docs/organisms.md). "
                                "It is a test bed for the instruments: its answers are not the real model's."),
}

HEADLINE = (  # (key, column title, has interval)
    ("n", "n", False), ("invalid", "invalid", False), ("accuracy", "accuracy", True), ("uar", "UAR", True),
    ("macro_f1", "macro-F1", True), ("n_conflict", "conflict items", False),
    ("follows_voice", "follows voice", True), ("follows_text", "follows text", True),
    ("other_rate", "neither", False), ("text_dominance", "text dominance", True),
    ("cramers_v_acoustic", "V (pred, voice)", False), ("cramers_v_semantic", "V (pred, text)", False),
)
AUDIO_TYPES = {".wav": "audio/wav", ".flac": "audio/flac", ".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".m4a": "audio/mp4"}


def esc(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        # rates get three decimals; small settings (lr 2e-4) keep their significant digits
        return f"{v:.3f}" if v == 0 or abs(v) >= 0.01 else f"{v:.3g}"
    return str(v)


def write_report(run_dir: Path, out: Path | None = None, *, figures: bool = True) -> Path:
    """Write the HTML page of ``run_dir`` to ``out`` (default ``RUN/report.html``); returns its path."""
    from probes.store import read_errors, read_manifest, read_rows

    run_dir = Path(run_dir)
    man = read_manifest(run_dir)
    out = Path(out) if out is not None else run_dir / "report.html"
    if out.suffix.lower() not in (".html", ".htm"):
        out = out / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    mpath = run_dir / "metrics.json"
    metrics = json.loads(mpath.read_text()) if mpath.exists() else {}
    rows = read_rows(run_dir)
    errors = read_errors(run_dir)

    figs: list[tuple[Path, str]] = []
    failures: list[str] = []
    if figures:
        from probes import plots

        figs = plots.figures_for_run(run_dir, run_dir / "figures", failures=failures)
        made = {p.resolve() for p, _ in figs}
        # figures a probe drew itself into the run's figures/ folder belong on the page too
        for p in sorted((run_dir / "figures").glob("*.png")):
            if p.resolve() not in made:
                figs.append((p, p.stem.replace("-", " ")))

    model = man.get("model") if isinstance(man.get("model"), dict) else {"name": man.get("model")}
    weights = man.get("weights") or model.get("weights")
    data = str(data_path(man, run_dir) or "")
    org = model.get("organism") if isinstance(model.get("organism"), dict) else None
    who = f"{model.get('name', '?')} organism {org['name']}" if org and org.get("name") else model.get("name", "?")
    title = f"{man.get('probe', '?')} · {who} · {Path(data).parent.name or data}"

    parts = [_head(title), "<body><main>", f"<h1>{esc(title)}</h1>",
             f"<p class='sub'>run folder <code>{esc(run_dir)}</code></p>"]
    if weights in WEIGHT_BANNERS:
        head, text = WEIGHT_BANNERS[weights]
        parts.append(f"<div class='banner' role='alert' data-weights='{esc(weights)}'><strong>{esc(head)}</strong> "
                     f"({esc(model.get('name'))}): {esc(text)}</div>")
    parts.append(_nav(bool(figs), not rows.empty))
    parts.append(_what_was_run(man, model, weights, rows, run_dir))
    parts.append(_headline(metrics, arm_order(man, rows)))
    parts.append(_other_metrics(metrics))
    parts.append(_errors(metrics, errors))
    parts.append(_figures(figs, failures))
    parts.append(_browser(rows, man, out, run_dir))
    parts.append(_rows_preview(rows))
    parts.append(f"<footer>written by <code>probe report</code> from {esc(run_dir)}; "
                 "the page reads the run folder only.</footer></main>")
    parts.append(_SCRIPT)
    parts.append("</body></html>")
    out.write_text("\n".join(p for p in parts if p), encoding="utf-8")
    return out


# ---------------------------------------------------------------------------------- sections
def _head(title: str) -> str:
    return f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>" \
           f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{_CSS}</style></head>"


def _nav(has_figs: bool, has_rows: bool) -> str:
    links = [("run", "what was run"), ("headline", "headline"), ("metrics", "other metrics"), ("errors", "errors")]
    if has_figs:
        links.append(("figures", "figures"))
    if has_rows:
        links.append(("conflicts", "conflict items"))
    return "<nav>" + " · ".join(f"<a href='#{a}'>{esc(t)}</a>" for a, t in links) + "</nav>"


def _kv_table(items: list[tuple[str, Any]], cls: str = "kv") -> str:
    body = "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in items)
    return f"<table class='{cls}'>{body}</table>"


def _what_was_run(man: dict, model: dict, weights: Any, rows=None, run_dir: Path | None = None) -> str:
    argv = man.get("argv")
    command = " ".join(map(str, argv)) if isinstance(argv, list) else argv
    model_extra = {k: v for k, v in model.items() if k not in ("name", "weights", "labels")}
    items = [
        ("probe", f"<code>{esc(man.get('probe'))}</code> ({esc(man.get('probe_kind', ''))})"),
        ("model", f"<code>{esc(model.get('name'))}</code>" + (_render_config(model_extra, True) if model_extra else "")),
        ("weights", f"<span class='weights w-{esc(weights)}'>{esc(weights)}</span>"),
        ("labels", _labels(model, rows)),
        ("data", f"<code>{esc(data_path(man, run_dir) or man.get('data'))}</code> ({esc(man.get('n_utterances', '?'))} utterances)"),
        ("data sha256", f"<code>{esc(man.get('data_sha256'))}</code>"),
        ("seed", esc(man.get("seed"))),
        ("git SHA", f"<code>{esc(man.get('git_sha'))}</code>"),
        ("created", esc(man.get("created")) + (f" (resumed {esc(', '.join(man['resumed']))})" if man.get("resumed") else "")),
    ]
    if man.get("shard"):
        items.append(("shard", esc(man.get("shard"))))
    if man.get("merged_from"):
        items.append(("merged from", esc(", ".join(map(str, man["merged_from"])))))
    if command:
        items.append(("command", f"<code>{esc(command)}</code>"))
    known = {"probe", "probe_kind", "model", "weights", "data", "data_sha256", "n_utterances", "seed", "git_sha",
             "created", "resumed", "argv", "versions", "config", "shard", "merged_from", "settings"}
    for k, v in man.items():  # whatever else a probe recorded
        if k not in known:
            items.append((k, f"<code>{esc(json.dumps(v, default=str) if not isinstance(v, str) else v)}</code>"))
    config = man.get("config") or {}
    cfg = _render_config(config) if config else "<p class='muted'>no options (the probe's defaults)</p>"
    versions = man.get("versions") or {}
    ver = _kv_table([(k, esc(v)) for k, v in versions.items()]) if versions else "<p class='muted'>not recorded</p>"
    settings = man.get("settings")
    sett = ""
    if isinstance(settings, dict) and settings:
        sett = (f"<details><summary>resolved settings (what a resumed run must match)</summary>"
                f"{_render_config(settings)}</details>")
    return (f"<section id='run'><h2>What was run</h2>{_kv_table(items)}"
            f"<h3>config</h3>{cfg}{sett}<details><summary>versions</summary>{ver}</details></section>")


def _labels(model: dict, rows) -> str:
    """The model's label set; when the model does not record one, the labels its rows use."""
    labels = model.get("labels") or []
    if labels:
        return esc(", ".join(map(str, labels)))
    if rows is not None and not rows.empty and "acoustic_label" in rows.columns:
        seen = sorted({str(x) for x in rows["acoustic_label"].dropna() if str(x)})
        if seen:
            return f"{esc(', '.join(seen))} <span class='muted'>(the voice labels in the rows; the model records none)</span>"
    return "<span class='muted'>not recorded</span>"


# column headings for lists of equal-length lists in a probe's config
LIST_HEADERS = {"arms": ("row label", "model arm", "semantic pathway")}


def _render_config(config: dict, nested: bool = False) -> str:
    """The config as key / value lines; nested settings as small tables, never raw JSON."""
    items = []
    for k, v in config.items():
        if _is_scalar(v):
            items.append((k, esc(fmt(v))))
        elif isinstance(v, list) and v and all(isinstance(x, list) and all(_is_scalar(y) for y in x) for x in v) \
                and len({len(x) for x in v}) == 1:
            heads = LIST_HEADERS.get(k, ())
            head = "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in heads) + "</tr>" if len(heads) == len(v[0]) else ""
            body = "".join("<tr>" + "".join(f"<td>{esc(fmt(y))}</td>" for y in x) + "</tr>" for x in v)
            items.append((k, f"<table class='grid'>{head}{body}</table>"))
        elif isinstance(v, dict) and _flat(v) is not None:
            flat = _flat(v)
            items.append((k, _kv_table([(kk, esc(fmt(vv)) if not _is_pair(vv) else esc(f"[{fmt(vv[0])}, {fmt(vv[1])}]"))
                                        for kk, vv in flat.items()], cls="kv inner")))
        elif isinstance(v, dict) and v:
            items.append((k, _render_config(v, True)))
        else:
            items.append((k, _render(v, 1)))
    return _kv_table(items, cls="kv inner" if nested else "kv")


def data_path(man: dict, run_dir: Path | None = None) -> Path | None:
    """The data manifest a run names, as a path that exists where possible.

    New runs record an absolute path. Older ones recorded it relative to the folder the command
    ran in (usually the repository root); such a path is tried against the current folder, the
    repository root and the run folder's ancestors, and returned as written when none has it.
    """
    src = man.get("data")
    if not src:
        return None
    p = Path(str(src))
    if p.is_absolute():
        return p
    tries = [Path.cwd(), Path(__file__).resolve().parents[1]]
    if run_dir is not None:
        tries += list(Path(run_dir).resolve().parents)
    for base in tries:
        if (base / p).exists():
            return (base / p).resolve()
    return p


def _cell(v: Any, ci: Any = None) -> str:
    s = esc(fmt(v))
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and not all(x is None or (isinstance(x, float) and math.isnan(x)) for x in ci):
        s += f"<span class='ci'>[{esc(fmt(ci[0]))}, {esc(fmt(ci[1]))}]</span>"
    return s


def split_arm_mix(conds) -> bool:
    """Conditions named ``<arm>@<mix>`` (the FAS conflict experiment): arms x conflict mixes."""
    conds = list(conds)
    return len(conds) > 1 and all(str(c).count("@") == 1 for c in conds)


def arm_order(man: dict, rows) -> list[str]:
    """Arm names in the order the run's config lists them (else as the rows first use them)."""
    arms = (man.get("config") or {}).get("arms") if isinstance(man.get("config"), dict) else None
    if isinstance(arms, str):
        arms = [a.strip() for a in arms.split(",") if a.strip()]
    out = [str(a[0] if isinstance(a, (list, tuple)) and a else a) for a in arms] if isinstance(arms, list) else []
    if rows is not None and not rows.empty and "condition" in rows.columns:
        out += [str(c).split("@")[0] for c in dict.fromkeys(rows["condition"].astype(str))]
    return list(dict.fromkeys(out))


def _mix_key(mix: str) -> tuple:
    try:
        return (0, float(str(mix).rstrip("%").strip()))
    except ValueError:
        return (1, str(mix))


def _pivot(conds: dict, arms: list[str], mixes: list[str], metrics: list[tuple[str, str]]) -> str:
    """Arms as rows, one column group per conflict mix: the many-arm headline at a glance."""
    top = "<tr><th rowspan='2'>arm</th>" + "".join(
        f"<th colspan='{len(metrics)}' class='grp'>{esc(m)} conflict in training</th>" for m in mixes) + "</tr>"
    sub = "<tr>" + "".join(f"<th class='{esc(k)}{' grp' if i == 0 else ''}'>{esc(t)}</th>"
                           for _ in mixes for i, (k, t) in enumerate(metrics)) + "</tr>"
    body = []
    for arm in arms:
        tds = []
        for m in mixes:
            c = conds.get(f"{arm}@{m}", {})
            for i, (k, _) in enumerate(metrics):
                tds.append(f"<td class='num {esc(k)}{' grp' if i == 0 else ''}'>{_cell(c.get(k), c.get(f'{k}_ci'))}</td>")
        body.append(f"<tr><th>{esc(arm)}</th>{''.join(tds)}</tr>")
    return f"<div class='scroll'><table class='grid headline pivot'><thead>{top}{sub}</thead><tbody>{''.join(body)}</tbody></table></div>"


def _headline(metrics: dict, order: list[str] | None = None) -> str:
    conds = metrics.get("conditions")
    if not isinstance(conds, dict) or not conds:
        return ("<section id='headline'><h2>Headline</h2><p class='muted'>This run has no per-condition prediction "
                "scores (not a prediction probe, or no rows yet); its numbers are under other metrics.</p></section>")
    from probes.plots import CUE_CONDITIONS

    # the cue-token study's order first (none, aligned, shuffled, ...), the rest as written
    conds = {k: conds[k] for k in [c for c in CUE_CONDITIONS if c in conds] + [c for c in conds if c not in CUE_CONDITIONS]}
    conds = {k: c for k, c in conds.items() if isinstance(c, dict)}
    keys = [k for k in HEADLINE if any(k[0] in c for c in conds.values())]
    # every scored item a conflict item: accuracy against the voice's label IS follows-voice
    all_conflict = bool(conds) and all(c.get("n") and c.get("n_conflict") == c.get("n") for c in conds.values())
    titles = {k: t for k, t, _ in keys}
    if all_conflict and any(k == "follows_voice" for k, _, _ in keys):
        keys = [k for k in keys if k[0] != "follows_voice"]
        titles["accuracy"] = "accuracy = follows voice"
    grouped = split_arm_mix(conds)
    pivot = ""
    if grouped:
        # arms in the order the run wrote them, mixes by their number; one block per mix
        present = {c.split("@")[0] for c in conds}
        arms = [a for a in (order or []) if a in present] + sorted(present - set(order or []))
        mixes = sorted(dict.fromkeys(c.split("@")[1] for c in conds), key=_mix_key)
        conds = {f"{a}@{m}": conds[f"{a}@{m}"] for m in mixes for a in arms if f"{a}@{m}" in conds}
        shown = [("accuracy", titles["accuracy"])] if "accuracy" in titles else []
        shown += [(k, titles[k]) for k in ("follows_voice", "follows_text", "uar") if k in titles and any(k == kk for kk, _, _ in keys)]
        if len(mixes) * len(shown) > 10:  # UAR stays in the full table below; the pivot fits the page
            shown = [m for m in shown if m[0] != "uar"]
        pivot = _pivot(conds, arms, mixes, shown)
    lead = "<th>conflict mix</th><th>arm</th>" if grouped else "<th>condition</th>"
    head = "<thead><tr>" + lead + "".join(f"<th class='{esc(k)}'>{esc(titles[k])}</th>" for k, _, _ in keys) + "</tr></thead>"
    body, last = [], None
    for name, c in conds.items():
        tds = "".join(f"<td class='num {esc(k)}' data-key='{esc(k)}'>{_cell(c.get(k), c.get(f'{k}_ci') if ci else None)}</td>"
                      for k, _, ci in keys)
        if grouped:
            arm, mix = str(name).split("@")
            lab = "" if mix == last else esc(mix)
            cls = " class='first'" if mix != last else ""
            last = mix
            body.append(f"<tr{cls}><th>{lab}</th><th>{esc(arm)}</th>{tds}</tr>")
        else:
            body.append(f"<tr><th>{esc(name)}</th>{tds}</tr>")
    extra_keys = sorted({k for c in conds.values() for k in c
                         if k not in {h[0] for h in HEADLINE} and not (k.endswith("_ci") and k[:-3] in {h[0] for h in HEADLINE})})
    extra = ""
    if extra_keys:
        extra = "<h3>further per-condition numbers</h3>" + _render({n: {k: c.get(k) for k in extra_keys}
                                                                    for n, c in conds.items()})
    same = ("<strong>Every scored item is a conflict item</strong>, so accuracy against the voice's label and "
            "follows-voice are the same number: it is shown once. ") if all_conflict else ""
    note = (f"<p class='note'>{same}Accuracy, UAR and macro-F1 against the voice's (acoustic) label over all items; "
            "<span class='voice'>follows voice</span>, <span class='text'>follows text</span> and neither on conflict "
            "items (voice label ≠ words' label); text dominance = follows text / (follows text + follows voice); "
            "V = Cramér's V over valid answers. Brackets: bootstrap 95% intervals."
            + (" Each arm was trained once per conflict mix (the share of conflict items in its training set); "
               "conditions are named <code>arm@mix</code>." if grouped else "")
            + "</p>")
    table = f"<div class='scroll'><table class='grid headline'>{head}<tbody>{''.join(body)}</tbody></table></div>"
    if grouped:
        table = (f"{pivot}<details><summary>every number per arm and conflict mix ({len(conds)} conditions)</summary>"
                 f"{table}{extra}</details>")
        extra = ""
    return f"<section id='headline'><h2>Headline</h2>{note}{table}{extra}</section>"


# metric keys in plain words (column headings and key / value lines); unknown keys are shown as
# written, with "_" as spaces and "." as " · "
PLAIN = {
    "n": "n", "delta_uar": "Δ UAR", "delta_accuracy": "Δ accuracy", "delta_macro_f1": "Δ macro-F1",
    "mcnemar.b": "right under the reference only", "mcnemar.c": "right under this condition only",
    "mcnemar.statistic": "McNemar statistic", "mcnemar.p_value": "McNemar p", "mcnemar.method": "McNemar test",
    "neutral_share_non_neutral_voice": "'neutral' answers, voice not neutral", "neutral_share_all": "'neutral' answers, all",
    "mean_prob_neutral": "mean p(neutral)", "entropy_bits": "entropy of answers (bits)", "top_label": "most frequent answer",
    "top_share": "its share", "n_distinct": "distinct answers", "macro_f1": "macro-F1", "uar": "UAR",
    "follows_voice": "follows voice", "follows_text": "follows text", "text_dominance": "text dominance",
    "other_rate": "neither", "n_conflict": "conflict items", "cramers_v_acoustic": "V (pred, voice)",
    "cramers_v_semantic": "V (pred, text)",
    "delta_follows_voice": "Δ follows voice (conflict items)", "delta_follows_text": "Δ follows text (conflict items)",
}
for _who, _what in (("voice", "the voice's label"), ("text", "the words' label")):
    PLAIN.update({f"mcnemar_{_who}.b": f"answers {_what}: under the reference only",
                  f"mcnemar_{_who}.c": f"answers {_what}: under this condition only",
                  f"mcnemar_{_who}.statistic": f"McNemar statistic ({_who})", f"mcnemar_{_who}.p_value": f"McNemar p ({_who})",
                  f"mcnemar_{_who}.method": f"McNemar test ({_who})"})


def plain(key: str) -> str:
    key = str(key)
    if key in PLAIN:
        return PLAIN[key]
    if key.startswith("neutral_shift_vs_"):
        return f"shift in 'neutral' answers vs {key[len('neutral_shift_vs_'):]}"
    return key.replace("_", " ").replace(".", " · ")


SECTION_NOTES = {
    "compare": "Each condition against a reference condition on the same utterances: the change in UAR, accuracy "
               "and macro-F1 (condition minus reference), and McNemar's paired test on which utterances each gets right.",
    "neutral": "Share of 'neutral' answers, on items whose voice is not neutral and on all items.",
    "collapse": "Whether the answers collapse onto one label: entropy of the answers near 0 means one label for everything.",
    "confusion": "Counts of answers (columns) per voice label (rows), per condition.",
}


def _compare(v: dict) -> str | None:
    """``{reference: {condition: {n, delta_*, mcnemar: {...}}}}`` as one table per reference."""
    if not isinstance(v, dict) or not v or not all(isinstance(x, dict) for x in v.values()):
        return None
    out = []
    for ref, by in v.items():
        recs = {c: _flat(e) for c, e in by.items() if isinstance(e, dict)}
        if not recs or any(r is None for r in recs.values()):
            return None
        cols = list(dict.fromkeys(k for r in recs.values() for k in r))
        head = "<tr><th>condition</th>" + "".join(f"<th title='{esc(c)}'>{esc(plain(c))}</th>" for c in cols) + "</tr>"
        body = "".join(f"<tr><th>{esc(c)}</th>" + "".join(_cellv(r, k) for k in cols) + "</tr>" for c, r in recs.items())
        out.append(f"<h4>against the reference <code>{esc(ref)}</code></h4>"
                   f"<div class='scroll'><table class='grid'>{head}{body}</table></div>")
    return "".join(out)


def _other_metrics(metrics: dict) -> str:
    other = {k: v for k, v in metrics.items() if k not in ("conditions", "errors")}
    if not other:
        return "<section id='metrics'><h2>Other metrics</h2><p class='muted'>none beyond the headline.</p></section>"
    parts = []
    for k, v in other.items():
        body = _compare(v) if k == "compare" else None
        if body is None:
            body = _render(v, 1)
        note = f"<p class='note'>{esc(SECTION_NOTES[k])}</p>" if k in SECTION_NOTES else ""
        key = f" <code class='key'>{esc(k)}</code>" if plain(k) != k else ""
        parts.append(f"<div class='nest'><h3>{esc(plain(k))}{key}</h3>{note}{body}</div>")
    return f"<section id='metrics'><h2>Other metrics</h2>{''.join(parts)}</section>"


def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def _is_pair(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) or x is None for x in v)


def _flat(d: dict, prefix: str = "") -> dict | None:
    """A dict whose leaves are scalars or [lo, hi] pairs, flattened to dotted keys; else None."""
    out: dict = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if _is_scalar(v) or _is_pair(v):
            out[key] = v
        elif isinstance(v, dict) and v:
            sub = _flat(v, key + ".")
            if sub is None:
                return None
            out.update(sub)
        else:
            return None
    return out


MAX_COLS = 24


def _records(v: Any, keys: tuple = (), depth: int = 0) -> list[tuple[tuple, dict]] | None:
    """A nested dict read as table rows: the first level whose values flatten to <= MAX_COLS
    scalar columns becomes the row (its path = the row's key columns); None if it has no such shape."""
    if not isinstance(v, dict) or not v or depth > 3:
        return None
    if all(isinstance(x, dict) for x in v.values()):
        flats = {k: _flat(x) for k, x in v.items()}
        cols = {c for f in flats.values() if f for c in f}
        if all(f is not None for f in flats.values()) and len(cols) <= MAX_COLS:
            return [(keys + (k,), f) for k, f in flats.items()]
        out: list = []
        for k, x in v.items():
            sub = _records(x, keys + (k,), depth + 1)
            if sub is None:
                return None
            out += sub
        return out
    return None


def _cellv(rec: dict, c: str) -> str:
    v = rec.get(c)
    if _is_pair(v):
        return f"<td class='num'>[{esc(fmt(v[0]))}, {esc(fmt(v[1]))}]</td>"
    return f"<td class='num'>{_cell(v, rec.get(c + '_ci'))}</td>"


def _render(v: Any, depth: int = 0) -> str:
    """Any JSON value as HTML: nested dicts become one table when their shape allows (row key
    columns + one column per leaf), lists of records a table, anything else JSON text."""
    if _is_scalar(v):
        return esc(fmt(v))
    if isinstance(v, list):
        if all(_is_scalar(x) for x in v):
            return esc(", ".join(fmt(x) for x in v)) if len(v) <= 20 else f"<code>{esc(json.dumps(v))}</code>"
        if all(isinstance(x, dict) for x in v):
            cols = list(dict.fromkeys(k for x in v for k in x))
            body = "".join("<tr>" + "".join(f"<td>{_render(x.get(c), depth + 1)}</td>" for c in cols) + "</tr>"
                           for x in v[:MAX_TABLE_ROWS])
            more = f"<p class='muted'>{len(v) - MAX_TABLE_ROWS} more rows not shown.</p>" if len(v) > MAX_TABLE_ROWS else ""
            return f"<div class='scroll'><table class='grid'><tr>{''.join(f'<th>{esc(c)}</th>' for c in cols)}</tr>{body}</table></div>{more}"
        return f"<pre>{esc(json.dumps(v, indent=1, default=str))}</pre>"
    if isinstance(v, dict):
        if not v:
            return "<span class='muted'>(empty)</span>"
        recs = _records(v)
        if recs and len({len(k) for k, _ in recs}) == 1:
            cols = list(dict.fromkeys(c for _, r in recs for c in r))
            cols = [c for c in cols if not (c.endswith("_ci") and c[:-3] in cols)]
            nk = len(recs[0][0])
            head = "<tr>" + "<th></th>" * nk + "".join(f"<th title='{esc(c)}'>{esc(plain(c))}</th>" for c in cols) + "</tr>"
            body, last = [], None
            for key, r in recs[:MAX_TABLE_ROWS]:
                # repeat an outer key only where it changes, so the table reads as groups
                shown = [("" if last is not None and key[:i + 1] == last[:i + 1] else k) for i, k in enumerate(key)]
                last = key
                body.append("<tr>" + "".join(f"<th>{esc(k)}</th>" for k in shown) + "".join(_cellv(r, c) for c in cols) + "</tr>")
            more = f"<p class='muted'>{len(recs) - MAX_TABLE_ROWS} more rows not shown.</p>" if len(recs) > MAX_TABLE_ROWS else ""
            return f"<div class='scroll'><table class='grid'>{head}{''.join(body)}</table></div>{more}"
        flat = _flat(v)
        if flat is not None and len(flat) <= 2 * MAX_COLS:
            keys = [k for k in flat if not (k.endswith("_ci") and k[:-3] in flat)]
            return _kv_table([(plain(k), _cell(flat[k], flat.get(k + "_ci")) if not _is_pair(flat[k])
                               else esc(f"[{fmt(flat[k][0])}, {fmt(flat[k][1])}]")) for k in keys])
        tag = f"h{min(3 + depth, 6)}"
        return "".join(f"<div class='nest'><{tag}>{esc(k)}</{tag}>{_render(x, depth + 1)}</div>" for k, x in v.items())
    return f"<pre>{esc(json.dumps(v, indent=1, default=str))}</pre>"


def _errors(metrics: dict, errors) -> str:
    n = metrics.get("errors", len(errors))
    if not n and errors.empty:
        return "<section id='errors'><h2>Errors</h2><p><span class='count'>0</span> utterances failed.</p></section>"
    cols = [c for c in ("utt_id", "condition", "error") if c in errors.columns]
    shown = errors.head(MAX_TABLE_ROWS)
    body = "".join("<tr>" + "".join(f"<td>{esc(r.get(c))}</td>" for c in cols) + "</tr>" for r in shown.to_dict("records"))
    more = f"<p class='muted'>{len(errors) - len(shown)} more in errors.jsonl.</p>" if len(errors) > len(shown) else ""
    table = f"<table class='grid errors'><tr>{''.join(f'<th>{esc(c)}</th>' for c in cols)}</tr>{body}</table>" if cols else ""
    return (f"<section id='errors'><h2>Errors</h2><p class='warn'><span class='count'>{esc(n)}</span> unit(s) failed and "
            f"are left out of every number above (see errors.jsonl).</p>{table}{more}</section>")


def _figures(figs: list[tuple[Path, str]], failures: list[str]) -> str:
    if not figs and not failures:
        return ""
    items = []
    for p, caption in figs:
        if not p.exists():
            continue
        b64 = base64.b64encode(p.read_bytes()).decode("ascii")
        items.append(f"<figure><img alt='{esc(caption)}' src='data:image/png;base64,{b64}'>"
                     f"<figcaption>{esc(caption)} <span class='muted'>({esc(p.name)}, SVG beside it)</span></figcaption></figure>")
    fail = "".join(f"<li>{esc(f)}</li>" for f in failures)
    fail = f"<p class='warn'>Figures that could not be drawn:</p><ul>{fail}</ul>" if fail else ""
    return f"<section id='figures'><h2>Figures</h2><div class='figs'>{''.join(items)}</div>{fail}</section>"


def _audio_tag(path: Path | None, page: Path) -> str:
    """A play button that loads the recording on demand, by its path relative to the page."""
    if path is None:
        return "<span class='muted'>–</span>"
    if not path.exists():
        return f"<span class='muted' title='{esc(path)}'>audio missing</span>"
    try:
        rel = Path(os.path.relpath(path.resolve(), page.resolve().parent)).as_posix()
    except ValueError:  # another drive on Windows
        rel = path.resolve().as_uri()
    mime = AUDIO_TYPES.get(path.suffix.lower(), "audio/wav")
    return (f"<button type='button' class='play' data-src='{esc(rel)}' data-type='{esc(mime)}' "
            f"title='play {esc(path.name)}'>▶</button><a class='file' href='{esc(rel)}'>file</a>")


def _browser(rows, man: dict, page: Path, run_dir: Path | None = None) -> str:
    if rows.empty or not {"pred", "acoustic_label", "semantic_label", "utt_id"} <= set(rows.columns):
        return ""
    from probes.metrics import normalize_pred

    r = rows.assign(condition=rows["condition"].astype(str) if "condition" in rows else "none")
    a = r["acoustic_label"].fillna("").astype(str)
    s = r["semantic_label"].fillna("").astype(str)
    r = r[(a != "") & (s != "") & (a != s)]
    if r.empty:
        return ("<section id='conflicts'><h2>Conflict items</h2><p class='muted'>The data has no conflict items "
                "(no utterance whose voice label differs from its words' label).</p></section>")
    conds = list(dict.fromkeys(r["condition"]))
    # many conditions named arm@mix: one mix at a time (a selector), arms as columns
    grouped = split_arm_mix(conds)
    if grouped:
        arms = arm_order(man, rows)
        conds = sorted(conds, key=lambda c: (_mix_key(c.split("@")[1]), arms.index(c.split("@")[0])
                                             if c.split("@")[0] in arms else len(arms)))
    group_of = {c: (c.split("@")[1] if grouped else "") for c in conds}
    groups = list(dict.fromkeys(group_of.values()))
    data, note = _data_manifest(man, run_dir)
    utts = list(dict.fromkeys(r["utt_id"].astype(str)))
    by = {(str(u), c): row for u, c, row in zip(r["utt_id"], r["condition"], r.to_dict("records"))}

    def gattr(c: str) -> str:
        if not grouped:
            return ""
        hidden = " hidden" if group_of[c] != groups[0] else ""
        return f" data-g='{esc(group_of[c])}'{hidden}"

    lines = []
    for u in utts[:MAX_BROWSE]:
        first = next(by[(u, c)] for c in conds if (u, c) in by)
        text, audio = "", None
        if data is not None:
            try:
                text = data.row(u).get("text", "")
                audio = data.audio_path(u)
            except KeyError:
                pass
        outcomes: dict[str, set] = {g: set() for g in groups}
        cells = []
        for c in conds:
            row = by.get((u, c))
            if row is None:
                cells.append(f"<td class='muted'{gattr(c)}>–</td>")
                continue
            p = normalize_pred(row.get("pred"))
            kind = "voice" if p == row["acoustic_label"] else ("text" if p == row["semantic_label"] else "other")
            outcomes[group_of[c]].add(kind)
            raw = row.get("raw")
            tip = f" title='{esc(raw)}'" if isinstance(raw, str) and raw else ""
            cells.append(f"<td class='pred {kind}'{tip}{gattr(c)}>"
                         f"{esc(row.get('pred') if row.get('pred') is not None else 'invalid')}</td>")
        outs = " ".join(f"{g}:{k}" if grouped else k for g in groups for k in sorted(outcomes[g]))
        lines.append(f"<tr data-out='{esc(outs)}'><td class='audio'>{_audio_tag(audio, page)}</td><td><code>{esc(u)}</code></td>"
                     f"<td class='utext'>{esc(text)}</td><td class='voice'>{esc(first['acoustic_label'])}</td>"
                     f"<td class='text'>{esc(first['semantic_label'])}</td>{''.join(cells)}</tr>")
    pred_heads = ("<th>prediction</th>" if conds == ["none"] else
                  "".join(f"<th{gattr(c)}>{esc(c.split('@')[0] if grouped else c)}</th>" for c in conds))
    head = ("<thead><tr><th>audio</th><th>utterance</th><th>text</th><th class='voice'>voice label</th>"
            "<th class='text'>words' label</th>" + pred_heads + "</tr></thead>")
    more = (f"<p class='muted'>Showing {MAX_BROWSE} of {len(utts)} conflict items.</p>" if len(utts) > MAX_BROWSE else "")
    pick = ""
    if grouped:
        opts = "".join(f"<option value='{esc(g)}'>{esc(g)} conflict in training</option>" for g in groups)
        pick = f" <label>conflict mix <select id='group'>{opts}</select></label>"
    controls = ("<div class='controls'><input id='q' type='search' placeholder='filter by text, id or label'> "
                "<select id='outcome'><option value=''>all outcomes</option><option value='voice'>follows the voice</option>"
                "<option value='text'>follows the text</option><option value='other'>neither</option></select>"
                f"{pick} <span id='shown'></span></div>")
    legend = ("<p class='note'>Prediction cells: <span class='pred voice'>follows the voice</span> "
              "<span class='pred text'>follows the text</span> <span class='pred other'>neither</span>. "
              + ("Columns: one per arm, for the conflict mix chosen above. " if grouped else "")
              + "▶ loads and plays the original recording (audio-side interventions are not rendered here); "
              "it is read from its path relative to this page.</p>")
    return (f"<section id='conflicts'><h2>Conflict items ({len(utts)})</h2>{note}{legend}{controls}"
            f"<div class='scroll tall'><table class='grid browse' id='browse'>{head}<tbody>{''.join(lines)}</tbody>"
            f"</table></div>{more}</section>")


def _data_manifest(man: dict, run_dir: Path | None = None):
    """The run's data manifest (for text and audio paths), or None and a note saying why."""
    from probes.data.manifest import Manifest, ManifestError

    src = data_path(man, run_dir)
    if not src:
        return None, "<p class='muted'>The run does not name its data manifest: no text or audio.</p>"
    try:
        return Manifest.read(src, check_audio=False), ""
    except (ManifestError, OSError) as e:
        return None, f"<p class='warn'>Cannot read the data manifest ({esc(e)}): no text or audio.</p>"


def _rows_preview(rows) -> str:
    """The first rows of a run that is not a prediction run, so a new probe's output is visible."""
    if rows.empty or "pred" in rows.columns:
        return ""
    cols = [c for c in rows.columns if c not in ("unit",)][:14]
    shown = rows.head(50)
    body = "".join("<tr>" + "".join(f"<td>{esc(fmt(r.get(c)))}</td>" for c in cols) + "</tr>" for r in shown.to_dict("records"))
    return (f"<section id='rows'><h2>Rows</h2><details><summary>first {len(shown)} of {len(rows)} rows</summary>"
            f"<table class='grid'><tr>{''.join(f'<th>{esc(c)}</th>' for c in cols)}</tr>{body}</table></details></section>")


_CSS = """
:root{--voice:#0072B2;--text:#D55E00;--other:#9E9E9E;--ink:#1f2328;--muted:#6a737d;--line:#d0d7de;--bg:#f6f8fa}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);margin:0;background:#fff}
main{max-width:1220px;margin:0 auto;padding:20px 28px 60px}
h1{font-size:24px;margin:8px 0 2px}h2{font-size:19px;border-bottom:1px solid var(--line);padding-bottom:4px;margin-top:34px}
h3{font-size:15px;margin:18px 0 6px}h4,h5,h6{font-size:14px;margin:12px 0 4px}
.sub,.muted{color:var(--muted)}code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;background:var(--bg);padding:1px 4px;border-radius:4px;word-break:break-all}
nav{margin:10px 0 4px;font-size:13px}nav a{color:var(--voice);text-decoration:none}
.banner{background:#fff4e5;border:2px solid #b35900;border-left:10px solid #b35900;padding:12px 16px;margin:14px 0;font-size:15px;border-radius:4px}
.banner strong{color:#8a3b00;letter-spacing:.04em}
table{border-collapse:collapse;margin:6px 0}th,td{padding:4px 9px;text-align:left;vertical-align:top}
table.kv th{color:var(--muted);font-weight:600;white-space:nowrap;padding-right:18px}
table.grid{border:1px solid var(--line);font-size:13px}table.grid th{background:var(--bg);border-bottom:1px solid var(--line)}
table.grid td{border-top:1px solid #eaeef2}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.headline td.num{min-width:70px}.ci{display:block;color:var(--muted);font-size:11px}
th.follows_voice,td.follows_voice,.voice{color:var(--voice)}th.follows_text,td.follows_text,.text{color:var(--text)}
td.follows_voice,td.follows_text{font-weight:600}
.note{color:var(--muted);font-size:12.5px;max-width:980px}.warn{color:#8a3b00}
.count{font-weight:700;font-size:16px}
.figs{display:flex;flex-wrap:wrap;gap:8px 30px;align-items:flex-start}
figure{margin:14px 0 18px;flex:0 1 auto;max-width:100%}figure img{max-width:100%;height:auto;border:1px solid #eaeef2;display:block}
figcaption{font-size:12.5px;color:#444;max-width:560px;margin-top:4px}
.pred{font-weight:600;border-radius:3px;padding:1px 6px;white-space:nowrap}
td.pred.voice,span.pred.voice{background:#e3f0fa;color:var(--voice)}td.pred.text,span.pred.text{background:#fbe9df;color:var(--text)}
td.pred.other,span.pred.other{background:#efefef;color:#555}
table.browse td{vertical-align:middle}table.browse td.utext{min-width:220px;max-width:420px}
a.file{font-size:11px;margin-left:4px}.controls{margin:8px 0}.controls input{width:280px;padding:4px}
.weights{font-weight:700}.w-random,.w-oracle{color:#8a3b00}
details{margin:8px 0}summary{cursor:pointer;color:var(--voice)}
.nest{margin-left:8px}footer{margin-top:40px;color:var(--muted);font-size:12px}
.scroll{overflow-x:auto;max-width:100%;margin:6px 0}.scroll>table{margin:0}
.scroll.tall{max-height:75vh;overflow:auto;border:1px solid var(--line)}.scroll.tall>table{border:0}
.scroll.tall thead th{position:sticky;top:0;z-index:1}
table.headline tr.first>*{border-top:2px solid var(--line)}table.pivot .grp{border-left:2px solid var(--line)}
table.pivot th.grp{text-align:center}table.pivot tbody th{white-space:nowrap}table.kv.inner{margin:0;font-size:12.5px}
table.kv.inner th{color:var(--ink);font-weight:500}code.key{font-weight:400;color:var(--muted);margin-left:6px}
button.play{font-size:13px;line-height:1;padding:4px 8px;border:1px solid var(--line);border-radius:4px;background:#fff;cursor:pointer;color:var(--voice)}
td.audio{white-space:nowrap}td.audio audio{height:28px;width:200px;vertical-align:middle}
"""

# Filtering of the conflict-item table, the conflict-mix selector, audio loaded on demand;
# inline, no libraries.
_SCRIPT = """<script>
(function(){
document.addEventListener('click',function(e){var b=e.target.closest&&e.target.closest('button.play');if(!b)return;
var a=document.createElement('audio');a.controls=true;a.preload='auto';var src=document.createElement('source');
src.src=b.getAttribute('data-src');src.type=b.getAttribute('data-type')||'';a.appendChild(src);b.replaceWith(a);
var p=a.play();if(p&&p.catch)p.catch(function(){});});
var t=document.getElementById('browse');if(!t)return;
var q=document.getElementById('q'),o=document.getElementById('outcome'),g=document.getElementById('group'),s=document.getElementById('shown');
function cols(){if(!g)return;var v=g.value,cs=t.querySelectorAll('[data-g]');
for(var i=0;i<cs.length;i++){cs[i].hidden=cs[i].getAttribute('data-g')!==v;}}
function f(){var n=0,rows=t.querySelectorAll('tr[data-out]'),w=(q.value||'').toLowerCase(),k=o.value;
if(k&&g)k=g.value+':'+k;
for(var i=0;i<rows.length;i++){var r=rows[i],ok=(!w||r.textContent.toLowerCase().indexOf(w)>=0)&&(!k||(' '+r.getAttribute('data-out')+' ').indexOf(' '+k+' ')>=0);
r.style.display=ok?'':'none';if(ok)n++;}s.textContent=n+' shown';}
q.addEventListener('input',f);o.addEventListener('change',f);if(g)g.addEventListener('change',function(){cols();f();});cols();f();})();
</script>"""
