"""How the book's pages show numbers: one table style, one number format, collapsed sections, one-line notes.

Every table of the book goes through :func:`styled` (no index, the theme's table class, NaN as blank). Numbers
are formatted by :func:`num`: AUCs with three decimals, values below 0.01 in scientific notation (ε = 1e-04, not
0.000). Long or raw material (per-run tables, JSON) goes into :func:`collapsed` sections.
"""
from __future__ import annotations

import html
import math

import pandas as pd


def _nan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NA


def num(x, digits: int = 3, signed: bool = False) -> str:
    """``0.848`` (``1.000``: a float keeps its decimals; an int prints as one); ``+0.005`` when ``signed``;
    ``1e-04`` for 0 < |x| < 0.01 that is not a difference; blank for NaN."""
    if _nan(x):
        return ""
    if isinstance(x, (bool,)) or not isinstance(x, (int, float)):
        return str(x)
    if isinstance(x, int):
        return f"{x:+d}" if signed else f"{x}"
    if 0 < abs(x) < 0.01 and not signed:
        return f"{x:.0e}"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def mean_ci(mean, lo, hi, n=None) -> str:
    """``0.848 [0.825, 0.871]``: a mean and its 95 % interval (without one when n < 2)."""
    if _nan(mean):
        return ""
    lo, hi = (lo if _nan(lo) else max(0.0, lo)), (hi if _nan(hi) else min(1.0, hi))   # an AUC interval
    s = f"{mean:.3f}" + ("" if _nan(lo) else f" [{lo:.3f}, {hi:.3f}]")
    return s


def styled(df: pd.DataFrame, formats: dict | None = None, precision: int = 3):
    """A DataFrame as a book table: no index, the theme's ``dataframe`` class, ``formats`` per column."""
    sty = df.style.hide(axis="index").set_table_attributes('class="dataframe dpdl-table"')
    return sty.format(formats or {}, precision=precision, na_rep="")


def collapsed(title: str, body) -> "HTML":
    """A closed ``<details>`` section holding a table (DataFrame or Styler), or text shown as code."""
    from IPython.display import HTML

    if isinstance(body, pd.DataFrame):
        body = styled(body)
    inner = body.to_html() if hasattr(body, "to_html") else f"<pre>{html.escape(str(body))}</pre>"
    return HTML(f'<details class="dpdl-details"><summary>{html.escape(title)}</summary>\n{inner}\n</details>')


def not_run_line(what: str, command: str) -> str:
    """The one line that replaces a table with no reachable row (Markdown)."""
    return f"*{what}: not run here.* To run it: `{command}`"


VERDICT_CLASS = {"reproduced": "color: #1a7f37", "inconclusive": "color: #6f42c1", "not reproduced": "color: #b35900",
                 "reversed": "color: #cf222e; font-weight: bold", "not testable here": "color: grey"}


def verdict_style(sty):
    """Colour the ``verdict`` column of a Styler by verdict."""
    f = (lambda v: VERDICT_CLASS.get(v, ""))
    cols = [c for c in sty.data.columns if c == "verdict"]
    if not cols:
        return sty
    return sty.map(f, subset=cols) if hasattr(sty, "map") else sty.applymap(f, subset=cols)
