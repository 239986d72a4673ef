"""The published recipes side by side: their folders, their names and their summary table."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mnist_bench._io import read_json
from mnist_bench.config import RECIPES, TrainConfig
from mnist_bench.published import (
    PUBLISHED_DIRS,
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


def test_folders_are_under_the_results_root(tmp_path):
    assert recipe_folder(tmp_path, "reference") == tmp_path
    assert recipe_folder(tmp_path, "robust") == tmp_path / "robust"
    with pytest.raises(ValueError, match=r"recipe must be one of \['reference', 'robust'\]"):
        recipe_folder(tmp_path, "fast")
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
    assert reference[6].endswith(f"-> {100 * ece:.2f}% |")
    robust = lines[3].split(" | ")
    assert robust[0] == "| `robust` (results/robust/)"
    assert robust[4:] == ["not measured", "not measured", "not measured |"]  # never made up
