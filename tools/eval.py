"""Evaluate detections (ILSVRC devkit, PASCAL VOC, COCO) or proposal recall from files.

    python tools/eval.py --protocol coco --gt GT.json --dets DETS.json --json REPORT.json
    python tools/eval.py --protocol ilsvrc --gt-dir DIR --image-list LIST --meta META --dets SUBMISSION.txt
        [--blacklist FILE] --json REPORT.json
    python tools/eval.py --protocol voc07|voc --gt-dir ANNOTATIONS --image-list LIST --dets DETS [DETS ...]
        --json REPORT.json
    python tools/eval.py --protocol recall --gt GT.json --proposals PROPOSALS.json [--json REPORT.json]

DETS for coco: a COCO results list, or tools/detect.py JSON (images matched by file name). For voc:
the devkit's per-class files ``..._<class>.txt`` (or a folder of them), or tools/detect.py JSON
(images matched by file stem). META is ``meta_det.mat`` or its text form. PROPOSALS is
tools/propose.py JSON (images matched by file name).

REPORT.json is {"protocol", "mAP", "per_class": {name: AP}, "stats"} (coco stats: AP, AP50, AP75,
APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl; -1 where undefined); for recall it holds the
recall numbers (coverage, recall@0.7, recall_vs_iou, ABO, MABO, AR, AR@N, by_size, per_class).
A per-class table is printed; --plots DIR writes precision-recall curves (or recall curves) as PNG.
Config: ``--set coco.engine=faster``, ``--set recall.top_n=200``, ``--set recall.counts=[10,100]``.
"""
from __future__ import annotations

import os

# This file shares its name with the ``eval`` package. Run as ``python tools/eval.py``, Python
# puts tools/ first on sys.path, so ``import eval.x`` here, and in every other tool of this
# folder, finds this file as a module named "eval" instead of the package. Imported under that
# name, this file turns itself into the package: with ``__path__`` pointing at the real eval/
# folder, ``eval.x`` imports the package's modules (eval/__init__.py is empty). Assigned first,
# before anything below imports from ``eval``.
if __name__ == "eval":
    __path__ = [os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "eval")]

import argparse
import logging
import sys
from dataclasses import dataclass, field

import core.cli
from core.config import add_config_args, load_config, save_run_config
from core.io import write_json
from eval.coco import CocoConfig
from eval.recall import RecallConfig

log = logging.getLogger("eval")

PROTOCOLS = ("coco", "ilsvrc", "voc07", "voc", "recall")
REQUIRED = {"coco": ("gt", "dets"), "ilsvrc": ("gt_dir", "image_list", "meta", "dets"),
            "voc07": ("gt_dir", "image_list", "dets"), "voc": ("gt_dir", "image_list", "dets"),
            "recall": ("gt", "proposals")}


@dataclass(frozen=True)
class EvalSchema:
    coco: CocoConfig = field(default_factory=CocoConfig)
    recall: RecallConfig = field(default_factory=RecallConfig)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--protocol", required=True, choices=PROTOCOLS)
    p.add_argument("--gt", metavar="GT.json", help="COCO instances JSON (coco, recall)")
    p.add_argument("--gt-dir", metavar="DIR", help="XML annotations folder (ilsvrc, voc)")
    p.add_argument("--image-list", metavar="LIST", help="image list (ilsvrc: '<name> <index>'; voc: stems)")
    p.add_argument("--meta", metavar="META", help="meta_det.mat or its text form (ilsvrc)")
    p.add_argument("--blacklist", metavar="FILE", help="'<index> <WNID>' pairs to ignore (ilsvrc)")
    p.add_argument("--dets", nargs="+", metavar="DETS", help="detections (see above)")
    p.add_argument("--proposals", metavar="PROPOSALS.json", help="tools/propose.py JSON (recall)")
    p.add_argument("--classes", metavar="NAMES", help="voc: comma-separated class names in order "
                   "(default: the 20 VOC classes, or the names found)")
    p.add_argument("--json", metavar="REPORT.json", help="write the report here")
    p.add_argument("--plots", metavar="DIR", help="write PNG curves here")
    add_config_args(p)
    args = p.parse_args(argv)
    missing = [f"--{k.replace('_', '-')}" for k in REQUIRED[args.protocol] if not getattr(args, k)]
    if missing:
        p.error(f"--protocol {args.protocol} needs {', '.join(missing)}")
    if args.protocol not in ("voc", "voc07") and args.dets and len(args.dets) > 1:
        p.error(f"--protocol {args.protocol} takes one --dets file")
    return args


def run_protocol(args, cfg: EvalSchema):
    """The report of the chosen protocol (an EvalReport, or a RecallReport for recall)."""
    from eval import files
    if args.protocol == "coco":
        return files.evaluate_coco_files(args.gt, args.dets[0], cfg.coco.engine)
    if args.protocol == "ilsvrc":
        return files.evaluate_ilsvrc_files(args.gt_dir, args.image_list, args.meta, args.dets[0], args.blacklist)
    if args.protocol == "recall":
        return files.recall_files(args.gt, args.proposals, cfg.recall)
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    return files.evaluate_voc_files(args.gt_dir, args.image_list, args.dets, args.protocol == "voc07", classes)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = load_config(EvalSchema, args.config, args.overrides)
    report = run_protocol(args, cfg)
    from eval.report import format_recall_table, format_table
    if args.protocol == "recall":
        print(format_recall_table(report))
    else:
        print(format_table(report, extra=report.stats.get("npos")))
    if args.json:
        write_json(args.json, report.to_json(), indent=2)
        log.info("wrote %s", args.json)
    if args.plots:
        from eval.plots import plot_pr_curves, plot_recall
        written = plot_recall(report, args.plots) if args.protocol == "recall" else plot_pr_curves(report, args.plots)
        log.info("wrote %d plots to %s", len(written), args.plots)
    save_run_config(cfg, args.json, args.plots)
    return 0


if __name__ == "__main__":
    sys.exit(core.cli.run(main))
