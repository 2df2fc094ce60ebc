"""``--model-path`` checked in well under a second, before any loader retries for minutes.

``check_model_path(path_or_id)`` returns the folder or hub id to load from, or raises
``ModelPathError`` with one line naming the path and what to do:

- a local folder must exist and hold ``config.json`` (the file is named when it is missing);
- something that looks like a path (``/``, ``./``, ``~``, more than one ``/``, a file suffix) and
  does not exist is a missing folder, not a hub id;
- a hub id (``org/name``) already in the local hub cache is returned as its cached snapshot
  folder, with no network;
- a hub id not in the cache fails at once when the hub is offline (``HF_HUB_OFFLINE=1`` or
  ``TRANSFORMERS_OFFLINE=1``) or unreachable (one TCP connect to the hub's host, 2 s at most):
  the loaders would otherwise retry for minutes (3 min 10 s measured) before failing.

Nothing here imports torch or transformers.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
CONNECT_TIMEOUT_S = 2.0


class ModelPathError(ValueError):
    """A --model-path that cannot be loaded; the message names it and says what to do."""


def hub_offline() -> bool:
    """True when the user said no hub (the huggingface_hub and transformers switches). Read from
    the environment, as huggingface_hub does, without importing it (a second of imports)."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return True
    return False


def hub_reachable(timeout: float = CONNECT_TIMEOUT_S) -> bool:
    """One TCP connect to the hub's host (``HF_ENDPOINT`` or huggingface.co), no retries."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def hub_cache_dir() -> Path:
    """Where huggingface_hub keeps downloads: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface"
    return Path(home).expanduser() / "hub"


def cached_snapshot(repo_id: str) -> str | None:
    """The local snapshot folder of a hub id when its config.json is in the hub cache (the cache's
    layout: ``models--ORG--NAME/refs/main`` names the snapshot under ``snapshots/``)."""
    repo = hub_cache_dir() / ("models--" + repo_id.replace("/", "--"))
    try:
        ref = (repo / "refs" / "main").read_text().strip()
    except OSError:
        ref = None
    candidates = [repo / "snapshots" / ref] if ref else []
    snaps = repo / "snapshots"
    if snaps.is_dir():
        candidates += sorted(p for p in snaps.iterdir() if p.is_dir())
    for snap in candidates:
        if (snap / "config.json").exists():
            return str(snap)
    return None


def looks_like_path(s: str) -> bool:
    return (s.startswith(("/", "./", "../", "~", ".\\")) or s.count("/") > 1 or "\\" in s
            or Path(s).suffix.lower() in (".safetensors", ".bin", ".pt", ".json") or not HUB_ID.match(s))


def check_model_path(path_or_id: str) -> str:
    """The local folder or hub id to load from; ModelPathError (one line) when it cannot work."""
    if not path_or_id or not str(path_or_id).strip():
        raise ModelPathError("--model-path is empty; give a local folder with the weights or a hub id (org/name)")
    s = str(path_or_id).strip()
    local = Path(s).expanduser()
    if local.exists():
        if not local.is_dir():
            raise ModelPathError(f"{local}: is a file; --model-path takes the folder that holds config.json and the weights")
        if not (local / "config.json").exists():
            raise ModelPathError(f"{local / 'config.json'}: missing; --model-path takes the folder that holds the model's "
                                 "config.json and weights (for a hub download: its snapshots/<hash> folder)")
        return str(local)
    if looks_like_path(s):
        raise ModelPathError(f"{s}: no such folder; give the local folder that holds the model's config.json and weights, "
                             "or a hub id such as Qwen/Qwen2-Audio-7B-Instruct")
    snap = cached_snapshot(s)
    if snap:
        return snap
    if hub_offline():
        raise ModelPathError(f"{s}: not in the local hub cache and the hub is switched off (HF_HUB_OFFLINE=1); download it "
                             f"where a hub is reachable (`huggingface-cli download {s}`) and pass that folder, "
                             "or unset HF_HUB_OFFLINE")
    if not hub_reachable():
        raise ModelPathError(f"{s}: not in the local hub cache and no hub is reachable from here; download it on a "
                             f"machine with network (`huggingface-cli download {s}`) and pass --model-path that folder")
    return s
