"""Write a slim copy of a MultiBox training checkpoint for assets/model/.

    python tools/export_multibox.py runs/multibox/checkpoint.pt assets/model/multibox.pt

Drops the optimizer state, stores the network's weights as float16 (they load back into the
float32 network; the priors stay float32) and records the commit it was exported from.
"""
from __future__ import annotations

import argparse
import sys

import torch

from core.cli import run
from core.io import atomic_path
from core.checkpoint import git_commit
from proposals.multibox import load_multibox, read_checkpoint


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a checkpoint written by tools/train_multibox.py")
    parser.add_argument("out", help="the slim copy to write")
    args = parser.parse_args(argv)
    load_multibox(args.checkpoint)  # refuses a file that does not fit before anything is written
    state = read_checkpoint(args.checkpoint)
    state["model"] = {k: v.half() if v.is_floating_point() else v for k, v in state["model"].items()}
    state["config"] = {k: getattr(state["config"], k) for k in state["config"].__dataclass_fields__}
    state.update(optimizer={}, commit=state.get("commit") or git_commit())
    with atomic_path(args.out) as tmp:
        torch.save(state, tmp)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
