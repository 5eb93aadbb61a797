"""The defaults the README and the papers state, as numbers (a changed default must change this file)."""
from detector.config import DetectorConfig, SamplerConfig


def test_detector_defaults_are_rcnn_s():
    cfg = DetectorConfig()
    assert cfg.nms_iou == 0.3  # R-CNN's per-class NMS threshold
    assert cfg.top_k == 100 and cfg.pre_nms_per_class == 100  # detections per image; R-CNN's cap per class
    assert cfg.proposal_method == "merged"  # GLN: ss2x + top-200 MultiBox


def test_sampler_defaults_are_32_fg_and_96_bg():
    cfg = SamplerConfig()
    fg = round(cfg.batch_size * cfg.fg_fraction)
    assert (fg, cfg.batch_size - fg) == (32, 96)
    assert (cfg.fg_iou, cfg.bg_iou_hi, cfg.bg_iou_lo) == (0.5, 0.5, 0.0)
