"""Training runs end to end on synthetic data: results, resume, failures, the CLI."""

import json

import numpy as np
import pytest

from netparity.compare.divergence import compare_runs
from netparity.compare.recipes import RECIPES
from netparity.compare.training import TrainSettings, collect_results, train
from netparity.compare.train_worker import FAULT_VARIABLE, cross_entropy_and_correct, other_variance_estimator
from netparity.spec import zoo

from helpers import installed_or_skip


def settings(tmp_path, **given):
    base = dict(frameworks=installed_or_skip(), epochs=1, dataset="synthetic", train_limit=256, test_limit=128,
                batch_size=64, progress=False)
    base.update(given)
    return TrainSettings.for_model("lenet_bn", **base)


def test_recipes_cover_the_zoo_and_follow_d2l():
    assert set(RECIPES) == set(zoo.names())
    assert (RECIPES["lenet_bn"].lr, RECIPES["lenet_bn"].batch_size) == (1.0, 256)
    assert RECIPES["vgg11"].overrides == {"width_ratio": 4} and RECIPES["vgg11"].resize == 224
    assert (RECIPES["resnet18"].lr, RECIPES["resnet18"].resize) == (0.05, 96)


def test_cross_entropy_matches_a_direct_formula():
    logits = np.array([[2.0, 0.5, -1.0], [0.0, 0.0, 3.0]], np.float32)
    labels = np.array([0, 1])
    loss, correct = cross_entropy_and_correct(logits, labels)
    expected = -np.log(np.exp(2.0) / np.exp(logits[0]).sum()) - np.log(1.0 / np.exp(logits[1]).sum())
    assert loss == pytest.approx(expected) and correct == 1


def test_variance_estimator_conversion_round_trips():
    weights = {"b.running_var": np.array([1.0, 2.0], np.float32), "b.weight": np.ones(2, np.float32)}
    biased = other_variance_estimator(weights, {"b": 4}, unbiased_now=True)
    assert np.allclose(biased["b.running_var"], [0.75, 1.5])
    back = other_variance_estimator(biased, {"b": 4}, unbiased_now=False)
    assert np.allclose(back["b.running_var"], weights["b.running_var"])


def test_divergence_names_the_first_step_beyond_noise():
    run = lambda seed, losses, acc: {"seed": seed, "step_loss": losses, "epochs": [{"test_acc": acc}]}
    frameworks = {"torch": {"runs": [run(0, [2.3, 2.0, 1.5, 1.0], 0.8)]},
                  "keras": {"runs": [run(0, [2.3, 2.0 + 1e-7, 1.6, 1.1], 0.78)]}}
    divergence = compare_runs(frameworks)
    pair = divergence["pairs"][0]
    assert pair["first_divergent_step"] == 2 and pair["final_test_acc_diff"] == pytest.approx(0.02)
    assert divergence["frameworks_differ_more_than_seeds"] is None


def test_seed_spread_says_whether_frameworks_differ_more_than_seeds():
    run = lambda seed, acc: {"seed": seed, "step_loss": [1.0], "epochs": [{"test_acc": acc}]}
    close = {"torch": {"runs": [run(0, 0.80), run(1, 0.84)]}, "keras": {"runs": [run(0, 0.81), run(1, 0.83)]}}
    assert compare_runs(close)["frameworks_differ_more_than_seeds"] is False
    apart = {"torch": {"runs": [run(0, 0.80), run(1, 0.81)]}, "keras": {"runs": [run(0, 0.70), run(1, 0.71)]}}
    assert compare_runs(apart)["frameworks_differ_more_than_seeds"] is True


def test_train_writes_results_for_every_framework(tmp_path):
    run_dir = tmp_path / "run"
    results = train(settings(tmp_path), run_dir, command="test")
    assert json.loads((run_dir / "results.json").read_text()) == results
    for name, framework in results["frameworks"].items():
        (run,) = framework["runs"]
        assert run["status"] == "done", (name, run["error"])
        assert len(run["step_loss"]) == 4 and len(run["epochs"]) == 1
        epoch = run["epochs"][0]
        assert 0 <= epoch["test_acc"] <= 1 and epoch["images_per_second"] > 0
        assert framework["version"]
        assert (run_dir / "tensorboard" / name / "seed0").is_dir()
    # identical weights and batches: the first step's loss is the same function everywhere
    firsts = [fw["runs"][0]["step_loss"][0] for fw in results["frameworks"].values()]
    assert max(firsts) - min(firsts) < 1e-5 * max(firsts)
    assert len(results["divergence"]["pairs"]) == len(results["frameworks"]) * (len(results["frameworks"]) - 1) // 2
    assert any(k["name"] == "BatchNorm running variance" for k in results["known_differences"])


def test_resume_continues_exactly(tmp_path):
    frameworks = installed_or_skip(1)[:2]
    straight = train(settings(tmp_path, epochs=2, frameworks=frameworks), tmp_path / "straight")
    train(settings(tmp_path, epochs=1, frameworks=frameworks), tmp_path / "resumed")
    config = json.loads((tmp_path / "resumed" / "run.json").read_text())
    config["settings"]["epochs"] = 2  # as if the first run had been interrupted after epoch 1
    (tmp_path / "resumed" / "run.json").write_text(json.dumps(config))
    resumed = train(settings(tmp_path, epochs=2, frameworks=frameworks, resume=True), tmp_path / "resumed")
    for name in frameworks:
        a, b = straight["frameworks"][name]["runs"][0], resumed["frameworks"][name]["runs"][0]
        assert b["status"] == "done" and len(b["epochs"]) == 2
        assert a["step_loss"] == b["step_loss"], name
        assert a["epochs"][1]["test_acc"] == b["epochs"][1]["test_acc"], name


@pytest.mark.parametrize("fault, status", [("crash", "failed"), ("nan", "nan")])
def test_one_framework_failing_does_not_stop_the_others(tmp_path, monkeypatch, fault, status):
    frameworks = installed_or_skip()
    victim = frameworks[0]
    monkeypatch.setenv(FAULT_VARIABLE, f"{victim}:{fault}")
    results = train(settings(tmp_path), tmp_path / "run")
    bad = results["frameworks"][victim]["runs"][0]
    assert bad["status"] == status
    assert ("signal SIGKILL" in bad["error"]) if fault == "crash" else ("nan at step 1" in bad["error"])
    for name in frameworks[1:]:
        assert results["frameworks"][name]["runs"][0]["status"] == "done"


def test_collect_results_marks_unstarted_runs(tmp_path):
    frameworks = installed_or_skip(1)[:1]
    train(settings(tmp_path, frameworks=frameworks), tmp_path / "run")
    (tmp_path / "run" / frameworks[0] / "seed0.json").unlink()
    results = collect_results(tmp_path / "run")
    assert results["frameworks"][frameworks[0]]["runs"][0]["status"] == "not started"
