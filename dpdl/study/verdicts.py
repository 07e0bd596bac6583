"""The verdict vocabulary and its rules: the one place that turns numbers into a verdict.

Every verdict in the book (the claims checklist of :mod:`dpdl.study.claims`, the result pages) is computed by the
functions here; :data:`RULES` prints them, on the first page. Sign convention, used within and across pages: a
difference is always **ours − paper** (an absolute claim) or **claimed-better − claimed-worse** (a relative claim:
full − variant, DPDL − baseline, the paper's best value − another value), so a positive difference always agrees
with the paper.

Verdicts (:data:`VERDICTS`):

* *reproduced*: the claim holds in our runs;
* *inconclusive*: our runs can neither confirm nor reject it (the 95 % interval holds both readings, or a single
  seed, or only part of a combined claim could be run);
* *not reproduced*: our runs are clearly short of the claim, though not in the opposite direction;
* *reversed*: our runs show the opposite direction (the interval of a "better" lies below 0);
* *not testable here*: no run of the claim in this profile (the page gives the command that would run it).
"""
from __future__ import annotations

import math

TOLERANCE = 0.02     # AUC: an absolute claim is met when our mean is at most this far below the paper's value
REPRODUCED, INCONCLUSIVE, NOT_REPRODUCED, REVERSED, UNTESTABLE = (
    "reproduced", "inconclusive", "not reproduced", "reversed", "not testable here")
VERDICTS = (REPRODUCED, INCONCLUSIVE, NOT_REPRODUCED, REVERSED, UNTESTABLE)
# precedence when several comparisons make one claim (a conjunction: every part must hold)
_ORDER = (REVERSED, NOT_REPRODUCED, INCONCLUSIVE, REPRODUCED)

RULES = f"""\
**Verdicts.** *reproduced*: the claim holds in our runs. *inconclusive*: our runs neither confirm nor reject it.
*not reproduced*: our runs are clearly short of the claim, but not opposite to it. *reversed*: our runs show the
opposite direction. *not testable here*: no run of it in this profile (the row gives the command that would run it).
Intervals are 95 % t-intervals over seeds, mean ± t(0.975, n−1)·sd/√n; AUC intervals are clipped to [0, 1].

**Signs.** Every difference is *ours − paper* (absolute claims) or *claimed better − claimed worse* (relative
claims: full − variant, DPDL − baseline, the paper's best value − another value): a positive difference agrees with
the paper, on every page.

1. **Absolute claim** (a cell of Tables 1, 2, 5, 6: "DPDL reaches AUC p"), our mean m with interval [lo, hi],
   tolerance τ = {TOLERANCE} AUC: *reproduced* when m ≥ p − τ; *not reproduced* when hi < p − τ (even the top of
   the interval is short); *inconclusive* otherwise (m < p − τ ≤ hi, or one seed and m < p − τ).
2. **Relative claim** ("A beats B", by at least t; t = 0 unless the paper names a size), the paired difference
   A − B over the seeds both ran, with interval [lo, hi]: *reproduced* when lo > t; *reversed* when hi < 0;
   *not reproduced* when hi < t (the right direction, short of the size named); *inconclusive* otherwise (the
   interval holds 0 or t; one paired seed).
3. **Rank claim** ("best or second best"): DPDL's rank by mean among the methods run here in the same profile,
   on the same splits: *reproduced* when it is 1 or 2, *not reproduced* otherwise; *not testable here* with fewer
   than 3 methods run.
4. **Several comparisons, one claim** (every part must hold: "beats DRA and DevNet", "beats every subset"):
   *reversed* if any part is reversed, else *not reproduced* if any part is, else *inconclusive* if any part is
   inconclusive or not testable, else *reproduced*; *not testable here* when no part could be run.
"""


def _nan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def absolute(mean, hi, paper, n: int, tol: float = TOLERANCE) -> str:
    """Rule 1: "DPDL reaches AUC ``paper``", our ``mean`` over ``n`` seeds with upper interval end ``hi``."""
    if not n or _nan(mean) or _nan(paper):
        return UNTESTABLE
    if mean >= paper - tol:
        return REPRODUCED
    if n >= 2 and not _nan(hi) and hi < paper - tol:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def relative(lo, hi, n: int, size: float = 0.0) -> str:
    """Rule 2: "A beats B by at least ``size``", the paired difference A − B with 95 % interval [lo, hi]."""
    if not n or (_nan(lo) and _nan(hi) and n >= 2):
        return UNTESTABLE
    if n < 2 or _nan(lo):
        return INCONCLUSIVE
    if lo > size:
        return REPRODUCED
    if hi < 0:
        return REVERSED
    if hi < size:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def rank(r, methods_run: int) -> str:
    """Rule 3: "DPDL is best or second best" among ``methods_run`` methods (DPDL included)."""
    if r is None or _nan(r) or methods_run < 3:
        return UNTESTABLE
    return REPRODUCED if int(r) <= 2 else NOT_REPRODUCED


def combine(verdicts) -> str:
    """Rule 4: one verdict for a claim that needs every one of its comparisons to hold."""
    v = list(verdicts)
    tested = [x for x in v if x != UNTESTABLE]
    if not tested:
        return UNTESTABLE
    for verdict in _ORDER[:2]:
        if verdict in tested:
            return verdict
    if INCONCLUSIVE in tested or len(tested) < len(v):
        return INCONCLUSIVE
    return REPRODUCED


def clip_auc(lo, hi):
    """An AUC interval clipped to [0, 1] (a t-interval can run past 1 when the seeds sit near it)."""
    return (lo if _nan(lo) else max(0.0, lo), hi if _nan(hi) else min(1.0, hi))
