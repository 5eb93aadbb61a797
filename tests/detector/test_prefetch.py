"""detector.prefetch: proposals computed ahead in a worker come back in order, errors as one line."""
import numpy as np
from PIL import Image

from detector.prefetch import prefetch
from proposals.build import build_background_proposer, build_proposer, complete_proposals


def test_worker_gives_the_in_process_results_in_order(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    paths.insert(1, str(tmp_path / "missing.png"))
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    paths.append(str(tmp_path / "bad.jpg"))
    ahead = list(prefetch(paths, build_proposer, ("ss2x",), ahead=2))
    inline = list(prefetch(paths, build_proposer, ("ss2x",), ahead=0))
    assert [p.path for p in ahead] == paths == [p.path for p in inline]
    for a, b in zip(ahead, inline):
        assert a.error == b.error
        if a.error is None:
            assert np.array_equal(a.pixels, b.pixels) and np.array_equal(a.proposals.boxes, b.proposals.boxes)
    assert [p.error is not None for p in ahead] == [False, True, False, False, True]
    assert ahead[1].error.startswith(paths[1]) and "\n" not in ahead[4].error


def test_background_part_and_completion_give_the_whole_proposer(tmp_path):
    image = np.random.default_rng(3).integers(0, 255, (64, 80, 3), dtype=np.uint8)
    merged = build_proposer("merged")  # the bundled MultiBox
    partial = build_background_proposer("merged")(image)
    assert np.array_equal(complete_proposals(merged, image, partial).boxes, merged(image).boxes)
    ss = build_proposer("ss2x")
    assert np.array_equal(complete_proposals(ss, image, build_background_proposer("ss2x")(image)).boxes,
                          ss(image).boxes)
    assert build_background_proposer("multibox") is None
    assert complete_proposals(ss, image, None).boxes.shape == ss(image).boxes.shape


def test_closing_early_stops_the_worker(tmp_path):
    paths = []
    for i in range(4):
        Image.fromarray(np.full((30, 30, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    with prefetch(paths, build_background_proposer, ("ss2x",), ahead=1) as items:
        first = next(iter(items))
    assert first.path == paths[0] and first.error is None and items.pool is None


def test_detect_script_imports_no_torch():
    # The prefetch worker is spawned and imports tools/detect.py again: it must stay light.
    import subprocess
    import sys
    from pathlib import Path
    script = Path(__file__).resolve().parents[2] / "tools" / "detect.py"
    code = ("import importlib.util, sys; spec = importlib.util.spec_from_file_location('m', sys.argv[1]); "
            "spec.loader.exec_module(importlib.util.module_from_spec(spec)); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(script)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
