"""Half the bytes of the shipped weights: float16 where it changes nothing a chapter shows, frozen parts stored once.

    python scripts/compact_weights.py measure   # what float16 weights change, model by model (writes nothing)
    python scripts/compact_weights.py write     # rewrite diffusion_lib/pretrained/ (records re-hashed)

``measure`` loads each shipped model twice, with its weights as stored and rounded to float16 (computing in float32
both times), and compares what the model is used for on a fixed input: a denoiser's samples (DPM-Solver++(2M), 20
steps, from the same noise, decoded for a latent model), a classifier's and the reference's decisions and features,
an autoencoder's reconstructions, a text encoder's predictions, a family model's samples or logits. It prints the
largest change on the [-1, 1] image scale (and the PSNR of the change) or the fraction of decisions that flip.

``write`` stores every floating tensor of every model in float16, except the models named in :data:`KEEP_FLOAT32`
(chosen from ``measure`` and the test suite), which it leaves as they are, and stores a frozen part that is bitwise
another shipped model's weights once: the record's ``shared`` list names the other model, the prefixes, and that
model's tensors' SHA-256 (see :func:`diffusion_lib.pretrained.load`). Each record it writes keeps everything else;
its hashes are computed anew.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diffusion_lib import checkpoints  # noqa: E402
from diffusion_lib.pretrained import load  # noqa: E402

KEEP_FLOAT32 = {
    # ε-prediction models whose samples float16 weights change visibly (``measure``, 2026-12-08: max |change| on the
    # [-1, 1] scale 0.011 to 0.96; every v, flow and distilled model, every classifier and autoencoder: 0.0005 to
    # 0.0081, under one grey level of 255)
    "emoji", "emoji_latent", "emoji_text", "shapes_latent", "shapes_pooled", "shapes_text", "shapes_text_frozen",
    # small models that ``measure`` does not exercise (45k to 180k parameters: float16 would save under 0.4 MB)
    "digits_autoregressive", "digits_gan", "digits_vae", "shapes_text_encoder",
    # a metric's classifier whose decisions float16 flips (1 of 769 held-out emoji): the accuracies quoted would move
    "emoji_classifier",
    # the autoencoders define the latents their diffusion models were trained and measured on (float16 moves every
    # latent model's recorded test loss by about 2e-4 of itself); 0.5 to 1.8 MB each
    "emoji_autoencoder", "emoji_autoencoder16", "shapes_autoencoder",
    # models whose chapters print numbers that float16 moves in their last digit (the test suite, 2026-12-08): the
    # digits models and their classifier (an FD 315.06 -> 315.07; "measured now" no longer equal to the benchmark's
    # 130.36), emoji_latent_v (a median distance 17.07 -> 17.06), shapes_control with shapes_classifier (0.679 ->
    # 0.678), shapes_sr (a largest spread 0.079 -> 0.078)
    "digits", "digits_class", "digits_classifier", "digits_consistency", "digits_dit", "digits_flow",
    "digits_progressive", "digits_progressive_2", "digits_progressive_4", "digits_progressive_8", "digits_reflow",
    "emoji_latent_v", "shapes_control", "shapes_classifier", "shapes_sr",
}
"""Shipped models kept in float32 (their files are left as they are, unless they share a part): float16 weights
change their samples by more than a grey level (0.01 on the [-1, 1] scale) or a number their chapter prints, or
they are too small to matter."""
SHARED = {  # model → (the shipped model whose weights it holds frozen, its prefix there, the prefix here)
    "emoji_control": ("emoji_text_v", "", "base."),
    "shapes_control": ("shapes_text", "", "base."),
    "shapes_text_frozen": ("shapes_text_encoder", "encoder.", "encoder."),
}


def rounded(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose floating parameters and buffers are rounded to float16 (kept in their dtype)."""
    import copy

    twin = copy.deepcopy(model)
    with torch.no_grad():
        for tensor in [*twin.parameters(), *twin.buffers()]:
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().to(tensor.dtype))
    return twin


def image_change(a: torch.Tensor, b: torch.Tensor) -> str:
    change = (a - b).abs().max().item()
    mse = (a - b).pow(2).mean().item()
    psnr = math.inf if mse == 0 else 10 * math.log10(4 / mse)
    return f"max |change| {change:.4f} on [-1, 1], PSNR {psnr:.1f} dB"


def measure_one(name: str) -> str:
    from diffusion_lib.data import load_digits
    from diffusion_lib.data.emoji import load_emoji
    from diffusion_lib.data.shapes import captioned_shapes
    from diffusion_lib.samplers import sample_dpmpp_2m
    from diffusion_lib.tasks import load_pipeline

    model, schedule, record = load(name, progress=False)
    twin = rounded(model)
    kind = record["model_class"]
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        if schedule is not None and kind != "MLPDenoiser":
            pipe = load_pipeline(name, progress=False)

            def draw(denoiser):
                pipe.model = denoiser
                captions = (["a large red circle", "a small blue square", "a green triangle to the left of a yellow "
                             "circle", "a large yellow square"] if "shapes" in name else
                            ["red apple", "cat face", "fire", "grinning face"])
                arguments = {"TextToImagePipeline": (captions,),
                             "ClassPipeline": ([0, 1, 2, 3],), "UnconditionalPipeline": (4,)}
                if type(pipe).__name__ == "SuperResolutionPipeline":
                    side = denoiser.config.image_size // 2
                    low = load_emoji("test").images[:4] if side == 32 else captioned_shapes(4, seed=1).images
                    return pipe(torch.nn.functional.avg_pool2d(low, low.shape[-1] // side), steps=20,
                                generator=torch.Generator().manual_seed(0))
                if type(pipe).__name__ == "ControlNetPipeline":
                    side = denoiser.config.control_side
                    control = -torch.ones(4, denoiser.config.control_channels, side, side)
                    control[..., side // 4: 3 * side // 4, side // 4: 3 * side // 4] = 1
                    return pipe(["a large red circle"] * 4 if side == 16 else ["red apple"] * 4, control, steps=20,
                                generator=torch.Generator().manual_seed(0))
                return pipe(*arguments[type(pipe).__name__], steps=20, generator=torch.Generator().manual_seed(0))

            return image_change(draw(model), draw(twin))
        if kind == "MLPDenoiser":
            x_T = torch.randn(256, 2, generator=generator)
            return image_change(sample_dpmpp_2m(model, x_T, schedule, 20), sample_dpmpp_2m(twin, x_T, schedule, 20))
        if kind in ("DigitsClassifier", "ShapesClassifier", "EmojiClassifier"):
            images = {"DigitsClassifier": lambda: load_digits("test")[0],
                      "ShapesClassifier": lambda: captioned_shapes(512, seed=1).images,
                      "EmojiClassifier": lambda: load_emoji("test").images}[kind]()
            a, b = model(images), twin(images)
            logits = (a, b) if isinstance(a, torch.Tensor) else (torch.cat([v.flatten(1) for v in a.values()], 1)
                                                                 if isinstance(a, dict) else a[0],
                                                                 torch.cat([v.flatten(1) for v in b.values()], 1)
                                                                 if isinstance(b, dict) else b[0])
            flips = (logits[0].argmax(-1) != logits[1].argmax(-1)).float().mean().item()
            return f"max |logit change| {(logits[0] - logits[1]).abs().max().item():.4f}, decisions flipped {flips:.4f}"
        if kind == "Autoencoder":
            side = model.config.image_size if hasattr(model.config, "image_size") else None
            images = load_emoji("test").images[:64] if record.get("config", {}).get("dataset", "emoji") != "shapes" \
                and "shapes" not in name else captioned_shapes(64, seed=1).images
            del side
            return image_change(model.decode(model.encode(images)), twin.decode(twin.encode(images)))
        parameters = sum(p.numel() for p in model.parameters())
        return f"{kind}: not measured here ({parameters:,} parameters); the test suite checks it"


def measure(names: list[str]) -> None:
    torch.set_num_threads(1)
    for name in names:
        try:
            print(f"{name:24} {measure_one(name)}", flush=True)
        except Exception as err:  # a model this script cannot exercise: say so and go on
            print(f"{name:24} not measured: {type(err).__name__}: {err}", flush=True)


def write(names: list[str]) -> None:
    """Rewrite the shipped models ``names`` (and the models they share parts with) compacted; idempotent."""
    names = sorted(set(names) | {SHARED[n][0] for n in names if n in SHARED})
    names = [n for n in names if n not in KEEP_FLOAT32 or n in SHARED]  # the others stay as they are
    stored = {name: checkpoints.load(checkpoints.PRETRAINED / name) for name in names}
    for name in names:
        tensors, record = stored[name]
        if name in SHARED and not record.get("shared"):
            source, source_prefix, prefix = SHARED[name]
            source_tensors = (stored.get(source) or checkpoints.load(checkpoints.PRETRAINED / source))[0]
            for key, value in source_tensors.items():
                if key.startswith(source_prefix):
                    mine = prefix + key[len(source_prefix):]
                    if not torch.equal(tensors[mine].float(), value.float()):
                        raise SystemExit(f"{name}: {mine} is not {source}'s {key}; not shared")
                    del tensors[mine]
            record["shared"] = [{"model": source, "from": source_prefix, "to": prefix, "tensors_sha256": None}]
        if name not in KEEP_FLOAT32:
            tensors = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
        for key in ("format", "library_version", "tensors_sha256", "record_sha256"):
            record.pop(key, None)
        record["tensors_dtype"] = "float32" if name in KEEP_FLOAT32 else "float16"
        stored[name] = (tensors, record)
    written: dict[str, str] = {}
    for name in sorted(names, key=lambda n: n in SHARED):  # the sources first: the sharing records name their hashes
        tensors, record = stored[name]
        for part in record.get("shared", []):
            part["tensors_sha256"] = written.get(part["model"]) or checkpoints.load(
                checkpoints.PRETRAINED / part["model"])[1]["tensors_sha256"]
        path = checkpoints.save(checkpoints.PRETRAINED / name, tensors, record)
        written[name] = checkpoints.load(path)[1]["tensors_sha256"]
        print(f"{name:24} {record['tensors_dtype']} {checkpoints.files(path)[1].stat().st_size:>11,} bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("measure", "write"))
    parser.add_argument("names", nargs="*", help="shipped models (default: all)")
    args = parser.parse_args()
    names = args.names or sorted(p.stem for p in checkpoints.PRETRAINED.glob("*.json"))
    measure(names) if args.command == "measure" else write(names)


if __name__ == "__main__":
    main()
