"""The evaluator: ILSVRC devkit, PASCAL VOC and COCO detection protocols, and proposal recall.

Start at :func:`eval.api.evaluate` (in-memory detections) or :mod:`eval.files` (the formats'
files, as ``tools/eval.py`` reads them); :func:`eval.recall.proposal_recall` for proposals.
Layout: :mod:`eval.matching` (the one matching core) → :mod:`eval.ap` (curves, AP) → the
protocols :mod:`eval.ilsvrc`, :mod:`eval.voc`, :mod:`eval.coco` → :mod:`eval.report`.
"""
