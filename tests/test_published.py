"""The published recipes side by side: their folders, their names and their summary table."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mnist_bench._io import read_json
from mnist_bench.config import RECIPES, TrainConfig
from mnist_bench.published import (
    DEFAULT_SEEDS,
    NOTEBOOK_BESIDE,
    PUBLISHED_DIRS,
    architectures_table,
    recipe_folder,
    recipe_folders,
    recipe_name,
    recipes_table,
)

RESULTS = Path(__file__).resolve().parents[1] / "results"


@pytest.mark.parametrize("name", list(RECIPES))
def test_every_recipe_is_named_back_whatever_its_seed_and_length(name):
    config = TrainConfig.recipe(name, seed=7, epochs=1, train_subset=256)
    assert recipe_name(config.to_dict()) == name


def test_a_config_that_is_no_recipe_is_named_by_its_architecture():
    other = TrainConfig.recipe("robust", noise_std=0.3)
    assert recipe_name(other.to_dict()) == "reference"


def test_the_robust_recipe_is_the_reference_plus_what_the_holdout_chose():
    reference, robust = TrainConfig.recipe("reference"), TrainConfig.recipe("robust")
    differ = {k for k, v in robust.to_dict().items() if reference.to_dict()[k] != v}
    assert differ == {"model_options", "brightness", "contrast", "noise_std", "erasing"}
    # the candidate docs/recipe.md chose it from, trained on the holdout
    chosen = read_json(RESULTS / "holdout" / "robust-std-photo-mild-erase25-s0.json")["config"]
    assert robust.replace(validation="holdout") == TrainConfig.from_dict(chosen)


def test_the_fast_recipe_is_the_fastest_front_point_that_reached_the_target_on_the_holdout():
    # the rule docs/recipe.md states, applied to the study summary the search wrote
    summary = read_json(RESULTS / "search" / "fast.json")
    reached = [t for t in summary["trials"] if t["pareto"] and t["accuracy"] >= 0.997 - 1e-6]
    chosen = min(reached, key=lambda t: t["minutes"])
    record = read_json(RESULTS / "holdout" / f"{chosen['record']}.json")
    searched = {k: v for k, v in record["config"].items() if k != "extra"}
    assert TrainConfig.recipe("fast", validation="holdout") == TrainConfig.from_dict(searched)


def test_folders_are_under_the_results_root(tmp_path):
    assert recipe_folder(tmp_path, "reference") == tmp_path
    assert recipe_folder(tmp_path, "robust") == tmp_path / "robust"
    assert recipe_folder(tmp_path, "fast") == tmp_path / "fast"
    assert recipe_folder(tmp_path, "resnet20") == tmp_path / "resnet20"
    allowed = r"\['reference', 'robust', 'fast', 'resnet20', 'efficientnet_b0'\]"
    with pytest.raises(ValueError, match=rf"recipe must be one of {allowed}"):
        recipe_folder(tmp_path, "seed")
    assert recipe_folders(tmp_path) == {}  # nothing published there


def _publish_copy(src: Path, dst: Path, files=("metrics.json", "robustness.json")) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in files:
        shutil.copy(src / name, dst / name)


def test_recipes_table_has_one_row_per_published_folder(tmp_path):
    _publish_copy(RESULTS, tmp_path, ("metrics.json", "robustness.json", "calibration.json"))
    _publish_copy(RESULTS, tmp_path / PUBLISHED_DIRS["robust"], ("metrics.json",))
    assert list(recipe_folders(tmp_path)) == ["reference", "robust"]
    lines = recipes_table(tmp_path).splitlines()
    assert len(lines) == 4
    metrics = read_json(RESULTS / "metrics.json")
    robustness = read_json(RESULTS / "robustness.json")["model"]
    calibration = read_json(RESULTS / "calibration.json")["test"]
    reference = lines[2].split(" | ")
    assert reference[0] == "| `reference` (results/)"
    assert reference[1] == f"{100 * metrics['published']['test_accuracy']:.2f}%"
    assert reference[2] == f"{100 * metrics['summary']['mean']:.3f}% (n = 5)"
    assert reference[4] == f"{100 * robustness['mean_accuracy']:.2f}%"
    ece = calibration["calibrated"]["ece"]
    assert reference[6].endswith(f"-> {100 * ece:.2f}%")
    robust = lines[3].split(" | ")
    assert robust[0] == "| `robust` (results/robust/)"
    assert robust[4:7] == ["not measured", "not measured", "not measured"]  # never made up


# -- the architectures table --------------------------------------------------------------


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip("|").split(" | ")]


def test_deep_recipes_are_the_reference_protocol_with_another_network():
    reference = TrainConfig.recipe("reference").to_dict()
    for name in ("resnet20", "efficientnet_b0"):
        deep = TrainConfig.recipe(name).to_dict()
        assert {k for k, v in deep.items() if reference[k] != v} == {"model", "model_options"}
        assert deep["model"] == name and deep["model_options"] == {}
        assert name not in NOTEBOOK_BESIDE
    # issue #21: 3 seeds, 2 where a run passes 90 minutes (EfficientNet-B0 on the AVX2 CPUs)
    assert (DEFAULT_SEEDS["resnet20"], DEFAULT_SEEDS["efficientnet_b0"]) == (3, 2)
    assert set(DEFAULT_SEEDS) == set(PUBLISHED_DIRS)


def test_architectures_table_reads_the_files_and_shows_missing_folders_as_pending(tmp_path):
    # results/ as published (reference and the notebook's run), robust not yet, and a
    # resnet20 folder holding the reference's files as a stand-in for its own.
    _publish_copy(RESULTS, tmp_path, ("metrics.json", "robustness.json", "calibration.json"))
    (tmp_path / "runs").mkdir()
    shutil.copy(RESULTS / "runs" / "seed-seed0.json", tmp_path / "runs" / "seed-seed0.json")
    _publish_copy(RESULTS, tmp_path / "resnet20", ("metrics.json",))
    rows = {_cells(line)[0]: _cells(line) for line in architectures_table(tmp_path).splitlines()}
    assert len(rows) == 2 + 6  # header, rule, notebook + the 5 published recipes

    metrics, notebook = (
        read_json(RESULTS / "metrics.json"),
        rows["notebook's model (`seed`, results/runs/)"],
    )
    seed_run = read_json(RESULTS / "runs" / "seed-seed0.json")
    assert notebook[1] == f"{100 * seed_run['test_accuracy']:.3f}% (n = 1)"
    assert notebook[2:4] == ["225,034", "5.3"]
    baseline = read_json(RESULTS / "robustness.json")["baseline"]
    assert notebook[7] == f"{100 * baseline['mean_accuracy']:.2f}%"  # its robustness baseline
    assert notebook[9] == "not measured"  # no calibration file of it: never made up

    reference = rows["`reference` (results/)"]
    summary, runs = metrics["summary"], metrics["runs"]
    assert reference[1] == (
        f"{100 * summary['mean']:.3f}% ± {100 * summary['sd']:.3f}% (n = {summary['n']})"
    )
    assert reference[2:4] == ["577,450", "45.2"]
    assert reference[4] == f"{sum(r['wall_seconds'] for r in runs) / len(runs) / 60:.1f} min"
    to_995 = [r["time_to_accuracy"]["seconds"]["0.995"] for r in runs]
    assert reference[5] == f"{sum(to_995) / len(to_995) / 60:.1f} min"
    ece = read_json(RESULTS / "calibration.json")["test"]
    assert reference[9] == (
        f"{100 * ece['uncalibrated']['ece']:.2f}% -> {100 * ece['calibrated']['ece']:.2f}%"
    )
    family_model = runs[0]["provenance"]["cpu"]["vendor_family_model_stepping"].split("/")[1:3]
    assert reference[10] == "{} (family {} model {})".format(
        runs[0]["provenance"]["cpu"]["model_name"], *family_model
    )

    assert rows["`robust` (results/robust/)"][1:] == [
        "pending",
        "577,450",
        "45.2",
        *["pending"] * 7,
    ]
    resnet = rows["`resnet20` (results/resnet20/)"]  # results, but no robustness/calibration
    assert resnet[1] == reference[1] and resnet[2:4] == ["577,450", "45.2"]  # the recorded config
    assert resnet[7:10] == ["not measured"] * 3
    effnet = rows["`efficientnet_b0` (results/efficientnet_b0/)"]
    assert effnet[1] == "pending" and effnet[2:4] == ["4,061,801", "16.7"]


def test_architectures_table_marks_everything_pending_in_an_empty_root(tmp_path):
    lines = architectures_table(tmp_path).splitlines()
    assert len(lines) == 8
    assert all(_cells(line)[1] == "pending" for line in lines[2:])


def test_times_are_averaged_per_machine_when_the_seeds_ran_on_several(tmp_path):
    # resnet20's recorded runs, the last one as if timed on another CPU: its minutes stand
    # apart, never averaged with the others'
    metrics = read_json(RESULTS / "resnet20" / "metrics.json")
    runs = metrics["runs"]
    other = json.loads(json.dumps(runs[-1]))
    cpu = other["provenance"]["cpu"]
    cpu.update(model_name="Other CPU", vendor_family_model_stepping="X/1/2/3")
    other["wall_seconds"] = 6000.0
    metrics["runs"] = [*runs[:-1], other]
    (tmp_path / "resnet20").mkdir()
    (tmp_path / "resnet20" / "metrics.json").write_text(json.dumps(metrics))

    first = runs[0]["provenance"]["cpu"]
    family_model = first["vendor_family_model_stepping"].split("/")[1:3]
    first_label = "{} (family {} model {})".format(first["model_name"], *family_model)
    mean = sum(r["wall_seconds"] for r in runs[:-1]) / (len(runs) - 1) / 60
    n_first = len(runs) - 1
    plural = "s" if n_first > 1 else ""
    timed_on = f"{first_label} ({n_first} run{plural}); Other CPU (family 1 model 2) (1 run)"

    rows = {_cells(line)[0]: _cells(line) for line in architectures_table(tmp_path).splitlines()}
    resnet = rows["`resnet20` (results/resnet20/)"]
    assert resnet[4] == f"{mean:.1f} min; 100.0 min"
    assert resnet[10] == timed_on
    assert len(resnet[5].split("; ")) == 2  # a time to 99.5% per machine

    recipes = {_cells(line)[0]: _cells(line) for line in recipes_table(tmp_path).splitlines()}
    row = recipes["`resnet20` (results/resnet20/)"]
    assert row[7] == f"{mean:.1f} min; 100.0 min" and row[9] == timed_on
    assert [len(part.split(" / ")) for part in row[8].split("; ")] == [3, 3]
