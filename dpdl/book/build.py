"""Building the book: the table of contents, the report notebooks (papermill) and ``jupyter-book build``.

:func:`build` (``dpdl book build``):

1. checks ``_toc.yml``: every page it names exists (a page under ``book/_generated/`` needs its source
   notebook ``notebooks/<name>.ipynb``);
2. makes sure MathJax 3 is in ``book/_static/mathjax`` (:mod:`dpdl.book.mathjax`);
3. executes every report notebook named in the toc with papermill (parameters ``profile``, ``results_dir``)
   into ``book/_generated/<name>.ipynb``; a notebook that raises fails the build, naming the notebook;
4. runs ``jupyter-book build . -W --keep-going --all`` (warnings are errors) into ``_build/html``;
5. checks the built site (:func:`dpdl.book.site.check_site`).

With ``out`` the book's sources are copied to ``out/src`` and the site lands in ``out/_build/html``
(the tests use this; the repository's ``book/_generated`` is left alone).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable

from ..paths import REPO_ROOT, results_dir as default_results_dir
from .mathjax import MathJaxError, ensure_mathjax
from .site import check_site

TOC_NAME = "_toc.yml"
CONFIG_NAME = "_config.yml"
GENERATED = "book/_generated"
STATIC = "book/_static"


def profile_note(profile: str) -> str:
    """What a profile changes from the paper, in one phrase, from :data:`dpdl.config.PROFILES`."""
    from ..config import PROFILES

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
        from ..cli import UserError
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

    from ..kernels import papermill_kwargs, stderr_to

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


def _worker_init() -> None:
    """In each notebook worker: Ctrl-C is left to the build (which stops the workers); SIGTERM kills the worker's
    kernel first; a worker whose build died (even ``kill -9``) kills its kernel and exits within a second."""
    import signal

    from ..kernels import kill_kernels
    from ..study.local import exit_with_parent

    def on_term(signum, frame):
        kill_kernels()
        os._exit(128 + signum)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, on_term)
    exit_with_parent(on_exit=kill_kernels)


def _stop_pool(pool, grace_s: float = 2.0) -> None:
    """Stop a notebook pool now: queued notebooks cancelled, workers SIGTERM-ed (each kills its kernel), SIGKILL
    after ``grace_s``; no process is left behind."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    deadline = time.monotonic() + grace_s
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join(1.0)


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
    from ..study.local import signals_raise
    # spawn, not fork: the caller may hold torch's threads (a test session), which fork does not copy safely
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init)
    try:
        with signals_raise():      # Ctrl-C, SIGTERM: Stopped at once, not after every queued notebook has run
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
    except BaseException:
        _stop_pool(pool)
        raise
    pool.shutdown(wait=True)
    if failures:
        lines = [f"report notebook notebooks/{n}.ipynb failed ({e}); the executed copy with the traceback is "
                 f"{gen_dir / (n + '.ipynb')} and the kernel's log {kernel_log_path(gen_dir / (n + '.ipynb'))}"
                 for n, e in failures.items()]
        raise BookError("\n".join(lines))
    for name in names:
        _finish_notebook(gen_dir / f"{name}.ipynb", profile, name)
    return seconds


def _stage_sources(out: Path) -> Path:
    """Copy the book's sources (config, toc, book/ without generated notebooks, and the generated markdown tables
    of results/benchmarks/ that pages include) into ``out/src``."""
    src = out / "src"
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    for name in (CONFIG_NAME, TOC_NAME):
        shutil.copy2(REPO_ROOT / name, src / name)
    shutil.copytree(REPO_ROOT / "book", src / "book", ignore=shutil.ignore_patterns("_generated", ".*"))
    bench = src / "results" / "benchmarks"
    bench.mkdir(parents=True)
    for md in sorted((REPO_ROOT / "results" / "benchmarks").glob("*.md")):
        shutil.copy2(md, bench / md.name)
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


# ------------------------------------------------------------------------------------------ the command
def build(profile: str = "cpu", results: str | os.PathLike | None = None, execute: bool = True,
          out: str | os.PathLike | None = None, jobs: int | None = None, log=print) -> Path:
    """Build the book; returns the folder of the HTML site (``_build/html``). Ctrl-C or SIGTERM stop it within
    seconds (:class:`dpdl.study.local.Stopped`), its notebook workers, kernels and jupyter-book with it."""
    from ..study.local import signals_raise
    with signals_raise():
        return _build(profile, results, execute, out, jobs, log)


def _build(profile, results, execute, out, jobs, log) -> Path:
    t0 = time.perf_counter()
    if results is not None and not Path(results).expanduser().is_dir():
        raise ValueError(f"--results-dir {results} is not a folder: expected the results folder of `dpdl study run` "
                         "(runs/, tables/)")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ValueError(f"--jobs {jobs!r}: expected an integer >= 1 (report notebooks executed at once)")
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
    try:
        ensure_mathjax(src_root / STATIC)
    except MathJaxError as exc:
        raise BookError(str(exc)) from None
    names = report_notebooks(src_root / TOC_NAME)
    log(f"dpdl book build: {len(names)} report notebooks, profile={profile}, results={results}")
    gen_dir = src_root / GENERATED
    seconds = execute_reports(names, notebooks_dir, gen_dir, profile, results, execute=execute, jobs=jobs,
                              log=log)
    from .records import results_archive
    results_archive(results, profile, gen_dir)   # the first page's download of the records and tables
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


