"""The command lines, called in-process through their ``main(argv)``."""
import json
from pathlib import Path

import numpy as np
import pytest

import core.cli

REPO = Path(__file__).resolve().parents[2]


def test_propose_json_contract(split, tmp_path, load_tool):
    image = str(split / "images" / "000.png")
    out = tmp_path / "p.json"
    assert load_tool("propose").main([image, "--method", "ss2x", "--json", str(out)]) == 0
    records = json.loads(out.read_text())
    assert len(records) == 1 and set(records[0]) == {"image", "boxes", "seconds"}
    assert records[0]["image"] == image and isinstance(records[0]["seconds"], float)
    boxes = np.array(records[0]["boxes"])
    assert boxes.shape[1] == 4 and (boxes[:, 2] <= 160).all() and (boxes[:, 3] <= 140).all()


def test_propose_overrides_and_errors(split, tmp_path, capsys, load_tool):
    image = str(split / "images" / "000.png")
    out = tmp_path / "p.json"
    tool = load_tool("propose")
    tool.main([image, "--method", "ss", "--json", str(out), "--set", "ss.min_box_size=60"])
    boxes = np.array(json.loads(out.read_text())[0]["boxes"])
    assert ((boxes[:, 2:] - boxes[:, :2]) >= 60).all()
    assert core.cli.run(tool.main, [image, "--set", "ss.color_spaces=[xyz]", "--method", "ss"]) == 2
    assert core.cli.run(tool.main, [image, "--method", "merged", "--multibox-weights", "no.pt"]) == 2
    assert "no.pt: MultiBox weights not found" in capsys.readouterr().err


def test_propose_bad_images_are_one_line_each_and_the_rest_go_on(split, tmp_path, capsys, monkeypatch, load_tool):
    import re
    from PIL import Image
    good = [str(split / "images" / "000.png"), str(split / "images" / "001.png")]
    corrupt, missing, odd = tmp_path / "corrupt.jpg", tmp_path / "missing.png", tmp_path / "odd.png"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    Image.new("RGB", (5, 3)).save(odd)
    tool = load_tool("propose")
    real = tool.build_proposer

    def build(*args):
        inner = real(*args)

        def proposer(pixels):  # the real proposer, except that it fails on the 5 x 3 image
            if pixels.shape[:2] == (3, 5):
                raise RuntimeError("boom")
            return inner(pixels)
        return proposer

    monkeypatch.setattr(tool, "build_proposer", build)
    out = tmp_path / "p.json"
    argv = [good[0], str(corrupt), str(missing), str(odd), good[1], "--method", "ss", "--json", str(out)]
    assert core.cli.run(tool.main, argv) == 1
    err = capsys.readouterr().err
    errors = [s for s in re.split(r"[\r\n]", err) if s.startswith("error:")]
    assert len(errors) == 3 and "Traceback" not in err
    assert errors[0].startswith(f"error: {corrupt}: ") and errors[1] == f"error: {missing}: no such file"
    assert errors[2] == f"error: {odd}: proposals failed (RuntimeError: boom)"
    records = json.loads(out.read_text())
    assert [r["image"] for r in records] == good and all(len(r["boxes"]) for r in records)
    assert core.cli.run(tool.main, good + ["--method", "ss"]) == 0


def test_visualize_single_and_contact_sheet(split, tmp_path, load_tool):
    tool = load_tool("visualize_proposals")
    one, sheet = tmp_path / "one.png", tmp_path / "sheet.png"
    image = str(split / "images" / "000.png")
    assert tool.main([image, "--method", "ss2x", "--top", "20", "--gt", str(split / "annotations.json"),
                      "--out", str(one)]) == 0
    assert tool.main(["--dataset", str(split.parent), "--split", "val", "--method", "ss2x",
                      "--out", str(sheet)]) == 0
    assert one.stat().st_size > 0 and sheet.stat().st_size > 0


def test_benchmark_table_and_json(split, tmp_path, capsys, load_tool):
    out = tmp_path / "b.json"
    assert load_tool("benchmark").main(["proposals", "--data", str(split), "--methods", "ss,ss2x,merged",
                                        "--json", str(out), "--multibox-weights", str(tmp_path / "none.pt")]) == 0
    table = capsys.readouterr().out
    assert "ss2x" in table and "opencv_fast" in table and "skipped" in table
    rows = {r["method"]: r for r in json.loads(out.read_text())["results"]}
    assert rows["ss"]["coverage"] == pytest.approx(1.0)
    assert rows["ss2x"]["proposals_per_image"] < rows["ss"]["proposals_per_image"]
    assert rows["merged"]["coverage"] is None
