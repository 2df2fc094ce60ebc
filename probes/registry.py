"""One generic registry, shared by models, probes, interventions and corpora.

The registered names are the CLI's vocabulary (kebab-case): ``probe run token-shuffle`` looks
up ``PROBES["token-shuffle"]``. Registration happens when a module is imported, so each
registry knows which packages to import the first time it is asked for a name (``discover``).
Modules that register things keep heavy imports (transformers) inside functions so that
discovery stays cheap.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class RegistryError(KeyError):
    """An unknown name; the message lists the closest known names."""

    def __str__(self) -> str:  # KeyError quotes its message; we want plain text
        return str(self.args[0])


class Registry(Generic[T]):
    def __init__(self, kind: str, packages: tuple[str, ...] = (), plural: str | None = None):
        self.kind = kind
        self.plural = plural or kind + "s"
        self._packages = packages
        self._entries: dict[str, T] = {}
        self._discovered = False

    def register(self, name: str) -> Callable[[T], T]:
        if name != name.lower() or " " in name or "_" in name:
            raise ValueError(f"{self.kind} names are kebab-case, got {name!r}")

        def deco(obj: T) -> T:
            old = self._entries.get(name)
            if old is not None and old is not obj and _qualname(old) != _qualname(obj):
                raise ValueError(f"{self.kind} {name!r} is registered twice: {_qualname(old)} and {_qualname(obj)}")
            self._entries[name] = obj
            try:
                obj.registered_name = name  # type: ignore[attr-defined]
                # the registered name is written once, in the decorator: classes get it as ``name``
                # too (unless ``name`` is one of a dataclass's own fields, e.g. a corpus option)
                if isinstance(obj, type) and "name" not in getattr(obj, "__dataclass_fields__", {}):
                    obj.name = name  # type: ignore[attr-defined]
            except (AttributeError, TypeError):
                pass
            return obj

        return deco

    def discover(self) -> None:
        """Import every module of the registry's packages once, so their decorators run."""
        if self._discovered:
            return
        self._discovered = True
        for pkg_name in self._packages:
            pkg = importlib.import_module(pkg_name)
            if not hasattr(pkg, "__path__"):
                continue
            for mod in pkgutil.iter_modules(pkg.__path__, pkg_name + "."):
                if not mod.name.rsplit(".", 1)[-1].startswith("_"):
                    importlib.import_module(mod.name)

    def __getitem__(self, name: str) -> T:
        if name not in self._entries:
            self.discover()
        if name not in self._entries:
            close = difflib.get_close_matches(name, list(self._entries), n=3)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise RegistryError(
                f"unknown {self.kind} {name!r}.{hint} `probe list {self.plural}` shows them all."
            )
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        self.discover()
        return name in self._entries

    def names(self) -> list[str]:
        self.discover()
        return sorted(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        for n in self.names():
            yield n, self._entries[n]


def _qualname(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def summary(obj: object) -> str:
    """First line of an entry's docstring, for `probe list`."""
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""


# The four registries of the workbench. Their packages are imported on first lookup.
# a package name imports all its public modules; a module name imports just that module (fas:
# only the modules that register, so that listing never pulls in torch through fas.model)
MODELS: Registry = Registry("model", ("probes.models", "fas.adapter", "fas.experiment"))
PROBES: Registry = Registry("probe", ("probes.library", "fas.experiment"))
INTERVENTIONS: Registry = Registry("intervention", ("interventions",))
CORPORA: Registry = Registry("corpus", ("probes.data.corpora",), plural="corpora")
