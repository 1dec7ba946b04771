"""report.html as a person sees it: a generated report of 150 scenarios opened in a real headless
browser (Debian's chromium), the screenshot checked for the grid: there, of a sensible size, all
in the window's width, and with one cell of the same size per scenario in its outcome's colour.

Skips without chromium, unless GPU_HARNESS_REQUIRE names "browser" (CI), where that fails."""
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness import report
from harness.scenario.outcomes import Outcome
from harness.report import display, grid, records
from tests import runs

REQUIRED = {p.strip() for p in os.environ.get("GPU_HARNESS_REQUIRE", "").split(",") if p.strip()}
WINDOW = (1920, 1300)
BROWSERS = ("chromium", "chromium-browser")


def browser() -> str:
    found = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if found is None:
        reason = "no chromium on this machine (apt-get install chromium)"
        if "browser" in REQUIRED:
            pytest.fail(f"the browser test is required here but cannot run: {reason}")
        pytest.skip(reason)
    return found


def screenshot(page: Path, out: Path, profile: Path) -> np.ndarray:
    done = subprocess.run(
        [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--no-first-run",
         f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
         f"--screenshot={out}",
         page.as_uri()], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and out.is_file(), done.stderr[-2000:]
    return np.asarray(Image.open(out).convert("RGB"), dtype=np.int16)


def rgb(colour: str) -> np.ndarray:
    return np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.int16)


def painted(pixels: np.ndarray, colour: str) -> np.ndarray:
    return (np.abs(pixels - rgb(colour)).max(axis=2) <= 2)


def test_the_grid_in_a_real_browser(tmp_path):
    document = runs.document()
    runs.write(tmp_path / "run", document)
    report.render_from_json(tmp_path / "run")
    pixels = screenshot(tmp_path / "run" / "report.html", tmp_path / "report.png",
                        tmp_path / "profile")
    assert pixels.shape[:2] == (WINDOW[1], WINDOW[0])

    masks = {css: painted(pixels, colour) for css, colour in grid.COLOURS.items()}
    anywhere = np.logical_or.reduce(list(masks.values()))
    # The grid is where rows and columns are full of cell colours (a lone grey pixel at a
    # letter's edge elsewhere on the page is not).
    rows, columns = (np.nonzero(anywhere.sum(axis=1) >= 40)[0],
                     np.nonzero(anywhere.sum(axis=0) >= 20)[0])
    assert rows.size and columns.size, "no grid on the screen"
    top, bottom, left, right = rows.min(), rows.max(), columns.min(), columns.max()
    # Both grids (gl and vulkan, 6 runtimes each), one above the other, in the window's width:
    # no sideways scrolling for 25 paths; and not squeezed: at least 300 px high and 900 wide.
    assert 900 <= right - left < WINDOW[0] and 300 <= bottom - top < WINDOW[1]
    assert top < 450  # the grid opens the page, under the title and the path names

    # One cell per scenario, all the same size: the area each outcome's colour covers, divided
    # by its number of scenarios, is about the same for every outcome (text covers some of it).
    inside = {css: mask[top:bottom + 1, left:right + 1].sum() for css, mask in masks.items()}
    counts = {display.css_class(Outcome(o)): n for o, n in document["summary"].items()}
    per_cell = {css: inside[css] / counts[css] for css in counts}
    assert set(per_cell) == set(grid.COLOURS)  # every outcome's colour is in the grid
    typical = np.median(list(per_cell.values()))
    assert 1500 < typical < 5000, per_cell  # a cell of about 60 x 55 px, less its text
    assert all(0.75 * typical < area < 1.25 * typical for area in per_cell.values()), per_cell


def test_a_grid_link_opens_its_scenario_detail(tmp_path):
    document = runs.document(count=12)
    runs.write(tmp_path / "run", document)
    report.render_from_json(tmp_path / "run")
    page = (tmp_path / "run" / "report.html").as_uri()
    chosen = document["scenarios"][3]
    [target] = [cell.anchor for g in grid.build(records.entries(document["scenarios"]))
                for row in g.cells.values()
                for cell in row.values() if cell.scenario == chosen["id"]]
    done = subprocess.run([browser(), "--headless", "--no-sandbox", "--disable-gpu",
                           f"--user-data-dir={tmp_path}/p",
                           "--dump-dom", f"{page}#{target}"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    opened = [line for line in done.stdout.splitlines() if "<details open" in line]
    assert len(opened) == 1 and chosen["id"] in opened[0]  # that one, and only that one


# Measures, in the page, each grid line against its cell: wider than the cell (a word the browser
# would cut at the edge), or more lines than the cell is high.
MEASURE = """<script>
var over = [];
document.querySelectorAll("table.grid td a").forEach(function (cell) {
  if (cell.scrollHeight > cell.clientHeight + 1) { over.push("tall: " + cell.textContent); }
  cell.querySelectorAll("span").forEach(function (line) {
    if (line.scrollWidth > cell.clientWidth + 0.5) { over.push("wide: " + line.textContent); }
  });
});
document.body.setAttribute("data-over", JSON.stringify(over));
document.body.setAttribute("data-lines",
  String(document.querySelectorAll("table.grid td a span").length));
</script></body>"""


def test_every_grid_line_fits_its_cell_in_a_real_browser(tmp_path):
    """The lines of a cell are cut between words (grid.Cell.lines) to fit its width: in the
    browser no line is wider than its cell and no cell has more lines than it shows."""
    import json
    from html import unescape

    from harness.scenario.outcomes import FailureKind
    document = runs.document()
    failed = [s for s in document["scenarios"] if s["outcome"] == Outcome.FAIL.value]
    # every class, with long subjects
    for scenario, kind in zip(failed, list(FailureKind), strict=False):
        document = runs.changed(document, scenario["id"], failure_kind=kind.value, diagnosis={
            "class": kind.value,
            "subject": "vkEnumeratePhysicalDevices VK_ERROR_INITIALIZATION_FAILED"})
    runs.write(tmp_path / "run", document)
    report.render_from_json(tmp_path / "run")
    page = tmp_path / "run" / "report.html"
    page.write_text(page.read_text().replace("</body>", MEASURE))
    done = subprocess.run([browser(), "--headless", "--no-sandbox", "--disable-gpu",
                           f"--user-data-dir={tmp_path}/p",
                           f"--window-size={WINDOW[0]},{WINDOW[1]}", "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    over = json.loads(unescape(done.stdout.split('data-over="', 1)[1].split('"', 1)[0]))
    lines = int(done.stdout.split('data-lines="', 1)[1].split('"', 1)[0])
    assert lines > 250 and over == []
