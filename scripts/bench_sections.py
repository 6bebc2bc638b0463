"""The sections of ``scripts/bench.py``: ceiling, step, loop, peer, scaling, mnist1d.

Each section takes a :class:`Plan` (sizes and repetitions; ``--quick`` shrinks them) and
returns a JSON-ready dict.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from bench_timing import (
    BenchStep,
    GemmSequence,
    build_mlp,
    interleaved,
    median,
    paired_ratio,
    profile_step,
    spread,
    step_flops,
    syncs_per_step,
)

from neuronlab import initialize_
from neuronlab.data import NeuronDataModule, TensorLoader
from neuronlab.optim import SGD
from neuronlab.training.step import TrainStep, resolve_mode
from neuronlab.training.step_optimizer import StepOptimizer

MODES = ("manual", "autograd")
# the modes timed: manual = neuronlab-train's default (model.granularity=network: the whole
# network as one Function), fused = one Function per layer (granularity=layer), op = one per op
# (granularity=op, the teaching path), autograd = plain torch
ALL_MODES = ("manual", "fused", "op", "autograd")
GRANULARITY_MODES = ("manual", "fused", "op")


@dataclass
class Plan:
    """What to run: sizes (name → (layer sizes, batch)), repetitions and switches."""

    device: torch.device
    dtype: torch.dtype
    quick: bool = False
    sizes: dict[str, tuple[list[int], int]] = field(default_factory=dict)
    blocks: int = 9
    block_s: float = 0.2
    compile_backend: str | None = "inductor"
    compile_sizes: tuple[str, ...] = ("small", "mid")
    loop: dict = field(default_factory=dict)
    peer: dict = field(default_factory=dict)
    scaling: dict = field(default_factory=dict)
    mnist1d: dict = field(default_factory=dict)

    @classmethod
    def make(cls, device: torch.device, dtype: torch.dtype, quick: bool, wide: bool) -> Plan:
        if quick:
            return cls(
                device, dtype, quick=True,
                sizes={"small": ([2, 64, 64, 2], 256), "mid": ([64, 128, 128, 10], 64)},
                blocks=3, block_s=0.03,
                compile_backend="aot_eager",  # traces fwd + bwd like inductor, no C++ build
                compile_sizes=("mid",),
                loop=dict(rows=512, n_in=64, hidden=[128, 128], n_classes=10, batch=128,
                          epochs=1, repeats=1),
                peer=dict(batch=64, epochs=3, lr=0.1, repeats=1),
                scaling=dict(sizes=[64, 128, 128, 10], batch=64, batches=[16, 32, 64, 128],
                             widths=[32, 64, 128, 256], blocks=3, block_s=0.02),
                mnist1d=dict(n_samples=2000, hidden=[64, 64], batch=256, blocks=3, block_s=0.05),
            )
        sizes = {"small": ([2, 64, 64, 2], 256), "mid": ([784, 1024, 1024, 10], 512)}
        cuda = device.type == "cuda"
        if wide or cuda:
            sizes["wide"] = ([4096, 4096, 4096, 4096, 10], 4096)
        return cls(
            device, dtype, sizes=sizes,
            # a GPU times steadily: shorter blocks keep scripts/gpu_check.sh within its budget
            blocks=7 if cuda else 9, block_s=0.1 if cuda else 0.2,
            # inductor: ~10-20 s per graph on a 2-core CPU, ~20-40 s on a fresh GPU machine
            compile_sizes=("mid",) if cuda else ("small", "mid"),
            loop=dict(rows=8192, n_in=784, hidden=[1024, 1024], n_classes=10, batch=512,
                      epochs=2, repeats=3),
            peer=dict(batch=128, epochs=40, lr=0.1, repeats=12),
            scaling=dict(sizes=[784, 1024, 1024, 10], batch=512,
                         batches=[64, 128, 256, 512, 1024, 2048],
                         widths=[128, 256, 512, 1024, 2048], blocks=5,
                         block_s=0.1 if cuda else 0.2),
            mnist1d=dict(n_samples=50_000, hidden=[1024, 1024], batch=4096, blocks=5,
                         block_s=0.3) if cuda else
            dict(n_samples=10_000, hidden=[256, 256], batch=512, blocks=5, block_s=0.3),
        )


# ---- ceiling -------------------------------------------------------------------------------


def ceiling_section(plan: Plan) -> dict:
    """Matmul throughput of each GEMM the MLPs' steps run, and of the whole sequence."""
    out = {}
    for name, (sizes, batch) in plan.sizes.items():
        seq = GemmSequence(sizes, batch, plan.device, plan.dtype)
        blocks = 3  # for the table; the ceiling proper is timed inside the step section
        warmup = 1 if name == "wide" and plan.device.type == "cpu" else 3
        rows = seq.per_gemm(blocks=blocks, block_s=plan.block_s / 4, warmup=warmup)
        t_seq = median(interleaved({"seq": seq}, plan.device, blocks=blocks,
                                   block_s=plan.block_s, warmup=1)["seq"])
        out[name] = {
            "sizes": sizes, "batch": batch, "gemms": rows,
            "sequence_time_s": t_seq,
            "sequence_flops": seq.flops,
            "sequence_flops_per_s": seq.flops / t_seq,
            "ceiling_flops_per_s": step_flops(sizes, batch) / t_seq,
        }
    return out


# ---- the training step -----------------------------------------------------------------------


def step_variants(plan: Plan, size: str) -> dict[str, dict]:
    """Variant name → ``BenchStep`` keywords: eager everywhere, compiled where planned, and on
    CUDA the graph and bf16-mixed (what ``trainer.precision=bf16-mixed`` runs) as well."""
    cuda = plan.device.type == "cuda"
    # fused layers matter where Python dispatch does (eager); on a GPU their compiled and
    # bf16-graph twins would only add minutes to scripts/gpu_check.sh's budget
    out = {f"{m}/eager": dict(backprop=m) for m in ALL_MODES}
    if plan.compile_backend and size in plan.compile_sizes:
        out |= {f"{m}/compiled": dict(backprop=m, mode="compiled",
                                      compile_backend=plan.compile_backend)
                for m in (MODES if cuda else ALL_MODES)}
    if cuda:
        out |= {f"{m}/graph": dict(backprop=m, mode="graph") for m in ALL_MODES}
        if plan.dtype == torch.float32:
            out |= {f"{m}/{mode}/bf16-mixed": dict(backprop=m, mode=mode, precision="bf16-mixed")
                    for mode in ("eager", "graph")
                    for m in (ALL_MODES if mode == "eager" else MODES)}
    return out


# ratio name → the variant suffix compared, manual over autograd
PAIRS = {"manual_over_autograd": "eager", "manual_over_autograd_compiled": "compiled",
         "manual_over_autograd_graph": "graph", "manual_over_autograd_bf16": "eager/bf16-mixed",
         "manual_over_autograd_graph_bf16": "graph/bf16-mixed"}


def step_section(plan: Plan) -> dict:
    """Step time of manual vs autograd — eager, compiled, graphed, bf16-mixed — each the
    ``TrainStep`` users run, against the GEMMs alone; host syncs per step on CUDA."""
    out = {}
    for name, (sizes, batch) in plan.sizes.items():
        big_cpu = name == "wide" and plan.device.type == "cpu"
        steps, prime_s, fallbacks = {}, {}, {}
        for key, kw in step_variants(plan, name).items():
            try:
                step = BenchStep(sizes, batch, device=plan.device, dtype=plan.dtype, **kw)
                prime_s[key] = step.prime()  # warm-up, compile, capture
            except Exception as err:  # no C++ toolchain, unsupported dtype: report, go on
                fallbacks[key] = f"{type(err).__name__}: {err}"[:500]
                continue
            if step.step.fallback:  # not timed as the mode it could not run in
                fallbacks[key] = step.step.fallback
                continue
            steps[key] = step
        fns: dict = dict(steps)
        fns["gemm"] = GemmSequence(sizes, batch, plan.device, plan.dtype)
        if any(k.endswith("bf16-mixed") for k in steps):
            fns["gemm_bf16"] = GemmSequence(sizes, batch, plan.device, torch.bfloat16)
        blocks = 3 if big_cpu else plan.blocks
        times = interleaved(fns, plan.device, blocks=blocks, block_s=plan.block_s,
                            warmup=1 if big_cpu else 3)
        flops = step_flops(sizes, batch)
        t_gemm = median(times["gemm"])
        variants = {}
        for key in steps:
            t = median(times[key])
            gemm = times["gemm_bf16" if key.endswith("bf16-mixed") else "gemm"]
            variants[key] = {
                "time_s": t, "spread": spread(times[key]), "flops_per_s": flops / t,
                "block_times_s": times[key], "fraction_of_matmul": paired_ratio(gemm, times[key]),
                "syncs_per_step": syncs_per_step(steps[key], plan.device),
            }
        ratios = {}
        for ratio, suffix in PAIRS.items():
            for m in GRANULARITY_MODES:  # fused_/op_over_autograd…: the other granularities
                key = ratio if m == "manual" else ratio.replace("manual", m, 1)
                if f"{m}/{suffix}" in steps and f"autograd/{suffix}" in steps:
                    ratios[key] = paired_ratio(times[f"{m}/{suffix}"], times[f"autograd/{suffix}"])
        for mode in ("compiled", "graph"):
            for m in MODES:
                if f"{m}/{mode}" in steps:
                    ratios[f"{mode}_over_eager_{m}"] = paired_ratio(times[f"{m}/{mode}"],
                                                                    times[f"{m}/eager"])
        memory = {m: steps[f"{m}/eager"].saved_bytes() for m in MODES}
        ratios["fused_over_autograd_memory"] = (steps["fused/eager"].saved_bytes()["saved_bytes"]
                                                / memory["autograd"]["saved_bytes"])
        if plan.device.type == "cuda":
            for m in MODES:
                memory[m]["peak_cuda_bytes"] = steps[f"{m}/eager"].peak_cuda_bytes()
        ratios["manual_over_autograd_memory"] = (
            memory["manual"]["saved_bytes"] / memory["autograd"]["saved_bytes"])
        ratios["manual_over_autograd_activation_memory"] = (
            memory["manual"]["saved_activation_bytes"]
            / memory["autograd"]["saved_activation_bytes"])
        profiles = {} if big_cpu else {
            m: profile_step(steps[f"{m}/eager"], plan.device) for m in ALL_MODES}
        compile_s = {k.split("/")[0]: v for k, v in prime_s.items() if k.endswith("/compiled")}
        if any(k.endswith("/compiled") for k in fallbacks):
            compile_s["error"] = next(v for k, v in fallbacks.items() if k.endswith("/compiled"))
        out[name] = {
            "sizes": sizes, "batch": batch, "flops_per_step": flops, "profile": profiles,
            "gemm_time_s": t_gemm, "ceiling_flops_per_s": flops / t_gemm,
            "variants": variants, "ratios": ratios, "memory": memory,
            "compile_s": compile_s, "prime_s": prime_s, "fallbacks": fallbacks, "blocks": blocks,
        }
        if "gemm_bf16" in times:
            out[name]["gemm_bf16_time_s"] = median(times["gemm_bf16"])
        del steps, fns
    return out


# ---- the training loop: Lightning vs a plain loop ---------------------------------------------


def _task(cfg: dict, device: torch.device):
    from neuronlab.training.task import LearnTask

    task = LearnTask(
        cfg["n_in"], cfg["n_classes"],
        model=dict(kind="mlp", hidden=cfg["hidden"], activation="relu", backprop="manual",
                   loss="cross_entropy", compile=False),
        init=dict(distribution="normal", scheme="kaiming"),
        optimizer=dict(name="sgd", lr=0.01), scheduler=dict(name="none"), seed=0,
    )
    return task.to(device)


def _raw_fit(task, loader: TensorLoader, epochs: int) -> None:
    """The plain loop: what ``Trainer.fit`` does, without the machinery — the same
    ``TrainStep`` in the mode a run uses by default (eager on the CPU, graph on CUDA)."""
    conf = task.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    if isinstance(opt, StepOptimizer):  # a LearnTask wired to its own TrainStep
        opt = opt._train_step.optimizer
    step = TrainStep(lambda x, y: task.output_and_loss((x, y))[1], opt, mode="auto",
                     loop_fn=task.net.loop_pass)
    task.train()
    for _ in range(epochs):
        for x, y in loader:
            step(x, y)
            sched.step()


def _lightning_fit(task, loader: TensorLoader, epochs: int, device: torch.device,
                   defaults: bool, root: str) -> float:
    """Build the Trainer, then time ``fit`` alone (the Trainer's construction is returned)."""
    import lightning as L

    off = {} if defaults else dict(enable_checkpointing=False, logger=False,
                                   enable_progress_bar=False, enable_model_summary=False)
    t0 = time.perf_counter()
    trainer = L.Trainer(max_epochs=epochs, accelerator="gpu" if device.type == "cuda" else "cpu",
                        devices=1, default_root_dir=root, **off)
    init_s = time.perf_counter() - t0
    trainer.fit(task, train_dataloaders=loader)
    return init_s


def loop_section(plan: Plan) -> dict:
    """``Trainer.fit`` (logging/checkpointing off, then at defaults) vs a plain loop."""
    cfg = plan.loop
    dev, dtype = plan.device, plan.dtype
    g = torch.Generator().manual_seed(0)
    x = torch.randn(cfg["rows"], cfg["n_in"], generator=g).to(dev, dtype)
    y = torch.randint(0, cfg["n_classes"], (cfg["rows"],), generator=g).to(dev)
    epochs = cfg["epochs"]
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("lightning.fabric").setLevel(logging.ERROR)
    times: dict[str, list[float]] = {"raw": [], "lightning_off": [], "lightning_defaults": []}
    init_s: dict[str, list[float]] = {"lightning_off": [], "lightning_defaults": []}
    with tempfile.TemporaryDirectory() as root, warnings.catch_warnings():
        warnings.simplefilter("ignore")

        def run(kind: str, n_epochs: int) -> float:
            task = _task(cfg, dev).to(dtype=dtype)
            loader = TensorLoader(x, y, cfg["batch"], shuffle=True, seed=0)
            t0 = time.perf_counter()
            if kind == "raw":
                _raw_fit(task, loader, n_epochs)
                built = 0.0
            else:
                built = _lightning_fit(task, loader, n_epochs, dev, kind == "lightning_defaults",
                                       root)
            elapsed = time.perf_counter() - t0 - built
            if kind != "raw":
                init_s[kind].append(built)
            return elapsed

        for kind in times:  # warm-up: imports, first Trainer, first checkpoint write
            run(kind, 1)
        for k in init_s.values():
            k.clear()
        names = list(times)
        for r in range(cfg["repeats"]):
            for kind in names if r % 2 == 0 else names[::-1]:
                times[kind].append(run(kind, epochs))
    steps = epochs * math.ceil(cfg["rows"] / cfg["batch"])
    return {
        "model": [cfg["n_in"], *cfg["hidden"], cfg["n_classes"]], "rows": cfg["rows"],
        "batch": cfg["batch"], "epochs": epochs, "steps": steps, "repeats": cfg["repeats"],
        "fit_time_s": {k: median(v) for k, v in times.items()},
        "trainer_init_s": {k: median(v) for k, v in init_s.items()},
        "step_time_s": {k: median(v) / steps for k, v in times.items()},
        "lightning_over_raw": paired_ratio(times["lightning_off"], times["raw"]),
        "lightning_defaults_over_raw": paired_ratio(times["lightning_defaults"], times["raw"]),
        "timed": "Trainer.fit only (Trainer construction reported apart); raw = the same "
                 "LearnTask.output_and_loss + configure_optimizers in a for loop",
    }


# ---- the peer: scikit-learn's MLPClassifier on digits -----------------------------------------


def peer_section(plan: Plan) -> dict:
    """neuronlab (plain loop: MLP + SGD + TensorLoader) vs scikit-learn's MLPClassifier."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from threadpoolctl import threadpool_limits

    cfg = plan.peer
    dm = NeuronDataModule(name="digits", seed=0, batch_size=cfg["batch"])
    dm.setup()
    (x_tr, y_tr), (x_te, y_te) = dm.train_tensors, dm.test_tensors
    hidden = (64, 64)
    sizes = [dm.n_features, *hidden, dm.n_classes]

    # the thread count neuronlab-train picks for this model (training.run.choose_threads:
    # one thread below SMALL_STEP_FLOPS per step), for both libraries
    from neuronlab.training.run import SMALL_STEP_FLOPS

    n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    threads = 1 if 6 * n_params * cfg["batch"] < SMALL_STEP_FLOPS else torch.get_num_threads()
    threads_before = torch.get_num_threads()
    torch.set_num_threads(threads)

    def fit_neuronlab(seed: int) -> tuple[float, float]:
        net = build_mlp(sizes, "manual", torch.device("cpu"), torch.float32, seed=seed)
        initialize_(net, distribution="uniform", scheme="xavier", gain=1.0,  # sklearn's Glorot
                    generator=torch.Generator().manual_seed(seed))         # (its biases too)
        step = TrainStep(lambda xb, yb: net.logits_and_loss(xb, yb, "cross_entropy")[1],
                         SGD(net.parameters(), lr=cfg["lr"]), mode="auto",
                         loop_fn=net.loop_pass)  # the step a run takes (eager on the CPU)
        loader = TensorLoader(x_tr, y_tr, cfg["batch"], shuffle=True, seed=seed)
        t0 = time.perf_counter()
        for _ in range(cfg["epochs"]):
            for xb, yb in loader:
                step(xb, yb)
        elapsed = time.perf_counter() - t0
        with torch.no_grad():
            acc = (net(x_te).argmax(-1) == y_te).float().mean().item()
        return elapsed, acc

    def fit_sklearn(seed: int) -> tuple[float, float]:
        clf = MLPClassifier(
            hidden, activation="relu", solver="sgd", learning_rate="constant",
            learning_rate_init=cfg["lr"], momentum=0.0, nesterovs_momentum=False, alpha=0.0,
            batch_size=cfg["batch"], max_iter=cfg["epochs"], tol=0.0,
            n_iter_no_change=10**9, early_stopping=False, shuffle=True, random_state=seed,
        )
        xs, ys = x_tr.numpy(), y_tr.numpy()
        with warnings.catch_warnings(), threadpool_limits(torch.get_num_threads()):
            warnings.simplefilter("ignore", ConvergenceWarning)
            t0 = time.perf_counter()
            clf.fit(xs, ys)
            elapsed = time.perf_counter() - t0
        return elapsed, float(clf.score(x_te.numpy(), y_te.numpy()))

    runs: dict[str, list[tuple[float, float]]] = {"neuronlab": [], "sklearn": []}
    try:
        fit_neuronlab(0), fit_sklearn(0)  # warm-up (first-call costs of both libraries)
        for r in range(cfg["repeats"]):  # repeat r: seed r (init and shuffling) for both
            order = [("neuronlab", fit_neuronlab), ("sklearn", fit_sklearn)]
            for name, fn in order if r % 2 == 0 else order[::-1]:
                runs[name].append(fn(r))
    finally:
        torch.set_num_threads(threads_before)
    t_nl = [t for t, _ in runs["neuronlab"]]
    t_sk = [t for t, _ in runs["sklearn"]]
    return {
        "dataset": dm.describe(), "hidden": list(hidden), "activation": "relu",
        "setting": f"plain SGD lr={cfg['lr']} momentum=0, no weight decay (sklearn alpha=0), "
                   f"batch {cfg['batch']}, {cfg['epochs']} epochs, shuffled, no early stopping",
        "neuronlab_loop": "plain loop: TensorLoader batches into the TrainStep a run takes "
                          "(neuronlab MLP, manual backprop at granularity=network: the loop "
                          "without the autograd graph; neuronlab.optim.SGD; kaiming normal "
                          "init); sklearn uses its Glorot init",
        "neuronlab_time_s": median(t_nl), "sklearn_time_s": median(t_sk),
        "neuronlab_step_s": median(t_nl) / (cfg["epochs"] * math.ceil(len(y_tr) / cfg["batch"])),
        "sklearn_time_ratio": paired_ratio(t_nl, t_sk),
        "seeds": list(range(cfg["repeats"])),
        "neuronlab_accuracy": float(np.mean([a for _, a in runs["neuronlab"]])),
        "sklearn_accuracy": float(np.mean([a for _, a in runs["sklearn"]])),
        "neuronlab_accuracy_per_seed": [a for _, a in runs["neuronlab"]],
        "sklearn_accuracy_per_seed": [a for _, a in runs["sklearn"]],
        "accuracy": "mean test accuracy over the seeds (one fit per seed and library)",
        "threads": threads,
        "threads_note": "both libraries on the thread count neuronlab-train picks for this "
                        "model (training.run.choose_threads: 1 for a step below 1 GFLOP); "
                        "scikit-learn's BLAS limited to it with threadpoolctl",
    }


# ---- scaling ------------------------------------------------------------------------------------


def _fit_exponent(flops: list[int], times: list[float]) -> float:
    slope, _ = np.polyfit(np.log(flops), np.log(times), 1)
    return float(slope)


def scaling_section(plan: Plan) -> dict:
    """Manual-MLP step time over batch sizes and widths; the slope of log t vs log FLOPs."""
    cfg = plan.scaling
    base, batch0 = cfg["sizes"], cfg["batch"]
    points = [("batch", b, base, b) for b in cfg["batches"]]
    points += [("width", w, [base[0], w, w, base[-1]], batch0) for w in cfg["widths"]]
    rows = []
    for axis, value, sizes, batch in points:
        step = BenchStep(sizes, batch, "manual", plan.device, plan.dtype)
        t = median(interleaved({"s": step}, plan.device, blocks=cfg["blocks"],
                               block_s=cfg["block_s"])["s"])
        flops = step_flops(sizes, batch)
        rows.append({"axis": axis, "value": value, "sizes": sizes, "batch": batch,
                     "time_s": t, "flops": flops, "flops_per_s": flops / t})
    out = {"points": rows}
    for axis in ("batch", "width"):
        sel = [r for r in rows if r["axis"] == axis]
        out[f"exponent_{axis}"] = _fit_exponent([r["flops"] for r in sel],
                                                [r["time_s"] for r in sel])
    out["exponent"] = _fit_exponent([r["flops"] for r in rows], [r["time_s"] for r in rows])
    return out


# ---- MNIST-1D throughput ----------------------------------------------------------------------


def _mnist1d(n_samples: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """MNIST-1D ``(N, 40)`` / 10 digits; random inputs of that shape if it cannot be made."""
    try:
        from neuronlab.data import load_dataset

        ds = load_dataset("mnist1d", n_samples=n_samples)
        return ds.x, ds.y, f"mnist1d, {n_samples:,} signals (generated once, then cached)"
    except Exception as err:  # the package or the loader missing: same shapes, random
        g = torch.Generator().manual_seed(0)
        return (torch.randn(n_samples, 40, generator=g), torch.randint(0, 10, (n_samples,),
                generator=g), f"random (N, 40) inputs, 10 classes — mnist1d unavailable: "
                f"{type(err).__name__}: {err}"[:300])


def mnist1d_section(plan: Plan) -> dict:
    """Training throughput (samples/s) on MNIST-1D: manual vs autograd, eager vs graphed
    (CUDA), whole epochs through ``TensorLoader`` and ``TrainStep`` as a run does them."""
    cfg, dev = plan.mnist1d, plan.device
    x, y, source = _mnist1d(cfg["n_samples"])
    x, y = x.to(dev, plan.dtype), y.to(dev)
    sizes = [x.shape[1], *cfg["hidden"], 10]
    modes = ("eager", "graph") if dev.type == "cuda" else ("eager",)
    fns, steps = {}, {}
    for m in ALL_MODES:
        for mode in modes:
            net = build_mlp(sizes, m, dev, plan.dtype)
            step = TrainStep(
                lambda xb, yb, net=net: net.logits_and_loss(xb, yb, "cross_entropy")[1],
                SGD(net.parameters(), lr=0.05), mode=mode, loop_fn=net.loop_pass)
            loader = TensorLoader(x, y, cfg["batch"], shuffle=True, seed=0)

            def epoch(step=step, loader=loader) -> torch.Tensor:
                for xb, yb in loader:
                    loss = step(xb, yb)
                return loss

            fns[f"{m}/{mode}"], steps[f"{m}/{mode}"] = epoch, step
    times = interleaved(fns, dev, blocks=cfg["blocks"], block_s=cfg["block_s"], warmup=2,
                        max_steps=200)
    n = x.shape[0]
    rate = {k: n / median(t) for k, t in times.items()}
    default = resolve_mode("auto", dev)
    out = {
        "data": source, "sizes": sizes, "batch": cfg["batch"], "samples": n,
        "steps_per_epoch": -(-n // cfg["batch"]), "samples_per_s": rate,
        "final_loss": {k: float(f()) for k, f in fns.items()},  # one more epoch each, read once
        "manual_over_autograd_throughput": {
            mode: paired_ratio(times[f"autograd/{mode}"], times[f"manual/{mode}"])
            for mode in modes},
        **{f"{m}_over_autograd_throughput": {
            mode: paired_ratio(times[f"autograd/{mode}"], times[f"{m}/{mode}"])
            for mode in modes} for m in ("fused", "op")},
        "default_mode": default,
        "note": "samples/s = N / median epoch time; the last, smaller batch of an epoch runs "
                "as an eager step in graph mode",
    }
    if dev.type == "cuda":
        out["graph_over_eager_throughput"] = {
            m: paired_ratio(times[f"{m}/eager"], times[f"{m}/graph"]) for m in ALL_MODES}
    return out
