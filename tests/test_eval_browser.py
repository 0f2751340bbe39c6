"""The evaluation report in a real headless browser (Debian's Chromium, driven by Playwright): no JavaScript
error, no failed request, and every plot drawn with a visible size. CI installs Chromium; elsewhere the test is
skipped when no Chromium is installed."""

import json
import os
import shutil

import pytest

from rewardmill import LengthScorer
from rewardmill.evaluation import Evaluation, Pair, score_pairs
from rewardmill.evaluation.report import write_report
from rewardmill.reward_models.baselines import RandomScorer

BROWSER = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
needs_browser = pytest.mark.skipif(BROWSER is None and not os.environ.get("CI"),
                                   reason="no Chromium here (CI installs it: apt-get install chromium)")


@needs_browser
def test_the_report_renders_in_chromium_without_errors(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api") if not os.environ.get("CI") else __import__(
        "playwright.sync_api", fromlist=["sync_playwright"])
    assert BROWSER is not None, "CI must install Chromium (apt-get install chromium)"
    prompt = ({"role": "user", "content": "Explain <b>HTML</b> & \"quotes\"."},)
    pairs = [Pair(prompt, "a fine and thorough answer " * (i % 5 + 1), "meh" * (i % 3 + 1), f"subset {i % 3}")
             for i in range(60)]
    runs = [score_pairs(pairs, LengthScorer(), "length"), score_pairs(pairs, RandomScorer(), "random")]
    unusable = ["row 3: field 'label' must be 1 or 2, got 7", "row 9: field 'input' is empty"]
    write_report(Evaluation(pairs, runs, resamples=200, input_errors=unusable), tmp_path, source="generated")
    problems, requests = [], []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=BROWSER, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.on("pageerror", lambda error: problems.append(f"JavaScript error: {error}"))
        page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        page.on("requestfailed", lambda request: problems.append(f"failed request: {request.url}"))
        page.on("request", lambda request: requests.append(request.url))
        page.goto((tmp_path / "index.html").as_uri())
        plots = page.locator("figure.plot")
        assert plots.count() == 4
        for i in range(4):
            svg = plots.nth(i).locator("svg")
            assert svg.count() == 1, f"plot {i} is missing"
            box = svg.bounding_box()
            assert box and box["width"] > 200 and box["height"] > 100, f"plot {i} is not drawn: {box}"
        assert page.locator("#summary tr").count() == 3  # header + two scorers
        assert page.locator("#summary tr.best").count() == 0  # both are baselines
        assert page.locator("#unusable tr").nth(2).inner_text().split("\t") == ["9", "field 'input' is empty"]
        assert "Explain <b>HTML</b>" in page.locator(".card pre").first.inner_text()  # shown as text, escaped
        browser.close()
    assert problems == []
    assert all(url.startswith("file://") for url in requests), requests  # nothing fetched from a network
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report["scorers"]) == {"length", "random"}
