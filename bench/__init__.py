"""Benchmarks and experiments: the synthetic benchmark generator, the speed and quality benchmarks,
and the replication of the paper's claims.

This package sits on top of all the others (it may import ``core``, ``nets``, ``proposals``,
``detector`` and ``eval``; none of them imports it). Its modules take explicit arguments and
return results; the command lines live in ``tools/`` (``make_synthetic.py``, ``benchmark.py``,
``replicate.py``).
"""
