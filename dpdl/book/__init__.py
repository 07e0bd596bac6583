"""The study's report as a Jupyter Book: ``dpdl book build`` and ``dpdl book publish``.

Modules, one job each:

* :mod:`~dpdl.book.build`: the table of contents, papermill over the report notebooks, ``jupyter-book build``;
* :mod:`~dpdl.book.mathjax`: MathJax served locally; :mod:`~dpdl.book.site`: the built site's link checker;
* :mod:`~dpdl.book.pages` and :mod:`~dpdl.book.about`: what each report page shows (the notebooks call
  ``pages.show(...)``, ``about.show_provenance(...)``, ``about.show_performance(...)``);
* :mod:`~dpdl.book.records`: rerun commands, provenance and timing tables from the run records;
* :mod:`~dpdl.book.render`: one table style and number format; :mod:`~dpdl.book.publish`: ``ghp-import``.

The numbers themselves come from :mod:`dpdl.study.analysis` (records), :mod:`dpdl.study.tables` and
:mod:`dpdl.study.claims`.
"""
from __future__ import annotations

from .build import (BookError, build, check_toc, execute_reports, kernel_log_path, profile_banner,
                    report_notebooks, toc_files)
from .site import check_site

__all__ = ["BookError", "build", "check_site", "check_toc", "execute_reports", "kernel_log_path",
           "profile_banner", "register", "report_notebooks", "toc_files"]


def _cmd_build(args) -> int:
    from ..checks import output_dir, profile_name
    from .build import _user_error

    profile_name(args.profile)
    if args.out is not None:
        output_dir(args.out, "--out")
    try:
        build(profile=args.profile, results=args.results_dir, execute=not args.no_execute, out=args.out,
              jobs=args.jobs)
    except BookError as exc:
        raise _user_error(str(exc)) from None
    return 0


def _cmd_publish(args) -> int:
    from .build import _user_error
    from .publish import PublishError, publish

    try:
        commit = publish(args.html, push=args.push, branch=args.branch, remote=args.remote)
    except PublishError as exc:
        raise _user_error(str(exc)) from None
    print(f"dpdl book publish: {args.branch} is at {commit[:12]}" + (f", pushed to {args.remote}" if args.push else
                                                                       " (not pushed: add --push)"))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("book", help="build the study's report (Jupyter Book) and publish it")
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
    q = sub.add_parser("publish", help="commit the built site to the gh-pages branch (ghp-import), optionally push",
                       description="Run `ghp-import -n [-p -f] _build/html` in the repository, as the Jupyter Book "
                                   "documentation describes: the site becomes the only content of the gh-pages "
                                   "branch (with .nojekyll). GitHub Pages serves it once Settings > Pages uses "
                                   "that branch.")
    q.add_argument("--html", default=None, help="the built site (default: <repo>/_build/html)")
    q.add_argument("--push", action="store_true", help="push the branch to the remote (forced)")
    q.add_argument("--branch", default="gh-pages", help="branch to write (default: gh-pages)")
    q.add_argument("--remote", default="origin", help="remote to push to (default: origin)")
    q.set_defaults(func=_cmd_publish)
