"""Run one of the project's benchmarks (speed, memory, quality figures for the README).

    python tools/benchmark.py NAME [ARGS ...]
    python tools/benchmark.py eval [--images N]       # ILSVRC evaluation vs faster-coco-eval
    python tools/benchmark.py proposals [...]         # proposal methods: recall and speed
    python tools/benchmark.py detect [--images DIR]   # the detector stage by stage vs its bare networks

``python tools/benchmark.py NAME --help`` lists a benchmark's own arguments. Each NAME maps to a
module with ``main(argv) -> int`` in :data:`COMMANDS`; add an entry to add a benchmark.
"""
from __future__ import annotations

import importlib
import sys

import core.cli

# name -> module with main(argv) -> int
COMMANDS = {"eval": "eval.benchmark", "proposals": "proposals.benchmark", "detect": "bench.detect_speed"}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(__doc__.strip() + "\n\nbenchmarks: " + ", ".join(sorted(COMMANDS)),
              file=sys.stdout if argv[:1] in (["-h"], ["--help"]) else sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    module = importlib.import_module(COMMANDS[argv[0]])  # a fixed table, not user-built names
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(core.cli.run(main))
