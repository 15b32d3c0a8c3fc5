"""diffusion_lib: the tested implementation behind the book *Diffusion from Scratch*.

    import diffusion_lib

    pipe = diffusion_lib.load_pipeline("text-to-emoji")         # a task of the book, ready to draw
    images = pipe(["cat face"], num_images_per_prompt=4)         # (4, 3, 32, 32) in [-1, 1]
    diffusion_lib.save_images(images, "cats.png")
    model, schedule, record = diffusion_lib.load("digits")      # any saved model, shipped or yours

The names below are the library's front door, imported on first use (``import diffusion_lib`` stays instant); the
modules they come from hold the rest.
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"

PUBLIC = {  # name → the module that defines it
    "load": "diffusion_lib.pretrained",
    "load_pipeline": "diffusion_lib.tasks",
    "generate": "diffusion_lib.pipelines",
    "upscale": "diffusion_lib.pipelines",
    "NoiseSchedule": "diffusion_lib.schedules",
    "RectifiedFlowPath": "diffusion_lib.paths",
    "q_sample": "diffusion_lib.forward",
    "sample_ddpm": "diffusion_lib.samplers",
    "sample_ddim": "diffusion_lib.samplers",
    "sample_dpmpp_2m": "diffusion_lib.samplers",
    "classifier_free_guidance": "diffusion_lib.samplers",
    "UNet": "diffusion_lib.models.unet",
    "UNetConfig": "diffusion_lib.models.unet",
    "show_images": "diffusion_lib.viz",
    "save_images": "diffusion_lib.viz",
}
__all__ = ["__version__", *PUBLIC]


def __getattr__(name: str):
    if name in PUBLIC:
        value = getattr(importlib.import_module(PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'diffusion_lib' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *PUBLIC})
