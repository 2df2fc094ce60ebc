"""IEMOCAP: 5 sessions of dyadic English conversation (10 actors), categorical and dimensional labels.

Reads, for each ``ROOT/Session{1-5}``:
- ``dialog/EmoEvaluation/{dialog}.txt``: one label line per utterance,
  ``[start - end]<TAB>{utt}<TAB>{code}<TAB>[valence, activation, dominance]``, the consensus
  line, followed by the evaluators' categorical lines ``C-E2:<TAB>Neutral;<TAB>(comment)`` (one or
  more categories each, ``;``-separated): these become soft labels (below);
- ``sentences/wav/{dialog}/{utt}.wav``: the audio;
- ``dialog/transcriptions/{dialog}.txt`` (when present): ``{utt} [start-end]: text``.

``utt`` is like ``Ses01F_impro01_M003``: session 01, the dialog's female-led recording, and
the *utterance's* speaker is the letter before the last digits (M here), so ``speaker`` is
``Ses01M``. Extras: ``session``, ``gender``, ``valence``, ``arousal``, ``dominance``,
``start``, ``end``.

Category codes: neu, hap, exc, sad, ang, fru, fea, sur, dis, oth, xxx (no agreement).
Class conventions (``--set classes=``):

- ``4`` (default): ang angry, hap happy, exc happy, neu neutral, sad sad; everything else dropped.
  ``--set excited_as_happy=false`` drops exc instead (the stricter 4-class set).
- ``5``: the four plus fru (frustration) as ``other``.
- ``all``: every code: fea fear, sur surprise, dis disgust, fru and oth other, exc happy (or
  other with excited_as_happy=false); only xxx is dropped.

Soft labels (``--set soft_labels=false`` turns them off): each evaluator's vote is split evenly
over the categories they named, mapped with the same class convention as the hard label, and
written as ``soft_<label>`` vote counts (``probes/data/corpora/_soft.py``: ``n_soft_votes``,
``n_soft_dropped`` for votes on dropped categories). The actors' self-evaluations (``C-F1``,
``C-M1``) are left out unless ``--set soft_self=true``.

IEMOCAP has no official split: the convention is leave-one-session-out, so ``split`` stays
empty unless ``--set test_session=N`` marks session N as test and the others as train.
IEMOCAP has no text emotion label: ``semantic_label`` stays empty.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable, Iterator

from probes.data.corpora._soft import soft_columns, soft_targets
from probes.data.corpora.base import Corpus, Labels, Option, read_text_file
from probes.registry import CORPORA

LABEL_LINE = re.compile(r"\[(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\]\t(\S+)\t(\S+)\t\[([^\]]*)\]")
EVAL_LINE = re.compile(r"C-([A-Za-z]+)\d*:\s*(.*)")
# evaluator category words (as the EmoEvaluation files write them) -> the codes of the consensus line
EVAL_WORDS = (("neutral", "neu"), ("happ", "hap"), ("excit", "exc"), ("sad", "sad"), ("ang", "ang"),
              ("frustr", "fru"), ("fear", "fea"), ("surpr", "sur"), ("disg", "dis"), ("other", "oth"))
TRANSCRIPT_LINE = re.compile(r"(\S+)\s+\[[^\]]*\]:\s*(.*)")
UTT = re.compile(r"Ses(\d\d)[FM]_.*_([FM])\d+")
CODES = ("neu", "hap", "exc", "sad", "ang", "fru", "fea", "sur", "dis", "oth", "xxx")
FOUR = {"ang": "angry", "hap": "happy", "exc": "happy", "neu": "neutral", "sad": "sad"}
ALL = {**FOUR, "fru": "other", "fea": "fear", "sur": "surprise", "dis": "disgust", "oth": "other"}


@CORPORA.register("iemocap")
class IEMOCAP(Corpus):
    """IEMOCAP: dyadic English conversations in 5 sessions; 4-class (hap+exc), 5-class or all labels."""

    mapping = dict(FOUR)
    dropped = frozenset(c for c in CODES if c not in FOUR)
    display = "IEMOCAP"
    layout = ("Session1 ... Session5 folders, each with dialog/EmoEvaluation/*.txt label files and "
              "sentences/wav/<dialog>/<utt>.wav")
    options = {
        "classes": Option("4", "label convention: 4 (ang/hap+exc/neu/sad), 5 (plus fru as other) or all", str, ("4", "5", "all")),
        "excited_as_happy": Option(True, "count exc (excited) as happy; false drops it (4/5) or makes it other (all)", bool),
        "soft_labels": Option(True, "read the evaluators' categorical votes into soft_<label> columns", bool),
        "soft_self": Option(False, "count the actors' self-evaluations (C-F1, C-M1) in the soft labels", bool),
        "test_session": Option(0, "mark this session (1-5) as test and the rest as train; 0 leaves split empty", int, (0, 1, 2, 3, 4, 5)),
    }

    @classmethod
    def _base_mapping(cls, opts: dict[str, Any]) -> dict[str, str | None]:
        m: dict[str, str | None] = dict(ALL) if opts["classes"] == "all" else dict(FOUR)
        if opts["classes"] == "5":
            m["fru"] = "other"
        if not opts["excited_as_happy"]:
            if opts["classes"] == "all":
                m["exc"] = "other"
            else:
                del m["exc"]
        return m

    @classmethod
    def resolve_mapping(cls, opts: dict[str, Any]) -> dict[str, str | None]:
        return {**cls._base_mapping(opts), **(opts.get("label_map") or {})}

    @classmethod
    def resolve_dropped(cls, opts: dict[str, Any]) -> Iterable[str]:
        kept = set(cls.resolve_mapping(opts))
        return [c for c in CODES if c not in kept]

    @classmethod
    def records(cls, root: Path, opts: dict[str, Any], labels: Labels) -> Iterator[dict]:
        return (r for r in cls._records(root, opts, labels) if r is not None)

    @classmethod
    def _records(cls, root: Path, opts: dict[str, Any], labels: Labels) -> Iterator[dict | None]:
        targets = soft_targets(labels)
        sessions = [root / f"Session{i}" for i in range(1, 6) if (root / f"Session{i}").is_dir()]
        if not sessions:
            raise cls.not_like(root, "no Session1 ... Session5 folder")
        for sess in sessions:
            snum = int(sess.name[-1])
            eval_dir = sess / "dialog" / "EmoEvaluation"
            label_files = sorted(p for p in eval_dir.glob("*.txt") if not p.name.startswith(".")) if eval_dir.is_dir() else []
            if not label_files:
                raise cls.not_like(sess, "no dialog/EmoEvaluation/*.txt label files")
            split = "" if not opts["test_session"] else ("test" if snum == opts["test_session"] else "train")
            for lf in label_files:
                dialog = lf.stem
                texts = _transcript(sess / "dialog" / "transcriptions" / f"{dialog}.txt")
                pending: dict | None = None
                votes: dict[str, float] = {}
                for lineno, line in enumerate(read_text_file(lf).splitlines(), start=1):
                    line = line.strip()
                    ev = EVAL_LINE.match(line) if pending is not None and opts["soft_labels"] else None
                    if ev is not None:
                        if opts["soft_self"] or ev.group(1).upper().startswith("E"):
                            cats = [_eval_code(w, f"{lf}:{lineno}") for w in ev.group(2).split("(")[0].split(";") if w.strip()]
                            for c in cats:
                                votes[c] = votes.get(c, 0.0) + 1.0 / len(cats)
                        continue
                    m = LABEL_LINE.match(line)
                    if m is None:
                        continue
                    if pending is not None:
                        yield _with_soft(pending, votes, labels, targets, opts)
                    pending, votes = None, {}
                    start, end, utt, code, vad = m.groups()
                    where = f"{lf}:{lineno}"
                    um = UTT.fullmatch(utt)
                    if um is None or int(um.group(1)) != snum:
                        raise cls.not_like(lf, f"line {lineno}: utterance id {utt!r} is not of the form Ses0{snum}F_..._F000")
                    label = labels(code, where)
                    if label is None:
                        pending = {"skip": True, "where": where}
                        continue
                    v, a, d = (list(x.strip() for x in vad.split(",")) + ["", "", ""])[:3]
                    gender = um.group(2)
                    pending = cls.record(
                        root, utt, sess / "sentences" / "wav" / dialog / f"{utt}.wav", label,
                        text=texts.get(utt, ""), speaker=f"Ses{snum:02d}{gender}", split=split,
                        raw_label=code, session=snum, gender=gender.lower(), dialog=dialog,
                        valence=v, arousal=a, dominance=d, start=start, end=end,
                    )
                    pending["where"] = where
                if pending is not None:
                    yield _with_soft(pending, votes, labels, targets, opts)


def _eval_code(word: str, where: str) -> str:
    w = word.strip().lower()
    for prefix, code in EVAL_WORDS:
        if w.startswith(prefix):
            return code
    from probes.data.corpora.base import CorpusError

    raise CorpusError(f"{where}: evaluator category {word.strip()!r} is not an IEMOCAP category "
                      f"({', '.join(p for p, _ in EVAL_WORDS)}...); fix the line, or --set soft_labels=false")


def _with_soft(rec: dict, votes: dict[str, float], labels: Labels, targets: list[str], opts: dict[str, Any]):
    """The pending record with its soft-label columns (None for a dropped utterance: not yielded)."""
    where = rec.pop("where")
    if rec.get("skip"):
        return None
    if opts["soft_labels"]:
        rec.update(soft_columns(votes, labels, targets, where))
    return rec


def _transcript(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    out = {}
    for line in read_text_file(path).splitlines():
        m = TRANSCRIPT_LINE.match(line.strip())
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out
