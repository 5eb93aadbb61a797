"""Run one of the project's benchmarks (speed, memory, quality figures for the README).

    python tools/benchmark.py NAME [ARGS ...]
    python tools/benchmark.py eval [--images N]       # ILSVRC evaluation vs faster-coco-eval
    python tools/benchmark.py proposals [...]         # proposal methods: recall and speed
    python tools/benchmark.py detect [--images DIR]   # the detector stage by stage vs its bare networks

``python tools/benchmark.py NAME --help`` lists a benchmark's own arguments. Each NAME maps to a
function ``NAME_command(argv) -> int`` here, which parses its arguments and calls the benchmark in
``bench/``; add an entry to :data:`COMMANDS` to add a benchmark.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import core.cli
from core.config import add_config_args, load_config
from core.errors import InputError
from core.formats.coco import read_split
from core.io import write_json


def eval_command(argv: list[str]) -> int:
    """``benchmark.py eval``: our ILSVRC evaluation against faster-coco-eval (bench/eval_speed.py)."""
    from bench.eval_speed import CaseSpec, format_report, run_benchmark
    from bench.eval_speed import __doc__ as doc
    p = argparse.ArgumentParser(prog="benchmark.py eval", description=doc.split("\n\n")[0])
    p.add_argument("--images", type=int, default=CaseSpec.images, help="images (default 20121, ILSVRC val)")
    p.add_argument("--classes", type=int, default=CaseSpec.classes, help="classes (default 200)")
    p.add_argument("--dets-per-image", type=int, default=CaseSpec.dets_per_image, help="default 100 (~2M in all)")
    p.add_argument("--seed", type=int, default=CaseSpec.seed)
    p.add_argument("--work", help="folder for the case (default: a cache folder under the temp dir)")
    args = p.parse_args(argv)
    spec = CaseSpec(images=args.images, classes=args.classes, dets_per_image=args.dets_per_image, seed=args.seed)
    print(format_report(*run_benchmark(spec, args.work)))
    return 0


def _proposals_parser() -> argparse.ArgumentParser:
    from bench.proposals import __doc__ as doc
    from proposals.build import METHODS
    p = argparse.ArgumentParser(prog="benchmark.py proposals", description=doc.split("\n\n")[0])
    p.add_argument("--data", metavar="DIR", help="split folder (annotations.json + images); "
                   "default: generate a synthetic val split")
    p.add_argument("--images", type=int, help="images to generate (default 20); with --data, "
                   "only its first N images (default all)")
    p.add_argument("--seed", type=int, default=0, help="synthetic data seed (default 0)")
    p.add_argument("--work", metavar="DIR", help="where to generate the split (default: a temp folder)")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ",".join(METHODS))
    p.add_argument("--no-opencv", action="store_true", help="skip OpenCV's fast mode")
    p.add_argument("--multibox-weights", metavar="FILE", help="default: assets/model/multibox.pt")
    p.add_argument("--device", default="cpu", help="torch device for MultiBox")
    p.add_argument("--json", metavar="FILE", help="also write the results here")
    add_config_args(p)
    return p


def proposals_command(argv: list[str]) -> int:
    """``benchmark.py proposals``: every proposal method's recall and speed (bench/proposals.py)."""
    import cv2
    import torch

    from bench.proposals import benchmark, format_table, results_json
    from bench.synthetic import generate_split
    from proposals.build import METHODS, ProposalsConfig
    args = _proposals_parser().parse_args(argv)
    cfg = load_config(ProposalsConfig, args.config, args.overrides)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise InputError(f"--methods: unknown {unknown[0]!r} (known: {', '.join(METHODS)})")
    cv2.setNumThreads(1)  # the same single core for OpenCV's fast mode and ours
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="proposals-bench-") as tmp:
        folder = args.data or os.path.join(args.work or tmp, "val")
        if not args.data:
            generate_split(folder, args.images or 20, args.seed, split="val")
        dataset = read_split(folder, (args.images or 0) if args.data else 0)
        results = benchmark(dataset, methods, cfg, args.multibox_weights, args.device, not args.no_opencv)
    print(format_table(results, len(dataset.images)))
    if args.json:
        write_json(args.json, results_json(results, dataset, folder), indent=2)
    return 0


def detect_command(argv: list[str]) -> int:
    """``benchmark.py detect``: the detector stage by stage beside its bare networks (bench/detect_speed.py)."""
    from bench.detect_speed import REPO, SETTINGS, Options, run_benchmark
    from bench.detect_speed import __doc__ as doc
    from core.image import list_images
    p = argparse.ArgumentParser(prog="benchmark.py detect", description=doc.split("\n\n")[0])
    p.add_argument("--images", default=str(REPO / "assets" / "samples"), help="image folder or file")
    p.add_argument("--weights", default=str(REPO / "assets" / "model"), help="member checkpoints")
    p.add_argument("--json", help="write the reports to this JSON file")
    p.add_argument("--max-images", type=int, default=0, help="use the first N images (0 = all)")
    p.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated: " + ", ".join(SETTINGS))
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--paper-regions", type=int, default=1400, help="regions per image at the paper setting")
    p.add_argument("--paper-sample", type=int, default=256,
                   help="regions warped and classified per image at the paper setting, times scaled (0 = all)")
    p.add_argument("--paper-images", type=int, default=2, help="images at the paper setting (0 = all)")
    p.add_argument("--rounds", type=int, default=3,
                   help="folder runs, each between two bare forwards; the median ratio is reported (default 3)")
    args = p.parse_args(argv)
    if args.rounds < 1:
        raise InputError(f"--rounds: need at least 1, got {args.rounds}")
    paths = list_images([args.images])[:args.max_images or None]
    opts = Options((), args.weights, args.threads, args.paper_regions, args.paper_sample, rounds=args.rounds)
    reports = run_benchmark(paths, [s for s in args.settings.split(",") if s], opts, args.paper_images,
                            printer=lambda text: print(text, flush=True))
    if args.json:
        write_json(args.json, {"command": "python tools/benchmark.py detect " + " ".join(argv),
                               "reports": reports}, indent=1)
    return 0


# name -> function(argv) -> int
COMMANDS = {"eval": eval_command, "proposals": proposals_command, "detect": detect_command}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        asked = argv[:1] in (["-h"], ["--help"])
        print(__doc__.strip() + "\n\nbenchmarks: " + ", ".join(sorted(COMMANDS)),
              file=sys.stdout if asked else sys.stderr)
        return 0 if asked else 2
    return int(COMMANDS[argv[0]](argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(core.cli.run(main))
