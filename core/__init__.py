"""Shared foundations of Inception R-CNN: boxes, images, configuration and data formats.

`detector/`, `proposals/` and `eval/` all import from here and never from each other's
internals in a cycle: this package imports none of them.
"""
