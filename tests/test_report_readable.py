"""report.html as a person reads it: headless Chromium lays out the committed reference and Wine
reports and a failing report, and a small script measures what a reader sees.

The pages forbid scripts (their Content-Security-Policy), so the test measures a copy: the policy
taken out and `MEASURE` appended, which writes its findings as JSON into the page; Chromium's
`--dump-dom` hands back the page after it ran. It checks the label sizes in the state diagrams
and the parallel-case lanes (read from the computed font size and the on-screen transform), text
boxes that overlap, lane labels that do not fit their bar, and trace tables wider than their
card. A screenshot of each page is kept beside the copies for a person to look at.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from callgate.conformance.report import diagrams, reporting
from callgate.conformance.results import read_stream
from tests import streams
from tests.conftest import ROOT
from tests.test_parallel_report import parallel_results

pytestmark = pytest.mark.slow

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--no-default-browser-check", "--window-size=1280,1600")
TIMEOUT = 120
MIN_FONT_PX = 9.0  # the smallest label a reader can still read at 100% zoom
COMMITTED = {"reference": ROOT / "reports" / "reference" / "report.html",
             "wine": ROOT / "reports" / "wine" / "report.html"}

# Runs in the page once it is laid out; writes what it found into <pre id="measured">.
MEASURE = """
<script>
(function () {
  const MIN = %(min)s;
  const found = {svgs: 0, texts: 0, min_font: 1e9, small: [], overlaps: [], cut: [], wide: []};
  const name = (svg) => (svg.closest('figure, article') || {}).id || svg.getAttribute('class') || '?';
  document.querySelectorAll('figure svg').forEach((svg) => {
    found.svgs += 1;
    const boxes = [];
    svg.querySelectorAll('text').forEach((t) => {
      const text = t.textContent.trim();
      if (!text) return;
      const m = t.getScreenCTM();
      const px = parseFloat(getComputedStyle(t).fontSize) * Math.hypot(m.a, m.b);
      found.texts += 1;
      found.min_font = Math.min(found.min_font, px);
      if (px < MIN) found.small.push([name(svg), text, Math.round(px * 10) / 10]);
      boxes.push([text, t.getBoundingClientRect()]);
    });
    for (let i = 0; i < boxes.length; i++) {
      for (let j = i + 1; j < boxes.length; j++) {
        const a = boxes[i][1], b = boxes[j][1];
        const w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
        const h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
        if (w > 2 && h > 0.4 * Math.min(a.height, b.height)) {
          found.overlaps.push([name(svg), boxes[i][0], boxes[j][0]]);
        }
      }
    }
    if (svg.classList.contains('lanes')) {
      svg.querySelectorAll('g').forEach((g) => {
        const bar = g.querySelector('rect'), label = g.querySelector('text');
        if (!bar || !label) return;
        const r = bar.getBoundingClientRect(), l = label.getBoundingClientRect();
        if (l.left < r.left - 1 || l.right > r.right + 1 || !label.textContent.trim()) {
          found.cut.push([name(svg), label.textContent]);
        }
      });
    }
  });
  document.querySelectorAll('article table').forEach((table) => {
    const card = table.closest('article');
    if (table.getBoundingClientRect().right > card.getBoundingClientRect().right + 1) {
      found.wide.push(card.id);
    }
  });
  const out = document.createElement('pre');
  out.id = 'measured';
  out.textContent = JSON.stringify(found);
  document.body.appendChild(out);
})();
</script>
"""


def _browser() -> str:
    found = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if found is None:
        pytest.skip("Chromium is not installed: run `make system` or `apt-get install chromium`")
    return found


def _chromium(browser: str, profile: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", *argv],
                          capture_output=True, text=True, timeout=TIMEOUT, check=False)


def measure(browser: str, page: Path, work: Path) -> dict[str, Any]:
    """What `MEASURE` finds in `page`, laid out 1280 px wide; a screenshot lands beside it."""
    text = page.read_text(encoding="utf-8")
    text = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", text, count=1)
    measured = work / f"{page.parent.name}-{page.name}"
    measured.write_text(text.replace("</body>", MEASURE % {"min": MIN_FONT_PX} + "</body>", 1),
                        encoding="utf-8")
    done = _chromium(browser, work / "profile", "--dump-dom", measured.resolve().as_uri())
    found = re.search(r'<pre id="measured">(.*?)</pre>', done.stdout, re.S)
    assert found, f"the measuring script did not run: {done.stderr[-2000:]}"
    _chromium(browser, work / "profile", f"--screenshot={measured.with_suffix('.png')}",
              page.resolve().as_uri())
    result: dict[str, Any] = json.loads(found.group(1).replace("&amp;", "&").replace("&lt;", "<")
                                        .replace("&gt;", ">").replace("&quot;", '"'))
    result["dom"] = done.stdout
    return result


def assert_readable(found: dict[str, Any]) -> None:
    assert found["svgs"] and found["texts"], "no picture was measured"
    assert not found["small"], f"labels below {MIN_FONT_PX} px: {found['small'][:10]}"
    assert not found["overlaps"], f"text boxes that overlap: {found['overlaps'][:10]}"
    assert not found["cut"], f"lane labels that do not fit their bar: {found['cut'][:10]}"
    assert not found["wide"], f"tables wider than their card: {found['wide'][:10]}"


@pytest.fixture(scope="module")
def browser() -> str:
    return _browser()


@pytest.fixture(scope="module")
def failing_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A failing report: the sample stream's failures, a parallel case failing on a seeded fault
    of the reference, and a failing step whose observed output is a long unbroken value."""
    out = tmp_path_factory.mktemp("failing")
    cases = streams.sample_results()
    failed = next(c for c in cases if c.verdict.value == "fail" and c.trace)
    last = failed.trace[-1]
    long_value = replace(last, outputs={"reply": "x" * 400, "returned": False})
    cases.append(replace(failed, id="long-observed", trace=[*failed.trace[:-1], long_value]))
    _, race = parallel_results()
    cases.append(race)
    record = read_stream(streams.write_stream(out / "results.jsonl", cases))
    reporting.write_reports(record, out)
    return out / "report.html"


@pytest.mark.parametrize("which", sorted(COMMITTED))
def test_the_committed_reports_have_readable_diagrams_and_lanes(which: str, browser: str,
                                                               tmp_path: Path) -> None:
    if not diagrams.dot_available():
        pytest.skip("Graphviz `dot` is missing: the committed reports need no dot, but were "
                    "drawn with it; run `make system`")
    found = measure(browser, COMMITTED[which], tmp_path)
    assert_readable(found)
    # Self-loops are summarised: no diagram edge lists a dozen operation names.
    assert " ops</text>" in found["dom"]


def test_a_failing_report_is_readable_and_says_what_failed_in_words(
        browser: str, failing_page: Path, tmp_path: Path) -> None:
    found = measure(browser, failing_page, tmp_path)
    assert_readable(found)
    dom = found["dom"]
    # Only the machines the adapter implements are drawn, and the rest are named.
    assert dom.count('<figure id="diagram-') == 2 and 'id="not-drawn"' in dom
    assert "marked: 1 failing and 0 known-deviation transitions" in dom
    # Outputs in words, codes by name; no Python dict repr anywhere a reader looks.
    assert "{'" not in dom and "{&#39;" not in dom
    parallel = dom[dom.index('id="lanes-'):]
    message = re.search(r'<p class="msg">(.*?)</p>', parallel, re.S)
    assert message and "RPC_S_CALLPENDING" in message.group(1) + parallel, parallel[:2000]
    assert not re.search(r"-&gt; code \d", message.group(1)), message.group(1)
    # The race's branch steps say which states they may have started in.
    race = dom[dom.index(">race-begin-begin<"):]
    race = race[:race.index("</article>")]
    assert "unknown: no order" not in race and "phase=" in race


def test_the_measure_catches_small_overlapping_and_cut_labels(browser: str, tmp_path: Path) -> None:
    """The checks can fail: a page with a 6 px label, two labels on top of each other, a lane
    label wider than its bar and a table wider than its card."""
    page = tmp_path / "bad" / "report.html"
    page.parent.mkdir()
    page.write_text(
        '<html><body><figure id="diagram-x"><svg width="400" height="100">'
        '<text x="10" y="20" style="font-size:6px">tiny</text>'
        '<text x="10" y="60" style="font-size:12px">AsyncCall</text>'
        '<text x="14" y="62" style="font-size:12px">RpcAsyncCompleteCall</text></svg></figure>'
        '<figure id="lanes-1"><svg class="lanes" width="400" height="40"><g><rect x="10" y="5" '
        'width="20" height="20"/><text x="13" y="19" style="font-size:12px">CreateCall</text></g>'
        '</svg></figure><article id="case-1" style="width:200px"><table><tr><td>'
        + "y" * 300 + "</td></tr></table></article></body></html>", encoding="utf-8")
    found = measure(browser, page, tmp_path)
    assert [s[1] for s in found["small"]] == ["tiny"]
    assert found["overlaps"] == [["diagram-x", "AsyncCall", "RpcAsyncCompleteCall"]]
    assert found["cut"] == [["lanes-1", "CreateCall"]]
    assert found["wide"] == ["case-1"]
