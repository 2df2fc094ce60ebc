"""Progress bars whose time estimate can be believed.

The first units of a step are the slowest (caches fill, kernels compile, the first batch pays
for loading), so an estimate from them is wildly long (16 min shown for a 2 min step). The bar
here shows no estimate until ``warmup`` units are done and then estimates from the rate *since*
the warm-up: the time per unit measured after the slow start, averaged over every unit since
(no jumpy moving average).
"""

from __future__ import annotations

import time

WARMUP = 3


def progress_bar(*, total: int, initial: int = 0, desc: str = "", unit: str = "unit", disable: bool = False,
                 warmup: int = WARMUP, **kw):
    from tqdm.auto import tqdm

    class _Bar(tqdm):
        _warm_n: int | None = None
        _warm_t: float = 0.0

        def update(self, n=1):
            out = super().update(n)
            if self.disable:
                return out
            if self._warm_n is None and self.n - getattr(self, "initial", 0) >= warmup:
                self._warm_n, self._warm_t = self.n, time.time()
            return out

        @property
        def format_dict(self):
            d = dict(super().format_dict)
            if self._warm_n is None or self.n <= self._warm_n:
                d["bar_format"] = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<?]"
                d["rate"] = None
            else:
                dt = time.time() - self._warm_t
                d["rate"] = (self.n - self._warm_n) / dt if dt > 0 else None
            return d

    return _Bar(total=total, initial=initial, desc=desc, unit=unit, disable=disable, dynamic_ncols=True, **kw)


def quiet_libraries() -> None:
    """Keep other libraries' chatter out of our output: transformers' weight-loading bars and
    matplotlib's constrained-layout warnings. Cheap: touches only modules already imported or
    installs warning filters."""
    import sys
    import warnings

    warnings.filterwarnings("ignore", message=r".*constrained_layout.*")
    warnings.filterwarnings("ignore", message=r".*[Cc]onstrained [Ll]ayout.*")
    warnings.filterwarnings("ignore", message=r".*tight_layout.*")
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    if "transformers" in sys.modules:
        disable_transformers_bars()


def disable_transformers_bars() -> None:
    try:
        from transformers.utils import logging as tlog

        tlog.disable_progress_bar()
    except Exception:  # an older or absent transformers: nothing to quiet
        pass
