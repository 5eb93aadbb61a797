"""The Inception R-CNN detector. The public API is :class:`Detector` (see :mod:`detector.api`)."""


def __getattr__(name):
    # Lazy, so that ``import detector.config`` (used by the proposal and training tools) does
    # not load the whole pipeline.
    if name in ("Detector", "Detections"):
        from detector import api
        return getattr(api, name)
    raise AttributeError(f"module 'detector' has no attribute {name!r}")
