"""`mnist-bench search`: an Optuna study of tiny holdout trials shared by worker processes, on
SQLite and on a real PostgreSQL server; a killed worker's trial retried when the study goes
on; the test set never read; bad input refused with exit 2."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from mnist_bench import TrainConfig, cli, load_mnist
from mnist_bench._io import read_json
from mnist_bench.compat import TINY_SEARCH
from mnist_bench.search import (
    SPACE,
    open_storage,
    open_study,
    study_settings,
    suggest_config,
)
from mnist_bench.search_report import README_MARKERS

REPO = Path(__file__).resolve().parents[1]
TINY = TINY_SEARCH  # the cheapest candidate, 1 epoch on 1,000 images (the matrix's step)
HEARTBEAT_S = 2  # a killed worker's trial is stale after 2 x 2 s


def _main(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def train_only_data(mnist_dir: Path, tmp_path: Path) -> Path:
    """A data folder holding the two TRAINING files only: a search that opened the test set
    would fail on it."""
    folder = tmp_path / "train-only"
    folder.mkdir()
    for path in mnist_dir.glob("train-*"):
        (folder / path.name).symlink_to(path.resolve())
    assert len(list(folder.iterdir())) == 2, f"{mnist_dir}: no training files"
    return folder


# -- PostgreSQL, a real server in a temporary folder ---------------------------------------


def _postgres_bin() -> Path:
    for folder in [*sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)]:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    pytest.fail(
        "no PostgreSQL server binaries (initdb, pg_ctl) in /usr/lib/postgresql/*/bin or on PATH: "
        "install Debian's postgresql package (.ci/run does)"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A database on a PostgreSQL server started for this test, stopped after it. As root the
    cluster belongs to the `postgres` user (the server refuses to run as root)."""
    bin_dir = _postgres_bin()
    as_owner: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="mnist-bench-pg-"))  # /tmp: the owner can reach it
    if os.geteuid() == 0:
        as_owner = ["runuser", "-u", "postgres", "--"]
        shutil.chown(folder, "postgres", "postgres")
    data, port = folder / "data", _free_port()

    def run(*argv: str) -> None:
        done = subprocess.run([*as_owner, *argv], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{argv[0]} failed:\n{done.stdout}\n{done.stderr}"

    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust")
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"),
            "-w", "start")  # fmt: skip
        try:
            run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                "search")  # fmt: skip
            yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/search"
        finally:
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- workers -------------------------------------------------------------------------------


def _worker(
    cwd: Path, data: Path, storage: str, objectives: str, worker: int, *extra: str
) -> subprocess.Popen:
    argv = [sys.executable, "-m", "mnist_bench.cli", "search", "--study", "tiny"]
    argv += ["--objectives", objectives]
    argv += ["--storage", storage, "--data", str(data), "--worker", str(worker)]
    argv += ["--heartbeat", str(HEARTBEAT_S), *TINY, *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("MNIST_BENCH_DATA", None)  # only --data: the folder without test files
    return subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip


def _kill_mid_trial(cwd: Path, data: Path, storage: str, objectives: str) -> None:
    """Start a worker and SIGKILL it once its first trial has started training."""
    started = cwd / "runs" / "search" / "tiny" / "trial-0" / "config.json"
    proc = _worker(cwd, data, storage, objectives, 9, "--trials", "1")
    deadline = time.monotonic() + 120
    while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    out = proc.communicate(timeout=30)[0]
    assert started.exists(), f"the worker never started its trial:\n{out}"
    assert not (started.parent / "metrics.json").exists(), "killed too late: the run finished"


# Worker processes really killed, on SQLite and on a real PostgreSQL server (which .ci/run
# installs), the corrupted holdout as a third objective there: three TensorFlow processes each
# (35-60 s on a Zen 3), the slow tier. The fast tier kills a worker inside its own process
# (test_a_killed_workers_trial_is_failed_then_retried_in_its_run_folder).
@pytest.mark.slow
@pytest.mark.parametrize(
    ("backend", "objectives"),
    [("sqlite", "accuracy,minutes"), ("postgresql", "accuracy,minutes,corrupted")],
)
def test_two_workers_share_a_study_and_retry_a_killed_workers_trial(
    backend, objectives, request, tmp_path, train_only_data
):
    storage = (
        request.getfixturevalue("postgres_url")
        if backend == "postgresql"
        else f"sqlite:///{tmp_path / 'study.db'}"
    )
    _kill_mid_trial(tmp_path, train_only_data, storage, objectives)
    killed = optuna.load_study(study_name="tiny", storage=storage).trials
    assert [t.state.name for t in killed] == ["RUNNING"]  # no worker left to say otherwise
    assert not (tmp_path / "results" / "holdout").exists()  # no record of the killed run
    time.sleep(2 * HEARTBEAT_S)  # its heartbeat goes stale

    workers = [
        _worker(tmp_path, train_only_data, storage, objectives, k, "--trials", "1") for k in (0, 1)
    ]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    for w, out in zip(workers, outputs, strict=True):
        assert w.returncode == 0, out
        assert sum("holdout accuracy" in line for line in out.splitlines()) == 1, out

    # One worker failed the stale trial and queued one retry, which one worker took.
    trials = optuna.load_study(study_name="tiny", storage=storage).trials
    states = sorted(t.state.name for t in trials)
    assert states == ["COMPLETE", "COMPLETE", "FAIL"], states  # 1 killed + 1 trial per worker
    (retry,) = [t for t in trials if t.state.name == "COMPLETE" and t.user_attrs["run"] == 0]
    assert retry.params == trials[0].params  # the killed trial again, its run folder resumed
    _assert_records(tmp_path, trials, objectives)
    _assert_report(tmp_path, storage, objectives, complete=2, fail=1)


def _assert_records(cwd: Path, trials: list[optuna.trial.FrozenTrial], objectives: str) -> None:
    """One whole holdout record per COMPLETE trial, holding its values; its run never scored
    the test set."""
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    records = sorted(p.name for p in (cwd / "results" / "holdout").iterdir())
    assert records == sorted(f"tiny-trial-{t.user_attrs['run']}.json" for t in complete)
    for trial in complete:
        record = read_json(cwd / "results" / "holdout" / f"{trial.user_attrs['record']}.json")
        values = [record["holdout_accuracy"], record["wall_seconds"] / 60]
        if "corrupted" in objectives:  # scored on the corrupted holdout images, 15 corruptions
            values.append(record["corrupted_holdout"]["mean_accuracy"])
        assert trial.values == values
        assert record["config"]["validation"] == "holdout"
        run = cwd / "runs" / "search" / "tiny" / f"trial-{trial.user_attrs['run']}"
        metrics = read_json(run / "metrics.json")
        assert "test_accuracy" not in metrics and not (run / "confusion_matrix.png").exists()


def _assert_report(cwd: Path, storage: str, objectives: str, *, complete: int, fail: int) -> None:
    """`search --report`: summary, figure and table from the study, the reference's runs
    beside it."""
    shutil.copytree(REPO / "results" / "holdout", cwd / "results" / "holdout",
                    dirs_exist_ok=True)  # fmt: skip
    page = cwd / "recipe.md"
    page.write_text(f"before\n{README_MARKERS[0]}\nSTALE\n{README_MARKERS[1]}\nafter\n")
    code, _, err = _main("search", "--study", "tiny", "--storage", storage, "--report",
                         "--out", str(cwd / "results"), "--readme", str(page))  # fmt: skip
    assert code == 0, err
    summary = read_json(cwd / "results" / "search" / "tiny.json")
    states = {k: v for k, v in summary["states"].items() if k != "pruned"}
    assert states == {"complete": complete, "fail": fail}
    assert len(summary["reference_runs"]) == 3  # seeds 0, 1, 2 of results/holdout
    assert (cwd / "results" / "search" / "tiny-front.png").stat().st_size > 0
    table = page.read_text().split(README_MARKERS[0])[1].split(README_MARKERS[1])[0]
    front = sum(row["pareto"] for row in summary["trials"])
    assert table.count("\n| ") == 2 + front + 1  # header and rule, the front, the reference
    assert "the reference recipe, mean of seeds 0, 1, 2" in table and "STALE" not in table
    assert ("corrupted holdout mean" in table) == ("corrupted" in objectives)


class _Killed(BaseException):
    """What SIGKILL does to a worker, in-process: Optuna catches Exception and
    KeyboardInterrupt, not this, so the trial is left RUNNING with its heartbeat stopped."""


def test_a_killed_workers_trial_is_failed_then_retried_in_its_run_folder(
    tmp_path, train_only_data, monkeypatch
):
    """The worker killed once its trial has started training (its run folder written); the
    next worker to start a trial fails it, once its heartbeat is stale, and trains it again
    with the same values in the same run folder; the report counts both."""
    from mnist_bench import training

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    argv = ["search", "--study", "tiny", "--storage", storage, "--data", str(train_only_data),
            "--heartbeat", str(HEARTBEAT_S), "--trials", "1", *TINY]  # fmt: skip
    monkeypatch.chdir(tmp_path)  # runs/ and results/ as a worker started here writes them
    monkeypatch.delenv("MNIST_BENCH_DATA", raising=False)  # only --data: no test files

    def killed(*args, **kwargs):
        raise _Killed

    with monkeypatch.context() as mp:
        mp.setattr(training, "train_one_epoch", killed)
        with pytest.raises(_Killed):
            _main(*argv)
    run = tmp_path / "runs" / "search" / "tiny" / "trial-0"
    assert (run / "config.json").is_file() and not (run / "metrics.json").exists()
    (killed_trial,) = optuna.load_study(study_name="tiny", storage=storage).trials
    assert killed_trial.state.name == "RUNNING"  # no worker left to say otherwise
    time.sleep(2 * HEARTBEAT_S)  # its heartbeat goes stale

    code, out, err = _main(*argv, "--worker", "1")
    assert code == 0, err
    assert sum("holdout accuracy" in line for line in out.splitlines()) == 1, out
    failed, retry = optuna.load_study(study_name="tiny", storage=storage).trials
    assert (failed.state.name, retry.state.name) == ("FAIL", "COMPLETE")
    assert retry.params == failed.params and retry.user_attrs["run"] == 0  # its run folder
    _assert_records(tmp_path, [failed, retry], "accuracy,minutes")
    _assert_report(tmp_path, storage, "accuracy,minutes", complete=1, fail=1)


# -- in-process: the space, the test set, bad input ---------------------------------------


def test_the_space_suggests_every_name_and_pins_the_fixed_ones():
    base = TrainConfig.recipe("reference", validation="holdout")
    trial = optuna.create_study(directions=["maximize", "minimize"]).ask()
    config = suggest_config(trial, base)
    assert tuple(trial.params) == SPACE
    assert config.validation == "holdout" and config.seed == base.seed
    trial = optuna.create_study().ask()
    config = suggest_config(trial, base, {"epochs": 1, "convs_per_stage": "1,1,1"})
    assert "epochs" not in trial.params and config.epochs == 1
    assert config.model_options["convs_per_stage"] == [1, 1, 1]
    assert config.warmup_epochs <= 1


def test_a_run_that_must_not_score_the_test_set_needs_the_holdout(mnist):
    from mnist_bench.training import train

    with pytest.raises(ValueError, match="holdout"):
        train(TrainConfig.recipe("seed", epochs=1), mnist, score_test=False)


def test_the_search_loads_no_test_images(train_only_data):
    data = load_mnist(train_only_data, test=False)
    assert data.x_test.shape == (0, 28, 28) and len(data.x_train) == 60_000
    with pytest.raises(ValueError, match="t10k"):
        load_mnist(train_only_data)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--objectives", "accuracy,speed"), "objectives must be"),
        (("--objectives", "accuracy,accuracy"), "objectives must be"),
        (("--storage", "not a url"), "is not a database URL"),
        (("--storage", "nosuchdb://host/db"), "cannot open the database"),
        (("--storage", "postgresql+psycopg2://u:secret@127.0.0.1:1/db"), "cannot open"),
        (("--fix", "depth=3"), "not in the search space"),
        (("--readme", "x.md"), "--readme goes with --report"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, message, tmp_path):
    code, _, err = _main("search", "--study", "s", "--out", str(tmp_path), *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert "secret" not in err  # a password in the URL is never printed


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--fix", "epochs"), "NAME=VALUE"),
        (("--trials", "0"), "positive integer"),
        (("--worker", "-1"), "integer >= 0"),
    ],
)
def test_malformed_flags_are_usage_errors(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["search", "--study", "s", "--out", str(tmp_path), *argv])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_a_worker_with_other_settings_cannot_join(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    base = TrainConfig.recipe("reference", validation="holdout")
    open_study("s", open_storage(storage), study_settings(("accuracy", "minutes"), base, {}))
    code, _, err = _main("search", "--study", "s", "--storage", storage, "--objectives",
                         "accuracy,corrupted", "--out", str(tmp_path))  # fmt: skip
    assert code == 2 and "created with other objectives" in err, err
    code, _, err = _main("search", "--study", "bad/name", "--out", str(tmp_path))
    assert code == 2 and "study name" in err
    code, _, err = _main("search", "--study", "none", "--report", "--storage", storage)
    assert code == 2 and "no study 'none'" in err


# The test asks and tells by hand; workers run trials through Study.optimize, as Optuna's
# heartbeats want (its warning says so).
@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_a_restarted_worker_does_not_repeat_its_first_suggestions(tmp_path):
    """A worker that joins its own study again (killed, session over) is seeded anew by the
    trials stored, not by its index alone, which would propose its first points again."""
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}")
    settings = study_settings(["accuracy", "minutes"], TrainConfig.recipe("reference"), {})
    base = TrainConfig.recipe("reference", validation="holdout")

    def first_suggestion() -> TrainConfig:
        study = open_study("again", storage, settings, worker=0)
        trial = study.ask()
        config = suggest_config(trial, base)
        study.tell(trial, [0.99, 1.0])
        return config

    assert first_suggestion() != first_suggestion()


# One worker: join the study, say so, wait for the word, then ask for trials as fast as it can.
_TAKE_TRIALS = """
import sys, optuna
from mnist_bench.search import open_storage
study = optuna.load_study(study_name="race", storage=open_storage(sys.argv[1]))
print("ready", flush=True)
sys.stdin.readline()
print(*(study.ask().number for _ in range(int(sys.argv[2]))), flush=True)
"""


def test_workers_on_one_sqlite_file_never_take_the_same_queued_trial(tmp_path):
    """Optuna hands a queued trial (a killed trial's retry) to the first worker that asks:
    it reads the trial's state, then marks it RUNNING. Over SQLite both steps must be one
    locked transaction, else two workers take one trial and train it twice (the second then
    dies on "Cannot tell a COMPLETE trial"). Before `open_storage` began every transaction
    with BEGIN IMMEDIATE, this test failed 3 times in 3 on a Zen 3."""
    url = f"sqlite:///{tmp_path / 'race.db'}"
    study = optuna.create_study(study_name="race", storage=open_storage(url))
    queued, workers, each = 12, 4, 4
    for x in range(queued):
        study.enqueue_trial({"x": float(x)})
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    processes = [
        subprocess.Popen([sys.executable, "-c", _TAKE_TRIALS, url, str(each)], env=env,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(workers)
    ]  # fmt: skip
    try:
        for process in processes:  # all of them joined the study...
            assert process.stdout.readline().strip() == "ready"
        for process in processes:  # ...then all ask at once
            process.stdin.write("go\n")
            process.stdin.flush()
        got = [int(n) for p in processes for n in p.communicate(timeout=60)[0].split()]
    finally:  # a worker that died early leaves the others waiting for the word: stop them
        for process in processes:
            process.kill()
            process.wait()
    assert all(p.returncode == 0 for p in processes)
    # Trials 0-11 are the queued ones, each taken once; the asks beyond them made 12-15.
    assert sorted(got) == list(range(workers * each))
