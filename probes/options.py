"""Probe options (``probe run PROBE --set NAME=VALUE``) and run arguments, checked before any work.

A probe is a dataclass; its fields are its options. Each field's type (``int``, ``float``,
``bool``, ``str``, ``X | None``, ``tuple``) says how a ``--set`` value is read, and its metadata
may say more:

- ``help``: one line of meaning, shown by ``probe run PROBE --help``;
- ``choices``: the allowed values, or a function of no arguments returning them (so a probe can
  name, say, the cue templates without importing them when the module loads);
- ``validate``: a function ``value -> None`` that raises ``ValueError`` with the reason.

``build_probe`` turns the ``--set`` strings into a probe or raises one ``OptionError`` whose line
names the option, the value and what is allowed. ``check_run_args`` does the same for the
runner's own arguments (``--batch-size``, ``--limit``).
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import MISSING, dataclass, fields, is_dataclass
from typing import Any, Callable


class OptionError(ValueError):
    """A bad option value; the message names the option, the value and what is allowed."""


@dataclass(frozen=True)
class OptionSpec:
    name: str
    type: Any            # the resolved annotation
    default: Any
    help: str
    choices: Any = None  # a sequence, a callable returning one, or None
    validate: Callable | None = None

    @property
    def type_name(self) -> str:
        return _type_name(self.type)

    def allowed(self) -> list | None:
        c = self.choices() if callable(self.choices) else self.choices
        return list(c) if c is not None else None


def option_specs(probe_cls) -> list[OptionSpec]:
    """The options of a probe class, in field order."""
    if not is_dataclass(probe_cls):
        return []
    try:
        hints = typing.get_type_hints(probe_cls)
    except Exception:  # an annotation that names a type only imported for type checkers
        hints = {}
    out = []
    for f in fields(probe_cls):
        if not f.init:
            continue
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else MISSING)  # type: ignore[misc]
        out.append(OptionSpec(f.name, hints.get(f.name, f.type), default, f.metadata.get("help", ""),
                              f.metadata.get("choices"), f.metadata.get("validate")))
    return out


def describe_options(probe_cls) -> str:
    """The ``--set`` options of a probe as help text: name, type, default, meaning."""
    specs = option_specs(probe_cls)
    if not specs:
        return "  (this probe has no options)"
    lines = []
    for s in specs:
        default = "required" if s.default is MISSING else json.dumps(s.default, default=str)
        allowed = None
        try:
            allowed = s.allowed()
        except Exception:
            pass
        extra = f" One of: {', '.join(map(str, allowed))}." if allowed else ""
        lines.append(f"  {s.name}  ({s.type_name}, default {default})\n      {s.help or '-'}{extra}")
    return "\n".join(lines)


def parse_sets(pairs: list[str] | None) -> dict[str, str]:
    """``["NAME=VALUE", ...]`` -> {name: raw string}; dashes in names become underscores."""
    out: dict[str, str] = {}
    for p in pairs or []:
        if "=" not in p:
            raise OptionError(f"--set {p!r}: write it as NAME=VALUE")
        k, v = p.split("=", 1)
        out[k.strip().replace("-", "_")] = v
    return out


def build_probe(probe_cls, raw: dict[str, Any], *, name: str | None = None):
    """A probe from raw option values (strings from ``--set``, or already typed values)."""
    name = name or getattr(probe_cls, "registered_name", getattr(probe_cls, "name", probe_cls.__name__))
    specs = {s.name: s for s in option_specs(probe_cls)}
    kwargs = {}
    for k, v in raw.items():
        if k not in specs:
            known = ", ".join(specs) or "none"
            raise OptionError(f"probe {name}: no option {k!r}; its options are: {known} (`probe run {name} --help`)")
        kwargs[k] = check_value(specs[k], v, where=f"probe {name}: --set {k}")
    try:
        return probe_cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise OptionError(f"probe {name}: {e}") from None


def check_value(spec: OptionSpec, value: Any, *, where: str) -> Any:
    """Coerce ``value`` to the option's type and check its choices and validator."""
    try:
        v = coerce(spec.type, value)
    except ValueError as e:
        raise OptionError(f"{where}={_show(value)}: {e}") from None
    allowed = spec.allowed()
    if allowed is not None and v is not None:
        vals = v if isinstance(v, (tuple, list)) else (v,)
        bad = [x for x in vals if x not in allowed]
        if bad:
            raise OptionError(f"{where}={_show(value)}: not allowed; one of: {', '.join(map(str, allowed))}")
    if spec.validate is not None:
        try:
            spec.validate(v)
        except (ValueError, OSError) as e:
            raise OptionError(f"{where}={_show(value)}: {e}") from None
    return v


def coerce(tp: Any, value: Any) -> Any:
    """Read ``value`` (a ``--set`` string or a typed value) as the annotation ``tp``."""
    if isinstance(tp, str):  # an annotation left as text (its names could not be resolved)
        tp = _from_text(tp)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and (value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", ""))):
            return None
        rest = [a for a in args if a is not type(None)]
        errors = []
        for a in rest:
            try:
                return coerce(a, value)
            except ValueError as e:
                errors.append(str(e))
        raise ValueError("; ".join(errors) + (" (or none)" if type(None) in args else ""))
    if tp is bool:
        if isinstance(value, bool):
            return value
        s = str(value).strip().lower()
        if s in ("true", "1", "yes", "on"):
            return True
        if s in ("false", "0", "no", "off"):
            return False
        raise ValueError("expected true or false")
    if tp is int:
        if isinstance(value, bool):
            raise ValueError("expected a whole number")
        if isinstance(value, int):
            return value
        try:
            return int(str(value).strip())
        except ValueError:
            raise ValueError("expected a whole number") from None
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        try:
            return float(str(value).strip())
        except ValueError:
            raise ValueError("expected a number") from None
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ValueError("expected text")
    if tp in (tuple, list) or origin in (tuple, list):
        if isinstance(value, (tuple, list)):
            items = list(value)
        else:
            s = str(value).strip()
            if s.startswith("["):
                try:
                    items = json.loads(s)
                except json.JSONDecodeError:
                    raise ValueError('expected a list, e.g. ["a","b"] or a,b') from None
            else:
                items = [x.strip() for x in s.split(",") if x.strip()]
                items = [_scalar(x) for x in items]
        return tuple(items) if (tp is tuple or origin is tuple) else list(items)
    if tp is dict or origin is dict:
        if isinstance(value, dict):
            return value
        try:
            v = json.loads(str(value))
        except json.JSONDecodeError:
            raise ValueError('expected a JSON object, e.g. {"a": 1}') from None
        if not isinstance(v, dict):
            raise ValueError('expected a JSON object, e.g. {"a": 1}')
        return v
    # an unknown annotation: a JSON value when it reads as one, the text otherwise
    if isinstance(value, str):
        return _scalar(value)
    return value


_BASIC = {"int": int, "float": float, "bool": bool, "str": str, "tuple": tuple, "list": list, "dict": dict}


def _from_text(text: str) -> Any:
    parts = [p.strip() for p in text.split("|")]
    base = [_BASIC.get(p.split("[")[0], Any) for p in parts if p != "None"]
    if "None" in parts:
        return typing.Optional[typing.Union[tuple(base)]] if base else type(None)
    return base[0] if len(base) == 1 else typing.Union[tuple(base)]


def _scalar(s: str):
    try:
        return json.loads(s)
    except json.JSONDecodeError:
        return s


def _type_name(tp: Any) -> str:
    if isinstance(tp, str):
        return tp
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "none"
    if origin in (tuple, list):
        return "list"
    return getattr(tp, "__name__", str(tp))


def _show(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, default=str)


# ---- the runner's own arguments -----------------------------------------------------------------
def check_run_args(*, batch_size: int | None = None, limit: int | None = None, seed: int | None = None) -> None:
    """One line per bad runner argument, before any work."""
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise OptionError(f"--batch-size {batch_size}: must be a whole number of at least 1")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise OptionError(f"--limit {limit}: must be a whole number of at least 1 (leave it out for every utterance)")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise OptionError(f"--seed {seed}: must be a whole number of at least 0")


def positive(name: str) -> Callable[[Any], None]:
    """A ``validate`` for counts: at least 1."""
    def check(v):
        if v is not None and v < 1:
            raise ValueError(f"{name} must be at least 1")
    return check
