"""TensorBoard that reads like the figures, read back from the event files: curve scalars at step round(1000·t), a
custom-scalars layout that puts one curve's accuracies on one chart, and the study's run with one section per curve."""

from __future__ import annotations

import re

from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2

from unlearn_mc.curves.evaluate_curve import CurveResult
from unlearn_mc.curves.outputs import log_curve
from unlearn_mc.study.tensorboard import log_study_curves

METRICS = ("forget_acc", "retain_acc", "test_acc", "forget_loss", "retain_loss", "test_loss", "mia_efficacy")


def _layout(run) -> layout_pb2.Layout:
    events = EventAccumulator(str(run))
    events.Reload()
    layout = layout_pb2.Layout()
    layout.ParseFromString(events.Tensors("custom_scalars__config__")[-1].tensor_proto.string_val[0])
    return events, layout


def _result(ts: list[float]) -> CurveResult:
    rows = [{name: float(t) for name in METRICS} for t in ts]
    return CurveResult(ts, rows, {"retain_barrier": 0.0, "forget_barrier": 0.0, "best": {"t": 0.5}})


def test_curve_scalars_are_logged_at_step_round_1000_t_with_one_chart_of_the_accuracies(tmp_path):
    ts = [0.0, 0.1, 1 / 3, 0.5, 1.0]
    logger = TensorBoardLogger(tmp_path, name="run", version=0)
    log_curve(_result(ts), [logger], figure=False)
    events, layout = _layout(tmp_path / "run" / "version_0")
    assert [event.step for event in events.Scalars("curve/t")] == [0, 100, 333, 500, 1000]
    assert [event.step for event in events.Scalars("curve/forget_acc")] == [0, 100, 333, 500, 1000]
    assert [category.title for category in layout.category] == ["curve along t"]
    accuracy = layout.category[0].chart[0]
    assert [tag for tag in METRICS if re.fullmatch(accuracy.multiline.tag[0], f"curve/{tag}")] == ["forget_acc", "retain_acc", "test_acc"]


def test_the_study_writes_one_custom_scalars_section_per_curve(tmp_path):
    results = {stage: {"kind": "curve", "stage": stage, "curve": {"ts": [0.0, 0.5, 1.0], "rows": _result([0.0, 0.5, 1.0]).rows}}
               for stage in ("curve-linear-a--b", "curve-bezier-a--b")}
    results["original"] = {"kind": "base", "stage": "original"}
    run = log_study_curves(tmp_path, results)
    log_study_curves(tmp_path, results)  # rebuilt, not appended to
    events, layout = _layout(run)
    assert [category.title for category in layout.category] == ["curve-linear-a--b", "curve-bezier-a--b"]
    tags = events.Tags()["scalars"]
    for category in layout.category:
        matched = [tag for tag in tags if re.fullmatch(category.chart[0].multiline.tag[0], tag)]
        assert matched == [f"{category.title}/{name}" for name in ("forget_acc", "retain_acc", "test_acc")]
        assert [event.step for event in events.Scalars(f"{category.title}/forget_acc")] == [0, 500, 1000]
