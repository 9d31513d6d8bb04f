"""torchrun with two CPU processes (gloo) trains exactly like one process with the same global batch.

Every process draws the same global batch, timesteps and noise and keeps its half; DDP averages the two
halves' gradients, which is the whole batch's gradient. So the weights agree up to float summation order:
measured: 4e-9 largest difference after 4 steps; the test allows 1e-5. Dropout is off, because each
process draws its own dropout masks.
"""

import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

ARGS = ["train", "--dataset", "mnist", "--source", "bundled", "--conditional", "--steps", "4", "--batch-size", "8",
        "--base-channels", "8", "--channel-mults", "1", "2", "--attention", "--dropout", "0", "--checkpoint-every",
        "2", "--seed", "0", "--objective", "eps", "--precision", "fp32", "--no-progress"]  # fmt: skip


def _train(out, nproc: int, extra=()):
    launcher = [sys.executable, "-m", "ddpm_lessons"]
    if nproc > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                    "-m", "ddpm_lessons"]  # fmt: skip
    cmd = [*launcher, *ARGS, "--out", str(out), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    one, two = _train(tmp_path / "one", 1), _train(tmp_path / "two", 2)
    assert one.returncode == 0, one.stderr[-3000:]
    assert two.returncode == 0, two.stderr[-3000:]
    for name in ("model.safetensors",):  # the EMA weights that sampling uses
        a, b = load_file(str(tmp_path / "one" / name)), load_file(str(tmp_path / "two" / name))
        assert a.keys() == b.keys()
        worst = max((a[k] - b[k]).abs().max().item() for k in a)
        assert worst < 1e-5, f"largest weight difference {worst:.2e}"
    raw_one = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=True)["model"]
    raw_two = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=True)["model"]
    assert max((raw_one[k] - raw_two[k]).abs().max().item() for k in raw_one) < 1e-5
    log_one = (tmp_path / "one" / "log.jsonl").read_text().splitlines()
    log_two = (tmp_path / "two" / "log.jsonl").read_text().splitlines()
    assert len(log_one) == len(log_two) >= 1  # rank 0 alone wrote the log, once per line


@pytest.mark.slow
def test_a_batch_that_does_not_split_is_refused(tmp_path):
    run = _train(tmp_path / "odd", 2, ["--batch-size", "7"])
    assert run.returncode != 0 and "must be a multiple of the 2 processes" in run.stderr


def test_close_leaves_the_process_group_and_a_world_of_one_has_none(tmp_path):
    """`train` closes its World when every rank is done: a process that exits still in a gloo group can abort at
    interpreter shutdown. A group of one stands in for torchrun's here."""
    import torch.distributed as dist

    from ddpm_lessons.distributed import World

    World().close()  # one process: no group to leave, nothing raised
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        World(rank=0, size=2).close()
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
