"""``dpdl datasets``, ``dpdl split``, ``dpdl stats`` and ``dpdl data convert``: the data layer on the command line.

Each handler takes the parsed ``argparse`` namespace and returns the exit status; bad input raises
``ValueError``/``FileNotFoundError`` with one sentence, which ``dpdl.cli.main`` prints (exit status 2).
"""
from __future__ import annotations

import argparse
import json

from ..checks import data_root, input_dir, int_at_least, output_dir
from .protocol import SETTINGS, make_split
from .registry import DATASET_NAMES, list_datasets
from .stats import dataset_stats


def _add_data_root(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", default=None, metavar="PATH",
                   help="folder holding the datasets that are not embedded (default: $DPDL_DATA)")


def register(subparsers) -> None:
    """Add the ``datasets``, ``split`` and ``stats`` subcommands."""
    p = subparsers.add_parser("datasets", help="list the datasets, their anomaly classes and where they come from",
                              description="List every dataset, its anomaly classes, and whether it is available here.")
    _add_data_root(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_datasets)

    p = subparsers.add_parser("split", help="draw an OSAD split and print its counts",
                              description="Draw a split (normal 3:1 split, M seen anomalies) and print it.")
    p.add_argument("--dataset", required=True, metavar="NAME", help=f"one of: {', '.join(DATASET_NAMES)}")
    p.add_argument("--setting", default="general", choices=SETTINGS)
    p.add_argument("--known-class", default=None, metavar="C", help="the known anomaly class (hard setting)")
    p.add_argument("--anomalies", type=int, default=10, metavar="M", help="number of seen anomalies (default 10)")
    p.add_argument("--seed", type=int_at_least(0), default=0, help="seed of the anomaly draw (default 0)")
    _add_data_root(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--samples", action="store_true", help="also list every sample key (with --json)")
    p.set_defaults(func=cmd_split)

    p = subparsers.add_parser("stats", help="dataset statistics (the paper's Table 4 columns)",
                              description="Count train/test normal images and anomalies from the data themselves.")
    p.add_argument("--dataset", default=None, metavar="NAME",
                   help="one dataset (default: every available dataset except folder)")
    _add_data_root(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_stats)

    p = subparsers.add_parser("data", help="convert a dataset's raw release into the layout the study reads",
                              description="Data preparation: `dpdl data convert aitex RAW OUT`.")
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    c = data_sub.add_parser("convert", help="raw release -> MVTec layout (AITEX: the OSAD baselines' 256-px tiles)",
                            description="Convert the raw AITEX release (NODefect_images/, Defect_images/, "
                                        "Mask_images/) into the OSAD baselines' tiles in the MVTec layout; "
                                        "rule and quirks: dpdl.data.aitex.")
    c.add_argument("dataset", choices=["aitex"], help="the dataset to convert (aitex)")
    c.add_argument("raw", metavar="RAW", help="the folder of the raw release")
    c.add_argument("out", metavar="OUT", help="a new (or empty) folder for the tiles; written only when complete")
    c.add_argument("--tile", type=int_at_least(1), default=256, metavar="PX",
                   help="tile width in pixels (default 256, the baselines')")
    c.set_defaults(func=cmd_convert)


def _table(rows: list[dict], columns: list[str]) -> str:
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def _why_not(row: dict, data_root) -> str:
    """A short reason for the table (the full sentence is in ``--json``'s ``reason``)."""
    if row["name"] == "folder":
        return "needs --data-root / $DPDL_DATA = an MVTec-layout folder"
    if "needs a data root" in row["reason"]:
        return "needs a data root (--data-root or $DPDL_DATA)"
    if "not found" in row["reason"]:
        return "not found under the data root"
    return row["reason"][:60]


def cmd_datasets(args) -> int:
    data_root(args.data_root)
    rows = list_datasets(args.data_root)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    view = []
    for r in rows:
        classes = ", ".join(r["anomaly_classes"]) if r["anomaly_classes"] else "(from the folders)"
        if len(classes) > 48:
            classes = f"{len(r['anomaly_classes'])}: {classes[:44]}..."
        view.append({"dataset": r["name"], "type": r["type"], "anomaly classes": classes,
                     "available": "yes" if r["available"] else "no",
                     "from": r["source"] if r["available"] else _why_not(r, args.data_root)})
    print(_table(view, ["dataset", "type", "anomaly classes", "available", "from"]))
    n_ok = sum(r["available"] for r in rows)
    print(f"\n{n_ok} of {len(rows)} datasets available; the data root is --data-root or $DPDL_DATA.")
    return 0


def cmd_split(args) -> int:
    data_root(args.data_root)
    split = make_split(args.dataset, setting=args.setting, anomalies=args.anomalies, seed=args.seed,
                       known_class=args.known_class, data_root=args.data_root)
    if args.json:
        print(json.dumps(split.to_dict(samples=args.samples), indent=1))
        return 0
    c = split.counts()
    known = f", known class {split.known_class}" if split.known_class else ""
    print(f"{split.dataset} ({split.setting}{known}, M={split.anomalies}, seed={split.seed}): "
          f"train {c['train_normal']} normal + {c['train_anomaly']} anomalies; "
          f"test {c['test_normal']} normal + {c['test_anomaly']} anomalies "
          f"({', '.join(split.test_anomaly_classes)}); fingerprint {split.fingerprint}")
    return 0


STATS_COLUMNS = ["dataset", "n_anomaly_classes", "type", "train_normal", "test_normal", "test_anomaly"]


def cmd_stats(args) -> int:
    data_root(args.data_root)
    if args.dataset:
        rows = [dataset_stats(args.dataset, args.data_root)]
    else:
        rows = [dataset_stats(r["name"], args.data_root) for r in list_datasets(args.data_root)
                if r["available"] and r["name"] != "folder"]
    if args.json:
        print(json.dumps(rows[0] if args.dataset else rows, indent=1))
        return 0
    print(_table(rows, STATS_COLUMNS + ["source"]))
    return 0


def cmd_convert(args) -> int:
    import sys

    from .aitex import convert_aitex

    raw = input_dir(args.raw, "RAW")
    out = output_dir(args.out, "OUT")
    report = convert_aitex(raw, out, tile=args.tile)
    for line in report.quirks:
        print(f"dpdl data convert: {'warning' if line.startswith('no mask') else 'note'}: {line}", file=sys.stderr)
    print(report.summary())
    return 0
