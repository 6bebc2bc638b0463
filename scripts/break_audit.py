# python scripts/break_audit.py NAME                (one of CASES below, or "all")
"""Hunting counterexamples to "the gradient audit never alarms on correct code" past the MLP.

Each case is a short in-process audited run (``compose`` + ``train``, as tests/audit_runs.py
does) with the audit every few steps and ``stop_on_mismatch`` off, so a run goes on past an
alarm. Per case it prints the worst ratio (difference / bound) seen, at which step and in which
tensor, and where in that tensor: the element with the largest difference, its own term
``T`` there next to the tensor's largest ``T`` (which sets the bound), so a bound too small at
one element (a term that misses something) shows as ``diff / (c·u·T_elem)`` ≫ ``ratio``.

    python scripts/break_audit.py cnn-maxpool         # the long run's worst (0.17), 300 steps
    python scripts/break_audit.py all --steps 200
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

QUIET = ["callbacks.progress_bar=null", "+trainer.enable_progress_bar=false", "torch_threads=1",
         "~logger", "callbacks.lr_monitor=null", "callbacks.gradient_flow=null",
         "callbacks.model_checkpoint=null", "+trainer.check_val_every_n_epoch=10000",
         "+callbacks.gradient_audit.stop_on_mismatch=false"]
SIG = ["data=mnist1d", "data.n_samples=1000"]


CNN1 = [*SIG, "model=cnn"]
CNN2 = ["data=digits", "model=cnn", "model.hidden=[8,16]"]
RAW = ["data.standardize=false"]
ACTS = ("relu", "tanh", "sigmoid", "gelu", "softplus", "leaky_relu")

CASES: dict[str, list[str]] = {
    "cnn-maxpool": [*CNN1, "model.pool=max", "data.batch_size=4"],
    # every activation x loss, 1-d CNN max-pool, batch 2
    **{f"cnn1 {a} {lo} max b2": [*CNN1, "model.pool=max", f"model.activation={a}",
                                  f"model.loss={lo}", "data.batch_size=2"]
       for a in ACTS for lo in ("cross_entropy", "bce")},
    # 2-d on raw integer pixels: exact ties in max pooling
    **{f"cnn2 raw {a} max b{b}": [*CNN2, *RAW, "model.pool=max", f"model.activation={a}",
                                   f"data.batch_size={b}", "optimizer.lr=0.01"]
       for a in ("relu", "leaky_relu", "gelu") for b in (1, 3)},
    "cnn2 raw relu max bn b2": [*CNN2, *RAW, "model.pool=max", "model.norm=batch",
                                "data.batch_size=2"],
    "cnn2 raw avg ln b1": [*CNN2, *RAW, "model.pool=avg", "model.norm=layer",
                           "data.batch_size=1"],
    # extreme init scales, precisions
    **{f"cnn1 {a} init{s} {pr}": [*CNN1, "model.pool=max", f"model.activation={a}",
                                   f"init.scale={s}", f"trainer.precision={pr}",
                                   "data.batch_size=3", "optimizer.lr=0.01"]
       for a in ("relu", "gelu", "tanh") for s in (0.01, 10) for pr in ("32-true", "64-true")},
    **{f"cnn1 gelu {pr} bn": [*CNN1, "model.pool=max", "model.activation=gelu",
                               "model.norm=batch", f"trainer.precision={pr}",
                               "data.batch_size=2"]
       for pr in ("bf16-mixed",)},  # 16-mixed needs a GPU (ConfigError on the CPU)
    # confident logits
    "cnn1 adam long b1": [*CNN1, "optimizer=adam", "optimizer.lr=0.01", "data.batch_size=1",
                          "model.pool=max"],
    "cnn1 adam init10 bce": [*CNN1, "optimizer=adam", "optimizer.lr=0.01", "init.scale=10",
                             "model.loss=bce", "data.batch_size=4"],
    # norms on tiny batches, dropout near 0.9
    **{f"resmlp {a} {n} b2 drop0.9": [*SIG, "model=resmlp", f"model.activation={a}",
                                      f"model.norm={n}", "model.dropout=0.9",
                                      "data.batch_size=2", "optimizer.lr=0.01"]
       for a in ("relu", "gelu", "tanh") for n in ("batch", "layer")},
    **{f"mlp {a} {n} drop0.9 b2 {lo}": ["data=digits", *RAW, "model=mlp",
                                        f"model.activation={a}", f"model.norm={n}",
                                        "model.dropout=0.9", "data.batch_size=2",
                                        f"model.loss={lo}", "optimizer.lr=0.01"]
       for a in ("sigmoid", "softplus") for n in ("batch", "layer")
       for lo in ("cross_entropy", "bce")},
    "cnn1 ln init0.01": [*CNN1, "model.norm=layer", "init.scale=0.01", "data.batch_size=2"],
    "cnn2 bn drop0.9 b2": [*CNN2, "model.norm=batch", "model.dropout=0.9", "model.pool=max",
                           "data.batch_size=2"],
    # embedding
    **{f"embed {n} b{b} {pr}": ["experiment=digits_embed", f"model.norm={n}",
                                f"data.batch_size={b}", f"trainer.precision={pr}"]
       for n in ("null", "batch", "layer") for b in (1, 2)
       for pr in ("32-true", "bf16-mixed")},
    "embed gelu init10 drop0.9": ["experiment=digits_embed", "model.activation=gelu",
                                  "init.scale=10", "model.dropout=0.9", "data.batch_size=2"],
}

# The counterexamples (correct code, the audit alarms): run with --every 1 and the steps given.
# dropout: the terms' forward runs without the step's mask (values of an undropped network).
# tanh: tanh' = 1 − a² differs by ~u between the two backwards where a unit saturates.
IRIS = ["data=iris", "model=mlp", "optimizer.lr=0.1"]
TANH = ["model.activation=tanh", "trainer.precision=64-true", "data.batch_size=1"]
COUNTEREXAMPLES: dict[str, tuple[list[str], int]] = {
    "dropout mlp [8,1]": ([*IRIS, "model.dropout=0.5", "model.hidden=[8,1]",
                           "data.batch_size=1", "seed=1"], 300),
    "dropout mlp [4,1] relu seed 4": ([*IRIS, "model.dropout=0.5", "model.hidden=[4,1]",
                                       "data.batch_size=2", "seed=4"], 300),
    "dropout mlp [4,2] batch 4": ([*IRIS, "model.dropout=0.2", "model.hidden=[4,2]",
                                   "data.batch_size=4", "seed=1"], 300),
    "dropout mlp [8,1] bf16-mixed": ([*IRIS, "model.dropout=0.5", "model.hidden=[8,1]",
                                      "data.batch_size=1", "seed=1",
                                      "trainer.precision=bf16-mixed"], 300),
    "dropout embedmlp [4,2]": (["experiment=digits_embed", "model.dropout=0.5",
                                "model.hidden=[4,2]", "data.batch_size=2", "seed=1"], 500),
    "tanh embedmlp [2] float64": (["experiment=digits_embed", *TANH, "model.hidden=[2]",
                                   "optimizer.lr=0.03"], 3000),
    "tanh cnn-2d [4,1] float64": (["data=digits", "model=cnn", *TANH, "model.hidden=[4,1]",
                                   "optimizer=adam", "optimizer.lr=0.03"], 3000),
    "tanh mlp [4,1] init10 float64": ([*IRIS, *TANH, "model.hidden=[4,1]", "init.scale=10",
                                       "optimizer.lr=0.01", "data.batch_size=2", "seed=1"],
                                      300),
    "gelu embedmlp [1] float32": (["experiment=digits_embed", "model.activation=gelu",
                                   "model.hidden=[1]", "data.batch_size=1", "optimizer.lr=0.03",
                                   "seed=2"], 3000),
}


class Watch:
    """Wraps the audit's comparison: keeps the inputs of the worst audit seen."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.info: dict = {}
        self._last = None
        self.alarms = 0  # audits with a ratio above 1
        self.first_alarm: int | None = None
        self.cover = 0.0  # the largest |gradient| / T (elementwise): terms must cover it (≤ 1)
        self.cover_at: dict = {}

    def install(self, mp) -> None:
        import neuronlab.training.audit as audit_mod

        original_cmp = audit_mod.compare_to_bound
        original_record = audit_mod.GradientAudit._record
        watch = self

        def cmp(grads, refs, terms, u):
            out = original_cmp(grads, refs, terms, u)
            watch._last = watch._last or []
            watch._last.append(([g.detach().clone() for g in grads],
                                [r.detach().clone() for r in refs],
                                [t.detach().clone() for t in terms], u, out))
            return out

        def record(self_, trainer, named, values, dtypes):
            checks, watch._last = watch._last or [], None
            original_record(self_, trainer, named, values, dtypes)
            if any(not float(out[0].max()) <= 1 for *_, out in checks):
                watch.alarms += 1
                if watch.first_alarm is None:
                    watch.first_alarm = trainer.global_step
            for c, (g, r, t, u, (ratios, diffs, bounds)) in enumerate(checks):
                for k, (name, _) in enumerate(named):
                    rr, tt = r[k].double().abs().flatten(), t[k].double().abs().flatten()
                    over = torch.where(rr > 0, rr / tt, torch.zeros_like(rr))
                    if over.numel() and float(over.max()) > watch.cover:
                        j = int(over.argmax())
                        watch.cover = float(over.max())
                        watch.cover_at = dict(cover_step=trainer.global_step, cover_tensor=name,
                                              cover_g=rr[j].item(), cover_T=tt[j].item())
                    ratio = float(ratios[k])
                    if not ratio > watch.worst and ratio == ratio:
                        continue
                    watch.worst = ratio if ratio == ratio else float("inf")
                    d = (g[k].double() - r[k].double()).abs()
                    i = int(d.argmax())
                    te = t[k].abs().flatten()[i].item()
                    tmax = t[k].abs().max().item()
                    watch.info = dict(
                        step=trainer.global_step, tensor=name, check=c, dtype=str(dtypes[c]),
                        ratio=ratio, diff=float(diffs[k]), bound=float(bounds[k]),
                        index=tuple(int(x) for x in _unravel(i, d.shape)),
                        grad=g[k].flatten()[i].item(), ref=r[k].flatten()[i].item(),
                        T_elem=te, T_max=tmax,
                        elem_ratio=float(diffs[k]) / (16 * u * te) if te else float("inf"),
                        gmax=g[k].abs().max().item())

        mp.setattr(audit_mod, "compare_to_bound", cmp)
        mp.setattr(audit_mod.GradientAudit, "_record", record)


def _unravel(i: int, shape) -> list[int]:
    out = []
    for s in reversed(shape):
        out.append(i % s)
        i //= s
    return list(reversed(out))


def run_case(name: str, overrides: list[str], steps: int, every: int, root: Path) -> dict:
    import pytest

    from neuronlab.config import compose
    from neuronlab.training.run import train

    watch = Watch()
    cfg = compose([*QUIET, f"callbacks.gradient_audit.every_n_steps={every}", *overrides,
                   f"trainer.max_steps={steps}", "trainer.max_epochs=100000"],
                  output_dir=root / name)
    start = time.perf_counter()
    with pytest.MonkeyPatch.context() as mp:
        watch.install(mp)
        record = train(cfg)
    return dict(case=name, status=record["status"], steps=record["steps"],
                seconds=round(time.perf_counter() - start, 1), worst=watch.worst,
                message=record.get("message"), alarms=watch.alarms,
                first_alarm=watch.first_alarm, **watch.info, cover=watch.cover,
                **watch.cover_at)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("cases", nargs="+", help="names in CASES, 'all', 'counterexamples' "
                        "(each at its own steps), or 'x:' + overrides separated by spaces")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--start", type=int, default=0, help="skip the first this many cases")
    parser.add_argument("--torch-derivative", default="",
                        help="tanh,gelu: the manual backward of these uses torch's own kernel "
                        "(tanh_backward, gelu_backward) for its local derivative — the cause "
                        "test of the tanh/gelu counterexamples")
    args = parser.parse_args(argv)
    import neuronlab.functional.activations as act

    for name in [n for n in args.torch_derivative.split(",") if n]:
        kernel = {"tanh": torch.ops.aten.tanh_backward, "gelu": torch.ops.aten.gelu_backward}[name]
        setattr(act, f"{name}_derivative",
                lambda x, kernel=kernel: kernel(torch.ones_like(x), x))
    warnings.filterwarnings("ignore")
    for n in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(n).setLevel(logging.ERROR)
    root = Path(tempfile.mkdtemp(prefix="neuronlab-break-"))
    if args.cases == ["counterexamples"]:
        runs = [(name, *COUNTEREXAMPLES[name]) for name in COUNTEREXAMPLES]
    else:
        names = list(CASES) if args.cases == ["all"] else args.cases
        runs = [(name, name[2:].split() if name.startswith("x:") else CASES[name], args.steps)
                for name in names[args.start:]]
    for i, (name, overrides, steps) in enumerate(runs):
        try:
            row = run_case(f"{i:03d}_" + name.replace(" ", "_").replace("/", "_")[:60], overrides,
                           steps, args.every, root)
        except Exception as e:  # a refused config: say so, go on
            row = dict(case=name, status="error", message=f"{type(e).__name__}: {e}")
        print({k: (f"{v:.3g}" if isinstance(v, float) else v) for k, v in row.items()},
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
