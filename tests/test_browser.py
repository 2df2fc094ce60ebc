"""Every report kind rendered in headless Chromium at 1400 px: nothing wider than the page.

Uses the system's Chromium (``apt-get install chromium``; ``.ci/run`` installs it when missing);
skipped with the reason when there is none. Wide tables must scroll inside their own box, so
the check lists every visible element whose box leaves the page outside such a box.
Set ``DISSONANCE_SCREENSHOTS=DIR`` to keep a 1400 px screenshot of each page there.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from probes.report import write_report
from tests.fixtures.reports import layout_check

KINDS = ("predict", "fas-experiment", "attention-share", "token-all")


@pytest.mark.parametrize("kind", KINDS)
def test_report_fits_1400px(kind, report_runs, browser, tmp_path):
    page = write_report(report_runs[kind], tmp_path / kind / "report.html")
    shots = os.environ.get("DISSONANCE_SCREENSHOTS")
    shot = Path(shots) / f"{kind}.png" if shots else None
    if shot:
        shot.parent.mkdir(parents=True, exist_ok=True)
    res = layout_check(page, 1400, screenshot=shot, browser=browser)
    assert res["n_elements"] > 50
    assert res["scroll_width"] <= res["viewport"], res
    assert res["too_wide"] == [], res["too_wide"][:10]
    assert res["broken_images"] == []


def test_layout_check_catches_a_wide_table(browser, tmp_path):
    """The check itself: a 3,000 px table outside a scrolling box is found; inside one it is not."""
    cells = "".join(f"<td style='min-width:100px'>{i}</td>" for i in range(30))
    bare = tmp_path / "bare.html"
    bare.write_text(f"<!doctype html><html><body><table><tr>{cells}</tr></table></body></html>")
    res = layout_check(bare, 1400, browser=browser)
    assert res["scroll_width"] > 1400 and any(s.startswith("table") for s in res["too_wide"])
    boxed = tmp_path / "boxed.html"
    boxed.write_text(f"<!doctype html><html><body><div style='overflow-x:auto'><table><tr>{cells}</tr></table></div></body></html>")
    res = layout_check(boxed, 1400, browser=browser)
    assert res["too_wide"] == [] and res["scroll_width"] <= 1400

