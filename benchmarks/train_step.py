"""One training step of our U-Net against diffusers' UNet2DModel built to the same architecture.

    python benchmarks/train_step.py --preset digits --batch 128             # CPU or GPU, whichever this machine has
    python benchmarks/train_step.py --preset ddpm_cifar10 --batch 8 --precision fp32 bf16

A step is what training does: draw t and ε, noise the batch, forward, MSE against ε, backward, clip the gradient norm to
1, AdamW, EMA of the weights (``torch._foreach_lerp_``). Ours is :meth:`diffusion_lib.train.Trainer.train_step` itself;
diffusers' model runs the same step written out below, with the same optimiser settings. Both models are built from one
:class:`~diffusion_lib.models.unet.UNetConfig` (:func:`diffusers_twin`; the parameter counts are printed and must agree
within 2%), both see the same batch size and precision, and the two are timed alternately in one run (``rounds`` rounds
of ``steps`` steps each, after 3 warm-up steps), so a machine that slows down during the run slows both. Reported:
images per second (median over rounds) and the ratio ours / diffusers, with the lowest and highest ratio of a single
round (``ratio_rounds``, ``ratio_recipe_rounds``); on a GPU also the peak memory of each
(``torch.cuda.max_memory_allocated``).

Precision ``fp32``: no autocast; ``bf16``: ``torch.autocast`` with bfloat16 for both (on a CPU this needs native
bf16 support to pay off). With ``--compile``, ``--compile-mode``, ``--channels-last`` or ``--recipe-bf16`` a third
runner, "ours recipe", times our step with those options in the same alternation; ``--precision fp32 --recipe-bf16``
so measures a bf16 recipe against diffusers' default fp32 step directly. The results go to stdout and, with
``--out``, to a JSON file.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from record import machine, write_json
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from diffusion_lib.models.unet import PRESETS, UNet, UNetConfig
from diffusion_lib.schedules import NoiseSchedule
from diffusion_lib.train import COMPILE_MODES, Trainer


def forward_flops(model: torch.nn.Module, config: UNetConfig, device: torch.device) -> int:
    """Floating-point operations of one forward pass for one image (2 per multiply-add), counted by PyTorch."""
    x = torch.randn(2, config.in_channels, config.image_size, config.image_size, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x, torch.zeros(2, dtype=torch.long, device=device))
    return counter.get_total_flops() // 2


def diffusers_twin(config: UNetConfig):
    """diffusers' ``UNet2DModel`` with the architecture of ``config``: the same channels per level, ResBlocks per
    level (one more on the way up), attention at the same sides and in the middle, GroupNorm groups, time embedding
    (sinusoidal, 4·ch wide) and ResBlock conditioning (FiLM ``scale_shift`` or DDPM's additive ``default``)."""
    from diffusers import UNet2DModel

    sides = [config.image_size // 2**i for i in range(len(config.ch_mult))]
    channels = tuple(config.ch * m for m in config.ch_mult)
    return UNet2DModel(
        sample_size=config.image_size, in_channels=config.in_channels,
        out_channels=config.out_channels or config.in_channels, block_out_channels=channels,
        layers_per_block=config.num_res_blocks,
        down_block_types=tuple("AttnDownBlock2D" if s in config.attn_resolutions else "DownBlock2D" for s in sides),
        up_block_types=tuple("AttnUpBlock2D" if s in config.attn_resolutions else "UpBlock2D"
                             for s in reversed(sides)),
        attention_head_dim=None if config.num_heads == 1 else channels[0] // config.num_heads,
        norm_num_groups=config.groups, dropout=config.dropout,
        resnet_time_scale_shift="scale_shift" if config.scale_shift else "default",
        time_embedding_type="positional", flip_sin_to_cos=True, freq_shift=0,
    )


class DiffusersStep:
    """The training step of :class:`Trainer`, written out for a diffusers model (no bookkeeping beyond the step)."""

    def __init__(self, model, schedule: NoiseSchedule, data: torch.Tensor, batch: int, precision: str, device):
        self.model, self.data, self.batch, self.device = model.to(device).train(), data.to(device), batch, device
        self.alphas_cumprod = schedule.alphas_cumprod.to(device, torch.float32)
        self.ema = [p.detach().clone() for p in self.model.parameters()]
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=2e-4,  # fused, as Trainer's
                                           fused=device.type in ("cuda", "cpu") or None)
        self.dtype = torch.bfloat16 if precision == "bf16" else None
        self.generator = torch.Generator(device).manual_seed(0)

    def __call__(self) -> torch.Tensor:
        index = torch.randint(0, len(self.data), (self.batch,), generator=self.generator, device=self.device)
        t = torch.randint(0, len(self.alphas_cumprod), (self.batch,), generator=self.generator, device=self.device)
        x0 = self.data[index]
        noise = torch.randn(x0.shape, generator=self.generator, device=self.device)
        a = self.alphas_cumprod[t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        with torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
            loss = F.mse_loss(self.model(x_t, t).sample.float(), noise)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        torch._foreach_lerp_(self.ema, list(self.model.parameters()), 1e-3)
        return loss.detach()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(preset: str, batch: int, precision: str, rounds: int, steps: int, device: torch.device,
            recipe: dict | None = None, peak_tflops: float | None = None) -> dict:
    config = PRESETS[preset]
    torch.manual_seed(0)
    data = torch.rand(max(batch, 256), config.in_channels, config.image_size, config.image_size) * 2 - 1
    schedule = NoiseSchedule.cosine(1000)
    ours = Trainer(UNet(config), schedule, data, batch_size=batch, lr=2e-4, ema_decay=0.999,
                   amp=None if precision == "fp32" else "bf16", device=device, log_every=10**9)
    twin = DiffusersStep(diffusers_twin(config), schedule, data, batch, precision, device)
    counts = {"ours": sum(p.numel() for p in ours.model.parameters()),
              "diffusers": sum(p.numel() for p in twin.model.parameters())}
    if abs(counts["ours"] / counts["diffusers"] - 1) > 0.02:
        raise SystemExit(f"the two models differ by more than 2% in parameters: {counts}")
    runs = {"ours": ours.train_step, "diffusers": twin}
    if recipe:  # the same step of ours with the recipe's options (torch.compile, channels_last, bf16)
        options = {"amp": None if precision == "fp32" else "bf16", **recipe}
        runs["ours recipe"] = Trainer(UNet(config), schedule, data, batch_size=batch, lr=2e-4, ema_decay=0.999,
                                      device=device, log_every=10**9, **options).train_step
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    peak: dict[str, int] = {}
    for name, step in runs.items():  # warm-up (and the peak memory of a step, on a GPU)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(3):
            step()
        sync(device)
        if device.type == "cuda":
            peak[name] = torch.cuda.max_memory_allocated(device)
    for _ in range(rounds):
        for name, step in runs.items():  # A and B alternated
            sync(device)
            start = time.perf_counter()
            for _ in range(steps):
                step()
            sync(device)
            seconds[name].append((time.perf_counter() - start) / steps)
    images = {name: batch / statistics.median(times) for name, times in seconds.items()}
    row = {"preset": preset, "batch": batch, "precision": precision, "parameters": counts,
           "images_per_s": {k: round(v, 1) for k, v in images.items()},
           "ratio": round(images["ours"] / images["diffusers"], 3),
           "peak_memory_mb": {k: round(v / 2**20, 1) for k, v in peak.items()} or None}
    per_round = [d / o for d, o in zip(seconds["diffusers"], seconds["ours"], strict=True)]   # ours / diffusers
    row["ratio_rounds"] = [round(min(per_round), 3), round(max(per_round), 3)]
    if recipe:
        row["recipe"] = recipe
        row["ratio_recipe"] = round(images["ours recipe"] / images["diffusers"], 3)
        per_round = [d / o for d, o in zip(seconds["diffusers"], seconds["ours recipe"], strict=True)]
        row["ratio_recipe_rounds"] = [round(min(per_round), 3), round(max(per_round), 3)]
    if peak_tflops:  # a training step costs about three forward passes (forward, and backward twice over)
        flops = 3 * forward_flops(ours.model, config, device)
        row["mfu"] = {k: round(v * flops / (peak_tflops * 1e12), 4) for k, v in images.items()}
    print(row, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=("digits", "ddpm_cifar10"), default="digits")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--precision", nargs="+", choices=("fp32", "bf16"), default=["fp32", "bf16"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="steps per timed round")
    parser.add_argument("--compile", action="store_true", help="also time our step with torch.compile ...")
    parser.add_argument("--compile-mode", choices=COMPILE_MODES, help="... in this mode (default: torch's default)")
    parser.add_argument("--channels-last", action="store_true", help="... and/or in channels_last")
    parser.add_argument("--recipe-bf16", action="store_true",
                        help="... and/or in bf16 whatever --precision says (with --precision fp32: the recipe against "
                             "diffusers' default step, alternated in one run)")
    parser.add_argument("--peak-tflops", type=float, help="measured bf16 matrix ceiling, for model FLOPs utilisation")
    parser.add_argument("--out", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    recipe = {k: True for k, on in (("compile", args.compile), ("channels_last", args.channels_last)) if on}
    if args.compile_mode:
        recipe["compile"] = args.compile_mode
    if args.recipe_bf16:
        recipe["amp"] = "bf16"
    rows = [measure(args.preset, args.batch, p, args.rounds, args.steps, device, recipe, args.peak_tflops)
            for p in args.precision]
    if args.out:
        write_json(args.out, {"rows": rows, "machine": machine(device)})


if __name__ == "__main__":
    main()
