# python scripts/long_runs.py            (all runs, one after another: ≈ 30 min on one core)
"""Long training runs with the gradient audit on: correct code must never raise an alarm.

Issue 9, point 3: ``neuronlab-train data=moons model=mlp trainer.max_epochs=1000`` ended
``failed`` at step 10250 — near convergence a per-tensor relative error against a fixed
tolerance measures rounding, not a bug. The audit now compares each difference with its
rounding bound (``neuronlab.gradcheck.rounding``). Each run below trains 5k–20k steps (data
sets, activations, losses, float32 / float64 / bf16-mixed), audited every 10 steps (the first,
the user's command as typed, at its default of 50), and reports the largest difference seen,
as a multiple of its bound: 1 would be an alarm.

    python scripts/long_runs.py --quick             # every run at 1/10 of its steps
    python scripts/long_runs.py --only moons,iris   # runs whose name contains one of these
    python scripts/long_runs.py --json runs.json    # also write the rows as JSON
    python scripts/long_runs.py --only hard --markdown docs/bench/long_runs.md
    python scripts/long_runs.py --only past --markdown docs/bench/long_runs_past.md

Issue 16: the ``hard:`` runs seek the cases the first runs missed — tiny batches (1, 2, 4),
confident logits, every loss × activation, float32 / float64 / bf16-mixed, xor, moons, iris,
digits (BCE on iris and digits: one output per class) — 2000 steps each, audited every 5.
Issue 18: the ``past:`` runs do the same for the layers past the MLP (convolutions, norms,
pooling, dropout, an embedding).

Runs in-process (``compose`` + ``train``, as the tests do), one at a time, ``torch_threads=1``,
without progress bar, TensorBoard, checkpoints or gradient-flow statistics (the first run
keeps its defaults apart from the progress bar). Exit status 1 if any run did not end ``ok``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

QUIET = ["callbacks.progress_bar=null", "+trainer.enable_progress_bar=false", "torch_threads=1"]
LEAN = ["~logger", "callbacks.lr_monitor=null", "callbacks.gradient_flow=null",
        "callbacks.model_checkpoint=null", "+trainer.check_val_every_n_epoch=50"]
FULL_BATCH = ["data.batch_size=null", "optimizer.momentum=0.9"]  # descends to a minimum


@dataclass
class Run:
    name: str
    overrides: list[str]
    steps: int | None = None  # None: the overrides say how long (max_epochs)
    lean: bool = True
    every: int = 10  # audit every this many steps (lean runs)

    def config(self, quick: bool) -> list[str]:
        extra = [] if self.steps is None else [
            f"trainer.max_steps={self.steps // 10 if quick else self.steps}",
            "trainer.max_epochs=100000"]
        if quick and self.steps is None:
            extra = ["trainer.max_epochs=100"]
        lean = [*LEAN, f"callbacks.gradient_audit.every_n_steps={self.every}"] if self.lean else []
        return [*QUIET, *lean, *self.overrides, *extra]


def _mlp(data: str, activation: str, loss: str, precision: str, steps: int, *extra: str) -> Run:
    full_batch = " full-batch momentum" if FULL_BATCH[0] in extra else ""
    name = f"{data} mlp {activation} {loss} {precision}{full_batch}"
    return Run(name, [f"data={data}", "model=mlp", f"model.activation={activation}",
                      f"model.loss={loss}", f"trainer.precision={precision}", *extra], steps)


# Issue 16: runs that seek the hard cases — tiny batches (1, 2, 4: a batch of one class, all
# BCE targets 0), confident logits (separable data trained long), every loss × activation,
# float32 / float64 / bf16-mixed, multi-class BCE; audited every 5 steps.
HARD_DATA = {"xor": [], "moons": [], "iris": ["optimizer.lr=0.1"],
             "digits": ["optimizer.lr=0.05"]}
HARD_ACTIVATIONS = ("relu", "tanh", "sigmoid", "gelu", "softplus", "leaky_relu")
HARD_LOSSES = ("cross_entropy", "bce", "mse")
HARD_PRECISIONS = ("32-true", "64-true", "bf16-mixed")


def _hard(data: str, activation: str, loss: str, precision: str, batch: int,
          steps: int = 2000) -> Run:
    # lr 0.5 diverged with mse (moons, step 8) and with batches of one (moons gelu, step 703)
    lr = ["optimizer.lr=0.1"] if (loss == "mse" or batch == 1) and not HARD_DATA[data] else []
    run = _mlp(data, activation, loss, precision, steps, f"data.batch_size={batch}",
               *HARD_DATA[data], *lr)
    run.name, run.every = f"hard: {data} {activation} {loss} {precision} batch {batch}", 5
    return run


HARD_RUNS = [
    _hard("moons", "gelu", "bce", "32-true", 4),  # the command (failed at step 650)
    _hard("xor", "gelu", "bce", "64-true", 2),  # the float64 case (worst 2.0×)
    _hard("iris", "relu", "bce", "32-true", 4),  # point 2: BCE on three classes
    *(_hard(list(HARD_DATA)[i % 4], activation, loss, HARD_PRECISIONS[(i // 3) % 3],
            (1, 2, 4)[i % 3])
      for i, (activation, loss) in enumerate((a, lo) for a in HARD_ACTIVATIONS
                                               for lo in HARD_LOSSES)),
]

# Issue 18: the layers past the MLP — convolutions (1-D and 2-D), batch and layer norm (a
# batch of 2 makes every x̂ ±1), max and average pooling, dropout, an embedding table — in
# float32, float64 and bf16-mixed, small batches, audited every 5 steps.
SIGNALS = ["data=mnist1d", "data.n_samples=1000"]


def _past(name: str, overrides: list[str], precision: str, batch: int,
          steps: int = 2000) -> Run:
    return Run(f"past: {name} {precision} batch {batch}",
               [*overrides, f"trainer.precision={precision}", f"data.batch_size={batch}"],
               steps, every=5)


PAST_RUNS = [
    _past("cnn max-pool", [*SIGNALS, "model=cnn", "model.pool=max"], "32-true", 4),
    _past("cnn avg-pool layer-norm", [*SIGNALS, "model=cnn", "model.pool=avg",
                                      "model.norm=layer"], "64-true", 2),
    _past("cnn batch-norm dropout", [*SIGNALS, "model=cnn", "model.norm=batch",
                                     "model.dropout=0.2"], "bf16-mixed", 8),
    _past("cnn adam (confident logits)", [*SIGNALS, "model=cnn", "optimizer=adam",
                                          "optimizer.lr=0.01"], "32-true", 100),
    _past("cnn 2-d digits batch-norm max-pool", ["data=digits", "model=cnn",
                                                 "model.hidden=[8,16]", "model.pool=max",
                                                 "model.norm=batch"], "32-true", 2),
    _past("resmlp batch-norm", [*SIGNALS, "model=resmlp", "model.hidden=[32,32,32]",
                                "model.norm=batch"], "32-true", 2),
    _past("resmlp tanh layer-norm dropout", [*SIGNALS, "model=resmlp", "model.activation=tanh",
                                             "model.norm=layer", "model.dropout=0.3"],
          "64-true", 4),
    _past("mlp gelu bce layer-norm", ["data=iris", "model=mlp", "model.activation=gelu",
                                      "model.loss=bce", "model.norm=layer"], "bf16-mixed", 4),
    _past("embedmlp", ["experiment=digits_embed"], "32-true", 4),
    _past("embedmlp batch-norm dropout", ["experiment=digits_embed", "model.norm=batch",
                                          "model.dropout=0.3"], "bf16-mixed", 3),
]

RUNS = [
    Run("moons mlp (neuronlab-train data=moons model=mlp trainer.max_epochs=1000)",
        ["data=moons", "model=mlp", "trainer.max_epochs=1000"], lean=False),
    _mlp("moons", "tanh", "cross_entropy", "64-true", 8000),
    _mlp("moons", "gelu", "bce", "32-true", 8000),
    _mlp("moons", "relu", "cross_entropy", "bf16-mixed", 6000),
    _mlp("moons", "relu", "cross_entropy", "32-true", 6000, *FULL_BATCH),
    _mlp("circles", "relu", "cross_entropy", "32-true", 10000),
    _mlp("circles", "sigmoid", "mse", "32-true", 8000),
    _mlp("circles", "leaky_relu", "bce", "64-true", 6000),
    _mlp("circles", "tanh", "cross_entropy", "32-true", 5000, *FULL_BATCH),
    _mlp("spirals", "tanh", "cross_entropy", "32-true", 12000),
    _mlp("spirals", "gelu", "mse", "32-true", 10000),
    _mlp("spirals", "softplus", "cross_entropy", "64-true", 6000),
    _mlp("xor", "relu", "cross_entropy", "32-true", 8000),
    _mlp("xor", "tanh", "bce", "32-true", 8000),
    _mlp("xor", "leaky_relu", "mse", "64-true", 6000),
    _mlp("digits", "relu", "cross_entropy", "32-true", 8000, "optimizer.lr=0.1"),
    _mlp("digits", "tanh", "mse", "32-true", 6000, "optimizer.lr=0.1"),
    _mlp("digits", "gelu", "cross_entropy", "bf16-mixed", 5000, "optimizer.lr=0.1"),
    _mlp("digits", "sigmoid", "cross_entropy", "64-true", 5000, "optimizer.lr=0.1"),
    _mlp("breast_cancer", "relu", "bce", "32-true", 8000, "optimizer.lr=0.1"),
    _mlp("breast_cancer", "softplus", "cross_entropy", "32-true", 8000, "optimizer.lr=0.1"),
    _mlp("breast_cancer", "tanh", "cross_entropy", "64-true", 6000, "optimizer.lr=0.1"),
    _mlp("iris", "relu", "cross_entropy", "32-true", 10000, "optimizer.lr=0.1"),
    _mlp("iris", "sigmoid", "mse", "32-true", 8000),
    _mlp("iris", "gelu", "cross_entropy", "bf16-mixed", 5000, "optimizer.lr=0.1"),
    Run("cats neuron sigmoid bce 32-true", ["data=cats", "model=neuron"], 10000),
    Run("cats neuron sigmoid mse 64-true", ["data=cats", "model=neuron", "model.loss=mse",
                                            "trainer.precision=64-true"], 6000),
    *HARD_RUNS,
    *PAST_RUNS,
]


@dataclass
class Row:
    run: str
    status: str
    steps: int
    audits: int
    worst: float  # the largest audit difference over the run, × its rounding bound
    train_loss: float
    test_acc: float
    seconds: float
    message: str | None = None
    overrides: list[str] = field(default_factory=list)


def run_one(run: Run, root: Path, quick: bool) -> Row:
    from neuronlab.config import compose
    from neuronlab.training import GradientAudit
    from neuronlab.training.run import train

    overrides = run.config(quick)
    start = time.perf_counter()
    record = train(compose(overrides, output_dir=root / run.name.split(" (")[0].replace(" ", "_")))
    audit = next((c for c in record["trainer"].callbacks if isinstance(c, GradientAudit)), None)
    metrics = record.get("metrics") or {}
    return Row(run.name, record["status"], record["steps"], audit.audits if audit else 0,
               audit.worst_seen if audit else float("nan"),
               float(metrics.get("train/loss", float("nan"))),
               float(metrics.get("test/acc", float("nan"))),
               round(time.perf_counter() - start, 1), record["message"], overrides)


HEADER = ("run (data model activation loss precision)", "status", "steps", "audits",
          "max error / bound", "train loss", "test acc", "s")


def _cells(row: Row) -> tuple[str, ...]:
    return (row.run, row.status, str(row.steps), str(row.audits), f"{row.worst:.2g}",
            f"{row.train_loss:.2e}", f"{row.test_acc:.3f}", f"{row.seconds:.0f}")


def table(rows: list[Row]) -> str:
    """A Markdown table of the rows."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="each run at 1/10 of its steps")
    parser.add_argument("--only", default="", help="comma-separated parts of run names")
    parser.add_argument("--root", type=Path, default=None, help="run folders (default: temp)")
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    parser.add_argument("--markdown", type=Path, default=None,
                        help="write the table here (docs/bench/long_runs.md)")
    args = parser.parse_args(argv)
    wanted = [w for w in args.only.split(",") if w]
    runs = [r for r in RUNS if not wanted or any(w in r.name for w in wanted)]
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    root = args.root or Path(tempfile.mkdtemp(prefix="neuronlab-long-runs-"))
    rows: list[Row] = []
    for i, run in enumerate(runs, 1):
        row = run_one(run, root, args.quick)
        rows.append(row)
        print(f"[{i}/{len(runs)}] " + "  ".join(_cells(row))
              + (f"  {row.message}" if row.message else ""), flush=True)
        if args.json:
            args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
        if row.status == "interrupted":  # Ctrl-C or SIGTERM: stop here, not just this run
            break
    bad = [r for r in rows if r.status != "ok"]
    summary = (f"{len(rows)} runs, {sum(r.steps for r in rows)} steps, "
               f"{sum(r.audits for r in rows)} audits; largest error / bound "
               f"{max((r.worst for r in rows), default=0):.2g}; {len(bad)} not ok")
    print(f"\n{table(rows)}\n\n{summary}")
    if args.markdown:
        command = "python scripts/long_runs.py " + " ".join(argv or sys.argv[1:])
        args.markdown.write_text(f"# Long audited runs\n\n`{command.strip()}`, torch "
                                 f"{_torch_version()}, one thread.\n\n{table(rows)}\n\n"
                                 f"{summary}\n")
    return 1 if bad else 0


def _torch_version() -> str:
    import torch

    return torch.__version__


if __name__ == "__main__":
    sys.exit(main())
