"""The study's report as a Jupyter Book: ``dpdl book build``, plus the tables of the book's own pages.

``dpdl book build [--profile P] [--results-dir R] [--no-execute] [--out DIR]``

1. checks ``_toc.yml``: every page it names exists (a page under ``book/_generated/`` needs its source
   notebook ``notebooks/<name>.ipynb``);
2. makes sure MathJax 3 is in ``book/_static/mathjax`` (served locally: the site needs no CDN);
3. executes every report notebook named in the toc with papermill (parameters ``profile``, ``results_dir``)
   into ``book/_generated/<name>.ipynb``; a notebook that raises fails the build, naming the notebook;
4. runs ``jupyter-book build . -W --keep-going --all`` (warnings such as a broken cross-reference or a
   missing page are errors), into ``_build/html``;
5. checks the built site: every local ``href``/``src`` resolves to a file, every ``#anchor`` exists,
   and no page loads a script, style sheet or font from the network.

With ``--out DIR`` the book's sources are copied to ``DIR/src`` and the site lands in ``DIR/_build/html``
(the tests use this; the repository's ``book/_generated`` is left alone).

The functions below the build (``load_records``, ``summary_table``, ``verdict_sentence``,
``provenance_table``, ``performance_tables``) compute the Introduction, Provenance and Performance pages
from the run records; the report notebooks call them.
"""
from __future__ import annotations

import html.parser
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Iterable

from .paths import REPO_ROOT, paper_tables_dir, results_dir as default_results_dir

TOC_NAME = "_toc.yml"
CONFIG_NAME = "_config.yml"
GENERATED = "book/_generated"
STATIC = "book/_static"
MATHJAX_VERSION = "3.2.2"
# The parts of the npm package `mathjax` the site needs: the TeX-to-CommonHTML bundle, its fonts, the TeX
# extensions it may autoload, the menu and the accessibility components it may load on demand.
MATHJAX_PARTS = ("es5/tex-chtml.js", "es5/output/chtml", "es5/input/tex/extensions", "es5/ui",
                 "es5/a11y", "es5/adaptors", "LICENSE")

def profile_note(profile: str) -> str:
    """What a profile changes from the paper, in one phrase, from :data:`dpdl.config.PROFILES`."""
    from .config import PROFILES

    p = PROFILES.get(profile)
    if p is None:
        return "a profile this package does not define"
    paper = PROFILES["paper"]
    if profile == "paper":
        return (f"the paper's settings ({p.image_size} px, {p.backbone} fine-tuned end to end, "
                f"{p.epochs} × {p.iters_per_epoch} iterations)")
    what = ("frozen" if not p.finetune_backbone else "fine-tuned") + f" {p.backbone} backbone at {p.image_size} px"
    if p.feature_cache:
        what += ", cached features"
    if p.adapter_dim:
        what += f", a {p.adapter_dim}-channel adapter"
    what += (f", {p.epochs} × {p.iters_per_epoch} iterations (paper: {paper.backbone} fine-tuned at "
             f"{paper.image_size} px, {paper.epochs} × {paper.iters_per_epoch})")
    if profile == "smoke":
        return "smoke test, whose numbers only show that the pipeline runs: " + what
    return "reduced fidelity: " + what


class BookError(Exception):
    """A failed book build, with one sentence that says what failed and where to look."""


# --------------------------------------------------------------------------------------------- the build
def _user_error(msg: str) -> Exception:
    try:
        from .cli import UserError
        return UserError(msg)
    except ImportError:  # pragma: no cover
        return BookError(msg)


def toc_files(toc_path: Path) -> list[str]:
    """Every page the toc names (root first), as paths without suffix, relative to the book root."""
    import yaml

    toc = yaml.safe_load(Path(toc_path).read_text(encoding="utf-8"))
    out: list[str] = [str(toc["root"])]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                out.append(str(node["file"]))
            for key in ("parts", "chapters", "sections"):
                for child in node.get(key, []) or []:
                    walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk({k: v for k, v in toc.items() if k != "root"})
    return out


def _strip_suffix(name: str) -> str:
    for suffix in (".ipynb", ".md"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def report_notebooks(toc_path: Path) -> list[str]:
    """Names of the report notebooks the toc shows (pages under ``book/_generated/``), in toc order."""
    names = []
    for f in toc_files(toc_path):
        f = _strip_suffix(f)
        if f.startswith(GENERATED + "/"):
            names.append(f[len(GENERATED) + 1:])
    return names


def check_toc(src_root: Path, notebooks_dir: Path) -> list[str]:
    """Problems with the toc: pages that do not exist (sources of generated pages: notebooks/<name>.ipynb),
    and report notebooks (``notebooks/report_*.ipynb``) that it does not list."""
    problems = []
    for f in toc_files(src_root / TOC_NAME):
        f = _strip_suffix(f)
        if f.startswith(GENERATED + "/"):
            name = f[len(GENERATED) + 1:]
            if not (notebooks_dir / f"{name}.ipynb").is_file():
                problems.append(f"{TOC_NAME} names {f}, but its report notebook notebooks/{name}.ipynb is missing")
        elif not any((src_root / f"{f}{s}").is_file() for s in (".md", ".ipynb")):
            problems.append(f"{TOC_NAME} names {f}, but neither {f}.md nor {f}.ipynb exists")
    listed = set(report_notebooks(src_root / TOC_NAME))
    for nb in sorted(Path(notebooks_dir).glob("report_*.ipynb")):
        if nb.stem not in listed:
            problems.append(f"notebooks/{nb.name} is a report notebook but {TOC_NAME} does not list "
                            f"{GENERATED}/{nb.stem}")
    return problems


def ensure_mathjax(static_dir: Path) -> Path:
    """MathJax 3 in ``static_dir/mathjax`` (committed; fetched with ``npm pack mathjax@3.2.2`` when missing)."""
    target = static_dir / "mathjax"
    if (target / "tex-chtml.js").is_file():
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise BookError(f"MathJax is missing from {target} and npm is not installed to fetch it "
                        f"(run `npm pack mathjax@{MATHJAX_VERSION}` and unpack its es5/ folder there)")
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([npm, "pack", f"mathjax@{MATHJAX_VERSION}", "--silent"], cwd=tmp,
                              capture_output=True, text=True)
        tgz = Path(tmp) / f"mathjax-{MATHJAX_VERSION}.tgz"
        if proc.returncode != 0 or not tgz.is_file():
            raise BookError(f"MathJax is missing from {target} and `npm pack mathjax@{MATHJAX_VERSION}` failed: "
                            f"{(proc.stderr or proc.stdout).strip()[-300:]}")
        with tarfile.open(tgz) as tar:
            tar.extractall(tmp, filter="data")
        pkg = Path(tmp) / "package"
        staging = static_dir / ".mathjax.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        for part in MATHJAX_PARTS:
            src = pkg / part
            dst = staging / (part[len("es5/"):] if part.startswith("es5/") else part)
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dst)
            else:
                shutil.copy2(src, dst)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return target


# What a report page's numbers are, when not run records of the profile (the banner's second sentence).
BANNER_SOURCES = {
    "report_table4_datasets": "The counts are computed from the data on this machine, not from run records.",
}


def profile_banner(profile: str, name: str = "", deviations_link: str = "../deviations.md",
                   provenance_link: str = "report_provenance.ipynb") -> str:
    """The MyST admonition that heads every report page: the profile of its numbers and where they come from."""
    note = profile_note(profile)
    kind = "note" if profile == "paper" else "warning"
    source = BANNER_SOURCES.get(name) or (
        f"Every result on this page comes from run records of the **{profile}** profile; "
        f"[Provenance]({provenance_link}) lists them, with the command that reruns each.")
    return (f":::{{admonition}} Profile: {profile}\n:class: {kind}\n"
            f"{note[:1].upper() + note[1:]}. {source} "
            f"[Deviations]({deviations_link}) lists every difference from the paper.\n:::")


def _finish_notebook(nb_path: Path, profile: str, name: str) -> None:
    """Head the page with the profile banner, hide the papermill parameters, fold the code (outputs stay)."""
    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tags = list(cell.metadata.get("tags", []))
        if "injected-parameters" in tags or "parameters" in tags:
            if "remove-cell" not in tags:
                tags.append("remove-cell")
        elif not any(t.startswith(("remove-", "hide-")) for t in tags):
            tags.append("hide-input")
        cell.metadata["tags"] = tags
    if not any("dpdl-profile-banner" in c.metadata.get("tags", []) for c in nb.cells):
        banner = nbformat.v4.new_markdown_cell(profile_banner(profile, name))
        banner.metadata["tags"] = ["dpdl-profile-banner"]
        first = nb.cells[0] if nb.cells else None
        at = 1 if first is not None and first.cell_type == "markdown" and first.source.lstrip().startswith("# ") else 0
        nb.cells.insert(at, banner)
    nbformat.write(nb, nb_path)


def _notebook_error(nb_path: Path) -> str:
    """The first error a (papermill-executed) notebook recorded, in one line."""
    try:
        nb = json.loads(nb_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "no output notebook was written"
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []) or []:
            if out.get("output_type") == "error":
                return f"{out.get('ename')}: {out.get('evalue')}"
    return "unknown error"


def kernel_log_path(dst: str | os.PathLike) -> Path:
    """Where the kernel's own stderr goes when the report notebook ``dst`` is executed (beside it)."""
    dst = Path(dst)
    return dst.with_name(dst.stem + ".kernel.log")


def _execute_one(src: str, dst: str, profile: str, results: str, cwd: str) -> str | None:
    """Run one notebook with papermill (in a worker process); None when it ran, else the error in one line.

    The kernel runs on private unix sockets and its own stderr goes to :func:`kernel_log_path`, not to the build
    log (see :mod:`dpdl.kernels`); errors raised by a cell come back through papermill and are reported."""
    import papermill

    from .kernels import papermill_kwargs, stderr_to

    log_path = kernel_log_path(dst)
    log_path.unlink(missing_ok=True)
    try:
        with stderr_to(log_path):
            papermill.execute_notebook(src, dst, parameters={"profile": profile, "results_dir": results},
                                       kernel_name="python3", cwd=cwd, progress_bar=False, log_output=False,
                                       execution_timeout=1800, **papermill_kwargs())
    except Exception as exc:  # papermill raises PapermillExecutionError, nbclient errors, ...
        ename = getattr(exc, "ename", None)
        if ename:
            return f"{ename}: {getattr(exc, 'evalue', '')}"
        detail = _notebook_error(Path(dst))
        return detail if detail != "unknown error" else f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None


def execute_reports(names: Iterable[str], notebooks_dir: Path, gen_dir: Path, profile: str,
                    results: Path, execute: bool = True, jobs: int | None = None, log=print) -> dict[str, float]:
    """Execute each report notebook with papermill into ``gen_dir`` (``jobs`` at a time); seconds per notebook.

    A notebook that raises stops the build with a :class:`BookError` naming it (and its executed copy, which
    holds the traceback)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    names = list(names)
    gen_dir.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    if not execute:
        for name in names:
            dst = gen_dir / f"{name}.ipynb"
            if not dst.is_file():
                log(f"  {name}: no executed copy in {gen_dir}; using the notebook unexecuted (--no-execute)")
                shutil.copy2(notebooks_dir / f"{name}.ipynb", dst)
            else:
                ran = (json.loads(dst.read_text(encoding="utf-8")).get("metadata", {}).get("papermill", {})
                       .get("parameters", {}).get("profile"))
                if ran and ran != profile:
                    log(f"  warning: {dst.name} was executed for profile {ran!r}, not {profile!r} (--no-execute)")
            _finish_notebook(dst, profile, name)
        return seconds
    jobs = max(1, min(jobs or min(2, os.cpu_count() or 1), len(names) or 1))
    failures: dict[str, str] = {}
    cwd = str(notebooks_dir.parent)
    # spawn, not fork: the caller may hold torch's threads (a test session), which fork does not copy safely
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {}
        for name in names:
            log(f"  executing notebooks/{name}.ipynb (profile={profile})")
            futures[name] = (time.perf_counter(), pool.submit(
                _execute_one, str(notebooks_dir / f"{name}.ipynb"), str(gen_dir / f"{name}.ipynb"),
                profile, str(results), cwd))
        for name, (t0, fut) in futures.items():
            error = fut.result()
            seconds[name] = round(time.perf_counter() - t0, 2)
            if error:
                failures[name] = error
    if failures:
        lines = [f"report notebook notebooks/{n}.ipynb failed ({e}); the executed copy with the traceback is "
                 f"{gen_dir / (n + '.ipynb')} and the kernel's log {kernel_log_path(gen_dir / (n + '.ipynb'))}"
                 for n, e in failures.items()]
        raise BookError("\n".join(lines))
    for name in names:
        _finish_notebook(gen_dir / f"{name}.ipynb", profile, name)
    return seconds


def _stage_sources(out: Path) -> Path:
    """Copy the book's sources (config, toc, book/ without generated notebooks) into ``out/src``."""
    src = out / "src"
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    for name in (CONFIG_NAME, TOC_NAME):
        shutil.copy2(REPO_ROOT / name, src / name)
    shutil.copytree(REPO_ROOT / "book", src / "book", ignore=shutil.ignore_patterns("_generated", ".*"))
    return src


def run_jupyter_book(src_root: Path, path_output: Path, log=print) -> None:
    """``jupyter-book build`` with warnings as errors (``-W --keep-going``), a fresh environment (``--all``)."""
    exe = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(src_root),
           "--path-output", str(path_output), "-W", "--keep-going", "--all"]
    log("  " + " ".join(cmd))
    env = dict(os.environ, PYDEVD_DISABLE_FILE_VALIDATION="1", NO_COLOR="1")
    proc = subprocess.run(cmd, cwd=src_root, capture_output=True, text=True, env=env)
    text = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
    if proc.returncode != 0:
        warnings = [ln for ln in text.splitlines() if "WARNING" in ln or "ERROR" in ln]
        shown = "\n".join(warnings[:40]) or text[-3000:]
        raise BookError(f"jupyter-book build failed (exit {proc.returncode}); warnings are errors here:\n{shown}")


# --------------------------------------------------------------------------------- checking the built site
class _PageParser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[tuple[str, str, str]] = []  # (tag, attribute, value)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("id", "name"):
            if a.get(key) and (key == "id" or tag == "a"):
                self.ids.add(a[key])
        for key in ("href", "src"):
            if a.get(key) is not None:
                self.links.append((tag, key, a[key]))
        if tag == "link" and a.get("href") is None:
            pass


def parse_page(path: Path) -> _PageParser:
    p = _PageParser()
    p.feed(path.read_text(encoding="utf-8", errors="replace"))
    return p


def check_site(html_dir: Path) -> list[str]:
    """Broken local links, images and anchors, and network resources, in every page of a built site."""
    html_dir = Path(html_dir)
    # the pages (not the theme's template fragments that sit in _static/)
    pages = sorted(p for p in html_dir.rglob("*.html") if "_static" not in p.relative_to(html_dir).parts)
    if not (html_dir / "index.html").is_file():
        return [f"{html_dir}/index.html is missing"]
    parsed = {p.resolve(): parse_page(p) for p in pages}
    problems = []
    for page, parser in parsed.items():
        rel = page.relative_to(html_dir.resolve())
        for tag, attr, value in parser.links:
            value = value.strip()
            if not value or value.startswith(("mailto:", "javascript:", "data:", "tel:")):
                continue
            url = urllib.parse.urlsplit(value)
            if url.scheme or value.startswith("//"):
                # a resource loaded from the network at view time (links the reader may follow are fine)
                if tag in ("script", "img", "iframe") or (tag == "link" and attr == "href" and
                                                         _is_stylesheet_link(parser, value)):
                    problems.append(f"{rel}: <{tag} {attr}={value!r}> loads from the network")
                continue
            target = page if not url.path else (page.parent / urllib.parse.unquote(url.path)).resolve()
            if url.path.endswith("/") or (target.is_dir()):
                target = target / "index.html"
            if not target.exists():
                problems.append(f"{rel}: <{tag} {attr}={value!r}> points to a missing file")
                continue
            if url.fragment and target.suffix == ".html":
                ids = parsed[target].ids if target in parsed else parse_page(target).ids
                if urllib.parse.unquote(url.fragment) not in ids:
                    problems.append(f"{rel}: <{tag} {attr}={value!r}> points to a missing anchor")
    return problems


def _is_stylesheet_link(parser: _PageParser, value: str) -> bool:
    # <link href=...> of rel=stylesheet/preload/icon loads at view time; rel=canonical etc. does not. The parser
    # keeps no rel, so treat every network <link> ending in .css/.js/.woff* as a loaded resource.
    path = urllib.parse.urlsplit(value).path
    return path.endswith((".css", ".js", ".woff", ".woff2", ".ttf")) or "fonts.googleapis" in value


# ------------------------------------------------------------------------------------------ the command
def build(profile: str = "cpu", results: str | os.PathLike | None = None, execute: bool = True,
          out: str | os.PathLike | None = None, jobs: int | None = None, log=print) -> Path:
    """Build the book; returns the folder of the HTML site (``_build/html``)."""
    t0 = time.perf_counter()
    results = Path(results).expanduser().resolve() if results else default_results_dir()
    notebooks_dir = REPO_ROOT / "notebooks"
    if out is None:
        src_root, path_output = REPO_ROOT, REPO_ROOT
    else:
        path_output = Path(out).expanduser().resolve()
        src_root = _stage_sources(path_output)
    problems = check_toc(src_root, notebooks_dir)
    if problems:
        raise BookError("the book's table of contents names missing pages:\n  " + "\n  ".join(problems))
    ensure_mathjax(src_root / STATIC)
    names = report_notebooks(src_root / TOC_NAME)
    log(f"dpdl book build: {len(names)} report notebooks, profile={profile}, results={results}")
    gen_dir = src_root / GENERATED
    seconds = execute_reports(names, notebooks_dir, gen_dir, profile, results, execute=execute, jobs=jobs,
                              log=log)
    t1 = time.perf_counter()
    run_jupyter_book(src_root, path_output, log=log)
    html_dir = path_output / "_build" / "html"
    problems = check_site(html_dir)
    if problems:
        raise BookError(f"the built site {html_dir} has {len(problems)} broken links or network resources:\n  "
                        + "\n  ".join(problems[:40]))
    timing = {"profile": profile, "results_dir": str(results), "notebooks_done_after_s": seconds,
              "execute_s": round(t1 - t0, 2), "jupyter_book_s": round(time.perf_counter() - t1, 2),
              "total_s": round(time.perf_counter() - t0, 2)}
    (html_dir / "_book_build.json").write_text(json.dumps(timing, indent=2) + "\n", encoding="utf-8")
    log(f"dpdl book build: done in {timing['total_s']:.0f} s (notebooks {timing['execute_s']:.0f} s, "
        f"jupyter-book {timing['jupyter_book_s']:.0f} s): {html_dir / 'index.html'}")
    return html_dir


def _cmd_build(args) -> int:
    try:
        build(profile=args.profile, results=args.results_dir, execute=not args.no_execute, out=args.out,
              jobs=args.jobs)
    except BookError as exc:
        raise _user_error(str(exc)) from None
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("book", help="build the study's report (Jupyter Book)")
    sub = p.add_subparsers(dest="book_command", metavar="SUBCOMMAND", required=True)
    b = sub.add_parser(
        "build", help="execute the report notebooks and build the HTML book into _build/html",
        description="Execute every report notebook named in _toc.yml with papermill (parameters profile and "
                    "results_dir) into book/_generated/, then build the book offline with Jupyter Book "
                    "(warnings are errors) into _build/html and check its links. A notebook that fails, a "
                    "missing page or a broken link fails the build.")
    b.add_argument("--profile", default="cpu", help="profile of the run records to report (default: cpu)")
    b.add_argument("--results-dir", default=None,
                   help="results folder (default: $DPDL_RESULTS or <repo>/results)")
    b.add_argument("--no-execute", action="store_true",
                   help="do not run the report notebooks: reuse the executed copies in book/_generated")
    b.add_argument("--out", default=None,
                   help="build in this folder (sources copied to OUT/src, site in OUT/_build/html) "
                        "instead of the repository")
    b.add_argument("--jobs", type=int, default=None,
                   help="report notebooks executed at once (default: 2, or 1 on a 1-core machine)")
    b.set_defaults(func=_cmd_build)


# ------------------------------------------------------------------------- tables of the book's own pages
# Dataset names of the run records -> the paper's names (Tables 1, 2).
PAPER_NAMES = {"elpv": "ELPV", "brainmri": "BrainMRI", "sdd": "SDD", "headct": "HeadCT", "optical": "Optical",
               "aitex": "AITEX", "mastcam": "Mastcam", "hyperkvasir": "Hyper-Kvasir"}
MVTEC_SUBSETS = ("carpet", "grid", "leather", "tile", "wood", "bottle", "capsule", "pill", "transistor",
                 "zipper", "cable", "hazelnut", "metal_nut", "screw", "toothbrush")
TOLERANCE = 0.02  # AUC: "supports" when our mean is at most this far below the paper's DPDL (or above it)


def load_records(results: str | os.PathLike | None = None, profile: str | None = None):
    """Every run record under ``results/runs[/profile]`` as a DataFrame (one row per run; ``record`` column)."""
    import pandas as pd
    from .records import iter_records

    root = Path(results) if results else default_results_dir()
    root = root / "runs" / profile if profile else root / "runs"
    rows = []
    for rec in iter_records(root):
        metrics = rec.get("metrics") or {}
        split = rec.get("split") or {}
        rows.append({
            "run_id": rec.get("run_id"), "status": rec.get("status"), "profile": rec.get("profile"),
            "dataset": rec.get("dataset"), "setting": rec.get("setting"), "known_class": rec.get("known_class"),
            "anomalies": rec.get("anomalies"), "seed": rec.get("seed"), "variant": rec.get("variant"),
            "backbone": rec.get("backbone"), "auc": metrics.get("auc"), "ap": metrics.get("ap"),
            "fingerprint": split.get("fingerprint"), "code_version": rec.get("code_version"),
            "date": rec.get("date"), "error": rec.get("error"),
            "groups": ",".join((rec.get("study") or {}).get("groups") or []), "record": rec,
        })
    cols = ["run_id", "status", "profile", "dataset", "setting", "known_class", "anomalies", "seed", "variant",
            "backbone", "auc", "ap", "fingerprint", "code_version", "date", "error", "groups", "record"]
    return pd.DataFrame(rows, columns=cols)


def load_paper_table(name: str):
    """One of the paper's tables as CSV (``results/paper/<name>.csv`` if the study keeps one, else ../shared)."""
    import pandas as pd

    for folder in (REPO_ROOT / "results" / "paper", paper_tables_dir()):
        path = folder / f"{name}.csv"
        if path.is_file():
            return pd.read_csv(path)
    raise FileNotFoundError(f"the paper's table {name}.csv is in neither results/paper nor {paper_tables_dir()}")


def _paper_key(dataset: str, setting: str) -> str | None:
    if dataset in PAPER_NAMES:
        return PAPER_NAMES[dataset]
    if dataset.startswith("mvtec_"):
        sub = dataset[len("mvtec_"):]
        if setting == "hard":
            return {"carpet": "Carpet", "metal_nut": "Metal_nut"}.get(sub)
        return "MVTec AD"
    return None


def _per_seed_auc(df):
    """AUC per seed for one cell of Table 1/2: MVTec AD = mean over subsets, hard = mean over known classes."""
    return df.groupby("seed")["auc"].mean()


def verdict(ours: float | None, paper: float | None, best_baseline: float | None, tol: float = TOLERANCE) -> str:
    """The rule of the Introduction page, on mean AUCs."""
    if ours is None or (isinstance(ours, float) and math.isnan(ours)):
        return "not run here"
    if paper is not None and ours >= paper - tol:
        return "supports"
    if best_baseline is not None and ours > best_baseline:
        return "below paper, above baselines"
    return "below baselines"


def summary_table(results: str | os.PathLike | None = None, profile: str = "cpu", records=None):
    """Per dataset / setting / M of Tables 1–2: ours (mean ± std over seeds) vs the paper's DPDL vs the best
    baseline, and the verdict. ``records`` (from :func:`load_records`) may be passed instead of a folder."""
    import pandas as pd

    recs = load_records(results, profile) if records is None else records
    ok = recs[(recs["status"] == "ok") & (recs["variant"] == "full") & recs["auc"].notna()].copy()
    ok["paper_dataset"] = [_paper_key(d, s) for d, s in zip(ok["dataset"], ok["setting"])]
    rows = []
    for setting, table in (("general", "table1_general"), ("hard", "table2_hard")):
        paper = load_paper_table(table)
        for (dataset, m), cell in paper.groupby(["dataset", "n_anomalies"], sort=False):
            dpdl = cell[cell["method"] == "DPDL"]
            base = cell[cell["method"] != "DPDL"].sort_values("auc_mean", ascending=False)
            mine = ok[(ok["paper_dataset"] == dataset) & (ok["setting"] == setting) & (ok["anomalies"] == m)]
            per_seed = _per_seed_auc(mine) if len(mine) else pd.Series(dtype=float)
            if dataset == "MVTec AD":
                coverage = f"{mine['dataset'].nunique()}/15 subsets" if len(mine) else ""
            elif setting == "hard":
                coverage = f"{mine['known_class'].nunique()} known classes" if len(mine) else ""
            else:
                coverage = ""
            ours = float(per_seed.mean()) if len(per_seed) else float("nan")
            ours_std = float(per_seed.std(ddof=1)) if len(per_seed) > 1 else (0.0 if len(per_seed) else float("nan"))
            p = float(dpdl["auc_mean"].iloc[0]) if len(dpdl) else None
            b = float(base["auc_mean"].iloc[0]) if len(base) else None
            rows.append({
                "dataset": dataset, "setting": setting, "M": int(m),
                "ours_mean": ours, "ours_std": ours_std, "seeds": int(per_seed.size), "runs": int(len(mine)),
                "coverage": coverage,
                "paper_dpdl_mean": p, "paper_dpdl_std": float(dpdl["auc_std"].iloc[0]) if len(dpdl) else None,
                "best_baseline": base["method"].iloc[0] if len(base) else None, "best_baseline_mean": b,
                "diff_vs_paper": ours - p if p is not None and per_seed.size else float("nan"),
                "verdict": verdict(ours if per_seed.size else None, p, b),
            })
    return pd.DataFrame(rows)


def other_runs_table(results=None, profile: str = "cpu", records=None):
    """Runs of the full model on datasets or settings the paper's Tables 1–2 do not have (e.g. synthetic)."""
    import pandas as pd

    recs = load_records(results, profile) if records is None else records
    ok = recs[(recs["status"] == "ok") & (recs["variant"] == "full") & recs["auc"].notna()].copy()
    mask = [(_paper_key(d, s) is None) for d, s in zip(ok["dataset"], ok["setting"])]
    ok = ok.loc[pd.Series(mask, index=ok.index, dtype=bool)]
    if ok.empty:
        return pd.DataFrame(columns=["dataset", "setting", "M", "ours_mean", "ours_std", "runs"])
    g = ok.groupby(["dataset", "setting", "anomalies"], dropna=False)["auc"]
    out = g.agg(["mean", "std", "count"]).reset_index()
    return out.rename(columns={"anomalies": "M", "mean": "ours_mean", "std": "ours_std", "count": "runs"})


def _fmt_cells(rows) -> str:
    parts = []
    for r in rows:
        parts.append(f"{r['setting']} M={r['M']}")
    return ", ".join(parts)


def verdict_sentence(table, profile: str = "cpu") -> str:
    """The headline answer, generated from :func:`summary_table`, dataset by dataset."""
    run = table[table["verdict"] != "not run here"]
    total = len(table)
    if run.empty:
        return (f"No cell of the paper's Tables 1–2 has been run here with the {profile} profile yet, so this "
                f"study cannot yet say whether it supports the paper's claims ({total} cells not run).")
    by_verdict: dict[str, list[str]] = {}
    for dataset, group in run.groupby("dataset", sort=False):
        for v, g in group.groupby("verdict", sort=False):
            by_verdict.setdefault(v, []).append(f"{dataset} ({_fmt_cells(g.to_dict('records'))})")
    phrases = {"supports": "supports the paper's DPDL numbers on",
               "below paper, above baselines": "falls short of the paper's DPDL but beats the best reported "
                                               "baseline on",
               "below baselines": "does not beat the best reported baseline on"}
    def join(items):
        return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]

    clauses = [f"{phrases[v]} {join(by_verdict[v])}" for v in phrases if v in by_verdict]
    n_missing = total - len(run)
    sentence = f"With the {profile} profile, the reproduction " + "; it ".join(clauses) + "."
    sentence += (f" {len(run)} of the {total} dataset/setting/M cells of Tables 1–2 were run here; "
                 f"{n_missing} were not.")
    return sentence


def reproduce_command(rec: dict) -> str:
    """The ``dpdl train`` command line that reruns one run record (its non-default options only)."""
    cfg = dict(rec.get("config") or {})
    profile = rec.get("profile") or cfg.get("profile") or "cpu"
    parts = ["dpdl", "train", "--dataset", str(rec.get("dataset") or cfg.get("dataset"))]
    setting = rec.get("setting") or cfg.get("setting") or "general"
    parts += ["--setting", setting]
    kc = rec.get("known_class") or cfg.get("known_class")
    if kc:
        parts += ["--known-class", str(kc)]
    parts += ["--anomalies", str(rec.get("anomalies", cfg.get("anomalies"))), "--seed", str(rec.get("seed", cfg.get("seed"))),
              "--profile", profile]
    defaults = {"backbone": None, "use_dpl": True, "use_dfl": True, "heads": "n,a,r", "prototypes": 32,
                "eps": 1e-3, "kappa": 10.0, "lam": 1.0}
    for key, default in defaults.items():
        if key not in cfg or cfg[key] == default or cfg[key] is None:
            continue
        flag = "--" + key.replace("_", "-")
        value = cfg[key]
        if isinstance(value, bool):
            parts.append(flag if value else "--no-" + key.replace("_", "-").replace("use-", ""))
        else:
            parts += [flag, str(value)]
    run_id = rec.get("run_id")
    if run_id:
        parts += ["--run-id", run_id, "--out", f"reruns/{profile}/{run_id}"]
    else:
        parts += ["--out", f"reruns/{profile}/run"]
    return " ".join(shlex.quote(p) for p in parts)


def provenance_table(results=None, profile: str = "cpu", records=None):
    """One row per run record: what it is, where its number came from, and the command that reruns it."""
    import pandas as pd

    recs = load_records(results, profile) if records is None else records
    out = recs.copy()
    out["command"] = [reproduce_command(r) for r in recs["record"]]
    out = out.sort_values(["dataset", "setting", "anomalies", "variant", "known_class", "seed"],
                          na_position="first").reset_index(drop=True)
    cols = ["run_id", "status", "auc", "code_version", "profile", "seed", "fingerprint", "date", "groups", "command",
            "error"]
    return pd.DataFrame(out, columns=cols)


RUN_STEPS = ("features_s", "train_s", "test_s")   # the parts of timings.total_s that `dpdl train` measures


def performance_tables(results=None, profile: str = "cpu", records=None) -> dict:
    """Wall time per run and per study, the step-time breakdown, and the benchmark files (``benchmarks/``).

    Per run: ``timings`` of the record (measured inside ``dpdl train``) and ``study.notebook_s`` (the wall time
    of the run's experiment notebook under ``dpdl study run``, kernel start included)."""
    import pandas as pd

    recs = load_records(results, profile) if records is None else records
    rows = []
    for rec in recs["record"]:
        t = rec.get("timings") or {}
        row = {"run_id": rec.get("run_id"), "dataset": rec.get("dataset"), "variant": rec.get("variant"),
               "status": rec.get("status"), "device": (rec.get("host") or {}).get("device"),
               "notebook_s": (rec.get("study") or {}).get("notebook_s")}
        row.update({k: v for k, v in t.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        rows.append(row)
    per_run = pd.DataFrame(rows)
    out = {"per_run": per_run}
    if not per_run.empty and "total_s" in per_run and per_run["total_s"].notna().any():
        timed = per_run[per_run["total_s"].notna()]
        out["per_dataset"] = (timed.groupby("dataset")["total_s"].agg(["count", "median", "mean", "sum"])
                              .rename(columns={"count": "runs", "median": "median_s", "mean": "mean_s",
                                               "sum": "sum_s"}).reset_index())
        wall = per_run["notebook_s"].dropna() if "notebook_s" in per_run else pd.Series(dtype=float)
        out["study"] = pd.DataFrame([{
            "profile": profile, "runs": len(per_run), "timed runs": len(timed),
            "sum of run wall times (h)": wall.sum() / 3600 if len(wall) else float("nan"),
            "sum of in-process times (h)": timed["total_s"].sum() / 3600,
            "median run wall time (s)": wall.median() if len(wall) else float("nan"),
            "median in-process time (s)": timed["total_s"].median()}])
        parts = {k: timed[k].mean() for k in RUN_STEPS if k in timed}
        mean_total = timed["total_s"].mean()
        parts["other_s (total_s minus the above)"] = mean_total - sum(parts.values())
        if len(wall):
            parts["notebook overhead (notebook_s minus total_s)"] = float(
                (per_run["notebook_s"] - per_run["total_s"]).dropna().mean())
        br = pd.DataFrame({"part": list(parts), "mean_s": list(parts.values())})
        br["share of total_s"] = br["mean_s"] / mean_total
        out["breakdown"] = br
        step_cols = [c for c in timed.columns if c.startswith("step_") and c.endswith("_ms")]
        if step_cols:
            out["steps"] = pd.DataFrame({"part": step_cols, "mean_ms": [timed[c].mean() for c in step_cols]})
    root = Path(results) if results else default_results_dir()
    bench = []
    for path in sorted((root / "benchmarks").glob("*.json")):
        if path.name.startswith(CHOICE_PREFIX):   # shown by choice_table
            continue
        try:
            bench.append((path.name, json.loads(path.read_text(encoding="utf-8"))))
        except ValueError:
            bench.append((path.name, {"error": "not valid JSON"}))
    out["benchmarks"] = bench
    return out


CHOICE_PREFIX = "elpv_cpu_choice_"


def choice_table(results: str | os.PathLike | None = None):
    """The profile choices measured on ELPV (``benchmarks/bench_elpv_cpu.py choices``): one row per choice and
    target cell with the profile fields it sets, the AUC mean and sd over the seeds, the paper's DPDL and
    best-baseline numbers, and the file. An empty DataFrame when no ``results/benchmarks/elpv_cpu_choice_*.json``
    exists."""
    import pandas as pd
    root = Path(results) if results else default_results_dir()
    rows = []
    for path in sorted((root / "benchmarks").glob(f"{CHOICE_PREFIX}*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            ref = {f"{r['setting']} M={r['anomalies']}": (r.get("paper_dpdl"), r.get("paper_best_baseline"))
                   for r in data.get("rows", [])}
            cells = {k: (v["mean"], v["sd"], v["n"]) for k, v in data.get("cells", {}).items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            rows.append({"choice": path.stem[len(CHOICE_PREFIX):], "file": path.name,
                         "error": "not a choice benchmark file (expected the JSON that bench_elpv_cpu.py writes)"})
            continue
        over = data.get("overrides", {})
        for cell, (mean, sd, n) in cells.items():
            paper, base = ref.get(cell, (None, None))
            rows.append({"choice": data.get("choice", path.stem[len(CHOICE_PREFIX):]),
                         "profile fields": ", ".join(f"{k}={v}" for k, v in sorted(over.items())), "cell": cell,
                         "AUC mean": mean, "AUC sd": sd, "runs": n, "paper DPDL": paper,
                         "best baseline": base, "file": path.name, "code": data.get("code_version")})
    return pd.DataFrame(rows)


def styled(df, formats: dict | None = None, precision: int = 3):
    """A DataFrame for a book page: no index, the book theme's table style, ``formats`` per column."""
    sty = df.style.hide(axis="index").set_table_attributes('class="dataframe"')
    return sty.format(formats or {}, precision=precision, na_rep="")
