#!/usr/bin/env bash
# Everything issue 12 measures, in one run on a GPU machine (under 7 minutes):
#
#   bash scripts/gpu_check.sh             # from the repository root, on the GPU machine
#   bash scripts/gpu_check.sh --dry-run   # print the commands, run nothing (works anywhere)
#   bash scripts/gpu_check.sh --summary-only   # rewrite the summary from the files there
#
# The machine's Python has torch, Lightning and pytest-xdist but no Hydra: the wheels carried in
# .whl/ (copied from ../shared/wheels; see its README) are installed first, as that README says.
# Then: the fast tests (CUDA present, 8 workers), `neuronlab-check --device cuda`, six trainings
# on digits (precision 32-true / bf16-mixed / 16-mixed × backprop manual / autograd, side by
# side), three end-to-end `neuronlab-train trainer=gpu` runs on 200k spirals (manual, fused,
# autograd: training samples/s), experiment=mnist1d_cnn (manual, autograd: test accuracy), and `scripts/bench.py --device cuda`. Each part runs under
# `timeout` within one overall budget (GPU_CHECK_BUDGET_S, default 420 s); a part that fails
# or hangs is reported and the next one runs. Results: gpu_summary.md, the bench's
# gpu.json/gpu.md and every part's log, in $OUT when it is set (the device machine sends $OUT
# back), else in docs/bench/.
set -u
cd "$(dirname "$0")/.."

DRY=0; SUMMARY_ONLY=0
[[ "${1:-}" == "--dry-run" ]] && DRY=1
[[ "${1:-}" == "--summary-only" ]] && SUMMARY_ONLY=1  # rewrite the summary from what is there
BUDGET=${GPU_CHECK_BUDGET_S:-420}
START=$SECONDS
DEST=${OUT:-docs/bench}
LOGS=$DEST/gpu_check_logs
RUNS=${TMPDIR:-/tmp}/gpu_check_runs
BENCH_JSON=$DEST/gpu.json
SUMMARY=$DEST/gpu_summary.md
PARTS=()   # "name|status|seconds" lines for the summary
if (( DRY )); then
  RUNS=$(mktemp -d)  # the plan's status lines only; nothing under docs/ or $OUT
  trap 'rm -rf "$RUNS"' EXIT
elif (( ! SUMMARY_ONLY )); then
  # a finished run folder is skipped by neuronlab-train: a rerun must not report the last one
  rm -rf "$RUNS"
  mkdir -p "$LOGS" "$RUNS"
fi

left() { echo $(( BUDGET - (SECONDS - START) )); }

PRECISIONS=(32-true bf16-mixed 16-mixed)
BACKPROPS=(manual autograd)
CARD=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null \
       | head -n 1)
CARD=${CARD:-unknown (nvidia-smi gave nothing)}
echo "== card: $CARD"

# run NAME SECONDS COMMAND...: under `timeout` (capped by the budget left), log to $LOGS/NAME.log
run() {
  local name=$1 limit=$2
  shift 2
  local budget_left
  budget_left=$(left)
  (( limit > budget_left - 5 )) && limit=$(( budget_left - 5 ))
  echo "== $name (timeout ${limit}s): $*"
  if (( DRY )); then PARTS+=("$name|dry-run|0"); return 0; fi
  if (( limit < 10 )); then
    PARTS+=("$name|SKIPPED: budget spent|0"); echo "   SKIPPED: budget spent in 0 s"; return 1
  fi
  local t0=$SECONDS rc status
  timeout -k 10 "$limit" "$@" > "$LOGS/$name.log" 2>&1
  rc=$?
  case $rc in
    0) status=ok ;;
    124|137) status="TIMEOUT after ${limit}s" ;;
    *) status="FAILED (exit $rc)" ;;
  esac
  PARTS+=("$name|$status|$(( SECONDS - t0 ))")
  echo "   $status in $(( SECONDS - t0 )) s (log: $LOGS/$name.log)"
  return $rc
}

if (( ! SUMMARY_ONLY )); then
# ---- 1. the carried wheels (hydra-core, omegaconf, antlr4, mnist1d, expecttest), then us -----
if compgen -G ".whl/*.whl" > /dev/null || (( DRY )); then
  run install-wheels 60 python3 -m pip install -q --no-index --no-deps --no-compile \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  run install-project 90 python3 -m pip install -q --no-index --no-deps --no-build-isolation -e .
else
  PARTS+=("install-wheels|FAILED: no .whl/*.whl (copy ../shared/wheels/*.whl into .whl/ and carry .whl)|0")
fi

if command -v neuronlab-train > /dev/null; then
  TRAIN=(neuronlab-train); CHECK=(neuronlab-check)
else  # the console scripts' folder is not on PATH: call the same functions
  TRAIN=(python3 -c "import sys; from neuronlab.cli.train import main; sys.exit(main())")
  CHECK=(python3 -c "import sys; from neuronlab.cli.check import main; sys.exit(main())")
fi


# ---- 2. the fast tests, CUDA present, in parallel ----------------------------------------------
run tests 100 python3 -m pytest -n 8 -q -x -p no:cacheprovider tests

# ---- 3. the op checks on CUDA, while six trainings run side by side ---------------------------
TRAIN_LIMIT=$(( $(left) < 70 ? $(left) - 5 : 65 ))
for p in "${PRECISIONS[@]}"; do
  for b in "${BACKPROPS[@]}"; do
    run "train-$p-$b" "$TRAIN_LIMIT" "${TRAIN[@]}" trainer=gpu data=digits model=mlp \
      optimizer.lr=0.1 "trainer.precision=$p" "model.backprop=$b" \
      "hydra.run.dir=$RUNS/$p-$b" > "$RUNS/$p-$b.status" &
  done
done
run check 65 "${CHECK[@]}" --device cuda
wait
(( DRY )) && cat "$RUNS"/*.status
for p in "${PRECISIONS[@]}"; do  # the background runs recorded their status in files
  for b in "${BACKPROPS[@]}"; do
    [[ -s "$RUNS/$p-$b.status" ]] && PARTS+=("train-$p-$b|$(sed -n 's/^   \(.*\) in \([0-9]*\) s.*/\1|\2/p' "$RUNS/$p-$b.status")")
  done
done

# ---- 4. end to end: neuronlab-train trainer=gpu on a GPU-sized run, one at a time -----------------
# spirals, 200k rows, [1024, 1024], batch 4096, 3 epochs (~105 steps): training samples/s from
# each run's metrics.json (validation left out; over the run, and over the last epoch, past
# graph capture), manual / fused / autograd. The audit and flow callbacks are off: the audit
# runs for manual backprop only, and would make the comparison uneven
E2E=(trainer=gpu data=spirals data.n_samples=200000 model=mlp "model.hidden=[1024,1024]"
     data.batch_size=4096 trainer.max_epochs=3 callbacks.progress_bar=null
     callbacks.gradient_audit=null callbacks.gradient_flow=null)
for v in manual fused autograd; do
  case $v in
    fused) opts=(model.backprop=manual model.fused=true) ;;
    *) opts=("model.backprop=$v") ;;
  esac
  run "e2e-$v" 40 "${TRAIN[@]}" "${E2E[@]}" "${opts[@]}" "hydra.run.dir=$RUNS/e2e-$v"
done

# ---- 4b. MNIST-1D's CNN (experiment=mnist1d_cnn: 6,000 Adam steps), manual and autograd -----
# the test accuracy of each (docs/experiments.md: 92-94 % on the CPU); its step time is the
# bench's `cnn` section below
for b in "${BACKPROPS[@]}"; do
  run "cnn-$b" 60 "${TRAIN[@]}" experiment=mnist1d_cnn trainer=gpu "model.backprop=$b" \
    "hydra.run.dir=$RUNS/cnn-$b"
done

# ---- 5. the benchmark: whatever budget is left ---------------------------------------------------
BENCH_LIMIT=$(( $(left) - 15 ))
# (peer is scikit-learn on the CPU: nothing about the GPU; the JSON is written after each
# section, so a timeout still leaves the sections that finished)
run bench "$BENCH_LIMIT" python3 scripts/bench.py --device cuda --skip peer --out "$BENCH_JSON"
fi

# ---- the summary ------------------------------------------------------------------------------------
(( DRY )) && { echo "== dry run: the summary would go to $SUMMARY"; exit 0; }
{
  echo "# GPU check — $CARD"
  echo
  echo "\`bash scripts/gpu_check.sh\`, $(date -u +%Y-%m-%dT%H:%MZ), $(( SECONDS - START )) s;" \
       "torch $(python3 -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)' \
                2>/dev/null || echo '?')," \
       "lightning $(python3 -c 'import lightning; print(lightning.__version__)' 2>/dev/null \
                    || echo '?')," \
       "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)."
  echo
  echo "## Parts"
  echo
  echo "| part | status | seconds |"
  echo "|---|---|---|"
  for line in "${PARTS[@]}"; do echo "| ${line//|/ | } |"; done
  echo
  echo "## Trainings: digits, MLP, lr 0.1, trainer=gpu"
  echo
  python3 - "$RUNS" "${PRECISIONS[@]}" <<'PY'
import json, sys
from pathlib import Path
runs, precisions = Path(sys.argv[1]), sys.argv[2:]
print("| precision | manual: status, test acc, test loss | autograd: status, test acc, test loss |")
print("|---|---|---|")
for p in precisions:
    cells = []
    for b in ("manual", "autograd"):
        try:
            rec = json.loads((runs / f"{p}-{b}" / "metrics.json").read_text())
            m = rec.get("metrics", {})
            cells.append(f"{rec.get('status')}, {m.get('test/acc', float('nan')):.4f}, "
                         f"{m.get('test/loss', float('nan')):.4f}")
        except (OSError, ValueError) as err:
            cells.append(f"no metrics.json ({type(err).__name__})")
    print(f"| {p} | {cells[0]} | {cells[1]} |")
PY
  echo
  echo "## End to end: neuronlab-train trainer=gpu, spirals 200k rows, [1024, 1024], batch 4096"
  echo
  python3 - "$RUNS" <<'PY'
import json, sys
from pathlib import Path
print("| backprop | status | steps | training samples/s | last epoch | train s | run s |")
print("|---|---|---|---|---|---|---|")
for v in ("manual", "fused", "autograd"):
    try:
        r = json.loads((Path(sys.argv[1]) / f"e2e-{v}" / "metrics.json").read_text())
        rate = r.get("train_samples_per_s") or float("nan")
        last = r.get("train_samples_per_s_last_epoch") or float("nan")
        print(f"| {v} | {r.get('status')} | {r.get('steps')} | {rate:,.0f} | {last:,.0f} | "
              f"{r.get('train_seconds')} | {r.get('seconds')} |")
    except (OSError, ValueError) as err:
        print(f"| {v} | no metrics.json ({type(err).__name__}) | | | | | |")
PY
  echo
  echo "## MNIST-1D CNN: experiment=mnist1d_cnn trainer=gpu"
  echo
  python3 - "$RUNS" <<'PY'
import json, sys
from pathlib import Path
print("| backprop | status | steps | test acc | training samples/s |")
print("|---|---|---|---|---|")
for b in ("manual", "autograd"):
    try:
        r = json.loads((Path(sys.argv[1]) / f"cnn-{b}" / "metrics.json").read_text())
        acc = r.get("metrics", {}).get("test/acc", float("nan"))
        rate = r.get("train_samples_per_s") or float("nan")
        print(f"| {b} | {r.get('status')} | {r.get('steps')} | {acc:.4f} | {rate:,.0f} |")
    except (OSError, ValueError) as err:
        print(f"| {b} | no metrics.json ({type(err).__name__}) | | | |")
PY
  echo
  echo "## Benchmark targets ($BENCH_JSON, tables in ${BENCH_JSON%.json}.md)"
  echo
  python3 - "$BENCH_JSON" <<'PY'
import json, sys
try:
    res = json.loads(open(sys.argv[1]).read())
except (OSError, ValueError) as err:
    print(f"no benchmark result ({type(err).__name__}: {err})")
    raise SystemExit
if res.get("partial"):  # the bench ran out of time: the targets of the sections that finished
    sys.path.insert(0, "scripts")
    from bench import check_targets, summarize
    res["summary"] = summarize(res)
    res["targets"] = check_targets(res["summary"], res["device"])
    print(f"(partial: the bench stopped after {', '.join(res.get('section_time_s', {}))})\n")
print("| metric | value | target | met |")
print("|---|---|---|---|")
for key, t in res.get("targets", {}).items():
    print(f"| {key} | {t['value']:.4g} | {t['target']} | {'yes' if t['met'] else 'NO'} |")
s = res.get("summary", {})
for key in ("graph_over_eager", "compiled_over_eager", "fused_over_autograd_graph",
            "mnist1d_samples_per_s", "mnist1d_fused_over_autograd_throughput"):
    if key in s:
        print(f"| {key} | {s[key]} | | (info) |")
PY
  for line in "${PARTS[@]}"; do
    name=${line%%|*}; status=${line#*|}; status=${status%%|*}
    if [[ "$status" != ok && -s "$LOGS/$name.log" ]]; then
      echo; echo "### $name: $status — last lines of its log"; echo; echo '```'
      tail -n 15 "$LOGS/$name.log"; echo '```'
    fi
  done
} > "$SUMMARY"
echo "== wrote $SUMMARY ($(( SECONDS - START )) s)"
