"""``make demo``: train the original and the retrain models on the embedded digits data and compare them.

Runs ``unlearn-mc fit`` on ``configs/digits/original.yaml`` and ``configs/digits/retrain.yaml``
(checkpoints in ``checkpoints/digits/``, TensorBoard runs in ``lightning_logs/``), then prints the
unlearning metrics of both models on the same split.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import yaml

from unlearn_mc.checkpoints import load_network_weights
from unlearn_mc.cli import main as cli_main
from unlearn_mc.config_objects import instantiate
from unlearn_mc.data import UnlearningDataModule
from unlearn_mc.evaluation import evaluate_model

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "digits"
COLUMNS = ("forget_acc", "retain_acc", "test_acc", "mia_efficacy", "mia_loss_acc")


def format_table(rows: dict[str, dict[str, float]], columns=COLUMNS) -> str:
    """A fixed-width text table: one row per model, one column per metric."""
    header = f"{'model':<10}" + "".join(f"{name:>14}" for name in columns)
    lines = [header, "-" * len(header)]
    for model, metrics in rows.items():
        lines.append(f"{model:<10}" + "".join(f"{metrics[name]:>14.4f}" for name in columns))
    return "\n".join(lines)


def run_demo() -> int:
    started = time.perf_counter()
    rows = {}
    for stage in ("original", "retrain"):
        config = CONFIGS / f"{stage}.yaml"
        print(f"== unlearn-mc fit --config {config.relative_to(CONFIGS.parents[1])}", flush=True)
        status = cli_main(["fit", "--config", str(config), "--trainer.enable_progress_bar=false"])
        if status:
            return status
        spec = yaml.safe_load(config.read_text())
        net = load_network_weights(instantiate(spec["model"]["init_args"]["net"]), Path("checkpoints/digits") / f"{stage}.ckpt").eval()
        datamodule: UnlearningDataModule = instantiate(spec["data"])
        rows[stage] = evaluate_model(net, datamodule.eval_dataloaders())
    print()
    print(format_table(rows))
    print(f"\nwall time {time.perf_counter() - started:.0f} s; checkpoints in checkpoints/digits/, "
          "TensorBoard: .venv/bin/tensorboard --logdir lightning_logs")
    return 0


if __name__ == "__main__":
    sys.exit(run_demo())
