#!/usr/bin/env bash
# One prepared pass on a GPU machine: the CuPy-parametrised engine tests, then the engine recipes
# against PyTorch on the same GPU, written where the caller collects them.
#
#     OUT=/some/folder bash benchmarks/gpu_check.sh            # on the GPU machine, repository root
#     python benchmarks/run_all.py --engine-json /some/folder/engine-gpu.json \
#         --feed-json /some/folder/feed-gpu.json                                # back home
#
# Made for a short loan of a machine (under 10 minutes; it needs numpy, cupy, torch and pytest there,
# not Django):
# each step has its own time limit, a failing step does not stop the next, and everything it
# prints is also kept in $OUT/gpu-check.log. The recipes run with one seed (--seeds 1) to fit;
# pass SEEDS=3 for the full report's count. TF32 stays off on the PyTorch side (the report says so).
set -u
OUT=${OUT:-var/gpu-check}
SEEDS=${SEEDS:-1}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export CUPY_CACHE_DIR=${CUPY_CACHE_DIR:-/tmp/cupola-cupy-cache}  # kernels compile once per machine
exec > >(tee -a "$OUT/gpu-check.log") 2>&1

step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s): $*"
    local started=$SECONDS
    timeout "$limit" "$@"
    echo "== $name: exit $? after $((SECONDS - started))s"
}

step "device" 20 nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
step "libraries" 40 "$PY" -c "import cupy, numpy, torch; print('cupy', cupy.__version__, 'numpy', numpy.__version__, \
'torch', torch.__version__, 'devices', cupy.cuda.runtime.getDeviceCount())"
# Spread over processes where pytest-xdist is there (it is on the GPU machine): on a fresh machine the
# tests compile every kernel once, and the compiler takes one core per process.
PARALLEL=()
"$PY" -c "import xdist" 2>/dev/null && PARALLEL=(-n "${TEST_PROCESSES:-8}")
step "engine tests on the GPU" 120 "$PY" -m pytest -q -m gpu --tb=short --durations=10 "${PARALLEL[@]}" tests/trainer
step "engine vs PyTorch on the GPU" 200 "$PY" benchmarks/engine_report.py --device gpu --seeds "$SEEDS" \
    --json "$OUT/engine-gpu.json" --markdown "$OUT/engine-gpu.md"
# The large MLP with TF32 on both sides (CuPy's GEMMs use it only with CUPY_TF32=1): the fraction of peak.
step "large MLP, TF32 on both sides" 60 env CUPY_TF32=1 "$PY" -m trainer.bench --device gpu --tf32 \
    --recipe mlp_throughput --json "$OUT/engine-gpu-tf32.json"
# What the CUDA graphs buy: the same recipes one step at a time.
step "without CUDA graphs, for comparison" 60 env CUPOLA_CUDA_GRAPHS=0 "$PY" -m trainer.bench --device gpu \
    --seeds 1 --recipe keras_example --recipe cnn_digits --recipe lstm_co2 --json "$OUT/engine-gpu-eager.json"
# And the generic CuPy path (one operation per launch, no graphs): what the fused kernels buy.
step "generic CuPy path, for comparison" 50 env CUPOLA_FUSED_KERNELS=0 "$PY" -m trainer.bench --device gpu \
    --seeds 1 --recipe keras_example --recipe cnn_digits --recipe lstm_co2 --json "$OUT/engine-gpu-generic.json"
# A memory-mapped uint8 image set (not resident): batches read ahead and copied on a side stream vs on demand.
step "host batches read ahead vs on demand" 30 "$PY" benchmarks/feed_bench.py --device gpu --rows 30000 --epochs 1 \
    --pairs 2 --json "$OUT/feed-gpu.json"
