"""Benchmark: how fast neuronlab trains, against the matmul ceiling, autograd, Lightning's
loop and scikit-learn.

    python scripts/bench.py --out docs/bench/cpu.json            # full run (a few minutes)
    python scripts/bench.py --quick --out /tmp/b.json            # tiny sizes (< 60 s)
    python scripts/bench.py --only step --out /tmp/step.json     # one section

One process, one device, one run. Sections: ``ceiling`` (matmul FLOP/s of each GEMM the MLPs
run), ``step`` (forward + backward + SGD update: manual vs autograd, eager vs compiled, saved
memory), ``loop`` (Lightning ``fit`` vs a plain loop), ``peer`` (scikit-learn's MLPClassifier
on digits), ``scaling`` (step time vs FLOPs). Writes a table to the terminal, the JSON to
``--out`` and the same table in Markdown next to it (``--md`` to choose).
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

from bench_sections import (  # noqa: E402
    Plan,
    ceiling_section,
    loop_section,
    peer_section,
    scaling_section,
    step_section,
)
from bench_timing import cpu_busy, finite_positive, machine_info  # noqa: E402

SECTIONS = {
    "ceiling": ceiling_section,
    "step": step_section,
    "loop": loop_section,
    "peer": peer_section,
    "scaling": scaling_section,
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
              "torch.cuda.max_memory_allocated over one step is reported too.",
    "compiled": "compiled = torch.compile(forward + loss) (AOTAutograd compiles the backward); "
                "the SGD update stays eager. compiled_over_eager is a time ratio (< 1: "
                "faster). compile_s is the first two steps, much shorter when inductor's "
                "on-disk cache already holds the graphs. --quick compiles with "
                "backend='aot_eager' (no C++ build).",
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
    if step:
        s["manual_over_autograd"] = {k: v["ratios"]["manual_over_autograd"]
                                     for k, v in step.items()}
        comp = {k: v["ratios"]["manual_over_autograd_compiled"] for k, v in step.items()
                if "manual_over_autograd_compiled" in v["ratios"]}
        if comp:
            s["manual_over_autograd_compiled"] = comp
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
    return s


def check_targets(summary: dict) -> dict:
    view = dict(summary)
    if "sklearn_accuracy" in summary:
        view["accuracy_vs_sklearn"] = summary["neuronlab_accuracy"] - summary["sklearn_accuracy"]
    out = {}
    for key, (op, bound, what) in TARGETS.items():
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
    for key, t in targets.items():
        rows.append([key, _fmt(t["value"]), t["target"], "yes" if t["met"] else "NO", t["what"]])
    s = res["summary"]
    for key in ("manual_over_autograd_compiled", "compiled_over_eager",
                "lightning_defaults_over_raw", "sklearn_accuracy", "neuronlab_accuracy",
                "scaling_exponent"):
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
                rows.append([f"{size} {sizes} B={r['batch']}", name, _fmt(v["time_s"], "s"),
                             _fmt(v["flops_per_s"], "flops"), f"{v['fraction_of_matmul']:.3f}",
                             _fmt(mem["saved_bytes"], "bytes") if mem else "",
                             f"{v['spread']:.2f}"])
            rows.append([f"{size} {sizes} B={r['batch']}", "GEMMs only (ceiling)",
                         _fmt(r["gemm_time_s"], "s"), _fmt(r["ceiling_flops_per_s"], "flops"),
                         "1.000", "", ""])
        out.append(("Training step", ["size", "variant", "time", "achieved", "of matmul",
                                      "saved", "spread"], rows))
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
        if args.only and name != args.only:
            continue
        t0 = time.perf_counter()
        print(f"[bench] {name} …", file=sys.stderr, flush=True)
        res[name] = section(plan)
        res.setdefault("section_time_s", {})[name] = time.perf_counter() - t0
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
    res["targets"] = check_targets(res["summary"])
    bad = [k for k, v in res["summary"].items()
           if not isinstance(v, dict) and not finite_positive(v)]
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
