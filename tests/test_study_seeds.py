"""Studies over several seeds: the replicas, the 95% intervals, the tables and heatmaps across seeds."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.study import load_study, run_study
from unlearn_mc.study.seeds import aggregate_matrices, aggregate_rows, interval_half_width, seed_replicas
from unlearn_mc.study.tables import markdown_table, write_csv

STUDY = {
    "output_dir": "out",
    "seeds": [3, 4],
    "trainer": {"accelerator": "cpu", "devices": 1, "check_val_every_n_epoch": 5},
    "net": {"class_path": "unlearn_mc.models.SmallCNN", "init_args": {"in_channels": 1, "num_classes": 10, "width": 8}},
    "data": {"dataset": "digits", "forget_ratio": 0.1},
    "base": {"epochs": 1},
    "methods": {
        "ga": {"method": "GradientAscent", "epochs": 1, "optimizer": {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.001}}},
        "ft": {"method": "FineTune", "epochs": 1, "seeds": [30, 40]},
    },
    "curves": {"families": {"linear": {"curve": "linear"}}, "matrix": ["ga", "ft"]},
    "evaluation": {"t_grid": 3, "bn_batches": 2},
}


def _write(folder: Path, study: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def test_the_interval_is_the_student_t_half_width_from_a_table():
    # 1, 2, 3: mean 2, sample standard deviation 1; t_{0.975, 2} = 4.303 (printed tables) -> 4.303 / sqrt(3) = 2.484
    assert interval_half_width([1.0, 2.0, 3.0]) == pytest.approx(4.303 / math.sqrt(3), abs=1e-3)
    # ten values with s = 1: t_{0.975, 9} = 2.262
    values = [0.0, 2.0] * 5
    assert interval_half_width(values) == pytest.approx(2.262 * np.std(values, ddof=1) / math.sqrt(10), abs=1e-3)
    assert math.isnan(interval_half_width([0.7]))
    assert interval_half_width([0.5, math.nan, 0.5, 0.5]) == 0.0  # non-finite values are left out


def test_the_interval_covers_the_true_mean_95_percent_of_the_time():
    # 4000 samples of 3 normal draws (numpy's generator, the same on every CPU): the 95% interval of each covers
    # the mean in 0.95 of them; the binomial standard error is 0.0034, so 0.94-0.96 is a 3-sigma band.
    generator = np.random.default_rng(0)
    samples = generator.normal(0.3, 0.05, size=(4000, 3))
    covered = [abs(sample.mean() - 0.3) <= interval_half_width(list(sample)) for sample in samples]
    assert 0.94 <= np.mean(covered) <= 0.96


def test_rows_of_several_seeds_become_means_intervals_fractions_and_counts():
    seeds = [
        [{"model": "ga", "status": "ok", "forget_acc": 0.5, "mcu_holds": True, "best_t": None}],
        [{"model": "ga", "status": "collapsed", "forget_acc": 0.7, "mcu_holds": False, "best_t": 0.5},
         {"model": "ft", "status": "ok", "forget_acc": 0.9, "mcu_holds": True, "best_t": 1.0}],
        [{"model": "ga", "status": "ok", "forget_acc": 0.6, "mcu_holds": True, "best_t": 0.25}],
    ]
    ga, ft = aggregate_rows(seeds, ("model",))
    assert list(ga) == ["model", "status", "forget_acc", "forget_acc_ci", "mcu_holds", "best_t", "best_t_ci", "n_seeds"]
    assert ga["forget_acc"] == pytest.approx(0.6) and ga["forget_acc_ci"] == pytest.approx(4.303 * 0.1 / math.sqrt(3), abs=1e-3)
    assert ga["mcu_holds"] == pytest.approx(2 / 3) and ga["status"] == "ok ×2, collapsed ×1" and ga["n_seeds"] == 3
    assert ga["best_t"] == pytest.approx(0.375)  # the seed without a best t is left out of the mean
    assert ft["n_seeds"] == 1 and math.isnan(ft["forget_acc_ci"])
    assert "0.6000 ± 0.2484" in markdown_table([ga]) and "forget_acc_ci" not in markdown_table([ga])


def test_every_merged_row_has_the_same_columns_when_a_value_is_missing_in_some_seeds(tmp_path):
    # an interior t that beats both endpoints exists for one curve only (forget_t None elsewhere): the table must
    # still have one set of columns, and its CSV must be written (a study over 3 seeds once stopped here)
    seeds = [[{"curve": "a", "forget_t": None}, {"curve": "b", "forget_t": 0.5}], [{"curve": "a", "forget_t": None}, {"curve": "b", "forget_t": 0.7}]]
    rows = aggregate_rows(seeds, ("curve",))
    assert [list(row) for row in rows] == [["curve", "forget_t", "forget_t_ci", "n_seeds"]] * 2
    assert math.isnan(rows[0]["forget_t"]) and rows[1]["forget_t"] == pytest.approx(0.6)
    write_csv(rows, tmp_path / "t.csv")
    assert (tmp_path / "t.csv").read_text().splitlines()[0] == "curve,forget_t,forget_t_ci,n_seeds"


def test_matrices_across_seeds_are_cellwise_means_and_intervals():
    a = {"linear": {"retain_barrier": np.array([[0.0, 0.1], [0.1, 0.0]])}}
    b = {"linear": {"retain_barrier": np.array([[0.0, 0.3], [0.3, 0.0]])}}
    mean, half = aggregate_matrices([a, b])["linear"]["retain_barrier"]
    np.testing.assert_allclose(mean, [[0.0, 0.2], [0.2, 0.0]])
    assert half[0, 1] == pytest.approx(12.706 * np.std([0.1, 0.3], ddof=1) / math.sqrt(2), abs=1e-3)


def test_a_study_with_seeds_has_one_replica_per_seed_with_the_methods_own_seeds(tmp_path):
    study = load_study(_write(tmp_path, STUDY))
    replicas = seed_replicas(study)
    assert [r.seed for r in replicas] == [3, 4]
    assert [r.output_dir for r in replicas] == [Path("out/seeds/seed-3"), Path("out/seeds/seed-4")]
    assert [r.methods["ga"].seed for r in replicas] == [3, 4] and [r.methods["ft"].seed for r in replicas] == [30, 40]
    single = load_study(_write(tmp_path / "one", {**{k: v for k, v in STUDY.items() if k != "seeds"}, "seed": 5,
                                                   "methods": {"ga": STUDY["methods"]["ga"]}, "curves": {"families": {"linear": {}}}}))
    assert seed_replicas(single) == [single] and single.seeds == [5] and single.output_dir == Path("out")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"seed": 1}, "sets both seed and seeds"),
        ({"seeds": []}, r"seeds=\[\] must be a non-empty list"),
        ({"seeds": [1, 1]}, "repeats a seed"),
        ({"methods": {"ga": {"method": "GradientAscent", "seed": 7}}}, r"methods.ga.seed=7 is one seed but the study runs 2 seeds"),
        ({"methods": {"ga": {"method": "GradientAscent", "seeds": [7]}}}, r"methods.ga.seeds=\[7\] has 1 seeds but the study has 2"),
    ],
)
def test_bad_seed_settings_are_refused_in_one_sentence(tmp_path, change, message):
    with pytest.raises(UnlearnMCError, match=message):
        load_study(_write(tmp_path, STUDY | change))


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_a_two_seed_study_reports_intervals_in_every_table_and_reuses_its_stages(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, STUDY)
    report = run_study(path, say=lambda line: None).report
    root = tmp_path / "out"
    for seed in (3, 4):
        assert (root / "seeds" / f"seed-{seed}" / "report.md").is_file()
        assert (root / "seeds" / f"seed-{seed}" / "stages" / "curve-linear-ga--ft" / "result.json").is_file()
    assert not (root / "stages").exists()
    methods = _csv(root / "methods.csv")
    assert {row["model"] for row in methods} == {"original", "retrain", "ga", "ft"}
    for row in methods:
        assert row["n_seeds"] == "2" and float(row["forget_acc_ci"]) >= 0.0
        per_seed = [float(next(r for r in _csv(root / "seeds" / f"seed-{s}" / "methods.csv") if r["model"] == row["model"])["forget_acc"])
                    for s in (3, 4)]
        assert float(row["forget_acc"]) == pytest.approx(np.mean(per_seed), abs=1e-12)
    original = {s: next(r for r in _csv(root / "seeds" / f"seed-{s}" / "methods.csv") if r["model"] == "original") for s in (3, 4)}
    assert original[3]["retain_acc"] != original[4]["retain_acc"]  # the seeds trained different models
    curves = _csv(root / "curves.csv")
    assert curves[0]["n_seeds"] == "2" and float(curves[0]["mcu_holds"]) in (0.0, 0.5, 1.0)
    assert "retain_barrier_ci" in curves[0]
    text = report.read_text()
    assert report.resolve() == root / "report.md" and "2 seeds" in text and " ± " in text and "(barriers_linear.png)" in text
    lines = []
    run_study(path, say=lines.append)
    assert sum("finished earlier, reused" in line for line in lines) == 10


def test_a_study_file_extends_another_and_null_removes_a_key(tmp_path):
    base = {k: v for k, v in STUDY.items() if k != "seeds"} | {"seed": 9}
    _write(tmp_path / "parent", base)
    child = tmp_path / "child.yaml"
    child.write_text(yaml.safe_dump({"extends": "parent/study.yaml", "seed": None, "seeds": [1, 2],
                                     "methods": {"ga": {"epochs": 2}}, "output_dir": "elsewhere"}))
    study = load_study(child)
    assert study.seeds == [1, 2] and study.output_dir == Path("elsewhere")
    assert study.methods["ga"].epochs == 2 and study.methods["ga"].optimizer["init_args"] == {"lr": 0.001}  # merged, not replaced
    (tmp_path / "parent" / "study.yaml").write_text(yaml.safe_dump(base | {"extends": "../child.yaml"}))
    with pytest.raises(UnlearnMCError, match="extend each other in a cycle"):
        load_study(child)


def test_the_shipped_seeds_study_is_the_demo_study_over_three_seeds():
    from unlearn_mc.study.plan import plan_study

    root = Path(__file__).resolve().parents[1] / "configs" / "digits"
    demo, seeds = load_study(root / "study.yaml"), load_study(root / "study_seeds.yaml")
    assert seeds.seeds == [42, 1, 2] and seeds.methods["grad_ascent_seed87"].seeds == [87, 88, 89]
    replicas = seed_replicas(seeds)
    assert [stage.id for stage in plan_study(replicas[0])] == [stage.id for stage in plan_study(demo)]
    assert replicas[0].methods["grad_ascent"] == demo.methods["grad_ascent"] and replicas[0].data == demo.data
