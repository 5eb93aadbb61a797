"""Write a slim copy of a MultiBox training checkpoint for assets/model/.

    python tools/export_multibox.py runs/multibox/checkpoint.pt assets/model/multibox.pt

Drops the optimizer state, stores the network's weights as float16 (they load back into the
float32 network; the priors stay float32) and records the commit it was exported from.
"""
from __future__ import annotations

import argparse
import sys

from core.cli import run
from proposals.multibox import load_multibox, read_checkpoint, save_checkpoint


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a checkpoint written by tools/train_multibox.py")
    parser.add_argument("out", help="the slim copy to write")
    args = parser.parse_args(argv)
    proposer = load_multibox(args.checkpoint)  # refuses a file that does not fit before anything is written
    blob, cfg = read_checkpoint(args.checkpoint)
    save_checkpoint(args.out, proposer.model, cfg, blob["config"], train_state=blob["train_state"],
                    half=True, commit=blob["commit"] if blob["commit"] != "unknown" else None)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
