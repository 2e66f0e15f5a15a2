"""DDP under torchrun: 2 CPU processes (gloo) train the same spec to the same accuracy as one process;
only rank 0 prints and writes a run folder."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# MLP encoders (no batch norm) and no dropout: the 2-process run does the same arithmetic as one
# process up to the order of floating-point sums, so accuracies must agree closely.
SETS = ["train.teacher_epochs=4", "train.student_epochs=4", "train.batch_size=128", "train.threads=1",
        "train.device=cpu", "teacher.dropout=0", "student.dropout=0"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _args(config: Path, runs_dir: Path) -> list[str]:
    return ["run", "--config", str(config), "--json", "--quiet", "--runs-dir", str(runs_dir)]


def _env() -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


@pytest.mark.slow
def test_torchrun_two_processes_match_one_process(tmp_path):
    from kdcore.presets import load_preset

    config = tmp_path / "spec.yaml"  # the same spec file for both launches
    load_preset("mfeat-crossmodal").with_overrides(SETS).save(config)
    single = subprocess.run([sys.executable, "-m", "kdcore", *_args(config, tmp_path / "one")], cwd=ROOT, env=_env(),
                            capture_output=True, text=True, timeout=900)
    assert single.returncode == 0, single.stderr[-2000:]
    one = json.loads(single.stdout)

    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", "-m", "kdcore", *_args(config, tmp_path / "ddp")]
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads(proc.stdout)  # rank 0 alone prints: stdout is exactly one JSON document
    assert two["status"] == "finished" and two["world_size"] == 2
    # rank 0 alone writes a run folder
    folders = [p for p in (tmp_path / "ddp").iterdir() if p.is_dir()]
    assert len(folders) == 1 and (folders[0] / "result.json").is_file()
    assert (folders[0] / "checkpoints" / "kd.safetensors").is_file()
    # same batches in the same order, gradients averaged over the ranks = the global batch's gradient
    for phase in ("teacher", "baseline", "kd"):
        a, b = one["phases"][phase], two["phases"][phase]
        assert abs(a["test_acc"] - b["test_acc"]) <= 0.02, (phase, a["test_acc"], b["test_acc"])
        assert abs(a["val_acc"] - b["val_acc"]) <= 0.02, (phase, a["val_acc"], b["val_acc"])


def test_shard_matches_distributed_sampler(monkeypatch):
    import torch
    from torch.utils.data import DistributedSampler

    from kdcore.train import distributed as dist

    perm = torch.randperm(11, generator=torch.Generator().manual_seed(3))
    for world in (2, 3):
        shards = []
        for r in range(world):
            monkeypatch.setattr(dist, "world_size", lambda w=world: w)
            monkeypatch.setattr(dist, "rank", lambda r=r: r)
            mine = dist.shard(perm)
            sampler = DistributedSampler(list(range(11)), num_replicas=world, rank=r, shuffle=False)
            assert mine.tolist() == [perm[i].item() for i in sampler]
            shards.append(mine)
        assert sorted(set(torch.cat(shards).tolist())) == list(range(11))  # every sample seen
    monkeypatch.setattr(dist, "world_size", lambda: 4)
    with pytest.raises(ValueError, match="train.batch_size=30 must be divisible"):
        dist.local_batch_size(30)


def test_one_process_is_not_distributed():
    from kdcore.train import distributed as dist

    assert not dist.active() and dist.is_main() and dist.world_size() == 1
