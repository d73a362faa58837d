"""The benchmark report (bench.html, bench.md, bench.png) and the zoo summary, from synthetic bench.json dicts."""

import base64
import html
import json
import re
import subprocess
import sys

import pytest

from netparity.compare import plots
from netparity.compare.bench_report import (BenchError, bench_figure, handwritten_pairs, load_bench,
                                            write_bench_report, zoo_summary)

BATCH = 32
TRACEBACK = ("Traceback (most recent call last):\n  File \"worker.py\", line 12, in <module>\n"
             "RuntimeError: mxnet ran out of memory <during backward>")


def entry(variant, mode, ms, medians=None, status="ok", error=None, ceiling=200.0, flops_per_image=1_000_000,
          **extra):
    """One result entry of bench.json, its numbers computed the way compare/bench.py computes them."""
    framework, _, rest = variant.partition("[")
    result = {"variant": variant, "framework": framework, "fast_mode": rest.rstrip("]") or "plain", "mode": mode,
              "status": status, "failures": []}
    if status != "ok":
        result["failures"] = [{"repeat": 1, "error": error or TRACEBACK, "returncode": 1}]
    result["repeats_ok"] = {"ok": 3, "partial": 2}.get(status, 0)
    if status == "failed":
        return result
    images = BATCH / (ms / 1000.0)
    gflops = flops_per_image * images / 1e9
    result.update(step_ms_median=ms, step_ms_p90=ms * 1.25, repeat_medians_ms=medians or [ms, ms],
                  images_per_s=images, gflops=gflops, ceiling_fraction=gflops / ceiling if ceiling else None,
                  peak_rss_mb=1234.4, finite=True, version="1.0")
    result.update(extra)
    return result


def bench(results, model="lenet", device="cpu", shape=(1, 28, 28), ceiling=200.0):
    modes = list(dict.fromkeys(r["mode"] for r in results))
    return {
        "format": "netparity.bench/1", "model": model, "spec_name": model, "date": "2026-01-02T03:04:05+00:00",
        "settings": {"frameworks": list(dict.fromkeys(r["variant"] for r in results)), "mode": "both",
                     "modes": modes, "batch_size": BATCH, "input_shape": list(shape), "input_size": None, "steps": 20,
                     "warmup": 5, "repeats": 3, "device": device},
        "flops": {"macs_per_image": 500_000, "forward_flops_per_image": 1_000_000,
                  "train_flops_per_image": 3_000_000, "convention": "MACs of conv2d and dense only (test convention)"},
        "ceiling": {"gflops": ceiling, "what": "NumPy float32 2048x2048 matmul"} if ceiling else None,
        "machine": {"platform": "Linux-test", "processor": "x86_64", "cpu_count": 2, "OMP_NUM_THREADS": "2"},
        "versions": {"python": "3.11.7", "numpy": "1.26.4", "torch": "1.0", "mxnet": "1.0", "keras": "1.0"},
        "order": [{"repeat": 0, "variant": r["variant"], "mode": r["mode"], "load_before": [0.5, 0.5, 0.5],
                   "load_after": [0.75, 0.5, 0.5], "ok": True} for r in results],
        "results": results,
    }


def _write(folder, data):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bench.json").write_text(json.dumps(data, indent=1))
    html_path, md_path = write_bench_report(folder)
    assert (html_path, md_path) == (folder / "bench.html", folder / "bench.md")
    return html_path.read_text(), md_path.read_text()


def _rows(page: str) -> list[list[str]]:
    """Every table row of the page as its cells' text."""
    return [[html.unescape(re.sub(r"<[^>]+>", "", cell)) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)]
            for row in re.findall(r"<tr>(.*?)</tr>", page)]


def _section(page: str, anchor: str) -> str:
    match = re.search(rf'<h2 id="{anchor}">(.*?)(?=<h2 |<footer>)', page, re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", match.group(1))) if match else ""


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


MIXED = [
    entry("torch", "train", 2.5, [2.6, 2.4]),  # repeat medians in no order
    entry("torch[compile]", "train", 2.0, [1.98, 2.02]),
    entry("mxnet", "train", 4.0, status="failed"),
    entry("keras", "train", 8.0, [7.6, 8.4], status="partial", error="ValueError: keras lost a repeat"),
    entry("torch", "infer", 0.5, [0.49, 0.52]),
    entry("mxnet", "infer", 1.6, [1.5, 1.7]),
    entry("keras", "infer", 3.2, [3.0, 3.2]),
]


def test_report_files_table_and_failures(tmp_path):
    page, markdown = _write(tmp_path, bench(MIXED))
    png = (tmp_path / "bench.png").read_bytes()
    width, height = _png_size(png)
    assert width > 1000 and height > 800
    assert "data:image/png;base64," + base64.b64encode(png).decode() in page  # embedded, the very file
    assert not re.search(r'(src|href)="(?!data:|#)', page) and "<script" not in page
    assert "](bench.png)" in markdown
    assert not list(tmp_path.glob(".*.tmp"))

    rows = _rows(page)
    # torch train: 32 images / 2.5 ms = 12,800 images/s; p90 3.125; GFLOP/s 12.8, 6.4% of 200
    assert ["torch", "12,800", "2.50", "3.12", "2.40–2.60 (8.0%)", "12.80", "6.4%", "1,234", "ok"] in rows
    assert ["torch[compile]", "16,000", "2.00", "2.50", "1.98–2.02 (2.0%)", "16.00", "8.0%", "1,234",
            "ok"] in rows
    # infer, milliseconds below 1 get three decimals
    assert ["torch", "64,000", "0.500", "0.625", "0.490–0.520 (6.0%)", "64.00", "32.0%", "1,234",
            "ok"] in rows
    failed = [row for row in rows if row[:2] == ["mxnet", "—"]]
    assert failed == [["mxnet", *["—"] * 7, "failed"]]  # shown, never dropped
    partial = next(row for row in rows if row[:2] == ["keras", "4,000"])
    assert partial[-1] == "partial: 1 of 3 failed"
    assert "<h3>lenet, training (train)</h3>" in page and "<h3>lenet, inference (infer)</h3>" in page
    results = _section(page, "results")  # the error line under the table
    assert "mxnet train failed : RuntimeError: mxnet ran out of memory <during backward>" in results
    assert "keras train, some repeats failed  (the numbers are from the others): ValueError: keras lost a repeat" \
        in results
    assert "&lt;during backward&gt;" in page and "<during backward>" not in page  # escaped
    assert html.escape(TRACEBACK) in page  # the whole traceback, in the failures section
    assert "device MB" not in page and "precision" not in page  # neither recorded here

    glance = _section(page, "glance")
    assert "Fastest in train: torch[compile], 16,000 images/s, 1.25× the next, torch." in glance
    assert "Fastest in infer: torch, 64,000 images/s" in glance
    assert "train torch[compile] 1.25×" in glance  # above the 8% spread: no ≈
    assert "Failed: mxnet train." in glance
    assert "Compiled from the spec vs hand-written" not in page  # no handwritten rows
    method = _section(page, "method")
    assert "MACs of conv2d and dense only (test convention)" in method and "200.0 GFLOP/s" in method

    assert "| torch | 12,800 | 2.50 | 3.12 | 2.40–2.60 (8.0%) | 12.80 | 6.4% | 1,234 | **✓ ok** |" in markdown
    assert "| mxnet | — | — | — | — | — | — | — | **✗ failed** |" in markdown
    assert "**✗ mxnet train failed**: RuntimeError: mxnet ran out of memory &lt;during backward>" in markdown


def test_chart_bars_whiskers_and_failed_variants():
    figure = bench_figure(bench(MIXED))
    train, infer = figure.axes[:2]
    labels = [t.get_text() for t in train.get_yticklabels()]
    assert labels == ["torch", "torch[compile]", "mxnet  ✗ failed", "keras (partial)"]
    assert [t.get_text() for t in train.texts if t.get_text().startswith("failed")] == [
        "failed: RuntimeError: mxnet ran out of memory <during backward>"]
    assert train.get_yticklabels()[2].get_color() == "#c4221b"
    bars = {round(p.get_width()): p for p in train.patches}
    assert sorted(bars) == [4000, 12800, 16000]  # no bar for the failed mxnet
    assert bars[12800].get_facecolor()[:3] == pytest.approx(tuple(int(plots.style("torch")[0][i:i + 2], 16) / 255
                                                                  for i in (1, 3, 5)))
    # the whisker of torch: 32 images / 2.6 ms to 32 images / 2.4 ms
    ends = sorted(x for line in train.lines for x in line.get_xdata() if 12000 < x < 14000)
    assert ends[0] == pytest.approx(32 / 0.0026) and ends[-1] == pytest.approx(32 / 0.0024)
    assert [t.get_text() for t in infer.get_yticklabels()] == ["torch", "mxnet", "keras"]


def test_handwritten_section_ratio_and_verdict(tmp_path):
    results = [
        # torch: the spec-built network at 0.95 of the hand-written one, spreads of 1%: beyond the noise
        entry("torch", "train", 2.5, [2.49, 2.515]),
        entry("torch[handwritten]", "train", 2.375, [2.37, 2.39]),
        # keras: 0.99, spreads of 5%: within 3% and within the noise
        entry("keras", "train", 1.98, [1.93, 2.03]),
        entry("keras[handwritten]", "train", 1.9602, [1.91, 2.01]),
        entry("mxnet", "train", 3.0, status="failed"),
        entry("mxnet[handwritten]", "train", 3.0),
    ]
    pairs = {p["framework"]: p for p in handwritten_pairs(bench(results))}
    assert pairs["torch"]["ratio"] == pytest.approx(0.95) and pairs["torch"]["ok"] is False
    assert pairs["torch"]["within_noise"] is False
    assert pairs["keras"]["ratio"] == pytest.approx(0.99) and pairs["keras"]["ok"] is True
    assert pairs["keras"]["within_noise"] is True
    assert pairs["mxnet"]["ratio"] is None and pairs["mxnet"]["ok"] is None

    page, markdown = _write(tmp_path, bench(results))
    rows = _rows(page)
    assert ["torch", "train", "0.950×", "2.50", "2.38", "2.49–2.52 (1.0%)", "2.37–2.39 (0.8%)", "no: 5.0% slower",
            "yes"] in rows
    assert ["keras", "train", "0.990×", "1.98", "1.96", "1.93–2.03 (5.1%)", "1.91–2.01 (5.1%)", "yes", "no"] in rows
    assert ["mxnet", "train", "—", "—", "3.00", "—", "3.00–3.00 (0.0%)", "mxnet failed", "—"] in rows
    section = _section(page, "handwritten")
    assert "Slower than hand-written by more than 3% : torch train." in section
    assert "keras" not in section.split("Slower than")[1]
    assert "## Compiled from the spec vs hand-written" in markdown
    glance = _section(page, "glance")
    assert "Fast modes" not in glance  # a hand-written row is no fast mode
    assert "Spec-built against hand-written (images/s ratio): torch train 0.95× (✗ more than 3% slower), " \
           "keras train 0.99×." in glance


def test_precision_and_device_memory_columns(tmp_path):
    results = [entry("torch", "train", 2.0, ceiling=None, precision="float32", device_memory_peak_mb=812.6),
               entry("torch", "train", 1.0, ceiling=None, precision="bfloat16",
                     device_memory_peak_mb=455.2)]
    page, _ = _write(tmp_path, bench(results, device="cuda", ceiling=None))
    rows = _rows(page)
    # no ceiling on an accelerator: no "% ceiling" column
    assert ["torch", "float32", "16,000", "2.00", "2.50", "2.00–2.00 (0.0%)", "16.00", "1,234", "813", "ok"] in rows
    assert ["torch", "bfloat16", "32,000", "1.00", "1.25", "1.00–1.00 (0.0%)", "32.00", "1,234", "455", "ok"] in rows
    assert "% ceiling" not in page
    assert "No ceiling was measured (device cuda" in _section(page, "method")


def test_malformed_bench_names_the_file_and_writes_nothing(tmp_path):
    path = tmp_path / "bench.json"
    with pytest.raises(BenchError, match=re.escape(str(path)) + ": no such file"):
        write_bench_report(tmp_path)
    path.write_text('{"format": "netparity.bench/1", ')
    with pytest.raises(BenchError, match=re.escape(str(path)) + ": not valid JSON"):
        write_bench_report(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json"]  # nothing half-written, no temporary

    _write(tmp_path, bench(MIXED))
    before = {name: (tmp_path / name).read_bytes() for name in ("bench.html", "bench.md", "bench.png")}
    for broken, message in ((dict(bench(MIXED), format="something/2"), "format is 'something/2'"),
                            (dict(bench(MIXED), results={"torch": 1}), "'results' is missing or not a list"),
                            (dict(bench(MIXED), results=[{"variant": "torch"}]), "results\\[0\\] has no variant"),
                            ([1, 2], "expected a JSON object, got list")):
        path.write_text(json.dumps(broken))
        with pytest.raises(BenchError, match=re.escape(str(path)) + ": " + message):
            write_bench_report(tmp_path)
    # the previous report stays whole
    assert {name: (tmp_path / name).read_bytes() for name in before} == before
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_load_bench_takes_a_file_or_its_folder(tmp_path):
    data = bench(MIXED)
    (tmp_path / "bench.json").write_text(json.dumps(data))
    assert load_bench(tmp_path) == data == load_bench(tmp_path / "bench.json")


def test_zoo_summary_one_row_per_model_and_mode():
    lenet = bench([entry("torch", "train", 2.5), entry("mxnet", "train", 4.0, status="failed"),
                   entry("torch", "infer", 0.5), entry("mxnet", "infer", 1.0)])
    resnet = bench([entry("torch", "infer", 8.0), entry("keras[xla]", "infer", 16.0, precision="bfloat16"),
                    entry("torch[handwritten]", "infer", 7.9, status="partial")],
                   model="resnet18", shape=(3, 96, 96))
    text = zoo_summary([lenet, resnet])
    lines = [line for line in text.splitlines() if line.startswith("|")]
    # columns grouped by framework; another precision is its own column
    assert lines[0] == "| model | input | batch | mode | torch | torch[handwritten] | mxnet | keras[xla] (bfloat16) |"
    assert lines[1] == "|---|---|---:|---|---:|---:|---:|---:|"
    assert lines[2:] == ["| lenet | 1×28×28 | 32 | train | 12,800 | — | failed | — |",
                         "| lenet | 1×28×28 | 32 | infer | 64,000 | — | 32,000 | — |",
                         "| resnet18 | 3×96×96 | 32 | infer | 4,000 | 4,051 (partial) | — | 2,000 |"]
    # measured on different devices: the device becomes a column
    gpu = bench([entry("torch", "infer", 0.25)], device="cuda")
    lines = [line for line in zoo_summary([lenet, gpu]).splitlines() if line.startswith("|")]
    assert lines[0] == "| model | input | batch | device | mode | torch | mxnet |"
    assert lines[-1] == "| lenet | 1×28×28 | 32 | cuda | infer | 128,000 | — |"
    assert len(lines) == 2 + 3


def test_bench_report_imports_no_framework():
    code = ("import sys, netparity.compare.bench_report; "
            "print(sorted({'torch', 'mxnet', 'tensorflow', 'keras', 'jax'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("hand_ms, ok", [(0.968, False), (0.971, True), (1.05, True)])
def test_handwritten_tolerance_boundary(hand_ms, ok):
    # spec 1.0 ms per step: ratio = hand ms / spec ms
    pairs = handwritten_pairs(bench([entry("torch", "infer", 1.0), entry("torch[handwritten]", "infer", hand_ms)]))
    assert [(p["ratio"], p["ok"]) for p in pairs] == [(pytest.approx(hand_ms), ok)]


def test_glance_marks_gains_within_the_noise(tmp_path):
    results = [entry("torch", "train", 2.5, [2.0, 3.0]), entry("torch[channels_last]", "train", 2.4, [2.39, 2.41]),
               entry("torch[handwritten]", "train", 2.5, [2.4, 2.6])]
    page, _ = _write(tmp_path, bench(results))
    glance = _section(page, "glance")
    assert "train torch[channels_last] ≈1.04×" in glance  # the 40% spread of plain torch swallows 4%
    assert "≈: within the spread between repeats" in glance
    assert "Every spec-built network compared runs within 3% of its hand-written twin." in _section(page, "handwritten")
