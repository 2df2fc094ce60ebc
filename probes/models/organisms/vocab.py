"""The organisms' trimmed Qwen vocabulary: the real Qwen2-Audio token ids, renumbered compactly.

What it is: the organisms tokenize with the real Qwen tokenizer of Qwen2-Audio
(``probes.models.tokenizers.qwen_tokenizer("qwen2-audio")``: the 151,643 BPE ranks of
``qwen.tiktoken`` plus the specials at their published ids, e.g. ``<|AUDIO|>`` 151646). Only the
ids that the organisms' prompts, transcripts and label words use are kept (about 1,300 of 151,649)
and renumbered 0..V-1, so that the embedding and unembedding matrices stay small enough to commit.
Compact id 0 is ``<|unk|>``: any real id outside the kept set maps to it (``n_unknown`` counts
them), so text the organisms never saw in training reaches them as unknown tokens, not as
wrong ones. ``real_ids[i]`` is the real Qwen id of compact id ``i``.

How it tokenizes without the 151k-rank tokenizer: building the real tokenizer costs about 10 s of
CPU, so the vocabulary file keeps the real ids of every text piece met while building it
(``pieces``: chat pieces, prompt templates split at the transcript, every bank sentence, label
words). A piece not in that table is encoded by the real tokenizer, built lazily on first use
(needs the ``real-tokenizers`` extra: dashscope + tiktoken). Decoding joins the kept tokens'
strings (exact for English text; a multi-byte character split across two tokens would not be).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

UNK = "<|unk|>"
FAMILY = "qwen2-audio"


class TrimmedTokenizer:
    """The subset of ``PreTrainedTokenizerFast`` that the ALM adapters use, over compact ids."""

    padding_side = "right"
    is_fast = True   # answers ``return_offsets_mapping`` (the adapters tokenize the user text in one call)

    def __init__(self, real_ids: Sequence[int], token_text: Sequence[str], specials: dict[str, int],
                 pieces: dict[str, list[int]] | None = None, offsets: dict[str, list] | None = None):
        if real_ids[0] != -1 or token_text[0] != UNK:
            raise ValueError("compact id 0 must be <|unk|> (real id -1)")
        self.real_ids = [int(i) for i in real_ids]
        self.token_text = list(token_text)
        self._compact = {r: c for c, r in enumerate(self.real_ids)}
        self.specials = {s: self._compact[r] for s, r in specials.items() if r in self._compact}
        self._special_ids = set(self.specials.values()) | {0}
        self.pieces = dict(pieces or {})
        self.offsets = {k: [tuple(o) for o in v] for k, v in (offsets or {}).items()}
        self.n_unknown = 0
        self._full = None

    # ---------------------------------------------------------------- the tokenizer surface
    def __len__(self) -> int:
        return len(self.real_ids)

    @property
    def unk_token_id(self) -> int:
        return 0

    @property
    def pad_token_id(self) -> int:
        return self.specials["<|endoftext|>"]

    @property
    def eos_token_id(self) -> int:
        return self.specials["<|im_end|>"]

    def convert_tokens_to_ids(self, token: str) -> int:
        return self.specials.get(token, 0)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self.to_compact(self.real_encode(text))

    def __call__(self, text: str, add_special_tokens: bool = False, return_offsets_mapping: bool = False, **_):
        if not return_offsets_mapping:
            return {"input_ids": self.encode(text)}
        if text not in self.offsets:
            enc = self.full()(text, add_special_tokens=False, return_offsets_mapping=True)
            self.pieces[text], self.offsets[text] = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
        return {"input_ids": self.to_compact(self.pieces[text]), "offset_mapping": list(self.offsets[text])}

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        out = []
        for i in ids:
            i = int(i)
            if skip_special_tokens and i in self._special_ids:
                continue
            out.append(self.token_text[i] if 0 <= i < len(self.token_text) else UNK)
        return "".join(out)

    # ---------------------------------------------------------------- real ids
    def real_encode(self, text: str) -> list[int]:
        """Real Qwen ids of ``text`` (from the stored pieces, else the real tokenizer)."""
        got = self.pieces.get(text)
        if got is None:
            got = self.full().encode(text, add_special_tokens=False)
            self.pieces[text] = got
        return list(got)

    def to_compact(self, real: Iterable[int]) -> list[int]:
        out = []
        for r in real:
            c = self._compact.get(int(r), 0)
            if c == 0:
                self.n_unknown += 1
            out.append(c)
        return out

    def full(self):
        """The real 151k-rank Qwen2-Audio tokenizer (built on first use, ~10 s)."""
        if self._full is None:
            from probes.models.tokenizers import qwen_tokenizer

            self._full = qwen_tokenizer(FAMILY)
        return self._full

    # ---------------------------------------------------------------- storage
    def to_json(self) -> dict:
        return {"family": FAMILY, "source": "probes.models.tokenizers.qwen_tokenizer('qwen2-audio') (qwen.tiktoken of dashscope)",
                "real_ids": self.real_ids, "token_text": self.token_text,
                "specials": {s: self.real_ids[c] for s, c in self.specials.items()}, "pieces": self.pieces,
                "offsets": {k: [list(o) for o in v] for k, v in self.offsets.items()}}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), ensure_ascii=False, sort_keys=True, indent=0) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "TrimmedTokenizer":
        d = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(d["real_ids"], d["token_text"], d["specials"], d["pieces"], d.get("offsets"))


class RecordingTokenizer:
    """Wraps the real tokenizer and records every text piece it encodes (to build the vocabulary)."""

    def __init__(self, full):
        self.full = full
        self.pieces: dict[str, list[int]] = {}
        self.offsets: dict[str, list] = {}
        self.is_fast = True

    def __len__(self) -> int:
        return len(self.full)

    def __getattr__(self, name):
        return getattr(self.full, name)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        ids = self.full.encode(text, add_special_tokens=False)
        self.pieces[text] = list(ids)
        return ids

    def __call__(self, text: str, add_special_tokens: bool = False, return_offsets_mapping: bool = False, **kw):
        enc = self.full(text, add_special_tokens=False, return_offsets_mapping=return_offsets_mapping, **kw)
        if return_offsets_mapping:
            self.pieces[text] = list(enc["input_ids"])
            self.offsets[text] = [tuple(o) for o in enc["offset_mapping"]]
        return enc


def build_vocab(full, pieces: dict[str, list[int]], specials: Sequence[str], offsets: dict | None = None) -> TrimmedTokenizer:
    """A TrimmedTokenizer keeping the ids of ``pieces`` and ``specials`` (sorted by real id)."""
    spec = {s: int(full.convert_tokens_to_ids(s)) for s in specials}
    keep = sorted({i for ids in pieces.values() for i in ids} | set(spec.values()))
    text = [UNK] + [full.decode([i]) for i in keep]
    return TrimmedTokenizer([-1, *keep], text, spec, pieces, offsets)
