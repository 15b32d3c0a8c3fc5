"""Several processes train as one: two gloo processes against one process on the same global batch, dropout on."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from diffusion_lib.data import load_digits
from diffusion_lib.models.unet import unet_from_preset
from diffusion_lib.schedules import NoiseSchedule
from diffusion_lib.train import Trainer

STEPS = 10


def _unet_trainer() -> Trainer:
    """The quick digits U-Net with the presets' dropout 0.1, global batch 16, in float64 (see the tolerance below)."""
    torch.manual_seed(0)
    model = unet_from_preset("digits_small", dropout=0.1).double()
    return Trainer(model, NoiseSchedule.cosine(), load_digits("train")[0][:256].double(), batch_size=16, lr=1e-3,
                   warmup_steps=2, log_every=5)


def _unet_worker(rank: int, world_size: int, folder: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world_size)
    try:
        torch.set_num_threads(1)  # two processes on two cores
        trainer = _unet_trainer()
        trainer.fit(STEPS)
        if rank == 0:
            tensors = {f"model.{k}": v.contiguous() for k, v in trainer.model.state_dict().items()}
            tensors["history"] = torch.tensor(trainer.history, dtype=torch.float64)
            save_file(tensors, f"{folder}/ddp.safetensors")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_and_one(tmp_path_factory):
    """(what two processes trained, the trainer of one process): STEPS steps on the same global batches."""
    folder = tmp_path_factory.mktemp("ddp")
    mp.spawn(_unet_worker, args=(2, str(folder)), nprocs=2, join=True)
    single = _unet_trainer()
    single.fit(STEPS)
    return load_file(folder / "ddp.safetensors"), single


# The two runs differ only in the order of floating-point sums (each rank's gradient, then their all-reduce, against
# one sum over the batch): about 1e-16 relative in float64. Adam divides each gradient by its running size, so in
# weights whose exact gradient is 0 (a conv bias before a per-channel GroupNorm) it turns that rounding into steps of
# up to lr · rounding / eps; measured, the largest difference is 1.4e-12 (in float32 it is 1e-3, as large as those
# weights' own steps: hence float64). 1e-9 is 1e-7 of the distance lr · steps = 1e-2 that the weights travel; masks
# that depend on the rank (torch's global generator seeded alike on every rank) move them apart by 1e-3 or more.
TOLERANCE = 1e-9


def test_two_processes_with_dropout_train_the_weights_of_one_process(two_and_one):
    distributed, single = two_and_one
    assert any(m.p == 0.1 for m in single.model.modules() if isinstance(m, torch.nn.Dropout))
    for name, value in single.model.state_dict().items():
        assert (distributed[f"model.{name}"] - value).abs().max() < TOLERANCE, name


def test_two_processes_with_dropout_log_the_losses_of_one_process(two_and_one):
    """The logged loss is a float32 mean (of 16 losses, against the mean of two means of 8): a few float32 roundings,
    2^-24 = 6e-8 relative each, apart; rank-dependent masks move it by 1e-2."""
    distributed, single = two_and_one
    torch.testing.assert_close(distributed["history"], torch.tensor(single.history, dtype=torch.float64), rtol=1e-6,
                               atol=0)
