#!/usr/bin/env bash
# The checks that need a CUDA GPU, as one script for a machine lent for minutes (PyTorch there, perhaps no Jupyter,
# the package perhaps not installed, no network). From the repository root:
#
#     bash scripts/gpu_checks.sh OUT_DIR [LESSON_SECONDS]
#
# 1. the machine: GPU, driver, torch;
# 2. the tests that run only on a GPU (samplers on the GPU against the CPU, q_sample with a CPU generator, the
#    autoencoder trained on the GPU); they are skipped everywhere else;
# 3. one training step of lesson 04's FULL recipe, profiled (benchmarks/gpu_step.py), batch 64 and 256;
# 4. lessons 11, 02, 07, 08 and 09 in the FULL profile, timed cell by cell (scripts/time_cells.py), each stopped
#    after LESSON_SECONDS (default 120): a training cell stops at SIGTERM with a checkpoint and the cells after it run
#    on the model it has, so each lesson's FULL code runs through even when its training is cut short.
#
# Everything goes to OUT_DIR: machine.txt, tests.log, gpu_step.log, cells.log (one line per cell) and one
# NN_lesson.out per lesson. About 2 minutes plus 5 x LESSON_SECONDS. A lesson's "exit 124" means its time ran out
# (expected where its training is longer); an ERROR line in cells.log is a cell that failed.
set -u
out=${1:?usage: bash scripts/gpu_checks.sh OUT_DIR [LESSON_SECONDS]}
seconds=${2:-120}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" DDPM_OFFLINE=1 PYTHONUNBUFFERED=1 MPLBACKEND=Agg
python=${PYTHON:-python3}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv 2>&1
    "$python" -c "import sys, torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'python', sys.version.split()[0])"
    nproc
    date -u
} > "$out/machine.txt" 2>&1
cat "$out/machine.txt"

# the GPU-only tests, in the FAST profile as every test runs (tests/conftest.py)
"$python" -m pytest -q -p no:cacheprovider tests/test_samplers.py tests/test_text_and_latent.py \
    tests/test_losses.py -k "gpu or autoencoder" > "$out/tests.log" 2>&1
echo "tests: exit $? ($(tail -n 1 "$out/tests.log"))"

timeout -k 10 150 "$python" benchmarks/gpu_step.py --batch 64 256 > "$out/gpu_step.log" 2>&1
echo "gpu_step: exit $? ($(grep -E 'ms per step|kernels per step' "$out/gpu_step.log" | tr '\n' ';'))"

for lesson in 11_flow_matching 02_elbo_to_l_simple 07_inpainting_and_super_resolution \
    08_latent_and_text_conditioning 09_train_on_your_images; do
    DDPM_PROFILE=full timeout -k 30 "$seconds" "$python" scripts/time_cells.py "notebooks/$lesson.ipynb" \
        --log "$out/cells.log" > "$out/$lesson.out" 2>&1
    echo "$lesson: exit $? ($(grep -c ERROR "$out/cells.log") ERROR lines in cells.log so far)"
done
