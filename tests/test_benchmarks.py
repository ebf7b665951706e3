"""The benchmark scripts run end to end (``--quick``) and write the records they promise.

Only the harness is tested here: exit status, the JSON layout, that every case was checked
against PyTorch and timed. Times are never asserted (they depend on the machine and its load).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def run_quick(script: str, out: Path) -> subprocess.CompletedProcess:
    # --readme none: a test must never rewrite the committed README tables. --threads 1: on a busy
    # 2-core CI machine, multi-threaded spin-waits make a smoke test several times slower.
    cmd = [sys.executable, str(BENCH / script), "--quick", "--threads", "1", "--out", str(out), "--readme", "none"]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_kernels_quick_writes_a_complete_record(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCH))
    try:
        import kernels  # noqa: PLC0415 (benchmarks/ is not a package; its scripts import `common`)
    finally:
        sys.path.remove(str(BENCH))

    proc = run_quick("kernels.py", tmp_path)
    assert proc.returncode == 0, f"kernels.py --quick failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    record = json.loads((tmp_path / "kernels-cpu.json").read_text())

    assert {"topic", "quick", "command", "machine", "sgemm", "conv", "pool", "geomean", "errors"} <= set(record)
    assert record["topic"] == "kernels" and record["quick"] is True and record["errors"] == 0
    machine = record["machine"]
    assert {"date", "cpu_model", "cores", "threads", "versions"} <= set(machine)
    assert {"numpy", "torch", "numba"} <= set(machine["versions"])
    assert machine["threads"]["torch"] == machine["threads"]["numba"] == machine["threads"]["requested"]
    assert record["sgemm"]["peak_gflops"] > 0 and record["sgemm"]["dtype"] == "float32"

    # every conv case: a forward and a fwd+bwd row, checked against torch and timed
    assert [(r["name"], r["op"]) for r in record["conv"]] == [
        (case.name, op) for case in kernels.CONV_CASES for op in ("forward", "fwd+bwd")]
    for row in record["conv"]:
        assert {"minivis_ms", "torch_ms", "ratio", "minivis_gflops", "pct_peak", "max_abs_err"} <= set(row)
        assert row["minivis_ms"] > 0 and row["torch_ms"] > 0
        assert row["ratio"] == pytest.approx(row["torch_ms"] / row["minivis_ms"])
    assert record["pool"] and all("error" not in r and r["ratio"] > 0 for r in record["pool"])
    for key in ("conv_forward", "conv_fwd_bwd", "pool"):
        assert record["geomean"][key] > 0


def test_readme_section_update_replaces_only_its_block(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCH))
    try:
        import common  # noqa: PLC0415
    finally:
        sys.path.remove(str(BENCH))

    readme = tmp_path / "README.md"
    readme.write_text("# B\n\n<!-- a-cpu:start -->\nold\n<!-- a-cpu:end -->\n\ntail\n")
    common.update_readme_section(readme, "a-cpu", "| x |\n|---:|\n| 1 |")
    common.update_readme_section(readme, "b-gpu", "new topic", heading="B on GPU")
    text = readme.read_text()
    assert "old" not in text and "| 1 |" in text and text.index("| 1 |") < text.index("tail")
    assert text.rstrip().endswith("## B on GPU\n\n<!-- b-gpu:start -->\nnew topic\n<!-- b-gpu:end -->")


@pytest.mark.slow
def test_mining_quick_writes_a_complete_record(tmp_path: Path) -> None:
    proc = run_quick("mining.py", tmp_path)
    assert proc.returncode == 0, f"mining.py --quick failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    record = json.loads((tmp_path / "mining-cpu.json").read_text())
    assert {"topic", "quick", "machine", "sgemm", "checks", "rows", "peak_memory_ratio", "layers", "k"} <= set(record)
    assert record["topic"] == "mining" and record["quick"] is True
    assert record["checks"]["miner_vs_brute_force"].startswith("equal")
    assert [r["n"] for r in record["rows"]] == sorted(r["n"] for r in record["rows"]) and len(record["rows"]) == 2
    for row in record["rows"]:
        assert row["mining_s"] > 0 and row["torch_forward_s"] > 0 and row["minivis_forward_s"] > 0
        assert row["ratio_vs_torch"] == pytest.approx(row["torch_forward_s"] / row["mining_s"])
        assert row["peak_mb"] > 0


@pytest.mark.slow
def test_occlusion_quick_writes_a_complete_record(tmp_path: Path) -> None:
    proc = run_quick("occlusion.py", tmp_path)
    assert proc.returncode == 0, f"occlusion.py --quick failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    record = json.loads((tmp_path / "occlusion-cpu.json").read_text())
    assert {"topic", "quick", "command", "machine", "results", "errors"} <= set(record)
    assert record["topic"] == "occlusion" and record["quick"] is True and record["errors"] == 0
    assert [r["model"] for r in record["results"]] == ["efficientnet_lite0", "vgg16"]
    for result in record["results"]:
        methods = [row["method"] for row in result["rows"]]
        assert methods[:3] == ["minivis naive", "minivis incremental", "minivis approximate"]
        assert all(m.startswith("Captum Occlusion") for m in methods[3:]) and len(methods) == 5
        assert result["rows"][1]["max_abs_diff"] <= 1e-5 and result["captum_max_abs_diff"] <= 1e-5
        for row in result["rows"]:
            assert row["seconds"] > 0 and row["full_s"] > 0
            assert row["vs_captum_default"] == pytest.approx(result["rows"][3]["full_s"] / row["full_s"])


@pytest.mark.slow
def test_attribution_quick_writes_a_complete_record(tmp_path: Path) -> None:
    proc = run_quick("attribution.py", tmp_path)
    assert proc.returncode == 0, f"attribution.py --quick failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    record = json.loads((tmp_path / "attribution-cpu.json").read_text())
    assert record["topic"] == "attribution" and record["quick"] is True and record["errors"] == 0
    methods = ["saliency", "guided_backprop", "deconvnet", "grad_cam", "smoothgrad", "integrated_gradients"]
    assert [r["method"] for r in record["rows"]] == methods
    for r in record["rows"]:
        assert r["minivis_s"] > 0 and r["captum_s"] > 0 and r["ratio"] == pytest.approx(r["captum_s"] / r["minivis_s"])
        assert r["check"] == "ok" or r["check"].startswith("n/a")
    if sys.platform.startswith("linux"):  # peak memory comes from /proc/self (VmHWM, clear_refs)
        assert all(r["minivis_peak_mb"] is not None for r in record["rows"] if r["method"] in methods[4:])


@pytest.mark.slow
def test_synthesis_quick_writes_a_complete_record(tmp_path: Path) -> None:
    proc = run_quick("synthesis.py", tmp_path)
    assert proc.returncode == 0, f"synthesis.py --quick failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    record = json.loads((tmp_path / "synthesis-cpu.json").read_text())
    assert record["topic"] == "synthesis" and record["quick"] is True and record["size"] == 64
    cases = [r["case"] for r in record["rows"]]
    assert cases[0].startswith("deepdream step") and cases[1].startswith("class-model step")
    assert cases[2] == "class_model, 3 steps"
    for r in record["rows"]:
        assert r["check"] == "ok"
        assert r["minivis_ms"] > 0 and r["torch_ms"] > 0
        assert r["ratio"] == pytest.approx(r["torch_ms"] / r["minivis_ms"])
    assert record["rows"][2]["final_target_logit"] > record["rows"][2]["initial_target_logit"]


@pytest.mark.slow
def test_embedding_quick_writes_a_complete_record(tmp_path: Path) -> None:
    proc = run_quick("embedding.py", tmp_path)
    assert proc.returncode == 0, f"embedding.py --quick failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    record = json.loads((tmp_path / "embedding-cpu.json").read_text())
    assert record["topic"] == "embedding" and record["quick"] is True and record["sizes"] == [500]
    methods = ["minivis (BH)", "openTSNE (BH)", "openTSNE (FFT)", "scikit-learn (BH)"]
    assert [r["method"] for r in record["rows"]] == methods and record["skipped"] == []
    mine = record["rows"][0]
    for r in record["rows"]:
        assert r["n"] == 500 and r["seconds"] > 0 and r["ratio"] == pytest.approx(r["seconds"] / mine["seconds"])
        assert 0 < r["kl_same_p"] < 10 and 0 <= r["knn10_kept"] <= 1
    assert set(record["targets"]["500"]["faster_than"]) == set(methods[1:])
    assert set(record["targets"]["500"]["kl_at_most_3pct_above_openTSNE"]) == set(methods[1:3])


@pytest.mark.slow
def test_projections_quick_writes_a_complete_record(tmp_path: Path) -> None:
    proc = run_quick("projections.py", tmp_path)
    assert proc.returncode == 0, f"projections.py --quick failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    record = json.loads((tmp_path / "projections-cpu.json").read_text())
    assert record["topic"] == "projections" and record["quick"] is True
    assert record["checks"]["top_k"] == "identical images and positions"
    (row,) = record["rows"]
    assert row["minivis_s"] > 0 and row["torch_s"] > 0 and row["mining_s"] > 0
    assert row["ratio"] == pytest.approx(row["torch_s"] / row["minivis_s"])


@pytest.mark.slow
def test_decoder_quick_writes_a_complete_record(tmp_path: Path) -> None:
    proc = run_quick("decoder.py", tmp_path)
    assert proc.returncode == 0, f"decoder.py --quick failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    record = json.loads((tmp_path / "decoder-cpu.json").read_text())
    assert record["topic"] == "decoder" and record["quick"] is True
    steps = [r for r in record["rows"] if r["case"].startswith("train step")]
    assert [r["case"] for r in steps] == ["train step features.9 (batch 8)", "train step classifier.1 (batch 8)"]
    for row in record["rows"]:
        assert row["check"] == "ok" and row["minivis_ms"] > 0 and row["reference_ms"] > 0
        assert row["ratio"] == pytest.approx(row["reference_ms"] / row["minivis_ms"])


@pytest.mark.slow
def test_scale_quick_writes_a_complete_record(tmp_path: Path) -> None:
    pytest.importorskip("distributed", reason="the 'scale' extra (dask[distributed]) is not installed")
    proc = run_quick("scale.py", tmp_path)
    assert proc.returncode == 0, f"scale.py --quick failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    record = json.loads((tmp_path / "scale-cpu.json").read_text())
    thr = record["throughput"]
    assert thr["identical_to_single_process"] is True
    assert thr["one_worker_s"] > 0 and thr["two_workers_s"] > 0
    assert thr["speedup"] == pytest.approx(thr["one_worker_s"] / thr["two_workers_s"])
    assert record["vgg16"]["s_per_image_1_threads"] > 0
    assert {(r["workers"], r["threads_per_worker"]) for r in record["estimate"]} >= {(1, 1), (128, 16)}


@pytest.mark.slow
def test_style_quick_writes_a_complete_record(tmp_path: Path) -> None:
    proc = run_quick("style.py", tmp_path)
    assert proc.returncode == 0, f"style.py --quick failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    record = json.loads((tmp_path / "style-cpu.json").read_text())
    assert record["topic"] == "style" and record["quick"] is True
    gram, step, feedforward = record["rows"]
    assert gram["check"] == "ok" and gram["grad_rel_diff"] < 1e-13
    assert step["check"] == "ok" and step["minivis_ms"] > 0 and step["torch_ms"] > 0
    assert feedforward["feedforward_s"] > 0 and feedforward["gatys_steps"] >= 1


@pytest.mark.slow
def test_evaluation_quick_writes_a_complete_record(tmp_path: Path) -> None:
    for module in ("zennit", "pytorch_grad_cam", "quantus"):
        pytest.importorskip(module, reason="benchmarks/evaluation.py needs the test extra's references")
    proc = run_quick("evaluation.py", tmp_path)
    assert proc.returncode == 0, f"evaluation.py --quick failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    record = json.loads((tmp_path / "evaluation-cpu.json").read_text())
    assert record["topic"] == "evaluation" and record["quick"] is True and record["errors"] == 0
    methods = [r["method"] for r in record["rows"]]
    assert methods[:5] == ["LRP eps-gamma-box", "LRP eps-gamma-box", "score_cam", "ablation_cam",
                           "deletion curve (PixelFlipping)"]
    assert methods[5] == "MPRT cascade (saliency, 6 layers)" and methods[-1] == "noisy linear imputation, 90% removed"
    assert any(m.startswith("ROAD") for m in methods[6:-1])
    for r in record["rows"]:
        assert r["minivis s"] > 0 and r["reference s"] > 0
        assert r["speed-up"] == pytest.approx(r["reference s"] / r["minivis s"])


@pytest.mark.slow
def test_site_quick_writes_a_complete_record(tmp_path: Path) -> None:
    proc = run_quick("site.py", tmp_path)
    assert proc.returncode == 0, f"site.py --quick failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    record = json.loads((tmp_path / "site-cpu.json").read_text())
    assert record["topic"] == "site" and record["quick"] is True and record["mode"] == "fast"
    stages = {"photos-efficientnet_lite0", "microscope-fashion_cnn", "microscope-efficientnet_lite0", "embeddings",
              "synthesis"}
    for run in ("cold", "warm"):
        assert record[run]["wall_s"] > 0 and record[run]["cpu_s"] > 0 and record[run]["peak_rss_mb"] > 0
        assert set(record[run]["stages"]) == stages
