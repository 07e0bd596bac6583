"""``dpdl train`` (one run -> DIR/run.json + DIR/model.pt) and ``dpdl score`` (score images with a trained model)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .backbones import list_backbones
from .checks import int_at_least
from .config import PROFILES
from .methods import METHODS
from .methods.dpdl.model import PAPER_DEFAULTS as PD
from .train import PROTOTYPES_MAX


def _override(text: str, option: str = "--set") -> tuple[str, object]:
    """``key=value`` -> (key, value) with value read as JSON when it parses (numbers, booleans), else a string."""
    from .cli import UserError
    if "=" not in text:
        raise UserError(f"bad {option} {text!r}: expected FIELD=VALUE, e.g. {option} "
                        f"{'epochs=10' if option == '--set' else 'memory=5000'}")
    key, value = text.split("=", 1)
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def register(subparsers) -> None:
    """Add the ``train`` and ``score`` subcommands."""
    p = subparsers.add_parser("train", help="train and test a method on one split; writes DIR/run.json and DIR/model.pt",
                              description="Train DPDL (or a baseline: --method) on one OSAD split (seen anomalies + "
                                          "CutMix pseudo anomalies), test it (AUC, AUC-PR) and write DIR/run.json "
                                          "and DIR/model.pt.")
    p.add_argument("--dataset", required=True, metavar="NAME", help="dataset name (see `dpdl datasets`)")
    p.add_argument("--setting", default="general", choices=("general", "hard"))
    p.add_argument("--known-class", default=None, metavar="C", help="the known anomaly class (hard setting)")
    p.add_argument("--anomalies", type=int_at_least(0), default=10, metavar="M", help="number of seen anomalies (default 10)")
    p.add_argument("--seed", type=int_at_least(0, 2**32 - 1), default=0,
                   help="seed: anomaly draw and training randomness (default 0)")
    p.add_argument("--profile", default="cpu", choices=tuple(PROFILES), help="fidelity profile (default cpu)")
    p.add_argument("--backbone", default=None, metavar="B",
                   help=f"one of {', '.join(list_backbones())} (default: the profile's)")
    p.add_argument("--weights", default=None, metavar="PATH", help="backbone weight file (ResNet-18 ImageNet .pth)")
    p.add_argument("--method", default="dpdl", choices=METHODS,
                   help="dpdl (default), or a baseline under the same protocol: devnet, dra, knn")
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="an option of the method's config (dpdl.methods; recorded), e.g. --opt memory=5000 for knn")
    p.add_argument("--no-dpl", action="store_true", help="ablation: no distribution prototype learning")
    p.add_argument("--no-dfl", action="store_true", help="ablation: no dispersion feature learning")
    p.add_argument("--heads", default=PD["heads"], help=f"score heads, a subset of n,a,r (default {PD['heads']})")
    p.add_argument("--prototypes", type=int_at_least(1, PROTOTYPES_MAX), default=PD["prototypes"], metavar="C",
                   help=f"number of Gaussian prototypes, 1 to {PROTOTYPES_MAX} ({PD['prototypes']})")
    p.add_argument("--eps", type=float, default=PD["eps"], metavar="E", help=f"bridge noise epsilon ({PD['eps']:g})")
    p.add_argument("--kappa", type=float, default=PD["kappa"], metavar="K",
                   help=f"DFL concentration kappa ({PD['kappa']:g})")
    p.add_argument("--lam", type=float, default=None, metavar="L",
                   help="DFL weight lambda (the paper's per dataset, Sec. 5.7: 1 on brainmri and headct, else 0.01)")
    p.add_argument("--data-root", default=None, metavar="P", help="data root (default $DPDL_DATA)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="change a profile field for this run (recorded), e.g. --set epochs=10")
    p.add_argument("--run-id", default=None, help="id stored in the record (default: built from the parameters)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (run.json, model.pt, scores.json)")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run.json in DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser("score", help="score images with a model trained by `dpdl train`",
                              description="Anomaly scores (higher = more anomalous) of images, from DIR/model.pt.")
    p.add_argument("--model", required=True, metavar="DIR", help="the --out folder of `dpdl train` (or its model.pt)")
    p.add_argument("--images", nargs="*", default=[], metavar="PATH", help="image files")
    p.add_argument("--folder", default=None, metavar="DIR", help="score every image below this folder")
    p.add_argument("--weights", default=None, metavar="PATH", help="backbone weight file (ResNet-18)")
    p.add_argument("--method", default=None, choices=METHODS,
                   help="require the model to be of this method (default: whichever model.pt holds)")
    p.add_argument("--skip-bad", action="store_true",
                   help="score the readable images and list the unreadable ones (default: refuse, naming them)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_score)


def cmd_train(args) -> int:
    from .train import RunConfig, run
    overrides = dict(_override(t) for t in args.set)
    cfg = RunConfig(dataset=args.dataset, setting=args.setting, known_class=args.known_class,
                    anomalies=args.anomalies, seed=args.seed, profile=args.profile, backbone=args.backbone,
                    method=args.method, method_options=dict(_override(t, "--opt") for t in args.opt),
                    use_dpl=not args.no_dpl, use_dfl=not args.no_dfl, heads=args.heads, prototypes=args.prototypes,
                    eps=args.eps, kappa=args.kappa, lam=args.lam, data_root=args.data_root, out=args.out,
                    run_id=args.run_id, weights=args.weights, overrides=overrides, overwrite=args.overwrite)
    rec = run(cfg, progress=not args.quiet)
    if rec["status"] != "ok":
        from .records import holds_finished_run
        kept = holds_finished_run(Path(args.out).expanduser())
        where = (f"the finished run in {args.out} is kept; this attempt's record: {args.out}/run.failed.json"
                 if kept else f"record: {args.out}/run.json")
        print(f"dpdl train: run failed: {rec['error']} ({where})", file=sys.stderr)
        return 1
    m, t = rec["metrics"], rec["timings"]
    print(f"{rec['run_id']} ({rec['method']}): AUC {m['auc']:.4f}  AUC-PR {m['ap']:.4f}  "
          f"({rec['profile']} profile, {rec['backbone']}, {t['total_s']:.1f} s) -> {args.out}/run.json")
    return 0


def cmd_score(args) -> int:
    from .score import collect_images, load_trained, score_images
    files = collect_images(args.images, args.folder)
    model = load_trained(args.model, weights=args.weights)
    if args.method and model.info["method"] != args.method:
        from .cli import UserError
        raise UserError(f"--method {args.method}: the model {model.info['model']} is a {model.info['method']} model")
    scores = score_images(model, files, skip_bad=args.skip_bad)
    bad = [f for f, s in zip(files, scores) if s is None]
    if args.json:
        print(json.dumps({"model": model.info, "scores": [{"path": f, "score": s} for f, s in zip(files, scores)
                                                          if s is not None], "unreadable": bad}, indent=2))
    else:
        for f, s in zip(files, scores):
            if s is not None:
                print(f"{s:.6f}\t{f}")
    if bad:
        print(f"dpdl score: skipped {len(bad)} unreadable image(s): {', '.join(bad)}", file=sys.stderr)
    return 0
