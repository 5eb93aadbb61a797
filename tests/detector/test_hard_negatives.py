"""detector.hard_negatives and the sampler's hard_fraction: mining, the file, the draws, tools/train.py --mine."""
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.ops import box_iou

from core.errors import InputError
from core.formats.coco import write_coco
from core.structures import DetectionDataset, ImageAnnotations
from detector.config import SamplerConfig
from detector.hard_negatives import MiningConfig, load_negatives, mine_image, save_negatives
from detector.sampler import RegionSampler

GT = np.array([[0, 0, 10, 10]], np.float32)
HARD = np.array([[20, 10, 30, 20], [25, 5, 35, 15], [0, 0, 10, 6]], np.float32)  # the last: IoU 0.6, an object


def dataset(n=4):
    return DetectionDataset(["a"], [ImageAnnotations(i, f"im{i}.png", 40, 20, GT, np.array([0])) for i in range(n)])


def random_proposals(n_images=4):
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 25, (200, 2)).astype(np.float32)
    return {i: np.concatenate([xy, xy + 8], 1) for i in range(n_images)}


def drawn_boxes(sampler, epoch=0):
    return [(s.index, s.boxes.tolist(), s.labels.tolist()) for b in sampler.epoch(epoch) for s in b]


def test_hard_fraction_draws_that_share_of_the_background_from_the_mined_windows():
    cfg = SamplerConfig(images_per_batch=2, hard_fraction=0.5, flip=False)
    hard = {f"im{i}.png": HARD for i in range(4)}
    sampler = RegionSampler(dataset(), random_proposals(), cfg, hard=hard)
    for batch in sampler.epoch(0):
        boxes = torch.cat([s.boxes[s.labels == 0] for s in batch])
        is_hard = (boxes[:, None] == torch.as_tensor(HARD[:2])[None]).all(-1).any(-1)
        assert int(is_hard.sum()) >= 48  # half of the 96 background slots (plus any random repeats)
        # the mined window on the object serves as nothing (it is not a negative)
        drawn = torch.cat([s.boxes for s in batch])
        assert not (drawn == torch.as_tensor(HARD[2])).all(-1).any()


def test_without_hard_fraction_the_batches_are_the_plain_samplers():
    cfg = SamplerConfig(images_per_batch=2)
    plain = RegionSampler(dataset(), random_proposals(), cfg, seed=3)
    # mined windows as --mine writes them, copies of proposals, and new ones
    hard = {f"im{i}.png": np.concatenate([random_proposals()[i][:5], HARD]) for i in range(4)}
    mined = RegionSampler(dataset(), random_proposals(), cfg, seed=3, hard=hard)
    assert drawn_boxes(plain) == drawn_boxes(mined)
    assert drawn_boxes(plain, 1) == drawn_boxes(mined, 1)


def test_negatives_file_round_trips_and_bad_files_say_so(tmp_path):
    mined = {"a.png": (HARD, np.array([0.9, 0.8, 0.7], np.float32)),
             "b.png": (np.zeros((0, 4), np.float32), np.zeros(0, np.float32))}
    save_negatives(tmp_path / "hard.npz", mined)
    back = load_negatives(tmp_path / "hard.npz")
    assert list(back) == ["a.png", "b.png"] and np.array_equal(back["a.png"], HARD) and back["b.png"].shape == (0, 4)
    with pytest.raises(InputError, match="no such hard-negatives file"):
        load_negatives(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a hard-negatives file"):
        load_negatives(tmp_path / "junk.npz")
    np.savez(tmp_path / "bad.npz", names=np.array(["a"]), counts=np.array([2]), boxes=np.zeros((1, 4)))
    with pytest.raises(InputError, match="do not fit together"):
        load_negatives(tmp_path / "bad.npz")
    np.savez(tmp_path / "float.npz", names=np.array(["a"]), counts=np.array([1.0]), boxes=np.zeros((1, 4)))
    with pytest.raises(InputError, match="do not fit together"):
        load_negatives(tmp_path / "float.npz")
    np.savez(tmp_path / "twice.npz", names=np.array(["a", "a"]), counts=np.array([1, 0]), boxes=np.zeros((1, 4)))
    with pytest.raises(InputError, match="listed twice"):
        load_negatives(tmp_path / "twice.npz")
    with open(tmp_path / "one.npz", "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(InputError, match="not a hard-negatives file"):
        load_negatives(tmp_path / "one.npz")


def test_mining_keeps_the_top_scoring_background_far_from_objects(kit, tiny_model, easy_split):
    model = tiny_model[0]
    ann = easy_split.images[0]
    pixels = np.asarray(Image.open(f"{easy_split.image_root}/{ann.file_name}").convert("RGB"))
    cfg = MiningConfig(min_score=0.0, per_image=5, max_iou=0.3)
    boxes, scores = mine_image(pixels, kit.grid_boxes(), ann, [model], SamplerConfig(), cfg)
    assert len(boxes) == 5 and (np.diff(scores) <= 0).all()
    assert (box_iou(torch.as_tensor(boxes), torch.as_tensor(ann.boxes)) < 0.3).all()
    again = mine_image(pixels, kit.grid_boxes(), ann, [model], SamplerConfig(), cfg)
    assert np.array_equal(again[0], boxes)  # deterministic
    strict = mine_image(pixels, kit.grid_boxes(), ann, [model], SamplerConfig(),
                        MiningConfig(min_score=float(scores[2]) + 1e-6, per_image=5))
    assert len(strict[0]) <= 2


def test_train_tool_mines_then_trains_on_its_negatives(kit, tiny_model, tmp_path):
    train = kit.make_split(tmp_path / "train" / "images", 4, seed=12)
    write_coco(train, tmp_path / "train" / "annotations.json")
    tool = kit.load_tool("train")
    base = ["--member", "0", "--out", str(tmp_path / "run"), "--set", f"data.train={tmp_path / 'train'}",
            "--set", "data.val=", "--set", "data.proposal_method=ss", "--set", "data.workers=0",
            "--set", f"data.cache_dir={tmp_path / 'cache'}"]
    assert tool.main(base + ["--mine", str(tiny_model[2]), "--set", "mining.min_score=0"]) == 0
    path = tmp_path / "run" / "hard_negatives.npz"
    mined = load_negatives(path)
    assert sorted(mined) == sorted(a.file_name for a in train.images)
    counts = [len(b) for b in mined.values()]
    assert sum(counts) > 0 and max(counts) <= 16  # min_score 0: every far window of ss's few, up to per_image
    assert not (tmp_path / "run" / "member_0.pt").exists()
    small = ["--set", "classifier.width=0.125", "--set", "classifier.input_size=32", "--set", "classifier.padding=2",
             "--set", "train.epochs=1", "--set", "sampler.batch_size=32"]
    with pytest.raises(InputError, match="needs data.hard_negatives"):
        tool.main(base + small + ["--set", "sampler.hard_fraction=0.25"])
    assert tool.main(base + small + ["--set", "sampler.hard_fraction=0.25", "--set", f"data.hard_negatives={path}"]) == 0
    assert (tmp_path / "run" / "member_0.pt").exists()
    save_negatives(tmp_path / "other.npz", {"elsewhere.png": (HARD, np.ones(3, np.float32))})
    with pytest.raises(InputError, match="none of its images"):
        tool.main(base + small + ["--set", f"data.hard_negatives={tmp_path / 'other.npz'}"])
