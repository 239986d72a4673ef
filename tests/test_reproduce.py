"""`reproduce`, `check_results`, the README table and `mnist-bench reproduce`.

One tiny reproduction serves the whole module: `mnist-bench reproduce --seeds 2 --epochs 1
--train-subset 256` (two reference runs and the seed model, one step each) into tmp_path. To
keep the module fast on a loaded 2-core CPU, every test scores on the first 1,000 test images
instead of 10,000 (the CLI's data loader is patched to return that subset): each pass over the
test set costs seconds for the reference CNN, and the machinery does not depend on its size.
Nothing here writes into the repository's results/ or runs/.
"""

from __future__ import annotations

import contextlib
import dataclasses
import filecmp
import io
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

from mnist_bench import (
    TrainConfig,
    check_results,
    cli,
    load_model,
    plots,
    predict,
    reproduce,
    weights_digest,
)
from mnist_bench.reproduction import (
    CHECKS,
    README_BEGIN,
    README_END,
    TTA_THRESHOLDS,
    _time_to_accuracy,
    results_table,
    update_readme,
)

SEEDS = (0, 1)
SMOKE = dict(epochs=1, train_subset=256)  # what --epochs 1 --train-subset 256 sets
N_TEST = 1000  # test images scored (see the module docstring)
GRID_IMAGES = 20  # misclassified.png shows at most this many digits here (conftest's reason)
RESULT_FILES = {
    "metrics.json", "network_for_mnist.h5", "model.keras", "config.json",
    "confusion_matrix.png", "loss_curves.png", "predictions.png", "misclassified.png",
    *(f"{folder}/{run}.{ext}"
      for run in ("reference-seed0", "reference-seed1", "seed-seed0")
      for folder, ext in (("history", "json"), ("runs", "json"), ("probabilities", "npy"))),
}  # fmt: skip
RUN_FIELDS = {
    "run", "seed", "config", "epochs", "train_accuracy", "train_loss", "test_accuracy",
    "test_loss", "test_errors", "weights_digest", "wall_seconds", "time_to_accuracy",
    "provenance",
}  # fmt: skip
PUBLISHED_FIELDS = {
    "run", "seed", "config", "test_accuracy", "test_loss", "test_errors", "weights_digest",
    "machine_fingerprint", "train_accuracy", "train_loss", "wall_seconds", "selection",
}  # fmt: skip


class Reproduced(NamedTuple):
    out: Path  # results folder
    runs: Path  # training folders
    metrics: dict  # metrics.json as written
    stdout: str  # what `mnist-bench reproduce` printed


@pytest.fixture(scope="module")
def small_data(mnist):
    return dataclasses.replace(mnist, x_test=mnist.x_test[:N_TEST], y_test=mnist.y_test[:N_TEST])


@pytest.fixture(scope="module")
def repro(small_data, tmp_path_factory) -> Reproduced:
    """`mnist-bench reproduce` of two tiny seeds and the seed model, shared by the module."""
    root = tmp_path_factory.mktemp("reproduce")
    out, runs = root / "results", root / "runs"
    argv = ["reproduce", "--seeds", str(len(SEEDS)), "--epochs", "1", "--train-subset", "256"]
    argv += ["--out", str(out), "--runs-dir", str(runs)]
    stdout, stderr = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cli._common, "_load_data", lambda explicit: small_data)
        mp.setattr(plots, "MAX_GRID_IMAGES", GRID_IMAGES)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = cli.main(argv)
    assert code == 0, stderr.getvalue()
    return Reproduced(out, runs, json.loads((out / "metrics.json").read_text()), stdout.getvalue())


@pytest.fixture(scope="module")
def tampered(repro, tmp_path_factory) -> Path:
    """A copy of the results with published.test_accuracy edited and predictions.png deleted."""
    out = Path(shutil.copytree(repro.out, tmp_path_factory.mktemp("tampered") / "results"))
    metrics = json.loads((out / "metrics.json").read_text())
    metrics["published"]["test_accuracy"] += 1 / N_TEST  # one more digit right than measured
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    (out / "predictions.png").unlink()
    return out


def _without_call_provenance(metrics: dict) -> dict:
    return {key: value for key, value in metrics.items() if key != "provenance"}


# -- what reproduce writes ----------------------------------------------------------------


def test_results_folder_holds_exactly_the_published_files(repro):
    written = {str(p.relative_to(repro.out)) for p in repro.out.rglob("*") if p.is_file()}
    assert written == RESULT_FILES  # no checkpoint, no per-epoch model, no temporary file


def test_every_run_trained_in_its_own_folder(repro):
    names = [f"reference-seed{s}" for s in SEEDS] + ["seed-seed0"]
    assert sorted(p.name for p in repro.runs.iterdir()) == sorted(names)
    for name in names:
        history = json.loads((repro.runs / name / "history.json").read_text())
        assert json.loads((repro.out / "history" / f"{name}.json").read_text()) == history


def test_metrics_schema(repro):
    m = repro.metrics
    assert set(m) == {"complete", "pending", "published", "runs", "summary", "ensemble",
                      "seed_model", "targets", "provenance"}  # fmt: skip
    assert m["complete"] is True and m["pending"] == []
    assert set(m["published"]) == PUBLISHED_FIELDS
    assert [run["seed"] for run in m["runs"]] == list(SEEDS)
    for run in [*m["runs"], m["seed_model"]]:
        assert set(run) == RUN_FIELDS
        assert run["epochs"] == 1
        assert run["test_errors"] == round((1 - run["test_accuracy"]) * N_TEST)
        assert "machine_fingerprint" in run["provenance"]
    assert m["runs"][1]["config"] == TrainConfig.recipe("reference", seed=1, **SMOKE).to_dict()
    assert m["seed_model"]["config"] == TrainConfig.recipe("seed", seed=0, **SMOKE).to_dict()
    assert set(m["summary"]) == {"n", "mean", "sd", "min", "max"}
    assert m["ensemble"]["n_models"] == len(SEEDS)
    assert set(m["targets"]) == {"published", "mean", "ensemble"}
    for key, goal in {"published": 0.997, "mean": 0.997, "ensemble": 0.9975}.items():
        assert m["targets"][key]["target"] == goal
        assert m["targets"][key]["met"] is False  # one step of training gets nowhere near
    assert m["targets"]["mean"]["min_seeds"] == 5
    for key in ("tensorflow", "keras", "cpu", "gpus", "git", "recorded_at"):
        assert key in m["provenance"]


def test_summary_is_recomputed_from_the_runs(repro):
    accuracies = np.array([run["test_accuracy"] for run in repro.metrics["runs"]])
    summary = repro.metrics["summary"]
    assert summary["n"] == len(SEEDS)
    assert summary["mean"] == pytest.approx(accuracies.mean(), abs=1e-15)
    assert summary["sd"] == pytest.approx(accuracies.std(ddof=1), abs=1e-15)
    assert (summary["min"], summary["max"]) == (accuracies.min(), accuracies.max())


def test_published_is_the_first_seed_with_its_weights_and_no_training_state(repro):
    published, first = repro.metrics["published"], repro.metrics["runs"][0]
    assert published["selection"] == "first seed, fixed before training"
    for key in ("run", "seed", "config", "test_accuracy", "test_loss", "test_errors",
                "weights_digest", "train_accuracy", "train_loss", "wall_seconds"):  # fmt: skip
        assert published[key] == first[key], key
    assert published["machine_fingerprint"] == first["provenance"]["machine_fingerprint"]
    run = repro.runs / "reference-seed0"
    assert filecmp.cmp(repro.out / "config.json", run / "config.json", shallow=False)
    for name in ("model.keras", "network_for_mnist.h5"):
        model = load_model(repro.out / name)
        assert weights_digest(model) == published["weights_digest"]
        # the optimizer's moments stay in the run's folder: a published file is the weights
        assert getattr(model, "optimizer", None) is None
        assert load_model(run / name).optimizer is not None
        assert (repro.out / name).stat().st_size < (run / name).stat().st_size / 2


def test_ensemble_is_the_mean_softmax_of_the_runs(repro, small_data):
    probabilities = [
        predict(load_model(repro.runs / f"reference-seed{s}"), small_data.x_test)[1] for s in SEEDS
    ]
    predicted = np.mean(probabilities, axis=0).argmax(axis=1)
    ensemble = repro.metrics["ensemble"]
    assert ensemble["test_accuracy"] == np.mean(predicted == small_data.y_test)
    assert ensemble["test_errors"] == np.sum(predicted != small_data.y_test)


def test_time_to_accuracy_of_a_run_that_reached_nothing(repro):
    tta = repro.metrics["runs"][0]["time_to_accuracy"]
    assert tta["on"] == "test" and tta["why_null"] is None
    assert tta["seconds"] == {"0.990": None, "0.995": None, "0.997": None}


def test_time_to_accuracy_counts_cumulative_seconds_until_first_crossing():
    history = [
        {"epoch": 1, "seconds": 10.0, "val_accuracy": 0.98},
        {"epoch": 2, "seconds": 11.0, "val_accuracy": 0.9951},  # passes 0.990 and 0.995 at once
        {"epoch": 3, "seconds": 12.0, "val_accuracy": 0.9940},
        {"epoch": 4, "seconds": 13.0, "val_accuracy": 0.9970},
    ]
    tta = _time_to_accuracy(history, TrainConfig())
    assert tta["seconds"] == {"0.990": 21.0, "0.995": 21.0, "0.997": 46.0}
    assert tta["epoch"] == {"0.990": 2, "0.995": 2, "0.997": 4}
    assert [f"{t:.3f}" for t in TTA_THRESHOLDS] == list(tta["seconds"])
    assert _time_to_accuracy(history[:1], TrainConfig())["seconds"]["0.990"] is None


def test_time_to_accuracy_is_null_with_a_reason_on_a_holdout():
    history = [{"epoch": 1, "seconds": 10.0, "val_accuracy": 0.999}]
    tta = _time_to_accuracy(history, TrainConfig(validation="holdout", holdout_size=500))
    assert (tta["on"], tta["seconds"], tta["epoch"]) == ("holdout", None, None)
    assert "500-image holdout" in tta["why_null"] and "not on the test set" in tta["why_null"]


# -- resuming -----------------------------------------------------------------------------


def test_reproduce_again_trains_nothing_and_writes_the_same_metrics(
    repro, small_data, small_plot_grids
):
    epochs = []
    again = reproduce(
        seeds=list(SEEDS),
        data=small_data,
        out_dir=repro.out,
        runs_dir=repro.runs,
        config=TrainConfig.recipe("reference", **SMOKE),
        seed_config=TrainConfig.recipe("seed", **SMOKE),
        progress=lambda run, row: epochs.append((run, row["epoch"])),
    )
    assert epochs == []
    assert _without_call_provenance(again) == _without_call_provenance(repro.metrics)
    assert set(again["provenance"]) == set(repro.metrics["provenance"])
    assert again == json.loads((repro.out / "metrics.json").read_text())


def test_recorded_runs_survive_without_their_run_folders(repro, small_data, tmp_path):
    # A later session gets results/ from git but none of runs/: nothing is retrained.
    out = tmp_path / "results"
    shutil.copytree(repro.out, out)
    epochs = []
    again = reproduce(
        seeds=list(SEEDS),
        data=small_data,
        out_dir=out,
        runs_dir=tmp_path / "fresh-runs",
        config=TrainConfig.recipe("reference", **SMOKE),
        seed_config=TrainConfig.recipe("seed", **SMOKE),
        progress=lambda run, row: epochs.append(run),
    )
    assert epochs == [] and not (tmp_path / "fresh-runs").exists()
    assert _without_call_provenance(again) == _without_call_provenance(repro.metrics)


def test_a_run_recorded_with_another_recipe_is_refused_not_reused(repro, small_data, tmp_path):
    out = tmp_path / "results"
    shutil.copytree(repro.out, out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    recipe = TrainConfig.recipe("reference", **SMOKE)
    other = recipe.replace(label_smoothing=recipe.label_smoothing + 0.05)  # another recipe
    message = (
        f"{out / 'runs' / 'reference-seed0.json'}: recorded with another config "
        "(differs in label_smoothing)"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        reproduce(seeds=list(SEEDS), data=small_data, out_dir=out,
                  runs_dir=tmp_path / "runs", config=other,
                  seed_config=TrainConfig.recipe("seed", **SMOKE))  # fmt: skip
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # untouched
    assert not (tmp_path / "runs").exists()  # refused before training anything


def test_git_keeps_the_recorded_runs():
    # results/runs/ is how a reproduction resumes in a later session: git must not ignore it.
    root = Path(__file__).resolve().parents[1]
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    for path in ("results/runs/reference-seed0.json", "results/history/seed-seed0.json"):
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=root, check=False)
        assert ignored.returncode == 1, f"git ignores {path}"


class _Stop(Exception):
    pass


# Two more smoke reproductions (~30 s); the fast tier keeps the recorded-runs-survive test.
@pytest.mark.slow
def test_an_interrupted_reproduction_publishes_what_is_finished(repro, small_data, tmp_path):
    out, runs = tmp_path / "results", tmp_path / "runs"

    def stop_at_the_seed_model(run, row):
        if run == "seed-seed0":
            raise _Stop

    kwargs = dict(seeds=list(SEEDS), data=small_data, out_dir=out, runs_dir=runs,
                  config=TrainConfig.recipe("reference", **SMOKE),
                  seed_config=TrainConfig.recipe("seed", **SMOKE))  # fmt: skip
    with pytest.raises(_Stop):
        reproduce(**kwargs, progress=stop_at_the_seed_model)
    partial = json.loads((out / "metrics.json").read_text())
    assert partial["complete"] is False
    assert partial["pending"] == ["seed-seed0", "reference-seed1"]
    assert [run["run"] for run in partial["runs"]] == ["reference-seed0"]
    assert partial["seed_model"] is None
    assert partial["published"]["weights_digest"] == repro.metrics["published"]["weights_digest"]
    assert check_results(out, data=small_data) == []
    partial_table = results_table(partial)
    assert "Partial results: still to train and record: seed-seed0, reference-seed1" in (
        partial_table
    )
    assert "mean ± sd over 1 seed |" in partial_table
    finished = reproduce(**kwargs)
    assert finished["complete"] is True and finished["pending"] == []

    def bits(m):  # what training determines; wall times and timestamps differ per run
        runs = [*m["runs"], m["seed_model"]]
        return ([(r["run"], r["weights_digest"], r["test_accuracy"]) for r in runs],
                m["summary"], m["ensemble"], m["targets"])  # fmt: skip

    assert bits(finished) == bits(repro.metrics)


@pytest.mark.parametrize("seeds", [0, -1, [], [1, 1], True])
def test_bad_seeds_are_refused(seeds, small_data, tmp_path):
    with pytest.raises(ValueError, match="seeds must be"):
        reproduce(seeds=seeds, data=small_data, out_dir=tmp_path / "r", runs_dir=tmp_path / "x")
    assert not (tmp_path / "r").exists() and not (tmp_path / "x").exists()


# -- check_results ------------------------------------------------------------------------


def test_check_results_passes_on_what_reproduce_wrote(repro, small_data):
    assert check_results(repro.out, data=small_data) == []


def test_check_results_names_an_edited_accuracy_and_a_missing_plot(tampered, small_data):
    problems = check_results(tampered, data=small_data)
    assert any(
        p.startswith(str(tampered / "model.keras")) and "published.test_accuracy" in p
        for p in problems
    ), problems
    assert f"{tampered / 'predictions.png'}: missing" in problems


def test_check_results_names_a_swapped_model(repro, small_data, tmp_path):
    out = Path(shutil.copytree(repro.out, tmp_path / "results"))
    shutil.copyfile(repro.runs / "reference-seed1" / "model.keras", out / "model.keras")
    problems = check_results(out, data=small_data)
    assert any(
        p.startswith(str(out / "model.keras")) and "published.weights_digest" in p for p in problems
    ), problems
    assert not any("network_for_mnist.h5" in p for p in problems)  # that one is intact


def test_check_results_without_metrics_names_the_file(tmp_path, small_data):
    (problem,) = check_results(tmp_path, data=small_data)
    assert problem.startswith(str(tmp_path / "metrics.json"))


# -- README table -------------------------------------------------------------------------


def test_results_table_holds_the_numbers(repro):
    m = repro.metrics
    table = results_table(m)
    for run in [m["published"], *m["runs"], m["seed_model"]]:
        assert f"| {100 * run['test_accuracy']:.2f}% | {run['test_errors']} |" in table
    s = m["summary"]
    assert f"mean ± sd over 2 seeds | {100 * s['mean']:.3f}% ± {100 * s['sd']:.3f}%" in table
    assert f"{100 * s['min']:.2f}% / {100 * s['max']:.2f}%" in table
    ensemble = m["ensemble"]
    assert f"| {100 * ensemble['test_accuracy']:.2f}% | {ensemble['test_errors']} |" in table
    assert table.count("| **no** |") == 3
    assert "99.0%: not reached; 99.5%: not reached; 99.7%: not reached" in table
    prov = m["runs"][0]["provenance"]
    assert prov["cpu"]["model_name"] in table and f"TensorFlow {prov['tensorflow']}" in table


def test_update_readme_replaces_only_between_the_markers(repro, tmp_path):
    readme = tmp_path / "README.md"
    before, after = "# Title\n\nIntro.\n\n", "\n\n## Next\nMore text.\n"
    readme.write_text(f"{before}{README_BEGIN}\nold table\n{README_END}{after}")
    assert update_readme(readme, repro.metrics) is True
    table = results_table(repro.metrics)
    assert readme.read_text() == f"{before}{README_BEGIN}\n{table}\n{README_END}{after}"
    assert update_readme(readme, repro.metrics) is False  # already up to date


@pytest.mark.parametrize("text", ["no markers\n", f"{README_END}\n{README_BEGIN}\n"])
def test_update_readme_without_markers_names_the_file(repro, tmp_path, text):
    readme = tmp_path / "README.md"
    readme.write_text(text)
    with pytest.raises(ValueError, match=f"^{re.escape(str(readme))}: needs exactly one"):
        update_readme(readme, repro.metrics)
    assert readme.read_text() == text


# -- command line -------------------------------------------------------------------------


def test_cli_prints_configs_first_then_epochs_then_a_summary(repro):
    lines = repro.stdout.splitlines()
    changed = ", ".join(f"{k}={v}" for k, v in sorted(SMOKE.items()))
    assert lines[0] == f"reference runs: config: the 'reference' recipe with {changed}"
    assert lines[1] == f"notebook run: config: the 'seed' recipe with {changed}"
    plan = ("reference-seed0", "seed-seed0", "reference-seed1")
    for k, name in enumerate(plan, start=1):
        (start,) = [i for i, line in enumerate(lines) if line.startswith(f"run {k} of 3: {name}, ")]
        # The first run cannot estimate yet; later ones extrapolate the epochs timed so far.
        assert ("estimated once an epoch is timed" in lines[start]) == (k == 1)
        assert lines[start + 1] == cli._EPOCH_HEADER
        assert lines[start + 2].split()[0] == "1"  # the one epoch's row
    digest = repro.metrics["published"]["weights_digest"]
    assert any(line.startswith("published: reference-seed0") and digest in line for line in lines)
    assert lines[-1] == f"wrote {repro.out}/"


@pytest.fixture
def run_cli(capsys, monkeypatch, small_data):
    """`run_cli(*argv) -> (code, stdout, stderr)`, scoring on the module's test subset."""
    monkeypatch.setattr(cli._common, "_load_data", lambda explicit: small_data)

    def run(*argv) -> tuple[int, str, str]:
        capsys.readouterr()
        code = cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_cli_check_passes_and_regenerates_the_readme(repro, run_cli, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_BEGIN}\n{README_END}\n")
    code, out, err = run_cli("reproduce", "--check", "--out", repro.out, "--readme", readme)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("this machine: ")  # the fingerprint the rules compare by
    lines = lines[1:]
    assert lines[0] == f"checked {repro.out}/ against the MNIST test set ({N_TEST:,} images):"
    assert lines[1 : 1 + len(CHECKS)] == [f"  - {check}" for check in CHECKS]
    digest = repro.metrics["published"]["weights_digest"]
    assert any(line.startswith("published: reference-seed0") and digest in line for line in lines)
    assert lines[-2:] == ["results verified", f"{readme}: results table updated"]
    assert results_table(repro.metrics) in readme.read_text()


def test_cli_check_fails_with_exit_1_and_lists_the_problems(tampered, run_cli, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"{README_BEGIN}\n{README_END}\n")
    code, out, err = run_cli("reproduce", "--check", "--out", tampered, "--readme", readme)
    assert code == 1
    # what was verified and by which rule comes first, whatever the outcome; then one line per
    # problem: file, field, recorded, re-measured, difference, rule
    assert out.splitlines()[1].startswith(f"checked {tampered}/ against")  # after the machine
    assert "compared by these rules:" in out
    lines = out.splitlines()
    assert f"  - {tampered / 'predictions.png'}: missing" in lines
    edited = next(line for line in lines if "model.keras" in line and "test_accuracy" in line)
    assert "recorded " in edited and ", re-measured " in edited and "difference " in edited
    assert edited.endswith("rule: exact (counts, digests and hashes are exact on every machine)")
    assert err.startswith("mnist-bench: error: ") and "problem(s) found" in err
    assert readme.read_text() == f"{README_BEGIN}\n{README_END}\n"  # unverified: left alone


def test_cli_readme_without_markers_fails_before_training(run_cli, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("nothing here\n")
    argv = ["--out", tmp_path / "results", "--runs-dir", tmp_path / "runs", "--readme", readme]
    code, out, err = run_cli("reproduce", "--seeds", "1", "--epochs", "1", *argv)
    assert code == 2 and f"{readme}: needs exactly one" in err
    assert out == "" and not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()


def test_cli_reproduces_the_robust_recipe_beside_the_reference(repro, run_cli, tmp_path):
    out, runs = tmp_path / "results" / "robust", tmp_path / "runs"
    for folder, ext in (("history", "json"), ("probabilities", "npy"), ("runs", "json")):
        (out / folder).mkdir(parents=True)  # the notebook's run: the same in both recipes
        shutil.copy(repro.out / folder / f"seed-seed0.{ext}", out / folder)
    argv = ["--recipe", "robust", "--seeds", "1", "--epochs", "1", "--train-subset", "256"]
    code, stdout, err = run_cli("reproduce", *argv, "--out", out, "--runs-dir", runs)
    assert code == 0, err
    changed = ", ".join(f"{k}={v}" for k, v in sorted(SMOKE.items()))
    assert stdout.splitlines()[0] == f"robust runs: config: the 'robust' recipe with {changed}"
    assert "run 2 of 2: seed-seed0: already recorded" in stdout  # not trained again
    metrics = json.loads((out / "metrics.json").read_text())
    robust = TrainConfig.recipe("robust", seed=0, **SMOKE)
    assert TrainConfig.from_dict(metrics["published"]["config"]) == robust
    assert "| **published**: robust, seed 0 " in results_table(metrics)
    assert sorted(p.name for p in runs.iterdir()) == ["reference-seed0"]  # its own runs folder
    code, stdout, err = run_cli("reproduce", "--check", "--recipe", "robust", "--out", out)
    assert code == 0, stdout + err
    assert stdout.splitlines()[1].startswith(f"checked {out}/ against")  # after the machine
    assert "robust over 1 seed" in stdout


@pytest.mark.slow  # a ResNet-20 training (35 s of the fast tier's 5 minutes on a Zen 3)
def test_cli_reproduces_a_deep_recipe_without_the_notebooks_model(run_cli, tmp_path):
    # resnet20's folder publishes its own seeds only: results/ holds the notebook's model.
    out, runs = tmp_path / "results" / "resnet20", tmp_path / "runs"
    argv = ["--recipe", "resnet20", "--seeds", "1", "--epochs", "1", "--train-subset", "256"]
    code, stdout, err = run_cli("reproduce", *argv, "--out", out, "--runs-dir", runs)
    assert code == 0, err
    assert "notebook run" not in stdout and "run 1 of 1: resnet20-seed0" in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["complete"] and metrics["pending"] == [] and metrics["seed_model"] is None
    assert TrainConfig.from_dict(metrics["published"]["config"]).model == "resnet20"
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["resnet20-seed0.json"]
    assert "| seed notebook's model | not trained with this recipe" in results_table(metrics)
    code, stdout, err = run_cli("reproduce", "--check", "--recipe", "resnet20", "--out", out)
    assert code == 0, stdout + err
    assert "resnet20 over 1 seed" in stdout


def test_readme_results_table_matches_the_published_metrics():
    """README.md's table is what the committed results/metrics.json renders to."""
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    table = readme.split(README_BEGIN)[1].split(README_END)[0].strip("\n")
    metrics = json.loads((root / "results" / "metrics.json").read_text())
    assert table == results_table(metrics), (
        "README.md is stale: run `mnist-bench reproduce --check --readme README.md`"
    )


def test_check_summary_quotes_the_committed_robustness_and_calibration(capsys):
    root = Path(__file__).resolve().parents[1] / "results"
    cli._print_trust_summary(root)
    robustness = json.loads((root / "robustness.json").read_text())["model"]
    calibration = json.loads((root / "calibration.json").read_text())
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("robustness over 15 corruptions: mean accuracy ")
    assert f"{robustness['mean_accuracy']:.4f}" in lines[0] and robustness["worst"] in lines[0]
    assert lines[1].startswith("calibration: test ECE ")
    assert f"T = {calibration['temperature']:.3f}" in lines[1]


# -- shards -------------------------------------------------------------------------------


def _comparable(metrics: dict) -> dict:
    """What must not depend on how the runs were spread: every score and digest, not the
    wall times or the provenance of the processes."""

    def run(entry: dict | None) -> dict | None:
        keep = ("run", "seed", "config", "test_accuracy", "test_loss", "test_errors",
                "weights_digest", "train_accuracy", "train_loss")  # fmt: skip
        return None if entry is None else {k: entry[k] for k in keep}

    published = {k: v for k, v in metrics["published"].items() if k != "wall_seconds"}
    return {
        "runs": [run(r) for r in metrics["runs"]],
        "seed_model": run(metrics["seed_model"]),
        **{k: metrics[k] for k in ("complete", "pending", "summary", "ensemble", "targets")},
        "published": published,
    }


# Plan order: seed 0, the seed model, seeds 1, 2, ...; shard k of 2 takes every 2nd from k.
SHARDED = {
    2: {1: ["reference-seed0", "reference-seed1"], 2: ["seed-seed0"]},
    4: {
        1: ["reference-seed0", "reference-seed1", "reference-seed3"],
        2: ["reference-seed2", "seed-seed0"],
    },
}


@pytest.mark.parametrize(
    "n_seeds",
    # Two seeds: the whole run is the module's own, and the shards find its finished runs in
    # their runs folder and read them back (fast tier: what is tested is the split and the
    # merge; a run's bits, trained or resumed, are test_training's). Four (two shards of two
    # seeds each, issue 14's case): two runs more, trained, the slow tier.
    [2, pytest.param(4, marks=pytest.mark.slow)],
)
def test_two_shards_merge_into_the_results_of_one_run(
    n_seeds, repro, run_cli, small_data, small_plot_grids, tmp_path
):
    smoke = ["--seeds", str(n_seeds), "--epochs", "1", "--train-subset", "256"]
    whole = repro.out
    if n_seeds > len(SEEDS):  # the module's seeds are recorded: only the others train
        whole = Path(shutil.copytree(repro.out, tmp_path / "whole"))
        code, _, err = run_cli("reproduce", *smoke, "--out", whole, "--runs-dir", tmp_path / "r")
        assert code == 0, err
    # Two shards, each into its own folder, as a job array's tasks on two machines would.
    trained = {}
    for k in (1, 2):
        out, runs = tmp_path / f"shard{k}", tmp_path / f"r{k}"
        shutil.copytree(repro.runs, runs)  # the finished runs a resumed job array would find
        code, stdout, err = run_cli(
            "reproduce", *smoke, "--shard", f"{k}/2", "--out", out, "--runs-dir", runs
        )
        assert code == 0, err
        trained[k] = sorted(p.stem for p in (out / "runs").glob("*.json"))
    assert trained == SHARDED[n_seeds]
    assert not (tmp_path / "shard2" / "metrics.json").exists()  # no published seed there
    assert "merge the shards with --merge" in stdout
    merged = tmp_path / "merged"
    code, stdout, err = run_cli(
        "reproduce", *smoke, "--merge", tmp_path / "shard1", tmp_path / "shard2", "--out", merged
    )
    assert code == 0, err
    assert "merged 2 shard folder(s)" in stdout
    metrics = json.loads((merged / "metrics.json").read_text())
    assert metrics["complete"] and metrics["summary"]["n"] == n_seeds
    assert _comparable(metrics) == _comparable(json.loads((whole / "metrics.json").read_text()))
    assert check_results(merged, data=small_data) == []


@pytest.mark.parametrize("shard", ["0/2", "3/2", "1", "a/b"])
def test_bad_shards_are_refused_with_the_form(run_cli, shard, tmp_path):
    code, _, err = run_cli("reproduce", "--shard", shard, "--out", tmp_path / "out")
    assert code == 2
    assert "shard must be K/N with 1 <= K <= N" in err
    assert not (tmp_path / "out").exists()


def test_replot_draws_the_published_figures_again_and_nothing_else(repro, run_cli, tmp_path):
    out = Path(shutil.copytree(repro.out, tmp_path / "results"))
    figures = ["loss_curves.png", "confusion_matrix.png", "predictions.png", "misclassified.png"]
    for name in figures:
        (out / name).unlink()
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code, stdout, err = run_cli("reproduce", "--replot", "--out", out)
    assert code == 0, err
    assert sorted(line.removeprefix("drew ") for line in stdout.splitlines()) == sorted(
        str(out / name) for name in figures
    )
    assert all((out / name).read_bytes().startswith(b"\x89PNG") for name in figures)
    assert {p: p.read_bytes() for p in before} == before  # metrics, models, runs untouched
    code, _, err = run_cli("reproduce", "--replot", "--check", "--out", out)
    assert code == 2 and "--replot draws the figures only" in err


# -- variants of this machine (mnist_bench.variants) --------------------------------------


def test_variants_run_the_command_in_a_fresh_process_under_their_settings():
    from mnist_bench.variants import VARIANTS, available_variants, run_variant

    assert available_variants(has_gpu=False) == ["default", "onednn-off", "one-thread"]
    assert available_variants(has_gpu=True)[-1] == "cpu-only"
    assert VARIANTS["onednn-off"].env == {"TF_ENABLE_ONEDNN_OPTS": "0"}
    result = run_variant("one-thread", ["data", "verify", "/nonexistent-mnist-folder"])
    assert result.returncode == 2 and "/nonexistent-mnist-folder: no such folder" in result.output
    assert result.fingerprint is None  # only `reproduce --check` prints it
    with pytest.raises(ValueError, match="variant must be one of"):
        run_variant("fast", ["--help"])


def test_cli_variants_need_check(run_cli):
    code, _, err = run_cli("reproduce", "--variants")
    assert code == 2 and "give --check" in err
