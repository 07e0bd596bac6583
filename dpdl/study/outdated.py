"""Which finished runs were made with other settings than the code's now: profile fields, and the method's config
(a DPDL record from before a reading existed counts as the printed reading). ``dpdl study status`` lists them;
``dpdl study run --rerun-outdated`` replaces them."""
from __future__ import annotations


def outdated_fields(record: dict, profile: str) -> list[str]:
    """Profile fields whose value in a finished run's record differs from the profile as the code defines it now
    (a field the record lacks counts as the value runs had before it existed): such a run was made with other
    settings."""
    from ..config import get_profile, recorded_value
    current = get_profile(profile).to_dict()
    recorded = record.get("profile_settings") or {}
    return (sorted(k for k, v in current.items() if recorded_value(recorded, k) != v) + method_changes(record, profile)
            + version_change(record))


def version_change(record: dict) -> list[str]:
    """``["method:records_version"]`` when the record was made by another version of its method's numerics than the
    code's now (``MethodMixin.records_version``; a record without the field was made by version 1)."""
    from ..methods import METHODS, method_class
    cfg = record.get("config") or {}
    if not cfg:
        return []                   # nothing to compare with (as method_changes)
    method = cfg.get("method") or record.get("method") or "dpdl"     # a record without one is DPDL's
    if method not in METHODS:
        return []
    now = int(method_class(method).records_version)
    return [] if int(record.get("records_version", 1)) == now else ["method:records_version"]


def method_changes(record: dict, profile: str) -> list[str]:
    """``method:<field>`` for each field of the method's config that the code now sets otherwise than the record's
    run had it (a DPDL record without a field made before issue 12 had the printed reading, model.PRINTED_READING)."""
    from ..config import get_profile
    from ..methods.dpdl.model import PRINTED_READING
    from ..train import RunConfig, method_options
    cfg = record.get("config") or {}
    if not cfg:
        return []                   # nothing to compare with
    tag = (record.get("study") or {}).get("variant")
    if tag and cfg.get("method", "dpdl") == "dpdl":   # a study run: what its variant means now (e.g. λ per dataset)
        from .plan import variant_config
        try:
            cfg = {**cfg, **variant_config(str(tag), cfg.get("dataset"))}
        except ValueError:
            return ["method:variant"]
    try:
        run_cfg = RunConfig(**{k: v for k, v in cfg.items() if k in RunConfig.__dataclass_fields__})
        now = method_options(run_cfg, get_profile(profile, **(run_cfg.overrides or {})))
    except (TypeError, ValueError):
        return ["method:config"]
    had = record.get("method_options") or record.get("dpdl_config") or {}
    fallback = PRINTED_READING if run_cfg.method == "dpdl" else {}
    norm = lambda v: list(v) if isinstance(v, tuple) else v  # noqa: E731  (JSON gives lists)
    return [f"method:{k}" for k, v in sorted(now.items()) if norm(had.get(k, fallback.get(k, v))) != norm(v)]
