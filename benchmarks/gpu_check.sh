#!/usr/bin/env bash
# One prepared pass on a GPU machine: the CuPy-parametrised engine tests, then the engine recipes
# against PyTorch on the same GPU, written where the caller collects them.
#
#     OUT=/some/folder bash benchmarks/gpu_check.sh            # on the GPU machine, repository root
#     python benchmarks/run_all.py --engine-json /some/folder/engine-gpu.json   # back home
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

step "device" 30 nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
step "libraries" 60 "$PY" -c "import cupy, numpy, torch; print('cupy', cupy.__version__, 'numpy', numpy.__version__, \
'torch', torch.__version__, 'devices', cupy.cuda.runtime.getDeviceCount())"
step "engine tests on the GPU" 120 "$PY" -m pytest -q -x -m gpu tests/trainer
step "engine vs PyTorch on the GPU" 240 "$PY" benchmarks/engine_report.py --device gpu --seeds "$SEEDS" \
    --json "$OUT/engine-gpu.json" --markdown "$OUT/engine-gpu.md"
# The same recipes on the generic CuPy path (one operation per launch): what the fused kernels buy.
step "generic CuPy path, for comparison" 120 env CUPOLA_FUSED_KERNELS=0 "$PY" -m trainer.bench --device gpu \
    --seeds 1 --recipe keras_example --recipe cnn_digits --recipe lstm_co2 --json "$OUT/engine-gpu-generic.json"
