"""Benchmark: how fast neuronlab trains, against the matmul ceiling, autograd, Lightning's
loop and scikit-learn.

    python scripts/bench.py --out docs/bench/cpu.json            # full run (a few minutes)
    python scripts/bench.py --quick --out /tmp/b.json            # tiny sizes (< 60 s)
    python scripts/bench.py --only step --out /tmp/step.json     # one section
    python scripts/bench.py --device cuda --out docs/bench/gpu.json   # on a GPU

One process, one device, one run. Sections: ``ceiling`` (matmul FLOP/s of each GEMM the MLPs
run), ``step`` (forward + backward + SGD update — the ``TrainStep`` users run — manual vs
autograd, eager vs compiled, and on CUDA graphed and bf16-mixed, host syncs per step, saved
memory), ``loop`` (Lightning ``fit`` vs a plain loop), ``peer`` (scikit-learn's MLPClassifier
on digits), ``scaling`` (step time vs FLOPs), ``mnist1d`` (training samples/s). Writes a table
to the terminal, the JSON to ``--out`` and the same table in Markdown next to it (``--md``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the bench_* helpers

from bench_cnn import cnn_section, cnn_table  # noqa: E402
from bench_sections import (  # noqa: E402
    PAIRS,
    Plan,
    ceiling_section,
    loop_section,
    mnist1d_section,
    peer_section,
    scaling_section,
    step_section,
)
from bench_timing import cpu_busy, finite_positive, machine_info  # noqa: E402

from neuronlab.training.step import resolve_mode  # noqa: E402

SECTIONS = {
    "ceiling": ceiling_section,
    "step": step_section,
    "loop": loop_section,
    "mnist1d": mnist1d_section,
    "peer": peer_section,
    "scaling": scaling_section,
    "cnn": cnn_section,  # MNIST-1D's CNN step (scripts/bench_cnn.py)
}

# key → (comparison, bound, what it is)
TARGETS = {
    "manual_over_autograd.small": ("<=", 1.15, "step time, manual / autograd (eager)"),
    "manual_over_autograd.mid": ("<=", 1.00, "step time, manual / autograd (eager)"),
    "manual_over_autograd.wide": ("<=", 1.00, "step time, manual / autograd (eager)"),
    "manual_over_autograd_memory": ("<=", 1.00, "saved activation bytes, manual / autograd"),
    "fraction_of_matmul.mid": (">=", 0.90, "GEMM-only time / step time (manual, eager)"),
    "lightning_over_raw": ("<=", 1.10, "Trainer.fit (logging/ckpt off) / plain loop"),
    "sklearn_time_ratio": ("<=", 1.00, "fit time, neuronlab / scikit-learn (digits)"),
    "accuracy_vs_sklearn": (">=", 0.0, "test accuracy, neuronlab − scikit-learn (digits)"),
}

# on a GPU: issue 12's goals (the mode `neuronlab-train trainer=gpu` uses is `graph`)
TARGETS_CUDA = {
    "fraction_of_matmul_default_mode.mid": (
        ">=", 0.6, "GEMM-only time / step time, manual, in the default mode (graph)"),
    **{f"manual_over_autograd.{k}": ("<=", b, "step time, manual / autograd (eager)")
       for k, b in (("small", 1.15), ("mid", 1.15), ("wide", 1.05))},
    **{f"manual_over_autograd_bf16.{k}": ("<=", b, "manual / autograd, bf16-mixed eager")
       for k, b in (("small", 1.15), ("mid", 1.15), ("wide", 1.05))},
    **{f"fused_over_autograd{d}.{k}": ("<=", b, f"fused layers / autograd,{w} eager")
       for d, w in (("", ""), ("_bf16", " bf16-mixed"))
       for k, b in (("small", 1.15), ("mid", 1.15), ("wide", 1.05))},
    **{f"manual_over_autograd_{m}.{k}": ("<=", 1.0, f"manual / autograd, {m}")
       for m in ("graph", "compiled", "graph_bf16") for k in ("small", "mid", "wide")},
    "lightning_over_raw": ("<=", 1.15, "Trainer.fit (logging/ckpt off) / plain loop"),
    "syncs_per_step_default_mode": ("<=", 0.0, "host syncs per steady-state step (graph)"),
    "mnist1d_manual_over_autograd_throughput": (
        ">=", 1.0, "MNIST-1D samples/s, manual / autograd, default mode"),
}

NOTES = {
    "timing": "Each timing is the median over blocks of the mean step time within a block; "
              "contenders alternate block by block (A B C, C B A, ...). Every ratio is the "
              "median over blocks of the per-block ratio, measured in the same run.",
    "flops": "Achieved FLOP/s counts 6·B·Σ n_in·n_out per step (2 forward + 4 backward). The "
             "GEMM sequence really performs 2·B·n_in·h1 fewer (the first layer's input needs "
             "no gradient); ceiling_flops_per_s uses the same nominal count so that "
             "fraction_of_matmul = GEMM-sequence time / step time.",
    "ceiling": "The ceiling is the exact GEMMs of one fwd+bwd step (x·Wᵀ, gᵀ·x, g·W) run "
               "back to back with torch.mm into preallocated outputs: no bias, activation, "
               "loss, allocation or update.",
    "memory": "saved_bytes is what the backward keeps: the unique storages handed to the "
              "autograd graph's pack hook (torch.autograd.graph.saved_tensors_hooks), summed "
              "with untyped_storage().nbytes(), over one eager step. saved_bytes counts every "
              "storage; saved_activation_bytes leaves out the parameters, which are alive "
              "anyway (a saved weight costs no memory). manual_over_autograd_memory is the "
              "ratio of saved_activation_bytes (the extra memory a step holds); the ratio "
              "with weights is manual_over_autograd_saved_bytes_incl_weights (manual's "
              "LinearFunction also saves the first layer's weight, which autograd skips as "
              "that layer's input needs no gradient). On CUDA the peak of "
              "torch.cuda.max_memory_allocated over one step is reported too. The manual "
              "step's LoopPass keeps the tensors NetworkFunction saves (network._kept), so "
              "its bytes are measured through the Function.",
    "modes": "manual = neuronlab-train's default manual path, model.granularity=network: the "
             "whole network and its cross-entropy as one hand-written Function whose backward "
             "is the textbook loop (neuronlab.functional.network), which an eager step runs "
             "without the autograd graph (TrainStep's loop_fn = the network's loop_pass: "
             "functional.loop_pass, the same bits); fused = one Function per "
             "layer (granularity=layer, neuronlab.functional.dense); op = one Function per op "
             "(granularity=op: the teaching path, what neuronlab-explain and neuronlab-check "
             "show); autograd = plain torch ops. All three manual granularities compute the "
             "same bits. fused_over_autograd* and op_over_autograd* are the "
             "manual_over_autograd* pairs at those granularities.",
    "step": "Every variant is neuronlab.training.step.TrainStep, the object training runs: "
            "eager = zero_grad, loss, backward, neuronlab.optim.SGD.step(); compiled = the "
            "whole step under torch.compile (AOTAutograd compiles forward + backward, the "
            "update, with the learning rate read from a device tensor, is a second graph); "
            "graph = the whole step captured once as a CUDA graph and replayed (3 eager "
            "warm-up steps on a side stream first); bf16-mixed = the loss under "
            "torch.autocast(bfloat16), measured against the GEMMs in bfloat16. A variant that "
            "fell back (no compiler, capture impossible) is listed under fallbacks, not timed.",
    "compiled": "compiled_over_eager is a time ratio (< 1: faster). compile_s is the steps "
                "before the steady state (one eager, then the compiling one), much shorter "
                "when inductor's on-disk cache already holds the graphs. --quick compiles "
                "with backend='aot_eager' (no C++ build).",
    "syncs": "syncs_per_step: host-device synchronisations per steady-state step, counted "
             "as the warnings of torch.cuda.set_sync_debug_mode('warn') over 5 steps; n/a "
             "on the CPU.",
    "mnist1d": "samples/s over whole epochs (TensorLoader batches on the device, then "
               "TrainStep): N / median epoch time. Without the mnist1d package, random "
               "inputs of the same shape (said in the section's 'data').",
    "loop": "lightning_over_raw: Trainer.fit with enable_checkpointing=False, logger=False, "
            "enable_progress_bar=False, enable_model_summary=False over the plain loop; "
            "lightning_defaults_over_raw with all four at their defaults. Same LearnTask, "
            "TensorLoader, data and steps.",
    "scaling": "exponent = slope of log(step time) vs log(FLOPs), manual eager: 1 means cost "
               "grows as FLOPs; < 1 means a fixed per-step overhead dominates the small end.",
}


def _get(d: dict, dotted: str):
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def summarize(res: dict) -> dict:
    """The headline numbers of whatever sections ran."""
    s: dict = {}
    step = res.get("step")
    default = resolve_mode("auto", torch.device(res["device"]))  # what a run uses
    if step:
        for ratio in [*PAIRS, *(r.replace("manual", m, 1) for m in ("fused", "op")
                                for r in PAIRS)]:
            by_size = {k: v["ratios"][ratio] for k, v in step.items() if ratio in v["ratios"]}
            if by_size:
                s[ratio] = by_size
        s["fraction_of_matmul_default_mode"] = {
            k: v["variants"][f"manual/{default}"]["fraction_of_matmul"] for k, v in step.items()
            if f"manual/{default}" in v["variants"]}
        for label, suffix in (("default_mode", default), ("eager", "eager")):
            syncs = [v["syncs_per_step"] for r in step.values()
                     for k, v in r["variants"].items() if k.split("/", 1)[1] == suffix]
            if any(n is not None for n in syncs):
                s[f"syncs_per_step_{label}"] = max(n for n in syncs if n is not None)
        mem = {k: v["ratios"]["manual_over_autograd_memory"] for k, v in step.items()}
        act = {k: v["ratios"]["manual_over_autograd_activation_memory"]
               for k, v in step.items()}
        s["manual_over_autograd_memory"] = act.get("mid", next(iter(act.values())))
        s["manual_over_autograd_memory_by_size"] = act
        s["manual_over_autograd_saved_bytes_incl_weights"] = mem
        mid = step.get("mid", {}).get("ratios", {})
        if "compiled_over_eager_manual" in mid:
            s["compiled_over_eager"] = mid["compiled_over_eager_manual"]
            s["compiled_over_eager_autograd"] = mid["compiled_over_eager_autograd"]
        if "graph_over_eager_manual" in mid:
            s["graph_over_eager"] = mid["graph_over_eager_manual"]
            s["graph_over_eager_autograd"] = mid["graph_over_eager_autograd"]
        s["fraction_of_matmul"] = {k: v["variants"]["manual/eager"]["fraction_of_matmul"]
                                   for k, v in step.items()}
        s["achieved_flops_per_s"] = {k: v["variants"]["manual/eager"]["flops_per_s"]
                                     for k, v in step.items()}
        s["matmul_ceiling_flops_per_s"] = {k: v["ceiling_flops_per_s"] for k, v in step.items()}
    if "loop" in res:
        s["lightning_over_raw"] = res["loop"]["lightning_over_raw"]
        s["lightning_defaults_over_raw"] = res["loop"]["lightning_defaults_over_raw"]
    if "peer" in res:
        for k in ("sklearn_time_ratio", "sklearn_accuracy", "neuronlab_accuracy"):
            s[k] = res["peer"][k]
    if "scaling" in res:
        s["scaling_exponent"] = res["scaling"]["exponent"]
    if "mnist1d" in res:
        r = res["mnist1d"]
        s["mnist1d_samples_per_s"] = r["samples_per_s"]
        s["mnist1d_manual_over_autograd_throughput"] = (
            r["manual_over_autograd_throughput"][r["default_mode"]])
        for m in ("fused", "op"):
            s[f"mnist1d_{m}_over_autograd_throughput"] = (
                r[f"{m}_over_autograd_throughput"][r["default_mode"]])
    return s


def check_targets(summary: dict, device: str = "cpu") -> dict:
    view = dict(summary)
    if "sklearn_accuracy" in summary:
        view["accuracy_vs_sklearn"] = summary["neuronlab_accuracy"] - summary["sklearn_accuracy"]
    out = {}
    for key, (op, bound, what) in (TARGETS_CUDA if device == "cuda" else TARGETS).items():
        value = _get(view, key)
        if value is None:
            continue
        met = value <= bound + 1e-12 if op == "<=" else value >= bound - 1e-12
        out[key] = {"value": value, "target": f"{op} {bound:g}", "met": bool(met), "what": what}
    return out


# ---- output ---------------------------------------------------------------------------------


def _fmt(x: float, unit: str = "") -> str:
    if unit == "s":
        for scale, u in ((1, "s"), (1e-3, "ms"), (1e-6, "µs")):
            if x >= scale:
                return f"{x / scale:.3g} {u}"
        return f"{x * 1e9:.3g} ns"
    if unit == "flops":
        return f"{x / 1e9:.1f} GFLOP/s"
    if unit == "bytes":
        return f"{x / 2**20:.2f} MiB"
    return f"{x:.3f}"


def tables(res: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of each table, shared by the terminal and the Markdown file."""
    out = []
    targets = res["targets"]
    rows = []
    for key, t in targets.items():  # --quick: tiny sizes, not the targets' (no verdict)
        met = "(quick)" if res.get("quick") else "yes" if t["met"] else "NO"
        rows.append([key, _fmt(t["value"]), t["target"], met, t["what"]])
    s = res["summary"]
    for key in ("manual_over_autograd_compiled", "manual_over_autograd_graph",
                "manual_over_autograd_bf16", "manual_over_autograd_graph_bf16",
                "compiled_over_eager", "graph_over_eager", "fraction_of_matmul_default_mode",
                "syncs_per_step_default_mode", "syncs_per_step_eager",
                "lightning_defaults_over_raw", "sklearn_accuracy", "neuronlab_accuracy",
                "scaling_exponent", "mnist1d_samples_per_s",
                "mnist1d_manual_over_autograd_throughput", "fused_over_autograd",
                "fused_over_autograd_compiled", "fused_over_autograd_graph",
                "fused_over_autograd_bf16", "fused_over_autograd_graph_bf16",
                "mnist1d_fused_over_autograd_throughput", "op_over_autograd",
                "op_over_autograd_compiled", "op_over_autograd_graph", "op_over_autograd_bf16",
                "op_over_autograd_graph_bf16", "mnist1d_op_over_autograd_throughput"):
        if key in targets or any(k.startswith(f"{key}.") for k in targets):
            continue  # already a target row
        v = s.get(key)
        if isinstance(v, dict):
            for size, x in v.items():
                rows.append([f"{key}.{size}", _fmt(x), "", "", "(info)"])
        elif v is not None:
            rows.append([key, _fmt(v), "", "", "(info)"])
    out.append(("Summary", ["metric", "value", "target", "met", "what"], rows))
    if "step" in res:
        rows = []
        for size, r in res["step"].items():
            sizes = "-".join(map(str, r["sizes"]))
            for name, v in r["variants"].items():
                mem = r["memory"].get(name.split("/")[0], {}) if name.endswith("eager") else {}
                syncs = v.get("syncs_per_step")
                rows.append([f"{size} {sizes} B={r['batch']}", name, _fmt(v["time_s"], "s"),
                             _fmt(v["flops_per_s"], "flops"), f"{v['fraction_of_matmul']:.3f}",
                             _fmt(mem["saved_bytes"], "bytes") if mem else "",
                             "n/a" if syncs is None else f"{syncs:g}", f"{v['spread']:.2f}"])
            rows.append([f"{size} {sizes} B={r['batch']}", "GEMMs only (ceiling)",
                         _fmt(r["gemm_time_s"], "s"), _fmt(r["ceiling_flops_per_s"], "flops"),
                         "1.000", "", "", ""])
            if "gemm_bf16_time_s" in r:
                rows.append([f"{size} {sizes} B={r['batch']}", "GEMMs only, bfloat16",
                             _fmt(r["gemm_bf16_time_s"], "s"),
                             _fmt(r["flops_per_step"] / r["gemm_bf16_time_s"], "flops"),
                             "1.000", "", "", ""])
            for name, why in r.get("fallbacks", {}).items():
                rows.append([f"{size} {sizes} B={r['batch']}", name, "fell back", "", "", "",
                             "", why[:120]])
        out.append(("Training step", ["size", "variant", "time", "achieved", "of matmul",
                                      "saved", "syncs/step", "spread"], rows))
    if "step" in res and any(r.get("profile") for r in res["step"].values()):
        rows = []
        for size, r in res["step"].items():
            for mode, prof in r.get("profile", {}).items():
                top = ", ".join(f"{o['op'].removeprefix('aten::')} {o['ms_per_step']:.2f} ms"
                                f"×{o['calls_per_step']:g}" for o in prof["top_other_ops"][:4])
                rows.append([size, mode, f"{prof['gemm_share']:.2f}", top])
        out.append(("Where an eager step's time goes (torch.profiler, self time per step)",
                    ["size", "mode", "GEMM share", "largest other ops"], rows))
    if "ceiling" in res:
        rows = [[size, g["gemm"], _fmt(g["time_s"], "s"), _fmt(g["flops_per_s"], "flops")]
                for size, r in res["ceiling"].items() for g in r["gemms"]]
        out.append(("Matmul throughput per GEMM", ["size", "gemm", "time", "throughput"], rows))
    if "loop" in res:
        r = res["loop"]
        rows = [[k, _fmt(t, "s"), _fmt(r["step_time_s"][k], "s"),
                 _fmt(r["trainer_init_s"].get(k, 0.0), "s")] for k, t in r["fit_time_s"].items()]
        out.append((f"Training loop ({r['steps']} steps, model {r['model']}, batch {r['batch']})",
                    ["loop", "fit", "per step", "Trainer()"], rows))
    if "peer" in res:
        r = res["peer"]
        rows = [[lib, _fmt(r[f"{key}_time_s"], "s"), f"{r[f'{key}_accuracy']:.4f}",
                 " ".join(f"{a:.4f}" for a in r[f"{key}_accuracy_per_seed"])]
                for lib, key in (("neuronlab", "neuronlab"), ("scikit-learn", "sklearn"))]
        out.append((f"Peer on digits: {r['setting']}",
                     ["library", "fit (median)", "test acc (mean)", "per seed"], rows))
    if "scaling" in res:
        r = res["scaling"]
        rows = [[p["axis"], str(p["value"]), "-".join(map(str, p["sizes"])), str(p["batch"]),
                 _fmt(p["time_s"], "s"), _fmt(p["flops_per_s"], "flops")] for p in r["points"]]
        out.append((f"Scaling (exponent: batch {r['exponent_batch']:.2f}, width "
                    f"{r['exponent_width']:.2f}, all {r['exponent']:.2f})",
                    ["axis", "value", "sizes", "B", "step", "achieved"], rows))
    if "mnist1d" in res:
        r = res["mnist1d"]
        rows = [[k, f"{v:,.0f}"] for k, v in r["samples_per_s"].items()]
        out.append((f"MNIST-1D training throughput ({r['data']}; MLP "
                    f"{'-'.join(map(str, r['sizes']))}, batch {r['batch']})",
                    ["variant", "samples/s"], rows))
    if "cnn" in res:
        out.append(cnn_table(res["cnn"]))
    return out


def print_tables(res: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 140)
    for title, header, rows in tables(res):
        table = Table(title=title, title_justify="left")
        for h in header:
            table.add_column(h)
        for row in rows:
            table.add_row(*row)
        console.print(table)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0%}"


def markdown(res: dict) -> str:
    m = res["machine"]
    lines = [
        f"# neuronlab benchmark — {res['device']} / {res['dtype']}", "",
        f"`python scripts/bench.py {' '.join(res['argv'])}` — {res['runtime_s']:.0f} s; "
        f"{m['cpu_model']}, {m['cpu_count']} cores, torch {m['torch']} "
        f"({m['torch_threads']} threads), lightning {m['lightning']}, sklearn {m['sklearn']}; "
        f"CPU kept busy by other processes: {_pct(m['others_cpu_busy_at_start'])} before, "
        f"{_pct(m['others_cpu_busy_at_end'])} after the run (load average "
        f"{m['loadavg_at_start'][0]:.2f} → {m['loadavg_at_end'][0]:.2f}).", "",
    ]
    for title, header, rows in tables(res):
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |",
                  "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        lines.append("")
    lines += ["## Notes", ""] + [f"- **{k}**: {v}" for k, v in res["notes"].items()]
    return "\n".join(lines) + "\n"


def _finite(obj):
    """Replace non-finite floats (not valid JSON) with None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="where to write the JSON")
    p.add_argument("--md", type=Path, default=None,
                   help="where to write the Markdown tables (default: --out with .md)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--quick", action="store_true", help="tiny sizes (used by the test)")
    p.add_argument("--wide", action="store_true",
                   help="also the 4096-wide MLP on the CPU (always on CUDA; slow on 2 cores)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads (default: torch's choice, recorded in the JSON)")
    p.add_argument("--only", choices=tuple(SECTIONS), default=None, help="run one section")
    p.add_argument("--skip", choices=tuple(SECTIONS), action="append", default=[],
                   help="leave a section out (repeatable)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch.cuda.is_available() is False")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    plan = Plan.make(device, dtype, quick=args.quick, wide=args.wide)
    t_start = time.perf_counter()
    res: dict = {"device": args.device, "dtype": args.dtype, "quick": args.quick,
                 "argv": sys.argv[1:] if argv is None else list(argv),
                 "machine": machine_info(device), "notes": NOTES}
    for name, section in SECTIONS.items():
        if (args.only and name != args.only) or name in args.skip:
            continue
        t0 = time.perf_counter()
        print(f"[bench] {name} …", file=sys.stderr, flush=True)
        res[name] = section(plan)
        res.setdefault("section_time_s", {})[name] = time.perf_counter() - t0
        args.out.parent.mkdir(parents=True, exist_ok=True)  # so far, in case of a timeout
        args.out.write_text(json.dumps(_finite({**res, "partial": True}), indent=2) + "\n")
    machine = res["machine"]
    machine["loadavg_at_end"] = list(os.getloadavg())
    machine["others_cpu_busy_at_end"] = cpu_busy()
    busy = max((b for b in (machine["others_cpu_busy_at_start"],
                            machine["others_cpu_busy_at_end"]) if b is not None), default=0.0)
    if busy > 0.25:
        res["notes"] = {**NOTES, "contention": (
            f"other processes kept up to {busy:.0%} of the CPU busy (sampled before and after "
            "the run): absolute times are inflated and noisy; the interleaved ratios are the "
            "numbers to read.")}
    res["runtime_s"] = time.perf_counter() - t_start
    res["summary"] = summarize(res)
    res["targets"] = check_targets(res["summary"], args.device)
    bad = [k for k, v in res["summary"].items()
           if not isinstance(v, dict) and not finite_positive(v) and not k.startswith("syncs")]
    if bad:
        print(f"[bench] not positive finite: {bad}", file=sys.stderr)
    res = _finite(res)
    summary = res.pop("summary")
    res["summary"] = summary  # the JSON ends with the summary
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    md = args.md or args.out.with_suffix(".md")
    md.write_text(markdown(res))
    print_tables(res)
    print(f"[bench] {res['runtime_s']:.0f} s; wrote {args.out} and {md}", file=sys.stderr)
    return res


if __name__ == "__main__":
    main()
