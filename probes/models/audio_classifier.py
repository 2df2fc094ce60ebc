"""``audio-classifier``: speech emotion classifiers (``AutoModelForAudioClassification``).

What it loads: a transformers audio-classification checkpoint (wav2vec2 / HuBERT / WavLM
encoder with a classification head) and its feature extractor, from ``--model-path`` (a local
folder, or a hub id where a hub is reachable). ``--tiny`` builds a tiny random-weight
``Wav2Vec2ForSequenceClassification`` (``tiny_class="hubert"`` / ``"wavlm"`` for the others)
with the head labels ``neu, hap, sad, ang``; its numbers are not results.

It has no text input: it is the acoustic baseline beside the audio-language models. Whatever
needs a prompt (cue tokens, transcripts, prompt templates, the logit lens) is refused with
``MissingInstrument`` and the reason.

**Labels.** The head's ``id2label`` is mapped onto the canonical labels (``probes.labels``)
through a visible table: ``DEFAULT_LABEL_MAP`` (the common spellings; note ``calm`` ->
``neutral``, as RAVDESS-trained heads use it) updated by the ``label_map`` option
({raw head label: canonical label}; a target of ``""`` or ``null`` drops that class). A head
label the table cannot map is refused at load time, naming it. ``describe()`` shows the table.

**predict.** Closed-set probabilities over the run's labels from the head's logits: a softmax
over the head classes whose label is in the run, then the probabilities of classes that map to
the same label summed. A run label no class maps to gets probability 0.

**Instruments** (same contract as the ALMs, ``probes.adapter``), all through plain forward
hooks installed in a context manager that always removes them (``hooked``):

- residual numbering: ``0`` = the encoder input (feature projection + positional convolution,
  after the encoder's input layer norm where the architecture has one), ``i`` = the input of
  transformer layer ``i``, ``L`` = the output of the last layer (before a final encoder layer
  norm, for the stable-layer-norm variants). Residual 0 is read / changed at the input of layer
  0; residual ``i >= 1`` at the output of layer ``i - 1``.
- spans: one, ``audio`` (the encoder's frames, about 20 ms each on real checkpoints); edits
  also take a time sub-span ``audio:START-END`` in seconds (``audio:0.2-0.5``).
- ``hidden_states`` / ``capture``, ``run_with_edits`` (``ablate`` zero / mean, ``patch`` from
  another utterance, time-aligned with ``time_align`` when lengths differ), ``attention``
  (eager attention switched on for the call).
- There is no answer position: the attention readout is the **mean over query frames** of each
  head's attention weights (``[n_blocks, heads, frames]``), and ``Readout.answer_pos`` is the
  last frame only as a placeholder. Label scores of the inside instruments (``Readout.final``,
  ``inside_patch``) are, per run label, the log of the summed exp-logits of its head classes
  (``logsumexp``); a run label no class maps to scores ``NO_CLASS`` (-1e4).

Frames are not padded: a batch is split into groups of equal-length clips, each one forward,
so results do not depend on the batch (a wav2vec2-base style model would otherwise see the
padding).
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Mapping, Sequence

import numpy as np

from probes.adapter import Adapter, AttributionInputs, Edit, Example, InsideInfo, MissingInstrument, Prediction, Readout
from probes.labels import CANONICAL, EXTRA_SPELLINGS, SYNONYMS
from probes.registry import MODELS

# raw head label (lower case) -> canonical label. The common spellings of emotion heads.
DEFAULT_LABEL_MAP: dict[str, str] = {k: v for k, v in SYNONYMS.items()}
DEFAULT_LABEL_MAP.update({"calm": "neutral", "neutral": "neutral", "happiness": "happy", "surprised": "surprise",
                          "fearful": "fear", "disgusted": "disgust", "sadness": "sad", "anger": "angry"})
NO_CLASS = -1e4
OPT = "label_map (--model-set label_map=FILE.json or a JSON object)"
_SUBSPAN = re.compile(r"^audio:(\d+(?:\.\d*)?)-(\d+(?:\.\d*)?)$")
TINY_CLASSES = ("wav2vec2", "hubert", "wavlm")


class ClassifierLoadError(RuntimeError):
    """The classifier cannot be loaded as asked; the message says what to do."""


def read_label_map(value: Any) -> dict[str, str]:
    """The ``label_map`` option: a dict, a JSON string or a path to a JSON file -> {raw: canonical or ""}."""
    if value is None or value == "":
        return {}
    if isinstance(value, (str, Path)) and not str(value).lstrip().startswith("{"):
        p = Path(value).expanduser()
        if not p.is_file():
            raise ClassifierLoadError(f"{OPT} {value!s}: no such file; give a JSON object "
                                      "{\"head label\": \"canonical label\"} or a file holding one")
        value = p.read_text()
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise ClassifierLoadError(f"{OPT}: not valid JSON ({e}); write {{\"head label\": \"canonical label\"}}") from None
    if not isinstance(value, Mapping):
        raise ClassifierLoadError(f"{OPT}: give one JSON object {{\"head label\": \"canonical label\"}}")
    out = {}
    for k, v in value.items():
        target = "" if v is None else str(v).strip().lower()
        if target and target not in CANONICAL and target not in EXTRA_SPELLINGS:
            raise ClassifierLoadError(f"{OPT}: {k!r} -> {v!r} is not a canonical label ({', '.join(CANONICAL)}); "
                                      "map it to one of those, or to \"\" to drop the class")
        out[str(k).strip().lower()] = target
    return out


def map_head_labels(id2label: Mapping[Any, str], label_map: Mapping[str, str] | None = None) -> dict[int, str]:
    """Head class index -> canonical label ("" = dropped). Unmappable head labels: one error naming them."""
    table = {**DEFAULT_LABEL_MAP, **{k.lower(): v for k, v in (label_map or {}).items()}}
    out, bad = {}, []
    for i, raw in sorted(((int(k), str(v)) for k, v in id2label.items())):
        key = raw.strip().lower()
        if key in table:
            out[i] = table[key]
        else:
            bad.append(raw)
    if bad:
        generic = all(re.fullmatch(r"label_\d+", b.lower()) for b in bad)
        raise ClassifierLoadError(
            f"audio-classifier: head labels {bad} map to no canonical label ({', '.join(CANONICAL)})"
            + (" (the checkpoint's id2label is the generic LABEL_i: its config does not name its classes)"
               if generic else "")
            + "; map them with " + OPT + ", e.g. --model-set 'label_map={\"" + bad[0]
            + "\": \"neutral\"}'" + " (\"\" drops a class)")
    if not any(out.values()):
        raise ClassifierLoadError("audio-classifier: the label map drops every head class; nothing left to score")
    return out


@MODELS.register("audio-classifier")
class AudioClassifier(Adapter):
    """Speech emotion classifier (wav2vec2 / HuBERT / WavLM head): the acoustic baseline, no text input."""

    needs_prompt: ClassVar[bool] = False
    max_seconds: ClassVar[float | None] = 30.0

    def __init__(self, model, feature_extractor, *, weights: str = "real", source: str = "",
                 label_map: Mapping[str, str] | None = None):
        self.model = model.eval()
        self.fe = feature_extractor
        self.weights = weights  # type: ignore[misc]
        self.source = source
        self.label_map = dict(label_map or {})
        self.id2label = {int(k): str(v) for k, v in model.config.id2label.items()}
        self.class_label = map_head_labels(self.id2label, self.label_map)   # head index -> canonical ("" dropped)
        self.sample_rate = int(getattr(feature_extractor, "sampling_rate", 16_000))  # type: ignore[misc]
        self.source_loader: Callable[[str], Example] | None = None

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_cli(cls, model_path: str | None = None, tiny: bool = False, device: str | None = None,
                 dtype: str | None = None, trust_remote_code: bool = False, label_map: Any = None,
                 tiny_class: str = "wav2vec2", **_: Any) -> "AudioClassifier":
        lm = read_label_map(label_map)
        if tiny:
            return cls.tiny(tiny_class, label_map=lm)
        if not model_path:
            raise ClassifierLoadError("audio-classifier needs --model-path: a local folder or hub id of an "
                                      "AutoModelForAudioClassification checkpoint (an emotion head); --tiny gives "
                                      "a random-weight test instance")
        from probes.models.loading import ModelPathError, check_model_path

        try:
            path = check_model_path(model_path)
        except ModelPathError as e:
            raise ClassifierLoadError(f"audio-classifier: {e}") from None
        from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

        from probes.models.alm.adapter import _load_kwargs

        kw = _load_kwargs(device, dtype, trust_remote_code)
        try:
            model = AutoModelForAudioClassification.from_pretrained(path, **kw)
            fe = AutoFeatureExtractor.from_pretrained(path, trust_remote_code=bool(trust_remote_code),
                                                      **({"local_files_only": True} if kw.get("local_files_only") else {}))
        except (OSError, ValueError) as e:
            raise ClassifierLoadError(f"{path}: cannot load an audio classifier with its feature extractor ({e})") from None
        return cls(model, fe, weights="real", source=str(path), label_map=lm)

    @classmethod
    def check_cli_options(cls, label_map: Any = None, tiny_class: str = "wav2vec2", **_: Any) -> None:
        """The ``--model-set`` options checked before any model loads (one clear error)."""
        read_label_map(label_map)
        if tiny_class not in TINY_CLASSES:
            raise ClassifierLoadError(f"tiny_class (--model-set tiny_class=...) {tiny_class!r}: use one of "
                                      f"{', '.join(TINY_CLASSES)}")

    @classmethod
    def tiny(cls, tiny_class: str = "wav2vec2", *, label_map: Mapping[str, str] | None = None) -> "AudioClassifier":
        """A tiny random-weight instance (built once per process per class and label map)."""
        key = (tiny_class, json.dumps(dict(label_map or {}), sort_keys=True))
        if key not in _TINY:
            model, fe = build_tiny(tiny_class)
            _TINY[key] = cls(model, fe, weights="random", source=f"tiny-{tiny_class}", label_map=label_map)
        return _TINY[key]

    def describe(self) -> dict:
        return {"name": self.name, "weights": self.weights, "source": self.source,
                "class": type(self.model).__name__, "labels": list(self.labels),
                "transformers_config": getattr(self.model.config, "model_type", None),
                "n_layers": self.n_layers if self._has_layers() else None,
                "head_labels": {str(i): l for i, l in sorted(self.id2label.items())},
                "label_map": {self.id2label[i]: (c or None) for i, c in sorted(self.class_label.items())},
                "label_map_override": dict(self.label_map),
                "scoring": "softmax over head classes mapped into the run's labels, summed per label"}

    # ------------------------------------------------------------------ refusals
    def _refuse_prompt(self, examples: Sequence[Example]) -> None:
        for ex in examples:
            what = ("cue tokens" if ex.cues else "a transcript" if ex.transcript is not None
                    else f"prompt template {ex.template!r}" if ex.template not in ("plain", "", None) else "")
            if what:
                raise MissingInstrument(self.name, f"prompt input ({what}, utterance {ex.utt_id})",
                                        "it is an audio classifier with no text input; run prompt probes "
                                        "(token-*, transcript and cue interventions) on an audio-language model")
            if ex.audio is None:
                raise ValueError(f"{self.name}: utterance {ex.utt_id} has no audio")
            if ex.sr != self.sample_rate:
                raise ValueError(f"{self.name}: utterance {ex.utt_id} is at {ex.sr} Hz, the model wants {self.sample_rate} Hz")

    # ------------------------------------------------------------------ structure
    def _encoder(self):
        return getattr(self.model.base_model, "encoder", None)

    def _has_layers(self) -> bool:
        enc = self._encoder()
        return enc is not None and hasattr(enc, "layers")

    def _layers_module(self):
        if not self._has_layers():
            raise MissingInstrument(self.name, "layer instruments",
                                    f"{type(self.model).__name__} has no encoder.layers to hook")
        return self._encoder().layers

    @property
    def n_layers(self) -> int:
        return len(self._layers_module())

    @property
    def device(self):
        return next(self.model.parameters()).device

    def frames(self, n_samples: int) -> int:
        """Encoder frames of a clip of ``n_samples`` samples."""
        return int(self.model.base_model._get_feat_extract_output_lengths(int(n_samples)))

    def frame_seconds(self) -> float:
        return float(np.prod(self.model.config.conv_stride)) / self.sample_rate

    # ------------------------------------------------------------------ hooks
    @contextlib.contextmanager
    def hooked(self, ops: Sequence[tuple[int, Callable]]) -> Iterator[None]:
        """Install ``(residual layer, fn(h) -> h or None)`` as forward hooks; always removed on exit."""
        layers = self._layers_module() if ops else None
        handles = []
        try:
            for l, fn in ops:
                if not 0 <= l <= len(layers):
                    raise ValueError(f"{self.name}: residual layer {l} out of range 0 .. {len(layers)}")
                if l == 0:
                    def pre(mod, args, kwargs, fn=fn):
                        h = args[0] if args else kwargs["hidden_states"]
                        new = fn(h)
                        if new is None:
                            return None
                        if args:
                            return (new, *args[1:]), kwargs
                        return args, {**kwargs, "hidden_states": new}
                    handles.append(layers[0].register_forward_pre_hook(pre, with_kwargs=True))
                else:
                    def post(mod, args, out, fn=fn):
                        h = out[0] if isinstance(out, tuple) else out
                        new = fn(h)
                        if new is None:
                            return None
                        return (new, *out[1:]) if isinstance(out, tuple) else new
                    handles.append(layers[l - 1].register_forward_hook(post))
            yield
        finally:
            for h in handles:
                h.remove()

    def _groups(self, examples: Sequence[Example]) -> list[list[int]]:
        by_len: dict[int, list[int]] = {}
        for i, ex in enumerate(examples):
            by_len.setdefault(len(ex.audio), []).append(i)
        return list(by_len.values())

    def _inputs(self, examples: Sequence[Example]) -> dict:
        wavs = [np.asarray(ex.audio, dtype=np.float32) for ex in examples]
        feats = self.fe(wavs, sampling_rate=self.sample_rate, return_tensors="pt")
        dtype = next(self.model.parameters()).dtype
        return {"input_values": feats["input_values"].to(self.device, dtype)}

    def _forward(self, examples: Sequence[Example], ops_for: Callable[[list[int]], list] | None = None,
                 attentions: bool = False) -> list:
        """One forward per equal-length group; ``ops_for(group indices)`` gives its hooks.
        Returns per example (logits [n_classes], attentions tuple or None)."""
        import torch

        out: list = [None] * len(examples)
        for g in self._groups(examples):
            ops = ops_for(g) if ops_for else []
            with torch.no_grad(), self.hooked(ops):
                res = self.model(**self._inputs([examples[i] for i in g]), output_attentions=attentions)
            for k, i in enumerate(g):
                att = tuple(a[k] for a in res.attentions) if attentions else None
                out[i] = (res.logits[k].float().cpu(), att)
        return out

    # ------------------------------------------------------------------ labels
    def _label_index(self) -> list[list[int]]:
        """Per run label, the head classes that map to it."""
        return [[i for i, c in self.class_label.items() if c == l] for l in self.labels]

    def label_scores(self, logits) -> np.ndarray:
        """Per run label the logsumexp of its head classes' logits (NO_CLASS if none). # [b, n_raw] -> [b, n_labels]"""
        import torch

        return self._label_scores_t(torch.as_tensor(logits)).detach().cpu().numpy()

    def _label_scores_t(self, logits):
        """``label_scores`` on a tensor, differentiable (attribution). # [b, n_raw] -> [b, n_labels]"""
        import torch

        logits = logits.float().reshape(-1, logits.shape[-1])
        cols = [torch.logsumexp(logits[:, idx], -1) if idx else
                torch.full((logits.shape[0],), NO_CLASS, device=logits.device, dtype=logits.dtype)
                for idx in self._label_index()]
        return torch.stack(cols, -1)

    def label_probs(self, logits) -> np.ndarray:
        """Closed-set probabilities over the run's labels. # [b, n_raw] -> [b, n_labels]"""
        import torch

        used = sorted(i for idx in self._label_index() for i in idx)
        if not used:
            raise ValueError(f"{self.name}: no head class maps into this run's labels {list(self.labels)} "
                             f"(head labels: {self.describe()['label_map']})")
        p = torch.softmax(torch.as_tensor(logits).float()[:, used], -1)
        pos = {c: k for k, c in enumerate(used)}
        return torch.stack([p[:, [pos[i] for i in idx]].sum(-1) if idx else torch.zeros(p.shape[0])
                            for idx in self._label_index()], -1).numpy()

    # ------------------------------------------------------------------ predict
    def predict(self, examples: Sequence[Example]) -> list[Prediction]:
        self._refuse_prompt(examples)
        logits = self.run_with_edits(examples)
        probs = self.label_probs(logits)
        out = []
        for row in probs:
            d = {l: float(p) for l, p in zip(self.labels, row)}
            out.append(Prediction(label=self.labels[int(np.argmax(row))], probs=d))
        return out

    # ------------------------------------------------------------------ edits
    def span_frames(self, span: str, n_frames: int) -> np.ndarray:
        """Frame positions of ``audio`` or ``audio:START-END`` (seconds) in a clip of ``n_frames`` frames."""
        if span in ("audio", "acoustic"):
            return np.arange(n_frames)
        m = _SUBSPAN.match(span)
        if not m:
            raise MissingInstrument(self.name, f"span {span!r}",
                                    "it has one span, 'audio' (or a time sub-span 'audio:START-END' in seconds); "
                                    "no prompt, cues, transcript or answer")
        a, b = float(m.group(1)), float(m.group(2))
        if b <= a:
            raise ValueError(f"span {span!r}: END must be after START (seconds)")
        fs = self.frame_seconds()
        lo, hi = int(np.floor(a / fs)), int(np.ceil(b / fs))
        return np.arange(max(lo, 0), min(hi, n_frames))

    def _edit_ops(self, examples: Sequence[Example], g: list[int], edits_rows, sources) -> list:
        """Hook ops for ``[(Edit, example indices)]`` restricted to group ``g``."""
        from probes.models.alm.engine import time_align

        ops = []
        for e, rows in edits_rows:
            local = [k for k, i in enumerate(g) if i in set(rows)]
            src_full = None
            if not local:
                continue
            if e.kind == "ablate":
                if e.mode not in ("zero", "mean"):
                    raise ValueError(f"ablation mode {e.mode!r}: use 'zero' or 'mean'")
            elif e.kind == "patch":
                src_ex = (sources or {}).get(e.source)
                if src_ex is None and self.source_loader is not None:
                    src_ex = self.source_loader(e.source)
                if src_ex is None:
                    raise NotImplementedError(
                        f"patch from {e.source!r}: the adapter has no way to get that utterance; pass sources= to "
                        "run_with_edits(), or set adapter.source_loader = fn(utt_id) -> Example")
                src_full = self.capture([src_ex], e.layer, "audio")[0]
            else:
                raise NotImplementedError(f"{self.name}: edit kind {e.kind!r} is not implemented (it applies "
                                          "'ablate' and 'patch')")

            def fn(h, e=e, local=local, src_full=src_full):
                import torch

                h = h.clone()
                pos = torch.as_tensor(self.span_frames(e.span, h.shape[1]), dtype=torch.long)
                if not len(pos):
                    return h
                for r in local:
                    cur = h[r, pos]
                    if e.kind == "ablate":
                        new = torch.zeros_like(cur) if e.mode == "zero" else cur.mean(0, keepdim=True).expand_as(cur)
                    else:
                        sp = torch.as_tensor(self.span_frames(e.span, src_full.shape[0]), dtype=torch.long)
                        src = src_full[sp]
                        if src.shape[0] != cur.shape[0]:
                            src = src[time_align(cur.shape[0], src.shape[0])]
                        new = src
                    h[r, pos] = new.to(h.dtype).to(h.device)
                return h
            ops.append((e.layer, fn))
        return ops

    def _all_edits(self, examples, edits):
        own = sorted({e for ex in examples for e in ex.edits}, key=repr)
        pairs = [(e, [i for i, ex in enumerate(examples) if e in ex.edits]) for e in own]
        return pairs + [(e, list(range(len(examples)))) for e in edits]

    def run_with_edits(self, examples: Sequence[Example], edits: Sequence[Edit] = (), *,
                       sources: dict[str, Example] | None = None):
        """The head's logits (all head classes) with ``edits`` on every row. # [b, n_classes]"""
        import torch

        self._refuse_prompt(examples)
        pairs = self._all_edits(examples, edits)
        res = self._forward(examples, (lambda g: self._edit_ops(examples, g, pairs, sources)) if pairs else None)
        return torch.stack([r[0] for r in res])

    def ablate(self, examples, layer: int, span: str = "audio", mode: str = "zero"):
        return self.run_with_edits(examples, [Edit(kind="ablate", span=span, layer=layer, mode=mode)])

    # ------------------------------------------------------------------ reads
    def eager_attention(self):
        """Eager attention (the only kind that returns weights) for the duration of a ``with``."""
        from probes.models.alm.engine import eager_attention

        return eager_attention(self.model)

    def _layers(self, layers) -> list[int]:
        return list(range(self.n_layers + 1)) if layers is None else [Edit("ablate", layer=l).layer for l in layers]

    def hidden_states(self, examples: Sequence[Example], layers: Sequence[int] | None = None,
                      spans: Sequence[str] = ("audio",), pool: str = "mean") -> dict:
        """Residual stream at ``audio`` (or time sub-spans) x residual layers (default 0 .. L).

        ``pool="mean"``: each span ``[b, n_layers, hidden]`` (mean over frames); ``"none"``: a list
        per row of ``[n_layers, n_frames, hidden]``. The examples' own edits apply first."""
        import torch

        if pool not in ("mean", "none"):
            raise ValueError(f"pool {pool!r}: use 'mean' or 'none'")
        self._refuse_prompt(examples)
        for s in spans:
            self.span_frames(s, 1)  # refuses unknown spans before any work
        layers = self._layers(layers)
        got: dict = {}
        pairs = self._all_edits(examples, ())

        def ops_for(g):
            def reader(l):
                def fn(h):
                    for k, i in enumerate(g):
                        got[(l, i)] = h[k].detach().float().cpu()
                    return None
                return fn
            return self._edit_ops(examples, g, pairs, None) + [(l, reader(l)) for l in layers]
        self._forward(examples, ops_for)
        out: dict = {"layers": layers}
        for s in spans:
            rows = []
            for i in range(len(examples)):
                full = torch.stack([got[(l, i)] for l in layers])              # [n_layers, frames, d]
                pos = torch.as_tensor(self.span_frames(s, full.shape[1]), dtype=torch.long)
                rows.append(full[:, pos])
            out[s] = rows if pool == "none" else torch.stack(
                [r.mean(1) if r.shape[1] else torch.zeros(r.shape[0], r.shape[2]) for r in rows])
        return out

    def capture(self, examples: Sequence[Example], layer: int, span: str = "audio") -> list:
        """One residual layer at one span, per example. # each [n_frames, hidden]"""
        return [r[0] for r in self.hidden_states(examples, layers=[layer], spans=[span], pool="none")[span]]

    def attention(self, examples: Sequence[Example], layers: Sequence[int] | None = None) -> dict:
        """Per block and head, the attention weights **averaged over query frames** (no answer position).

        Returns ``{"weights": list per row of [n_blocks, heads, frames], "layers", "spans", "lengths"}``."""
        import torch

        self._refuse_prompt(examples)
        layers = list(range(self.n_layers)) if layers is None else [int(l) for l in layers]
        pairs = self._all_edits(examples, ())
        with self.eager_attention():
            res = self._forward(examples, (lambda g: self._edit_ops(examples, g, pairs, None)) if pairs else None,
                                attentions=True)
        w, lengths = [], []
        for _, att in res:
            if att is None or len(att) != self.n_layers or att[0] is None:
                raise MissingInstrument(self.name, "attention weights",
                                        f"{type(self.model).__name__} returned no attention weights")
            w.append(torch.stack([att[l].float().mean(1) for l in layers]).cpu())  # [n_blocks, heads, frames]
            lengths.append(int(att[0].shape[-1]))
        return {"weights": w, "layers": layers, "spans": [{"audio": (0, n)} for n in lengths], "lengths": lengths}

    # ------------------------------------------------------------------ inside-probe instruments
    def inside_info(self) -> InsideInfo:
        cfg = self.model.config
        return InsideInfo(n_layers=self.n_layers, n_heads=int(cfg.num_attention_heads), pools=("audio-mean",),
                          spans=("audio",), supports=frozenset({"attention", "hidden", "patch", "attribution"}),
                          why_not={"lens": "it has no unembedding: its head reads the pooled last layer, not a "
                                           "per-position residual (no text output)"})

    def inside_read(self, examples: Sequence[Example], *, attention: bool = False, pools: Sequence[str] = (),
                    lens: bool = False) -> list[Readout]:
        if lens:
            raise MissingInstrument(self.name, "logit lens", self.inside_info().why_not["lens"])
        bad = [p for p in pools if p != "audio-mean"]
        if bad:
            raise ValueError(f"{self.name}: pools {bad} unknown; it offers audio-mean")
        logits = self.run_with_edits(examples)
        final = self.label_scores(logits)
        n = [self.frames(len(ex.audio)) for ex in examples]
        reads = [Readout(utt_id=ex.utt_id, spans={"audio": (0, n[i])}, seq_len=n[i], answer_pos=n[i] - 1,
                         final=final[i]) for i, ex in enumerate(examples)]
        if attention:
            att = self.attention(examples)["weights"]
            for r, a in zip(reads, att):
                r.attention = a.numpy()
        if pools:
            hs = self.hidden_states(examples, spans=["audio"], pool="mean")["audio"]
            for r, h in zip(reads, hs):
                r.pooled["audio-mean"] = h.numpy()
        return reads

    def inside_patch(self, target: Example, source: Example, *, span: str, layers: Sequence[int]) -> np.ndarray:
        """Label scores ``[len(layers), n_labels]`` of ``target`` with ``span`` at each layer taken from
        ``source`` (time-aligned when the lengths differ; identity for equal lengths)."""
        import torch

        rows = [self.run_with_edits([target], [Edit("patch", span=span, layer=int(l), source=source.utt_id)],
                                    sources={source.utt_id: source}) for l in layers]
        return self.label_scores(torch.cat(rows))

    # seconds per time span of the attribution (the spans partition the clip; the last may be shorter)
    attribution_span_seconds: float = 0.5

    def time_spans(self, n_frames: int, seconds: float | None = None) -> dict[str, np.ndarray]:
        """Consecutive time spans ``audio:START-END`` (seconds, two decimals) covering every frame."""
        fs = self.frame_seconds()
        step = max(1, int(round((seconds or self.attribution_span_seconds) / fs)))
        return {f"audio:{a * fs:.2f}-{min(a + step, n_frames) * fs:.2f}": np.arange(a, min(a + step, n_frames))
                for a in range(0, n_frames, step)}

    def inside_attribution(self, example: Example) -> AttributionInputs:
        """A differentiable view at the encoder input (residual 0: the frames the transformer layers read).

        ``inputs``: the clip's residual 0 ``[1, frames, d]`` (the example's own edits at residual 0
        included); ``baselines``: residual 0 of the same number of samples of silence ("hears
        nothing"); ``forward(x)``: the model run with residual 0 replaced by ``x`` (the example's
        edits at later layers hold along the path) -> per run label the logsumexp of its head
        classes' logits. ``spans``: consecutive time spans ``audio:START-END`` of
        ``attribution_span_seconds`` (0.5 s), so span ablation gives a share per stretch of time and
        integrated gradients per frame summed the same way.
        """
        import torch

        self._refuse_prompt([example])
        x0 = self.capture([example], 0, "audio")[0][None]                          # [1, frames, d]
        silent = example.with_(audio=np.zeros_like(np.asarray(example.audio, dtype=np.float32)), edits=())
        base = self.capture([silent], 0, "audio")[0][None]
        iv = self._inputs([example])["input_values"]
        late = [(e, [0]) for e in example.edits if e.layer >= 1]
        dtype = next(self.model.parameters()).dtype

        def forward(x):                                                             # [n, frames, d] -> [n, n_labels]
            n = x.shape[0]
            ops = [(0, lambda h, x=x: x.to(h.device, h.dtype))]
            ops += self._edit_ops([example] * n, list(range(n)), [(e, list(range(n))) for e, _ in late], None)
            with self.hooked(ops):
                logits = self.model(input_values=iv.expand(n, -1).to(dtype)).logits
            return self._label_scores_t(logits)

        return AttributionInputs(inputs=(x0.float(),), baselines=(base.float(),), forward=forward,
                                 spans={k: (0, v) for k, v in self.time_spans(int(x0.shape[1])).items()})


_TINY: dict = {}


def build_tiny(kind: str = "wav2vec2"):
    """A tiny random-weight ``<Kind>ForSequenceClassification`` with its feature extractor (seeded)."""
    import torch
    from transformers import Wav2Vec2FeatureExtractor

    if kind not in TINY_CLASSES:
        raise ValueError(f"tiny_class {kind!r}: use one of {', '.join(TINY_CLASSES)}")
    common = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                  conv_dim=(16, 16, 16), conv_kernel=(10, 4, 4), conv_stride=(5, 4, 4), num_conv_pos_embeddings=16,
                  num_conv_pos_embedding_groups=2, classifier_proj_size=16, num_labels=4,
                  id2label={0: "neu", 1: "hap", 2: "sad", 3: "ang"},
                  label2id={"neu": 0, "hap": 1, "sad": 2, "ang": 3})
    if kind == "wav2vec2":
        from transformers import Wav2Vec2Config as C, Wav2Vec2ForSequenceClassification as M
    elif kind == "hubert":
        from transformers import HubertConfig as C, HubertForSequenceClassification as M
    else:
        from transformers import WavLMConfig as C, WavLMForSequenceClassification as M
        common.update(num_buckets=32, max_bucket_distance=100)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = M(C(**common))
    fe = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16_000, padding_value=0.0, do_normalize=True,
                                  return_attention_mask=False)
    return model.eval(), fe
