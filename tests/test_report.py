"""The training report (HTML, Markdown, figures) and the TensorBoard event files, on fixture runs."""

import base64
import copy
import html
import json
import re
import struct
import subprocess
import sys

import pytest

from netparity.compare.plots import FIGURE_NAMES, nan_step
from netparity.compare.report import ResultsError, verdict, write_report
from netparity.compare.tensorboard import STEP_TAG, EventLog, read_scalars, write_events

from fixtures_run import FAILURE, make_results


def _write(tmp_path, results):
    (tmp_path / "results.json").write_text(json.dumps(results, indent=1))
    html_path, md_path = write_report(tmp_path)
    assert (html_path, md_path) == (tmp_path / "report.html", tmp_path / "report.md")
    return html_path.read_text(), md_path.read_text()


def _final(results, name, key, seed=0):
    return results["frameworks"][name]["runs"][seed]["epochs"][-1][key]


def _verdict_text(page: str) -> str:
    section = re.search(r'<section class="verdict is-(\w+)">(.*?)</section>', page, re.S)
    return section.group(1), html.unescape(re.sub(r"<[^>]+>", " ", section.group(2)))


def _assert_self_contained(page: str, tmp_path, expected_figures):
    for name in expected_figures:
        png = tmp_path / f"{name}.png"
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode() in page, name
    assert page.count("<img ") == len(expected_figures)
    assert not re.search(r'(src|href)="(?!data:|#)', page), "an external resource"
    assert "<script" not in page and "<link" not in page


def test_three_frameworks_agree(tmp_path):
    results = make_results()
    page, markdown = _write(tmp_path, results)

    status, text = _verdict_text(page)
    finals = {n: _final(results, n, "test_acc") for n in results["frameworks"]}
    spread = 100 * (max(finals.values()) - min(finals.values()))
    first = min(p["first_divergent_step"] for p in results["divergence"]["pairs"])
    assert status == "pass"
    assert "The frameworks agree" in text
    assert f"within {spread:.2f} points" in text
    assert f"for the first {first} steps, then diverge" in text
    assert f"torch {100 * finals['torch']:.2f}%" in text

    _assert_self_contained(page, tmp_path, FIGURE_NAMES)
    for name in FIGURE_NAMES:
        assert f"]({name}.png)" in markdown

    torch_row = (f"| torch | 2.14.1+cu130 | 3/3 | {_final(results, 'torch', 'train_loss'):.4f} | "
                 f"{100 * _final(results, 'torch', 'train_acc'):.2f}% | {100 * finals['torch']:.2f}% | 9,850 |")
    assert torch_row in markdown
    for pair in results["divergence"]["pairs"]:
        assert (f"| {pair['a']} vs {pair['b']} | {pair['max_step_loss_diff']:.2e} | "
                f"{pair['mean_step_loss_diff']:.2e} | {pair['first_divergent_step']} | "
                f"{100 * pair['final_test_acc_diff']:+.2f} |") in markdown
    assert "|---|---|---:|---:|---:|---:|---:|---:|---|" in markdown  # numbers right-aligned
    assert "BatchNorm running variance" in markdown and "BatchNorm running variance" in page
    assert "None: every run finished." in markdown
    assert results["command"] in page and results["command"] in markdown
    assert "✓ numbers agree" in markdown  # the parity section


def test_failed_and_nan_frameworks_are_named(tmp_path):
    results = make_results(failed="mxnet", nan="keras")
    page, markdown = _write(tmp_path, results)
    step = results["frameworks"]["keras"]["runs"][0]["step_loss"].index(None)
    assert nan_step(results["frameworks"]["keras"]["runs"][0]) == step

    status, text = _verdict_text(page)
    assert status == "fail"
    assert "Not a complete comparison" in text
    assert "mxnet failed (MXNetError: cudaMalloc retry failed: out of memory <during backward>)" in text
    assert f"keras hit NaN at step {step}" in text
    assert f"Only torch finished: final test accuracy {100 * _final(results, 'torch', 'test_acc'):.2f}%" in text

    assert html.escape(FAILURE) in page  # the whole error, in the failures section
    assert FAILURE in markdown
    assert f"**✗ keras**: the loss became NaN at step {step} (epoch 2)." in markdown
    assert "**✗ mxnet**: failed after 60 steps, in epoch 2; 1 epoch complete." in markdown
    assert "| mxnet | 1.9.1 | 1/3 |" in markdown and "**✗ failed** |" in markdown
    assert f"**✗ NaN at step {step}** |" in markdown
    # the figures mark what happened and still draw every pair over the steps both ran
    _assert_self_contained(page, tmp_path, FIGURE_NAMES)


def test_several_seeds(tmp_path):
    results = make_results(seeds=3)
    page, markdown = _write(tmp_path, results)
    status, text = _verdict_text(page)
    assert status == "pass"
    assert "Mean final test accuracy over seeds within" in text
    assert "differ no more than one framework differs from itself across seeds" in text
    spread = results["divergence"]["seed_spread"]["torch"]
    assert (f"| torch | {100 * spread['final_test_acc_mean']:.2f}% | {100 * spread['final_test_acc_min']:.2f}% | "
            f"{100 * spread['final_test_acc_max']:.2f}% |") in markdown
    assert "| torch | 0 | 2.14.1+cu130 | 3/3 |" in markdown and "|  | 1 |  | 3/3 |" in markdown
    assert "**✓ The frameworks differ no more than one framework differs from itself**" in markdown
    _assert_self_contained(page, tmp_path, FIGURE_NAMES)

    results["divergence"]["frameworks_differ_more_than_seeds"] = True
    assert verdict(results).status == "fail"
    assert verdict(results).title == "The frameworks differ more than seeds do"


def test_one_framework_one_epoch(tmp_path):
    results = make_results(frameworks=("torch",), epochs=1)
    page, markdown = _write(tmp_path, results)
    status, text = _verdict_text(page)
    assert status == "open" and "Only torch ran" in text
    _assert_self_contained(page, tmp_path, ("train_loss", "train_acc", "test_acc", "step_loss"))
    assert "No pair of frameworks to compare." in markdown
    assert "1 epoch —" in markdown


def test_verdict_follows_the_numbers():
    results = make_results(epochs=2, steps=20, parity=False)
    for pair in results["divergence"]["pairs"]:
        pair["first_divergent_step"] = None
    v = verdict(results)
    assert v.status == "pass" and "at every step (40 compared)" in v.sentence

    results["divergence"]["pairs"][1]["first_divergent_step"] = 0
    v = verdict(results)
    assert v.status == "fail" and v.title == "The frameworks differ from the first step"

    results = make_results(epochs=2, steps=20)
    results["frameworks"]["keras"]["runs"][0]["epochs"][-1]["test_acc"] += 0.02  # two points more, one seed
    finals = [_final(results, name, "test_acc") for name in results["frameworks"]]
    v = verdict(results)
    assert v.status == "open"
    assert v.title == f"The frameworks differ by {100 * (max(finals) - min(finals)):.2f} points of test accuracy"

    results["parity"]["ok"] = False
    assert verdict(results).status == "fail"


def test_missing_or_invalid_results_name_the_file(tmp_path):
    path = tmp_path / "results.json"
    with pytest.raises(ResultsError, match=re.escape(str(path)) + ": no such file"):
        write_report(tmp_path)
    path.write_text("{\"format\": \"netparity.run/1\", ")
    with pytest.raises(ResultsError, match=re.escape(str(path)) + ": not valid JSON"):
        write_report(tmp_path)
    path.write_text(json.dumps({"format": "something/2"}))
    with pytest.raises(ResultsError, match=re.escape(str(path)) + ": format is 'something/2'"):
        write_report(tmp_path)
    broken = copy.deepcopy(make_results(epochs=1, steps=4, parity=False))
    broken["frameworks"] = []
    path.write_text(json.dumps(broken))
    with pytest.raises(ResultsError, match="'frameworks' is missing or not an object"):
        write_report(tmp_path)
    assert not (tmp_path / "report.html").exists()


def _f32(value: float) -> float:
    return struct.unpack("f", struct.pack("f", value))[0]


def test_event_files_hold_the_scalars(tmp_path):
    results = make_results(failed="mxnet", nan="keras", seeds=2, epochs=2, steps=10, parity=False)
    directories = write_events(results, tmp_path)
    assert [d.relative_to(tmp_path).as_posix() for d in directories] == [
        f"tensorboard/{name}/seed{seed}" for name in ("torch", "mxnet", "keras") for seed in (0, 1)]
    write_events(results, tmp_path)  # a rewrite replaces, never doubles, the curves
    for directory in directories:
        name, seed = directory.parent.name, int(directory.name[4:])
        run = results["frameworks"][name]["runs"][seed]
        scalars = read_scalars(directory)
        expected = [(step, _f32(loss)) for step, loss in enumerate(run["step_loss"]) if loss is not None]
        assert scalars[STEP_TAG] == expected
        for tag in ("train_loss", "train_acc", "test_acc", "images_per_second"):
            assert scalars.get(tag, []) == [(e["epoch"], _f32(e[tag])) for e in run["epochs"]], (directory, tag)
        assert len(list(directory.glob("events.out.tfevents.*"))) == 1


def test_event_log_during_training_and_tensorflow_reads_it(tmp_path):
    with EventLog(tmp_path, "mxnet", 3) as log:
        log.add_steps(0, [2.5, 2.25])
        log.add_epoch(1, {"epoch": 1, "train_loss": 2.4, "train_acc": 0.25, "test_acc": 0.5, "note": "skipped"})
        assert read_scalars(log.directory)["test_acc"] == [(1, 0.5)]  # flushed at once: a live TensorBoard sees it
        log.add_steps(2, [float("nan"), None])
    scalars = read_scalars(tmp_path / "tensorboard" / "mxnet" / "seed3")
    assert scalars[STEP_TAG][:2] == [(0, 2.5), (1, 2.25)] and scalars[STEP_TAG][2][0] == 2
    assert scalars[STEP_TAG][2][1] != scalars[STEP_TAG][2][1]  # NaN is written as NaN
    assert "note" not in scalars

    tf = pytest.importorskip("tensorflow")  # an independent reader: TensorBoard's own format library
    (path,) = log.directory.glob("events.out.tfevents.*")
    seen = {(v.tag, e.step): v.simple_value for e in tf.compat.v1.train.summary_iterator(str(path))
            for v in e.summary.value}
    assert seen[("train_loss", 1)] == pytest.approx(2.4) and seen[(STEP_TAG, 1)] == 2.25


def test_reporting_imports_no_framework():
    code = ("import sys, netparity.compare.report, netparity.compare.tensorboard; "
            "print(sorted({'torch', 'mxnet', 'tensorflow', 'keras', 'tensorboardX'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
