"""Where the detector fails: TIDE's error costs, R-CNN's false-positive analysis, the ensemble's
confusion on the objects' own boxes, galleries, and one static HTML page.

    python tools/analyze.py --gt GT.json --dets RESULTS.json --out DIR [--images DIR]
    python tools/analyze.py --gt-dir ANNOTATIONS --image-list LIST --meta META --dets SUBMISSION.txt
        [--blacklist FILE] --out DIR [--images DIR]
    add --weights assets/model for the confusion matrix (runs the ensemble on every object's box)

RESULTS.json: a COCO results list (what tools/test.py writes) or tools/detect.py JSON.
DIR gets errors.json ({"AP50", "dAP": {cls, loc, both, dupe, bkg, miss}, "special", "per_class",
"false_positives", "confusion"}; AP points 0-100 as TIDE defines them), PNG figures, galleries
per class (when the images are found) and report.html. --images defaults to the folder "images"
beside GT.json (or beside the devkit folder), as tools/make_synthetic.py lays a split out.
Config: configs/analysis.yaml (--set errors.max_dets=0, --set similar.source=supercategory, ...).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time

import core.cli
from core.config import add_config_args, load_config, save_run_config

log = logging.getLogger("analyze")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gt", metavar="GT.json", help="COCO instances JSON")
    p.add_argument("--gt-dir", metavar="DIR", help="ILSVRC XML annotations folder")
    p.add_argument("--image-list", metavar="LIST", help="ILSVRC image list ('<name> <index>')")
    p.add_argument("--meta", metavar="META", help="meta_det.mat or its text form (ILSVRC)")
    p.add_argument("--blacklist", metavar="FILE", help="'<index> <WNID>' pairs to leave out (ILSVRC)")
    p.add_argument("--dets", required=True, metavar="DETS", help="COCO results / tools/detect.py JSON, "
                   "or an ILSVRC submission")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--images", metavar="DIR", help="the images (for galleries and --weights)")
    p.add_argument("--weights", metavar="PATH", help="member checkpoint or folder: adds the confusion matrix")
    p.add_argument("--device", default="cpu")
    p.add_argument("--confusion-images", type=int, default=0, metavar="N",
                   help="with --weights: classify the objects of the first N images only (0 = all)")
    p.add_argument("--max-images", type=int, default=0, help="only the first N images of the ground truth")
    p.add_argument("--no-galleries", action="store_true", help="skip the galleries")
    add_config_args(p)
    args = p.parse_args(argv)
    devkit = [args.gt_dir, args.image_list, args.meta]
    if bool(args.gt) == any(devkit):
        p.error("give either --gt (COCO) or --gt-dir, --image-list and --meta (ILSVRC)")
    if not args.gt and not all(devkit):
        p.error("the ILSVRC form needs --gt-dir, --image-list and --meta")
    return args


def default_images(args) -> str:
    """``--images``, else ``images/`` beside GT.json or beside the devkit folder's parent."""
    if args.images:
        return args.images
    base = os.path.dirname(os.path.abspath(args.gt)) if args.gt else \
        os.path.dirname(os.path.dirname(os.path.abspath(args.gt_dir)))
    for folder in (os.path.join(base, "images"), os.path.join(os.path.dirname(base), "images")):
        if os.path.isdir(folder):
            return folder
    return base


def ensemble_classifier(weights: str, device: str):
    """``(classify, class names)``: the ensemble's averaged softmax on given boxes."""
    import torch
    from detector.ensemble import average_probabilities, check_members, member_probabilities
    from detector.pipeline import load_members
    members = load_members(weights, device)

    def classify(pixels, boxes):
        with torch.inference_mode():
            probs, _ = member_probabilities(pixels, torch.as_tensor(boxes), members)
        return average_probabilities(probs).numpy()
    return classify, check_members(members)


def main(argv=None) -> int:
    args = parse_args(argv)
    from eval.analysis import AnalysisConfig, analyze, check_output_dir, coco_data, ilsvrc_data
    cfg = load_config(AnalysisConfig, args.config, args.overrides)
    check_output_dir(args.out)
    images = default_images(args)
    start = time.perf_counter()
    if args.gt:
        data = coco_data(args.gt, args.dets, images, args.max_images)
    else:
        data = ilsvrc_data(args.gt_dir, args.image_list, args.meta, args.dets, args.blacklist, images, args.max_images)
    log.info("read %d images, %d detections in %.1f s", data.inp.n_images, len(data.inp.det_score),
             time.perf_counter() - start)
    confusion = None
    if args.weights:
        from eval.confusion import gt_confusion
        classify, model_classes = ensemble_classifier(args.weights, args.device)
        confusion = gt_confusion(data.dataset, classify, model_classes, args.confusion_images)
    out = analyze(data, args.out, cfg, confusion, galleries=not args.no_galleries)
    save_run_config(cfg, args.out)
    dap = ", ".join(f"{k} {v:.1f}" for k, v in out["dAP"].items())
    print(f"AP50 {out['AP50']:.1f}; dAP: {dap}; FalsePos {out['special']['FalsePos']:.1f}, "
          f"FalseNeg {out['special']['FalseNeg']:.1f}")
    log.info("wrote %s (%.1f s)", os.path.join(args.out, "report.html"), time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(core.cli.run(main))
