"""compare/bench.py: the benchmark runs and its JSON is well formed. Speeds are never asserted."""

from __future__ import annotations

import json

import pytest

from netparity.backends import available, get_backend
from netparity.compare import bench
from netparity.compare.bench import bench_table, ceiling, expand_variants, run_bench
from netparity.compare.bench_worker import FAULT_VARIABLE, VARIANTS, split_variant
from netparity.spec import zoo
from netparity.spec.flops import flops

INSTALLED = available()
TINY = dict(batch_size=8, steps=2, warmup=1, repeats=1)
# the plain variants, mxnet[hybrid] and torch[channels_last]: never torch.compile or XLA in tests
CHEAP = [v.label for v in VARIANTS.values() if v.backend in INSTALLED and v.when == "always"
         and v.execution in ("plain", "hybrid", "channels_last") and not v.keras_backend]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _cache_file(tmp_path):
    return tmp_path / "cache" / "netparity" / "ceiling.json"


def test_ceiling_is_measured_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "BUSY_LOAD", 1e9)  # a busy test machine must not force a second measurement
    first = ceiling(size=128, repeats=1)
    assert first > 0
    cache = json.loads(_cache_file(tmp_path).read_text())
    assert len(cache) == 1 and next(iter(cache.values()))["gflops"] == first
    assert ceiling(size=128, repeats=1) == first  # from the cache, not measured again
    assert ceiling(size=128, repeats=1, refresh=True) >= first  # measured again; the best is kept


def test_ceiling_measured_on_a_busy_machine_is_measured_again(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "BUSY_LOAD", 0.5)
    key = bench._ceiling_key(128, "cpu")
    path = _cache_file(tmp_path)
    path.parent.mkdir(parents=True)
    # taken under a huge load, and (impossibly) high: measured again, and the higher figure is kept
    path.write_text(json.dumps({key: {"gflops": 1e9, "load_before": [1e6, 0, 0]}}))
    entry = bench.ceiling_entry(128, repeats=1)
    assert entry["gflops"] == 1e9 and 0 < entry["remeasured_gflops"] < 1e9
    # taken on a quiet machine: used as it is, nothing measured
    path.write_text(json.dumps({key: {"gflops": 123.0, "load_before": [0.0, 0, 0]}}))
    assert ceiling(128, repeats=1) == 123.0


def test_variants():
    assert split_variant("mxnet[hybrid]") == ("mxnet", "hybrid")
    assert split_variant("torch") == ("torch", "plain")
    assert expand_variants(["mxnet", "mxnet[hybrid]"]) == ["mxnet", "mxnet[hybrid]"]
    assert expand_variants(["torch", "torch[compile]"]) == ["torch", "torch[channels_last]", "torch[compile]"]
    keras = expand_variants(["keras"])
    assert keras[:3] == ["keras", "keras[xla]", "keras[torch]"] and set(keras[3:]) <= {"keras[jax]"}
    assert expand_variants(["keras[torch]"]) == ["keras[torch]"]
    assert expand_variants(["torch", "mxnet[hybrid]", "keras"], fast=False) == ["torch", "mxnet[hybrid]", "keras"]
    # hand-written references only for models that have one; mixed precision only on the GPU
    assert expand_variants(["mxnet"], model="lenet_bn") == ["mxnet", "mxnet[hybrid]", "mxnet[handwritten]"]
    assert expand_variants(["mxnet"], model="alexnet") == ["mxnet", "mxnet[hybrid]"]
    assert expand_variants(["torch"], model="resnet18", device="gpu") == [
        "torch", "torch[channels_last]", "torch[compile]", "torch[bf16]", "torch[fp16]"]
    assert "keras[bf16]" in expand_variants(["keras"], device="gpu")
    assert "keras[bf16]" not in expand_variants(["keras"], device="cpu")
    assert "keras[tensorflow]" not in expand_variants(["keras"])  # an alias, measured only when named


def test_keras_variants_follow_the_configured_keras_backend(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "torch")  # plain ``keras`` runs on torch: no separate keras[torch]
    expanded = expand_variants(["keras"])
    assert expanded[:2] == ["keras", "keras[xla]"] and "keras[torch]" not in expanded
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    assert expand_variants(["keras"])[:3] == ["keras", "keras[xla]", "keras[torch]"]


def test_variants_use_what_their_backend_offers():
    for variant in VARIANTS.values():
        if variant.backend not in INSTALLED:
            continue
        backend = get_backend(variant.backend)
        assert variant.execution in backend.EXECUTIONS, variant
        assert variant.precision in backend.PRECISIONS, variant


@pytest.mark.skipif(not INSTALLED, reason="no framework installed")
def test_lenet_bn_both_modes_well_formed(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "BUSY_LOAD", 1e9)
    report = run_bench("lenet_bn", CHEAP, "both", out=tmp_path, measure_ceiling=True, ceiling_size=128,
                       fast=False, **TINY)
    on_disk = json.loads((tmp_path / "bench.json").read_text())
    assert on_disk == json.loads(json.dumps(report))
    variants = CHEAP
    assert report["settings"]["frameworks"] == variants
    for key in ("format", "model", "date", "settings", "flops", "ceiling", "machine", "versions", "order",
                "results"):
        assert key in report
    assert report["complete"] is True and report["ceiling"]["gflops"] > 0
    assert report["settings"]["weights"] == "each framework's own initialisation"
    assert report["machine"]["cpu_count"] >= 1 and report["machine"]["OMP_NUM_THREADS"]
    assert report["flops"]["macs_per_image"] == flops(zoo.get("lenet_bn")).macs_per_image
    # one entry per variant x mode, all finished
    assert sorted((e["variant"], e["mode"]) for e in report["results"]) == sorted(
        (v, m) for v in variants for m in ("train", "infer"))
    for entry in report["results"]:
        assert entry["status"] == "ok", entry
        for key in ("images_per_s", "step_ms_median", "step_ms_p90", "gflops", "ceiling_fraction",
                    "peak_rss_mb"):
            assert entry[key] > 0, (entry["variant"], key)
        assert entry["step_ms_p90"] >= entry["step_ms_median"]
        assert len(entry["repeat_medians_ms"]) == 1
        assert entry["finite"] and entry["device_memory_peak_mb"] is None  # a CPU run
        assert entry["precision"] == "float32" and entry["execution"] == VARIANTS[entry["variant"]].execution
    # measured one at a time, in the interleaved order: every variant of a mode before the next mode
    assert [(o["variant"], o["mode"]) for o in report["order"]] == [
        (v, m) for m in ("train", "infer") for v in variants]
    for o in report["order"]:
        assert len(o["load_before"]) == 3 and len(o["load_after"]) == 3 and o["ok"]
    for framework in INSTALLED:
        assert any(key.split(" on ")[0] == framework for key in report["versions"]), report["versions"]
    bench_table(report)  # renders


def test_interleaving_over_repeats_and_failures_recorded(tmp_path, monkeypatch):
    """A crashing framework and an unknown one are recorded; the others finish; A B A B order."""
    frameworks = INSTALLED[:1] + ["nosuch"]
    if INSTALLED:
        monkeypatch.setenv(FAULT_VARIABLE, "nosuch:crash")  # harmless: nosuch fails anyway
    crashing = INSTALLED[1] if len(INSTALLED) > 1 else None
    if crashing:
        frameworks.append(crashing)
        monkeypatch.setenv(FAULT_VARIABLE, f"{crashing}:crash")
    report = run_bench("lenet_bn", frameworks, "infer", out=tmp_path, measure_ceiling=False, fast=False,
                       **{**TINY, "repeats": 2})
    variants = expand_variants(frameworks, fast=False)
    assert [o["variant"] for o in report["order"]] == variants * 2
    assert [o["repeat"] for o in report["order"]] == [0] * len(variants) + [1] * len(variants)
    by_variant = {e["variant"]: e for e in report["results"]}
    assert by_variant["nosuch"]["status"] == "failed"
    assert "nosuch" in by_variant["nosuch"]["failures"][0]["error"]
    if crashing:
        entry = by_variant[crashing]
        assert entry["status"] == "failed" and len(entry["failures"]) == 2
        assert entry["failures"][0]["returncode"] == -9
    for variant in INSTALLED[:1]:
        entry = by_variant[variant]
        assert entry["status"] == "ok" and entry["images_per_s"] > 0 and entry["ceiling_fraction"] is None
        assert len(entry["repeat_medians_ms"]) == 2
    assert json.loads((tmp_path / "bench.json").read_text())["results"]
    bench_table(report)  # failures render too


def test_bad_arguments():
    with pytest.raises(ValueError):
        run_bench("lenet_bn", ["torch"], "sideways")
    with pytest.raises(ValueError):
        run_bench("lenet_bn", ["torch"], "infer", steps=0)


@pytest.mark.skipif(not INSTALLED, reason="no framework installed")
def test_an_interrupted_run_keeps_what_it_measured(tmp_path):
    calls = []

    def progress(line):
        calls.append(line)
        if len(calls) == 3:  # after two measurements
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_bench("lenet_bn", INSTALLED[:1], "both", out=tmp_path, measure_ceiling=False, fast=False,
                  progress=progress, **{**TINY, "repeats": 2})
    kept = json.loads((tmp_path / "bench.json").read_text())
    assert kept["complete"] is False
    assert [(e["variant"], e["mode"]) for e in kept["results"]] == [(INSTALLED[0], "train"), (INSTALLED[0], "infer")]
    assert all(e["status"] == "ok" for e in kept["results"])


@pytest.mark.skipif("torch" not in INSTALLED, reason="needs torch")
def test_handwritten_rows_run_the_reference_and_are_marked(tmp_path):
    report = run_bench("lenet_bn", ["torch", "torch[handwritten]"], "train", measure_ceiling=False, fast=False,
                       **TINY)
    rows = {e["variant"]: e for e in report["results"]}
    assert rows["torch[handwritten]"]["status"] == "ok", rows["torch[handwritten]"]
    assert rows["torch[handwritten]"]["handwritten"] is True and rows["torch"]["handwritten"] is False
    # a model without a reference: that row fails with the reason, the others are measured
    report = run_bench("lenet", ["torch", "torch[handwritten]"], "infer", measure_ceiling=False, fast=False, **TINY)
    rows = {e["variant"]: e for e in report["results"]}
    assert rows["torch"]["status"] == "ok"
    assert rows["torch[handwritten]"]["status"] == "failed"
    assert "no hand-written reference for 'lenet'" in rows["torch[handwritten]"]["failures"][0]["error"]
