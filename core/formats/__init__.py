"""Dataset file formats, read into and written from :mod:`core.structures`.

* :mod:`core.formats.coco`: COCO instances JSON and results lists.
* :mod:`core.formats.ilsvrc`: the ILSVRC DET devkit (XMLs, image lists, ``meta_det.mat``,
  blacklist, submissions).
* :mod:`core.formats.voc`: PASCAL VOC (Annotations, ImageSets, per-class result files).
* :mod:`core.formats.xmlutil`: the PASCAL-style XML both devkits use.

Readers convert boxes to the internal xyxy format at the edge (:mod:`core.boxes`) and raise
:class:`core.errors.InputError` naming the file and line or element for malformed input;
writers convert back. Import the submodule you need (this package imports none of them, so
``import core.formats.coco`` does not load scipy).
"""
