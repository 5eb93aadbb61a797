"""bench/eval_speed.py: the evaluator benchmark's case, both sides, and its command."""
from bench.eval_speed import CaseSpec, format_report, run_benchmark, run_faster, run_ours, write_case


def test_benchmark_dispatch(load_tool):
    tool = load_tool("benchmark")
    assert {"eval", "proposals"} <= set(tool.COMMANDS)
    assert tool.main([]) == 2 and tool.main(["nope"]) == 2 and tool.main(["--help"]) == 0


def test_a_tiny_case_both_sides(tmp_path):
    write_case(CaseSpec(images=40, classes=5, dets_per_image=20), str(tmp_path))
    ours, theirs = run_ours(str(tmp_path)), run_faster(str(tmp_path))
    assert ours["detections"] >= 40 * 20 and 0 < ours["mAP"] <= 1 and 0 < theirs["mAP@0.5 (101-point)"] <= 1


def test_each_side_runs_in_its_own_process(tmp_path):
    ours, theirs = run_benchmark(CaseSpec(images=30, classes=4, dets_per_image=10), str(tmp_path))
    assert ours["peak_rss_mib"] > 0 and theirs["process_seconds"] >= theirs["seconds"]
    assert "ratio ours/theirs" in format_report(ours, theirs)
