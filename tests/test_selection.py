"""Recipe selection on the holdout: `record_candidate`, `candidates_table`, `mnist-bench select`.

The run folders here are written by hand in the layout `train` leaves (config.json,
history.json, metrics.json): what is tested is the bookkeeping, not training.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mnist_bench import TrainConfig
from mnist_bench.cli import main
from mnist_bench.selection import (
    README_BEGIN,
    README_END,
    candidates_table,
    record_candidate,
    recorded_candidates,
    update_readme,
)

WIDE = {**TrainConfig.recipe("reference").model_options, "widths": [40, 80, 160]}


def fake_run(
    root: Path,
    name: str,
    *,
    accuracies: list[float],
    validation: str = "holdout",
    finished: bool = True,
    **overrides,
) -> Path:
    """A run folder as `train` leaves it after the recipe's 30 epochs, the last ones with the
    given validation accuracies (the earlier ones 0.9)."""
    config = TrainConfig.recipe("reference", validation=validation, **overrides)
    accuracies = [0.9] * (config.epochs - len(accuracies)) + accuracies
    run = root / name
    run.mkdir(parents=True)
    config.to_json(run / "config.json")
    history = [
        {"epoch": i + 1, "loss": 0.1, "accuracy": 0.99, "val_loss": 0.02,
         "val_accuracy": acc, "lr": 1e-3, "seconds": 30.0, "images_per_s": 1000.0}
        for i, acc in enumerate(accuracies)
    ]  # fmt: skip
    (run / "history.json").write_text(json.dumps(history))
    if finished:
        metrics = {
            "test_accuracy": 0.9901,  # train scores the test set too: never to be recorded
            "test_errors": 99,
            "flops_per_image": {"forward": 16_300_032, "training": 48_900_096},
            "params": 392_362,
            "provenance": {"machine_fingerprint": "a machine"},
        }
        (run / "metrics.json").write_text(json.dumps(metrics))
    return run


def test_record_keeps_the_final_epoch_holdout_score_and_no_test_score(tmp_path):
    run = fake_run(tmp_path / "runs", "cand-s0", accuracies=[0.9, 0.9975, 0.9968])
    record = record_candidate(run, tmp_path / "results")
    written = json.loads((tmp_path / "results" / "holdout" / "cand-s0.json").read_text())
    assert written == record
    assert record["holdout_accuracy"] == 0.9968  # the last epoch, not the best (0.9975)
    assert record["holdout_errors"] == 32 and record["holdout_size"] == 10_000
    assert record["wall_seconds"] == 900.0 and record["epochs"] == 30
    assert "test" not in json.dumps(written).replace('"validation": "holdout"', "")


@pytest.mark.parametrize(
    ("kwargs", "file", "message"),
    [
        ({"validation": "test"}, "config.json", "validated on the test set; only runs"),
        ({"finished": False}, "metrics.json", "cannot read"),
    ],
    ids=["test-validated", "unfinished"],
)
def test_runs_that_cannot_choose_a_recipe_are_refused(tmp_path, kwargs, file, message):
    run = fake_run(tmp_path, "r", accuracies=[0.99, 0.995], **kwargs)
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        record_candidate(run, tmp_path / "results")
    assert str(run / file) in str(error.value)
    assert not (tmp_path / "results").exists()


def test_a_history_shorter_than_the_config_is_refused(tmp_path):
    run = fake_run(tmp_path, "r", accuracies=[0.99, 0.995])
    history = json.loads((run / "history.json").read_text())
    (run / "history.json").write_text(json.dumps(history[:-1]))
    with pytest.raises(ValueError, match=re.escape("ends at epoch 29 of 30")):
        record_candidate(run, tmp_path / "results")


def test_table_groups_seeds_of_one_recipe_and_names_its_changes(tmp_path):
    runs = tmp_path / "runs"
    for name, acc, seed, overrides in [
        ("base-s0", 0.9966, 0, {}),
        ("base-s1", 0.9970, 1, {}),
        ("wide-s0", 0.9972, 0, {"label_smoothing": 0.25, "model_options": WIDE}),
    ]:
        record_candidate(fake_run(runs, name, accuracies=[acc], seed=seed, **overrides), tmp_path)
    table = candidates_table(recorded_candidates(tmp_path))
    rows = table.splitlines()[2:]
    assert len(rows) == 2
    assert rows[0].startswith("| the reference recipe | 16.3 | 0, 1 | 99.66% (34), 99.70% (30) |")
    assert "| 99.680% | 0.028% |" in rows[0]  # mean, sample sd of 99.66% and 99.70%
    assert "| 99.720% | – |" in rows[1]  # one seed: no sd
    assert rows[1].startswith("| label_smoothing=0.25, widths=[40, 80, 160] | 16.3 | 0 |")


@pytest.mark.parametrize(
    "options, recipe_options, changes",
    [
        ({}, {}, "the reference recipe"),
        ({"dropout": 0.3}, {}, "the reference recipe"),  # 0.3 is the builder's default
        ({}, {"convs_per_stage": [1, 2, 2]}, "convs_per_stage=[1, 1, 1]"),
        ({"convs_per_stage": [1, 2, 2]}, {"convs_per_stage": [1, 2, 2]}, "the reference recipe"),
        ({"dense_units": 128}, {"widths": [40, 80, 160]}, "dense_units=128, widths=[32, 64, 128]"),
    ],
)
def test_an_option_left_out_means_the_builders_default(options, recipe_options, changes):
    recipe = TrainConfig.recipe("reference", model_options=recipe_options)
    record = {"config": recipe.replace(model_options=options).to_dict(), "holdout_accuracy": 0.99,
              "holdout_errors": 100, "wall_seconds": 60.0,
              "flops_per_image": {"forward": 1e6}}  # fmt: skip
    row = candidates_table([record], recipe).splitlines()[2]
    assert row.startswith(f"| {changes} | 1.0 | 0 |")


def test_update_readme_rewrites_only_between_the_markers(tmp_path):
    record_candidate(fake_run(tmp_path / "runs", "a", accuracies=[0.997]), tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_BEGIN}\nold\n{README_END}\noutro\n")
    records = recorded_candidates(tmp_path)
    assert update_readme(readme, records)
    assert readme.read_text() == (
        f"intro\n{README_BEGIN}\n{candidates_table(records)}\n{README_END}\noutro\n"
    )
    assert not update_readme(readme, records)  # already up to date


def test_cli_select_records_prints_and_regenerates_the_readme(tmp_path, capsys):
    run = fake_run(tmp_path / "runs", "cand-s0", accuracies=[0.9, 0.9968])
    readme = tmp_path / "README.md"
    readme.write_text(f"{README_BEGIN}\n{README_END}\n")
    code = main(["select", str(run), "--out", str(tmp_path / "results"), "--readme", str(readme)])
    out = capsys.readouterr().out
    assert code == 0
    assert "final-epoch holdout accuracy 99.68% (32 errors)" in out
    assert "| the reference recipe | 16.3 | 0 | 99.68% (32) | 99.680% |" in out
    assert "| 99.680% |" in readme.read_text()


def test_cli_select_bad_input_exits_2_naming_the_file(tmp_path, capsys):
    run = fake_run(tmp_path / "runs", "r", accuracies=[0.99], validation="test")
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    assert main(["select", str(run), "--out", str(tmp_path), "--readme", str(readme)]) == 2
    assert f"{readme}: needs exactly one {README_BEGIN}" in capsys.readouterr().err
    assert main(["select", str(run), "--out", str(tmp_path)]) == 2
    assert f"{run / 'config.json'}: validated on the test set" in capsys.readouterr().err


def test_a_record_from_before_a_field_existed_reads_with_its_default(tmp_path):
    run = fake_run(tmp_path / "runs", "old", accuracies=[0.9966], label_smoothing=0.0)
    record_candidate(run, tmp_path)
    path = tmp_path / "holdout" / "old.json"
    record = json.loads(path.read_text())
    del record["config"]["weight_averaging"]  # written before the field was added
    path.write_text(json.dumps(record))
    recipe = TrainConfig.recipe("reference", weight_averaging=0.999)
    rows = candidates_table(recorded_candidates(tmp_path), recipe).splitlines()[2:]
    assert rows[0].startswith("| label_smoothing=0.0, weight_averaging=None | ")


def test_a_run_with_final_steps_records_its_scores_without_them_too(tmp_path):
    run = fake_run(tmp_path / "runs", "ema", accuracies=[0.9970], weight_averaging=0.999)
    history = json.loads((run / "history.json").read_text())
    history[-1]["last_val_accuracy"] = 0.9966
    history[-1]["uncalibrated_val_accuracy"] = 0.9965
    (run / "history.json").write_text(json.dumps(history))
    record = record_candidate(run, tmp_path)
    assert (record["holdout_accuracy"], record["holdout_accuracy_last_weights"]) == (0.997, 0.9966)
    assert record["holdout_accuracy_uncalibrated"] == 0.9965


def test_docs_holdout_table_matches_the_records():
    # The published table is generated, never typed: `mnist-bench select --readme
    # docs/recipe.md` rewrites it.
    root = Path(__file__).resolve().parents[1]
    table = candidates_table(recorded_candidates(root / "results"))
    assert f"{README_BEGIN}\n{table}\n{README_END}" in (root / "docs" / "recipe.md").read_text()


def _scored(run: Path, digest: str, split: str = "holdout") -> None:
    """What `mnist-bench robustness MODEL --split holdout --out RUN` leaves in the folder."""
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "weights_digest": "d1"}))
    model = {"mean_accuracy": 0.9062, "min_accuracy": 0.262, "worst": "stripe",
             "weights_digest": digest}  # fmt: skip
    (run / "robustness-holdout.json").write_text(json.dumps({"split": split, "model": model}))


def test_a_run_scored_on_the_corrupted_holdout_records_and_shows_it(tmp_path):
    run = fake_run(tmp_path / "runs", "robust", accuracies=[0.9963], brightness=0.5)
    _scored(run, "d1")
    record = record_candidate(run, tmp_path)
    assert record["corrupted_holdout"] == {
        "mean_accuracy": 0.9062, "min_accuracy": 0.262, "worst": "stripe"
    }  # fmt: skip
    table = candidates_table([record])
    assert "| 90.62%, stripe 26.20% |" in table
    plain = record_candidate(fake_run(tmp_path / "runs", "plain", accuracies=[0.997]), tmp_path)
    assert "corrupted_holdout" not in plain
    assert candidates_table([plain]).splitlines()[-1].split(" | ")[-2] == "–"


@pytest.mark.parametrize(("digest", "split"), [("another model", "holdout"), ("d1", "test")])
def test_a_corrupted_score_of_another_model_or_split_is_refused(tmp_path, digest, split):
    run = fake_run(tmp_path / "runs", "robust", accuracies=[0.9963])
    _scored(run, digest, split)
    with pytest.raises(
        ValueError, match=re.escape("robustness-holdout.json: not this run's model")
    ):
        record_candidate(run, tmp_path)
    assert not (tmp_path / "holdout").exists()
