"""End to end: a smoke study, the book built from it offline, and the site checked in a headless browser.

The study is the real pipeline (`dpdl study run --profile smoke`, results in a temporary folder); the book is
built by `dpdl book build --out` into another temporary folder, so the repository is left alone. The browser
checks need Debian's chromium (`make test` installs it); without one they are skipped, except under CI=true.
"""
from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dpdl import book
from dpdl.paths import REPO_ROOT

pytestmark = pytest.mark.slow

DPDL = [sys.executable, "-c", "import sys; from dpdl.cli import main; sys.exit(main())"]
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _run(args, env=None, timeout=600):
    proc = subprocess.run(DPDL + list(args), cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))
    return proc


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("book")
    try:  # the session's smoke study, shared with the study's own tests (run once, resumed afterwards)
        from test_study_sweep import make_smoke_results
    except ImportError:
        make_smoke_results = None
    if make_smoke_results is not None:
        results = make_smoke_results(tmp_path_factory)
    else:
        results = tmp_path_factory.mktemp("smoke_results")
        study = _run(["study", "run", "--profile", "smoke", "--results-dir", str(results), "--no-progress"],
                     env={"DPDL_RESULTS": str(results)})
        assert study.returncode == 0, f"smoke study failed:\n{study.stdout[-3000:]}\n{study.stderr[-3000:]}"
    env = {"DPDL_RESULTS": str(results)}
    records = list((results / "runs" / "smoke").rglob("run.json"))
    assert records, "the smoke study wrote no run records"
    built = _run(["book", "build", "--profile", "smoke", "--results-dir", str(results), "--out", str(out)],
                 env=env)
    assert built.returncode == 0, f"dpdl book build failed:\n{built.stdout[-4000:]}\n{built.stderr[-4000:]}"
    html = out / "_build" / "html"
    assert (html / "index.html").is_file()
    return {"html": html, "results": results, "out": out}


def _pages(html: Path, pattern: str) -> list[Path]:
    return sorted((html / "book" / "_generated").glob(pattern))


def test_every_toc_page_is_built(site):
    for f in book.toc_files(REPO_ROOT / "_toc.yml"):
        assert (site["html"] / f"{f}.html").is_file(), f"{f} was not built"


def test_no_broken_links_images_or_network_resources(site):
    assert book.check_site(site["html"]) == []


def test_pages_label_the_profile_and_point_to_provenance(site):
    for page in _pages(site["html"], "report_*.html"):
        text = page.read_text(encoding="utf-8")
        assert "Profile: smoke" in text, f"{page.name} does not name its profile"
    summary = (site["html"] / "book" / "_generated" / "report_summary.html").read_text(encoding="utf-8")
    assert "the smoke profile" in summary and "Verdict rules" in summary   # the answer and the rules
    prov = (site["html"] / "book" / "_generated" / "report_provenance.html").read_text(encoding="utf-8")
    run_ids = [p.parent.name for p in (site["results"] / "runs" / "smoke").rglob("run.json")]
    missing = [r for r in run_ids if r not in prov]
    assert not missing, f"run records missing from the provenance page: {missing[:5]}"
    assert "dpdl train --dataset synthetic" in prov


def test_generated_notebooks_hide_parameters(site):
    import nbformat

    nb = nbformat.read(site["out"] / "src" / "book" / "_generated" / "report_summary.ipynb", as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and all("remove-cell" in c.metadata["tags"] for c in injected)


def test_no_cdn_mathjax(site):
    method = (site["html"] / "book" / "method.html").read_text(encoding="utf-8")
    assert re.search(r'<script[^>]+src="[^"]*_static/mathjax/tex-chtml\.js', method)
    assert "cdn.jsdelivr.net" not in method and "fonts.googleapis" not in method


# ----------------------------------------------------------------------------------------------- browser
def _chromium() -> str | None:
    explicit = os.environ.get("CHROMIUM")
    if explicit and shutil.which(explicit):
        return shutil.which(explicit)
    for name in CHROMIUM_NAMES:
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    exe = _chromium()
    if exe is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium is required in CI (make test installs Debian's chromium) but was not found")
        pytest.skip("no chromium found (install Debian's `chromium`, as `make test` does); browser checks skipped")
    profile = tmp_path_factory.mktemp("chromium-profile")
    flags = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={profile}"]

    def dump(path: Path, budget_ms: int = 5000) -> str:
        proc = subprocess.run(flags + [f"--virtual-time-budget={budget_ms}", "--dump-dom", path.as_uri()],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"chromium failed on {path}: {proc.stderr[-2000:]}"
        return proc.stdout

    def screenshot(path: Path, png: Path) -> None:
        proc = subprocess.run(flags + ["--virtual-time-budget=5000", "--window-size=1400,1800",
                                       f"--screenshot={png}", path.as_uri()],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and png.is_file(), f"chromium screenshot failed: {proc.stderr[-2000:]}"

    def dump_wide(path: Path, budget_ms: int = 5000) -> str:
        proc = subprocess.run(flags + [f"--virtual-time-budget={budget_ms}", "--window-size=1400,1000", "--dump-dom",
                                       path.as_uri()], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"chromium failed on {path}: {proc.stderr[-2000:]}"
        return proc.stdout

    return {"dump": dump, "screenshot": screenshot, "dump_wide": dump_wide, "flags": flags}


def _count(dom: str, tag: str) -> int:
    return len(re.findall(rf"<{tag}[\s>]", dom, flags=re.IGNORECASE))


def test_index_loads_in_a_browser_with_its_table(site, browser, tmp_path):
    dom = browser["dump"](site["html"] / "index.html")
    assert "DPDL — a reproduction study" in dom
    assert "Introduction" in dom and "Profile: smoke" in dom
    assert _count(dom, "table") >= 1, "the introduction's verdict table is missing"
    png = tmp_path / "index.png"
    browser["screenshot"](site["html"] / "index.html", png)
    assert png.stat().st_size > 20_000  # a rendered page, not a blank one


def test_table_and_figure_pages_load_in_a_browser(site, browser):
    pages = _pages(site["html"], "report_table*.html") + _pages(site["html"], "report_fig*.html")
    expected = [n for n in book.report_notebooks(REPO_ROOT / "_toc.yml") if n.startswith(("report_table", "report_fig"))]
    assert len(pages) == len(expected)
    for page in pages:
        dom = browser["dump"](page)
        assert "Profile: smoke" in dom, f"{page.name}: no profile label"
        if page.name.startswith("report_table"):
            assert _count(dom, "table") >= 1 or "not run here" in dom, f"{page.name}: no table and no not-run line"
        else:
            assert _count(dom, "img") >= 1 or "not run here" in dom, f"{page.name}: no figure"
        assert "ERR_FILE_NOT_FOUND" not in dom


def test_equations_render_offline(site, browser):
    dom = browser["dump"](site["html"] / "book" / "method.html", budget_ms=10000)
    assert _count(dom, "mjx-container") >= 20, "MathJax did not typeset the method page"
    assert _count(dom, "mjx-merror") == 0, "MathJax reported a TeX error on the method page"


# What the layout check measures, in the page itself at 1400 px (its report is written into the DOM):
# - no element reaches past the right edge of the viewport, and nothing scrolls sideways (page or container);
# - in every table row, the text of each cell ends at least 6 px before the text of the next cell starts.
LAYOUT_JS = """
<script>
window.addEventListener('load', function () {
  var W = document.documentElement.clientWidth, bad = [];
  function name(el) { return el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
                      (el.className && el.className.baseVal === undefined ? '.' + String(el.className).split(' ')[0] : ''); }
  if (document.documentElement.scrollWidth > W + 1) bad.push('page scrolls sideways: ' + document.documentElement.scrollWidth + ' > ' + W);
  document.querySelectorAll('main *').forEach(function (el) {
    if (el.closest('mjx-container, .MathJax, mjx-assistive-mml')) return;
    var r = el.getBoundingClientRect();
    if (r.width > 0 && r.height > 0 && r.right > W + 1)
      bad.push('wider than the page: ' + name(el) + ' right=' + Math.round(r.right) + ' "' + el.textContent.trim().slice(0, 40) + '"');
    var st = getComputedStyle(el);
    if ((st.overflowX === 'auto' || st.overflowX === 'scroll') && el.scrollWidth > el.clientWidth + 1)
      bad.push('scrolls sideways: ' + name(el) + ' ' + el.scrollWidth + ' > ' + el.clientWidth);
  });
  document.querySelectorAll('main table tr').forEach(function (tr) {
    var cells = Array.prototype.slice.call(tr.children), prev = null;
    cells.forEach(function (td) {
      var rg = document.createRange(); rg.selectNodeContents(td);
      var r = rg.getBoundingClientRect(), box = td.getBoundingClientRect(), cs = getComputedStyle(td);
      /* an equation wider than its cell scrolls inside it: only the part inside the cell is seen */
      if (td.querySelector('mjx-container')) r = {left: Math.max(r.left, box.left + parseFloat(cs.paddingLeft)),
        right: Math.min(r.right, box.right - parseFloat(cs.paddingRight)), top: r.top, height: r.height, width: r.width};
      if (!td.textContent.trim() || r.width === 0) { prev = null; return; }
      if (prev && Math.abs(prev.top - r.top) < r.height && r.left - prev.right < 6)
        bad.push('cells run together: "' + prev.text.slice(-20) + '" | "' + td.textContent.trim().slice(0, 20) + '"');
      prev = {right: r.right, top: r.top, text: td.textContent.trim()};
    });
  });
  var out = document.createElement('pre'); out.id = 'dpdl-layout-report';
  var tag = 'LAY' + 'OUT';   /* not spelled whole here, so that the script's own text never matches */
  out.textContent = tag + '[' + bad.slice(0, 30).join(' ;; ') + ']' + tag + ' ' + bad.length;
  document.body.appendChild(out);
});
</script>
"""


def _layout_problems(page: Path, flags_dump) -> list[str]:
    probe = page.with_name(page.stem + ".layout-probe.html")
    text = page.read_text(encoding="utf-8")
    probe.write_text(text.replace("</body>", LAYOUT_JS + "</body>"), encoding="utf-8")
    try:
        dom = flags_dump(probe)
    finally:
        probe.unlink()
    m = re.search(r"LAYOUT\[(.*?)\]LAYOUT (\d+)", html.unescape(dom), flags=re.S)
    assert m, f"{page.name}: the layout probe did not run"
    return [p for p in m.group(1).split(" ;; ") if p]


def test_every_page_is_readable_at_1400_px(site, browser):
    """No sideways scrolling and no element wider than the page, every table cell separated, ε in scientific
    notation, one profile caption per page, "--data-root" with two hyphens."""
    pages = [site["html"] / f"{f}.html" for f in book.toc_files(REPO_ROOT / "_toc.yml")]
    problems = {}
    for page in pages:
        found = _layout_problems(page, browser["dump_wide"])
        if found:
            problems[page.name] = found[:5]
        text = page.read_text(encoding="utf-8")
        if page.stem.startswith("report_") and page.stem != "report_table4_datasets":
            assert text.count("Profile: smoke") == 1, f"{page.name}: the profile caption is not shown exactly once"
            assert "profile: smoke (" not in text, f"{page.name}: a second profile caption"
        assert "\u2013data-root" not in text and "&#8211;data-root" not in text, f"{page.name}: --data-root as en dash"
    assert not problems, f"pages not readable at 1400 px: {problems}"
    fig3 = (site["html"] / "book" / "_generated" / "report_fig3_sensitivity.html").read_text(encoding="utf-8")
    assert ">0.000<" not in fig3 and ">0.0001<" not in fig3   # ε values in scientific notation (1e-04)


# At 420 px (a phone): the page itself never scrolls sideways; an element past the right edge is allowed only
# inside a box that scrolls sideways on its own (a wide table). At any width: no equation clipped by its table cell
# or by a box around it, no raw LaTeX outside MathJax, no equation label shown as code.
NARROW_JS = r"""
<script>
window.addEventListener('load', function () { setTimeout(function () {
  var W = document.documentElement.clientWidth, bad = [], MAINSEL = window.DPDL_SEL || 'main *';
  function scrollsAlone(el) { for (var p = el.parentElement; p && p !== document.body; p = p.parentElement) {
    var o = getComputedStyle(p).overflowX; if (o === 'auto' || o === 'scroll') return p; } return null; }
  function hidden(el) { for (var p = el; p && p !== document.body; p = p.parentElement) {
    var cs = getComputedStyle(p); if (cs.visibility === 'hidden' || cs.display === 'none') return true; } return false; }
  if (document.documentElement.scrollWidth > W + 1) bad.push('page scrolls sideways: ' + document.documentElement.scrollWidth + ' > ' + W);
  document.querySelectorAll(MAINSEL).forEach(function (el) {
    if (el.closest('mjx-container, mjx-assistive-mml')) return;
    if (hidden(el)) return;   /* the theme's off-canvas drawers (hidden until opened) */
    var r = el.getBoundingClientRect();
    if (r.width > 0 && r.height > 0 && r.right > W + 1 && !scrollsAlone(el))
      bad.push('past the page: ' + el.tagName.toLowerCase() + ' right=' + Math.round(r.right) + ' "' + el.textContent.trim().slice(0, 30) + '"');
  });
  document.querySelectorAll('main mjx-container').forEach(function (m) {
    var r = m.getBoundingClientRect(), td = m.closest('td, th');
    /* a display equation may scroll in its own box on a narrow screen; an inline one is never cut */
    /* (below 720 px an inline one wider than the column scrolls in its own box: MathJax 3 cannot wrap it) */
    if (W >= 720 && m.getAttribute('display') !== 'true' && getComputedStyle(m).overflowX !== 'visible' &&
        m.scrollWidth > m.clientWidth + 1) bad.push('equation cut inside itself: "' + m.textContent.slice(0, 30) + '"');
    if (td) { var b = td.getBoundingClientRect();
      if (r.right > b.right + 1 || r.left < b.left - 1) bad.push('equation clipped by its cell: ' + Math.round(r.width) + ' px in ' + Math.round(b.width)); }
    for (var p = m.parentElement; p && p !== document.body; p = p.parentElement) {
      var cs = getComputedStyle(p);
      if (cs.overflowX === 'hidden' || cs.overflowX === 'clip') { var pb = p.getBoundingClientRect();
        if (r.right > pb.right + 1 || r.left < pb.left - 1) bad.push('equation clipped by ' + p.tagName.toLowerCase() +
          '.' + String(p.className).split(' ')[0] + ': "' + m.textContent.slice(0, 30) + '"'); break; }
    }
  });
  var walker = document.createTreeWalker(document.querySelector('main') || document.body, NodeFilter.SHOW_TEXT);
  var tex = /\\(mathbf|mathcal|mathrm|boldsymbol|frac|operatorname|psi|epsilon|sigma|log|exp|sum|min)\b|\$[^$\s][^$]*\$/;
  while (walker.nextNode()) { var t = walker.currentNode, el = t.parentElement;
    if (!el || el.closest('mjx-container, code, pre, script, style, .MathJax, mjx-assistive-mml')) continue;
    if (tex.test(t.textContent)) bad.push('raw LaTeX: "' + t.textContent.trim().slice(0, 40) + '"'); }
  document.querySelectorAll('main code').forEach(function (c) {
    if (/^eq-[a-z0-9-]+$/.test(c.textContent.trim())) bad.push('equation label as code: ' + c.textContent.trim()); });
  var out = document.createElement('pre'); out.id = 'dpdl-layout-report';
  var tag = 'LAY' + 'OUT';
  out.textContent = tag + '[' + bad.slice(0, 30).join(' ;; ') + ']' + tag + ' ' + bad.length;
  document.body.appendChild(out);
}, 300); });
</script>
"""


def probe(page: Path, exe_flags: list, width: int, js: str = NARROW_JS, budget_ms: int = 8000) -> list[str]:
    """Load ``page`` at ``width`` px with the probe ``js`` and return the problems it reports."""
    target = page.with_name(page.stem + f".probe{width}.html")
    target.write_text(page.read_text(encoding="utf-8").replace("</body>", js + "</body>"), encoding="utf-8")
    try:
        proc = subprocess.run(exe_flags + [f"--virtual-time-budget={budget_ms}", f"--window-size={width},1000",
                                           "--dump-dom", target.as_uri()], capture_output=True, text=True, timeout=180)
    finally:
        target.unlink()
    assert proc.returncode == 0, f"chromium failed on {page}: {proc.stderr[-2000:]}"
    m = re.search(r"LAYOUT\[(.*?)\]LAYOUT (\d+)", html.unescape(proc.stdout), flags=re.S)
    assert m, f"{page.name}: the probe did not run"
    return [p for p in m.group(1).split(" ;; ") if p]


@pytest.mark.parametrize("width", [420, 1400])
def test_no_page_scrolls_sideways_and_no_math_is_clipped_or_raw(site, browser, width):
    """At 420 and 1400 px: no page scrolls sideways as a whole (wide tables scroll in their own box), no equation
    clipped, no raw LaTeX, no equation label shown as code."""
    pages = [site["html"] / f"{f}.html" for f in book.toc_files(REPO_ROOT / "_toc.yml")]
    problems = {p.name: found[:5] for p in pages if (found := probe(p, browser["flags"], width))}
    assert not problems, f"pages not readable at {width} px: {problems}"
