#!/usr/bin/env bash
# The CUDA checks of one short GPU session, as one command (each step has its own time limit,
# 9 minutes together, plus 15 s each to kill a step that ignores SIGTERM, and the wheels'
# install):
#   1. tests/test_gpu.py: CUDA against CPU (log-probabilities, the auction step), batched rounds
#      and replicates on CUDA;
#   2. bench_batched_rounds.py: token-auction auctions/s against K in {1, 8, 64, 256}, bundled LM
#      and the random GPT-2-small and Llama ~135M shapes (all bfloat16, the default on CUDA),
#      pooled and distinct queries;
#   3. bench_decoding.py --quick and bench_mosaic.py --quick on the device;
#   4. bench_lm_replicates.py: 16 replicate markets in lockstep against separate runs.
# Each step's output goes to $OUT/<step>.txt (default folder ./gpu-figures, relative to where
# the script is started), the device and library versions to $OUT/device.txt. Exit status: 0
# when every step passed; 1 when one failed, ran out of time, or the wheels did not install;
# 2 for a bad DEVICE argument or an unusable $OUT; 3 when torch sees no CUDA device (nothing is
# measured then).
#
# The project need not be installed: the repository root goes on PYTHONPATH. A Python that
# lacks some of the project's dependencies takes them as wheels in ./.whl, which the script
# installs into /tmp/site first. The lent CUDA image (torch, transformers, numpy, pandas, scipy,
# tqdm, safetensors, tokenizers, pytest) lacks mesa, polars and tomli-w, which the CUDA tests
# and these benchmarks import; prepare them beforehand on a machine with the package index, for
# a CPython 3.12 x86-64 target (about 55 MB; .gitignore keeps .whl out of the repository):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#       --platform manylinux2014_x86_64 -d .whl mesa==3.3.1 polars==2.1.0 \
#       polars-runtime-32==2.1.0 tomli-w==1.2.0
#
# Usage: benchmarks/gpu_check.sh [DEVICE]
#   DEVICE: cuda (default), cuda:N or cpu. cpu is a dry run of the script itself: it skips the
#   CUDA tests and bench_mosaic.py and runs the other three benchmarks on the tiny LM, small K.
set -uo pipefail

device="${1:-cuda}"
out="${OUT:-gpu-figures}"
python="${PYTHON:-python3}"
case "$device" in
    cuda | cuda:* | cpu) ;;
    *)
        echo "gpu_check: DEVICE must be cuda, cuda:N or cpu, got '$device'" >&2
        exit 2
        ;;
esac
out="$(mkdir -p "$out" && cd "$out" && pwd)" || {
    echo "gpu_check: cannot use '$out' as the output folder" >&2
    exit 2
}
export PYTHONUNBUFFERED=1
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root" || exit 2
if [ -d .whl ] && compgen -G ".whl/*.whl" >/dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site:$root${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
fi

if [ "$device" != cpu ] &&
    ! "$python" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: torch sees no CUDA device; nothing measured" >&2
    exit 3
fi
{
    command -v nvidia-smi >/dev/null &&
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    "$python" -c "import mesa, polars, torch, transformers; print('torch', torch.__version__,
'cuda', torch.version.cuda, 'transformers', transformers.__version__, 'mesa', mesa.__version__,
'polars', polars.__version__)"
} 2>&1 | tee "$out/device.txt"

status=0
step() {
    # step NAME SECONDS COMMAND...: run COMMAND under a time limit, its output to $out/NAME.txt
    local name="$1" limit="$2"
    shift 2
    echo "== $name ($limit s at most): $*"
    timeout -k 15 "$limit" "$@" 2>&1 | tee "$out/$name.txt"
    local codes=("${PIPESTATUS[@]}")
    if [ "${codes[0]}" != 0 ]; then
        echo "== $name: exit status ${codes[0]} (124 or 137: out of time)"
        status=1
    elif [ "${codes[1]}" != 0 ]; then
        echo "== $name: its output could not be written to $out/$name.txt"
        status=1
    fi
}

if [ "$device" = cpu ]; then
    step batched_rounds 300 "$python" benchmarks/bench_batched_rounds.py --device cpu \
        --models tiny --ks 1,8 --queries pool
    step decoding 300 "$python" benchmarks/bench_decoding.py --device cpu --quick
    step replicates 300 "$python" benchmarks/bench_lm_replicates.py --device cpu --seeds 2 \
        --auctions-per-round 2 --rounds 2 --max-new-tokens 4
else
    step cuda_tests 90 "$python" -m pytest tests/test_gpu.py -q -rs -p no:cacheprovider
    step batched_rounds 180 "$python" benchmarks/bench_batched_rounds.py --device "$device" \
        --repeats 3 --queries pool,distinct
    step decoding 60 "$python" benchmarks/bench_decoding.py --device "$device" --quick
    step mosaic 90 "$python" benchmarks/bench_mosaic.py --device "$device" --quick
    step replicates 120 "$python" benchmarks/bench_lm_replicates.py --device "$device" \
        --seeds 16 --auctions-per-round 8 --rounds 5
fi
exit "$status"
