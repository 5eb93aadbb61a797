"""core.distributed: a rank's block of a minibatch, synchronised BatchNorm on CPU and DDP's gradient
under two gloo ranks (torchrun), equal to one process's."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.distributed import (CpuSyncBatchNorm, World, block, convert_sync_batchnorm, ddp_model,
                              mean_over_ranks, on_main, sum_over_ranks)

ROOT = Path(__file__).resolve().parents[2]


def small_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 6, 3, bias=False),
                         nn.BatchNorm2d(6, eps=1e-3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(6, 3))


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(11, 3, 10, 10, generator=gen) * 3 + 1, torch.randint(0, 3, (11,), generator=gen)


@pytest.mark.parametrize("n,size", [(11, 2), (128, 3), (1, 2), (0, 4)])
def test_blocks_are_contiguous_nearly_equal_and_make_up_the_whole(n, size):
    parts = [block(n, World(rank, size)) for rank in range(size)]
    assert [i for p in parts for i in range(n)[p]] == list(range(n))
    assert max(p.stop - p.start for p in parts) - min(p.stop - p.start for p in parts) <= 1


def test_without_a_process_group_everything_is_one_process():
    model = small_net()
    assert ddp_model(model, World()) is model
    assert sum_over_ranks(2.5) == 2.5 and mean_over_ranks({"loss": 1.5}) == {"loss": 1.5}
    assert on_main(lambda: 7) == 7


def test_converted_batchnorm_keeps_its_parameters_and_is_batchnorm_without_a_group():
    model, reference = small_net(), small_net()
    params = list(model.parameters())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    convert_sync_batchnorm(model)
    assert isinstance(model[1], CpuSyncBatchNorm) and model[4].eps == 1e-3
    assert all(a is b for a, b in zip(params, model.parameters()))
    assert optimizer.param_groups[0]["params"][2] is model[1].weight
    assert model.state_dict().keys() == reference.state_dict().keys()
    x, _ = batch()
    for mode in (True, False):
        model.train(mode), reference.train(mode)
        assert torch.equal(model(x), reference(x))
    assert torch.equal(model[1].running_var, reference[1].running_var)


WORKER = """
import sys, torch, torch.distributed as dist
import torch.nn.functional as F
sys.path.insert(0, {root!r}); sys.path.insert(0, {here!r})
from core.distributed import (BlockDropout, World, block, ddp_model, global_minibatch, mean_over_ranks,
                              on_main, world_from_env)
from test_distributed import batch, small_net
world = world_from_env()
dist.init_process_group("gloo")
model = small_net()
net = ddp_model(model, world)
x, y = batch()
share = block(len(y), world)
# this rank's summed loss over (minibatch size / ranks): DDP's mean gradient is the minibatch's
loss = F.cross_entropy(net(x[share]), y[share], reduction="sum") / (len(y) / world.size)
loss.backward()
torch.manual_seed(7)
with global_minibatch(len(y)):  # two rows per sample, as a head applied per prior
    dropped = BlockDropout(0.5)(torch.ones(2 * (share.stop - share.start), 4))
out = {{"dropped": dropped, "grads": {{k: p.grad for k, p in model.named_parameters()}},
       "buffers": {{k: b for k, b in model.named_buffers()}},
       "loss": mean_over_ranks({{"loss": float(loss)}})["loss"],
       "main": on_main(lambda: world.rank + 10)}}
from detector.train import hardest_background
from test_distributed import ohem_rows
logits, labels = ohem_rows()
rows = block(len(labels), world)
out["ohem"] = hardest_background(logits[rows], labels[rows], 5)  # the minibatch's 5 hardest, not the rank's
from core.engine import Recipe, fit

def mark(name):
    def write(*_):
        open({out!r} + name + str(world.rank), "a").write("x")
        return {{"val": 0.5}}
    return write

state = fit(Recipe(2, lambda s: iter([0, 1]), lambda b, s: {{"loss": 1.0}}, mark("saved"), mark("evaluated")))
out["history"] = state.history
torch.save(out, {out!r} + str(world.rank))
dist.destroy_process_group()
"""


def ohem_rows():
    """22 rows of logits and labels, 16 of them background, for online hard-example mining."""
    return torch.randn(22, 5, generator=torch.Generator().manual_seed(3)), torch.tensor([0, 1, 0, 0, 2] * 4 + [0, 0])


def reference(dtype) -> dict:
    model = small_net().to(dtype)
    x, y = batch()
    loss = F.cross_entropy(model(x.to(dtype)), y)
    loss.backward()
    return {"grads": {k: p.grad.double() for k, p in model.named_parameters()}, "loss": float(loss.detach()),
            "buffers": {k: b for k, b in model.named_buffers()}}


def test_two_gloo_ranks_give_one_process_gradient_loss_and_batchnorm_statistics(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(root=str(ROOT), here=str(Path(__file__).parent), out=str(tmp_path / "rank")))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}", weights_only=True) for r in range(2)]
    exact, single = reference(torch.float64), reference(torch.float32)
    assert [r["main"] for r in ranks] == [10, 10]
    from detector.train import hardest_background
    assert torch.equal(torch.cat([r["ohem"] for r in ranks]), hardest_background(*ohem_rows(), 5))
    torch.manual_seed(7)  # the ranks' dropout masks are one process's, cut in blocks
    assert torch.equal(torch.cat([r["dropped"] for r in ranks]), F.dropout(torch.ones(22, 4), 0.5))
    # the engine: rank 0 alone validates and saves (after each epoch), every rank keeps its rows
    assert (tmp_path / "rankevaluated0").read_text() == "xx" and (tmp_path / "ranksaved0").read_text() == "xx"
    assert not (tmp_path / "rankevaluated1").exists() and not (tmp_path / "ranksaved1").exists()
    assert ranks[0]["history"] == ranks[1]["history"] == [{"epoch": e, "loss": 1.0, "val": 0.5} for e in (1, 2)]
    for r in ranks:  # every rank has the minibatch's loss and the same gradient
        assert r["loss"] == pytest.approx(single["loss"], rel=1e-6)
        for key, grad in exact["grads"].items():
            scale = float(grad.abs().max())
            assert float((r["grads"][key].double() - grad).abs().max()) <= 1e-5 * scale + 1e-7, key
            assert torch.allclose(r["grads"][key], single["grads"][key].float(), rtol=1e-4, atol=1e-6), key
        for key, buffer in single["buffers"].items():  # running statistics of the whole minibatch
            assert torch.allclose(r["buffers"][key].double(), buffer.double(), rtol=1e-5, atol=1e-6), key
