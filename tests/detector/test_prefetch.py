"""detector.prefetch: proposals computed ahead in a worker come back in order, errors as one line."""
import numpy as np
from PIL import Image

from detector.prefetch import prefetch
from proposals.build import build_proposer


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
