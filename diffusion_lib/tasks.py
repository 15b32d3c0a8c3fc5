"""The book's tasks as pipelines, as people know them from diffusers: one object per task, loaded by name.

    pipe = load_pipeline("text-to-emoji")                   # the book's model for the task, its autoencoder, guidance
    images = pipe(["cat face", "red apple"], num_images_per_prompt=4, generator=torch.Generator().manual_seed(0))
    pipe(["cat face"], output_type="pil")[0].save("cat.png")

Each pipeline is a thin layer over the functions of :mod:`diffusion_lib.pipelines` and :mod:`diffusion_lib.editing`:
it knows its model's schedule, autoencoder, input shape and guidance, draws the starting noise from the caller's
generator, checks the caller's arguments by name, and returns tensors, PIL images or arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from diffusion_lib.checks import check_choice, check_int, check_real
from diffusion_lib.editing import invert_and_edit, sdedit
from diffusion_lib.models.autoencoder import Autoencoder
from diffusion_lib.models.controlnet import ControlledTextUNet
from diffusion_lib.models.text import TextConditionedUNet
from diffusion_lib.path_samplers import sample_dpmpp_2m_on_path, uniform_times
from diffusion_lib.paths import GaussianPath
from diffusion_lib.pipelines import describe_prompts, generate, noise_shape, upscale
from diffusion_lib.samplers import classifier_free_guidance, sample_dpmpp_2m

OUTPUT_TYPES = ("pt", "pil", "np")


@dataclass
class Pipeline:
    """A shipped model ready to draw, with everything its task needs; call it (see the subclasses). Made by
    :func:`load_pipeline`.

    Every call takes ``steps`` and ``guidance`` (None: the pipeline's defaults), ``generator`` (a CPU
    ``torch.Generator``: the same seed gives the same images on any device), ``progress`` (a progress bar) and
    ``output_type``: ``"pt"``, a tensor (N, C, H, W) in [-1, 1] on the model's device; ``"pil"``, a list of
    ``PIL.Image``; ``"np"``, a uint8 array (N, H, W, C).
    """

    name: str
    """What it was loaded as: a task name of :data:`PIPELINES`, a shipped model's name or a path."""
    model: nn.Module
    schedule: Any
    """The model's noise schedule, or the path of a flow-matching model."""
    record: dict
    """The model's record (how it was made and what it measured)."""
    autoencoder: Autoencoder | None
    """The decoder of a latent model's samples (its record names it), else None."""
    guidance: float
    """The default guidance scale: the one the book samples this model with."""
    steps: int = 20
    """The default number of DPM-Solver++(2M) steps."""

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device) -> Pipeline:
        """Move the model (and its autoencoder) to ``device``; returns the pipeline."""
        self.model.to(device)
        if self.autoencoder is not None:
            self.autoencoder.to(device)
        return self

    def noise(self, count: int, generator: torch.Generator | None) -> torch.Tensor:
        """``count`` starting noises (count, C, S, S) of the model's input shape, drawn on the CPU by ``generator``."""
        return torch.randn(count, *noise_shape(self.model), generator=generator,
                           dtype=next(self.model.parameters()).dtype)

    def settings(self, steps: int | None, guidance: float | None) -> tuple[int, float]:
        """The call's steps and guidance: the given ones, checked, or the defaults."""
        steps = self.steps if steps is None else check_int("steps", steps, low=1)
        guidance = self.guidance if guidance is None else check_real("guidance", guidance)
        return steps, guidance


def output(images: torch.Tensor, output_type: str):
    """Images (N, C, H, W) in [-1, 1] as ``output_type`` asks (see :class:`Pipeline`)."""
    check_choice("output_type", output_type, OUTPUT_TYPES)
    if output_type == "pt":
        return images
    array = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    array = array.permute(0, 2, 3, 1).numpy()
    if output_type == "np":
        return array
    from PIL import Image

    return [Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in array]


def repeat_prompts(prompt: str | Sequence[str], num_images_per_prompt: int) -> list[str]:
    """A caption or a list of them, each repeated ``num_images_per_prompt`` times, in order."""
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not (isinstance(prompts, list | tuple) and prompts and all(isinstance(p, str) for p in prompts)):
        raise ValueError(f"prompt must be a caption or a non-empty list of captions, got {describe_prompts(prompt)}")
    check_int("num_images_per_prompt", num_images_per_prompt, low=1)
    return [p for p in prompts for _ in range(num_images_per_prompt)]


class TextToImagePipeline(Pipeline):
    """Text to image: ``pipe(prompt, num_images_per_prompt=1, *, steps, guidance, generator, progress, output_type)``
    with ``prompt`` a caption or a list of captions; ``upscaler`` (a :class:`SuperResolutionPipeline`) continues
    with the cascade to twice the side."""

    def __call__(self, prompt: str | Sequence[str], num_images_per_prompt: int = 1, *, steps: int | None = None,
                 guidance: float | None = None, generator: torch.Generator | None = None, progress: bool = False,
                 output_type: str = "pt", upscaler: SuperResolutionPipeline | None = None,
                 upscale_noise_level: int = 100):
        check_choice("output_type", output_type, OUTPUT_TYPES)
        prompts = repeat_prompts(prompt, num_images_per_prompt)
        steps, guidance = self.settings(steps, guidance)
        images = generate(self.model, self.schedule, prompts, self.noise(len(prompts), generator), guidance=guidance,
                          steps=steps, autoencoder=self.autoencoder, progress=progress)
        if upscaler is not None:
            images = upscaler(images, noise_level=upscale_noise_level, steps=steps, generator=generator,
                              progress=progress)
        return output(images, output_type)

    def edit(self, images: torch.Tensor, prompt: str | Sequence[str], *, strength: float = 0.6,
             source_prompt: str | Sequence[str] | None = None, steps: int = 50, guidance: float | None = None,
             generator: torch.Generator | None = None, output_type: str = "pt"):
        """Edit ``images`` (N, 3, S, S) in [-1, 1] towards ``prompt`` (one caption, or one per image), as the chapter
        "Editing and control" does: SDEdit (noise to ``strength`` of the way, then guided DDIM back, ``steps`` the
        steps of a full-strength edit), or with ``source_prompt`` (what the images show) DDIM inversion under it and
        guided DDIM back under ``prompt``. A latent model edits the autoencoder's latents of the images.

        Raises:
            ValueError: images not (N, 3, S, S) at the model's side; prompts not one or one per image; a
                flow-matching model (editing runs on a noise schedule's timesteps).
        """
        check_choice("output_type", output_type, OUTPUT_TYPES)
        if isinstance(self.schedule, GaussianPath):
            raise ValueError(f"{self.name!r} samples on a flow-matching path; editing runs on the timesteps of a noise "
                             "schedule (a DDPM-trained model such as text-to-emoji)")
        side = noise_shape(self.model)[-1] * (1 if self.autoencoder is None else self.autoencoder.factor)
        if not (isinstance(images, torch.Tensor) and images.ndim == 4 and images.shape[1:] == (3, side, side)
                and images.is_floating_point()):
            got = f"shape {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"images must be a float tensor (N, 3, {side}, {side}) in [-1, 1], got {got}")
        prompts = repeat_prompts(prompt, 1)
        prompts = prompts * len(images) if len(prompts) == 1 else prompts
        if len(prompts) != len(images):
            raise ValueError(f"prompt must be one caption or one per image ({len(images)}), got {len(prompts)}")
        _, guidance = self.settings(None, guidance)
        x = images.to(self.device)
        if self.autoencoder is not None:
            x = self.autoencoder.encode(x)
        guided = classifier_free_guidance(self.model, guidance)
        clip_x0 = 1.0 if self.autoencoder is None else float(self.autoencoder.bound)
        with torch.no_grad():
            if source_prompt is None:
                edited = sdedit(guided, x, self.schedule, strength, steps, cond=self.model.encode_prompts(prompts),
                                clip_x0=clip_x0, generator=generator)
            else:
                sources = repeat_prompts(source_prompt, 1)
                sources = sources * len(images) if len(sources) == 1 else sources
                if len(sources) != len(images):
                    raise ValueError(f"source_prompt must be one caption or one per image ({len(images)}), got "
                                     f"{len(sources)}")
                edited = invert_and_edit(guided, x, self.schedule, strength, steps,
                                         source_cond=self.model.encode_prompts(sources),
                                         cond=self.model.encode_prompts(prompts), inverter=self.model, clip_x0=clip_x0)
            if self.autoencoder is not None:
                edited = self.autoencoder.decode(edited).clamp(-1, 1)
        return output(edited, output_type)


@dataclass
class ClassPipeline(Pipeline):
    """Images by class: ``pipe(classes, num_images_per_prompt=1, *, ...)`` with ``classes`` a class (its id or its
    name in :attr:`class_names`) or a list of them; ``pipe(None, n)`` draws ``n`` images with no condition (the null
    class, guidance 1)."""

    class_names: tuple[str, ...] = ()
    """The classes' names, where the data names them (the emoji's categories, the digits)."""

    def class_ids(self, classes: Any) -> list[int]:
        """Class ids for a class, a class name, or a list of them."""
        classes = [classes] if isinstance(classes, int | str) else classes
        count = self.model.config.num_classes
        if not (isinstance(classes, list | tuple) and classes):
            raise ValueError(f"classes must be a class (an id in [0, {count}) or a name) or a non-empty list of them, "
                             f"got {describe_prompts(classes)}")
        ids = []
        for c in classes:
            if isinstance(c, str) and c in self.class_names:
                ids.append(self.class_names.index(c))
            elif isinstance(c, int) and not isinstance(c, bool) and 0 <= c < count:
                ids.append(c)
            else:
                raise ValueError(f"classes must be ids in [0, {count}) or names of {list(self.class_names)}, got {c!r}")
        return ids

    def __call__(self, classes: Any = None, num_images_per_prompt: int = 1, *, steps: int | None = None,
                 guidance: float | None = None, generator: torch.Generator | None = None, progress: bool = False,
                 output_type: str = "pt"):
        check_choice("output_type", output_type, OUTPUT_TYPES)
        check_int("num_images_per_prompt", num_images_per_prompt, low=1)
        if classes is None:
            ids, guidance = [self.model.null_class] * num_images_per_prompt, 1.0 if guidance is None else guidance
        else:
            ids = [i for i in self.class_ids(classes) for _ in range(num_images_per_prompt)]
        steps, guidance = self.settings(steps, guidance)
        images = generate(self.model, self.schedule, torch.tensor(ids), self.noise(len(ids), generator),
                          guidance=guidance, steps=steps, autoencoder=self.autoencoder, progress=progress)
        return output(images, output_type)


class UnconditionalPipeline(Pipeline):
    """Images with no condition: ``pipe(num_images=1, *, steps, generator, progress, output_type)``."""

    def __call__(self, num_images: int = 1, *, steps: int | None = None, generator: torch.Generator | None = None,
                 progress: bool = False, output_type: str = "pt"):
        check_choice("output_type", output_type, OUTPUT_TYPES)
        check_int("num_images", num_images, low=1)
        steps, _ = self.settings(steps, None)
        x_T = self.noise(num_images, generator).to(self.device)
        clip_x0 = "auto" if self.autoencoder is None else float(self.autoencoder.bound)
        with torch.no_grad():
            if isinstance(self.schedule, GaussianPath):
                images = sample_dpmpp_2m_on_path(self.model, x_T, self.schedule,
                                                 uniform_times(steps, t_max=self.schedule.t_max), clip_x0=clip_x0,
                                                 progress=progress)
            else:
                images = sample_dpmpp_2m(self.model, x_T, self.schedule, steps, clip_x0=clip_x0, progress=progress)
            if self.autoencoder is not None:
                images = self.autoencoder.decode(images).clamp(-1, 1)
        return output(images, output_type)


class SuperResolutionPipeline(Pipeline):
    """Super-resolution to twice the side: ``pipe(images, *, noise_level=0, steps, generator, progress,
    output_type)`` with images (N, C, s, s) in [-1, 1] (see :func:`upscale`)."""

    def __call__(self, images: torch.Tensor, *, noise_level: int = 0, steps: int | None = None,
                 generator: torch.Generator | None = None, progress: bool = False, output_type: str = "pt"):
        check_choice("output_type", output_type, OUTPUT_TYPES)
        if not (isinstance(images, torch.Tensor) and images.ndim == 4 and images.is_floating_point()):
            got = f"shape {tuple(images.shape)}" if isinstance(images, torch.Tensor) else f"a {type(images).__name__}"
            raise ValueError(f"images must be a float tensor (N, C, s, s) in [-1, 1], got {got}")
        steps, _ = self.settings(steps, None)
        side = 2 * images.shape[-1]
        x_T = torch.randn(len(images), images.shape[1], side, side, generator=generator)
        return output(upscale(self.model, self.schedule, images, x_T, noise_level=noise_level, steps=steps,
                              generator=generator, progress=progress), output_type)


class ControlNetPipeline(Pipeline):
    """Text to image steered by a control image: ``pipe(prompt, control, num_images_per_prompt=1, *, ...)`` with
    ``control`` (C, S, S) or one per prompt (N, C, S, S), in [-1, 1] (e.g. a silhouette,
    :func:`diffusion_lib.data.emoji.silhouettes`). Guidance drops the caption and keeps the control."""

    def __call__(self, prompt: str | Sequence[str], control: torch.Tensor, num_images_per_prompt: int = 1, *,
                 steps: int | None = None, guidance: float | None = None, generator: torch.Generator | None = None,
                 progress: bool = False, output_type: str = "pt"):
        check_choice("output_type", output_type, OUTPUT_TYPES)
        prompts = repeat_prompts(prompt, num_images_per_prompt)
        channels, side = self.model.config.control_channels, self.model.config.control_side
        count = len(prompts) // num_images_per_prompt
        if not (isinstance(control, torch.Tensor) and tuple(control.shape) in ((channels, side, side),
                                                                               (count, channels, side, side))):
            got = f"shape {tuple(control.shape)}" if isinstance(control, torch.Tensor) else type(control).__name__
            raise ValueError(f"control must be a control image ({channels}, {side}, {side}) or one per prompt "
                             f"({count}, {channels}, {side}, {side}), got {got}")
        if control.ndim == 3:
            control = control[None].expand(count, -1, -1, -1)
        control = control.repeat_interleave(num_images_per_prompt, dim=0).to(self.device)
        steps, guidance = self.settings(steps, guidance)
        clip_x0 = 1.0 if self.autoencoder is None else float(self.autoencoder.bound)
        x_T = self.noise(len(prompts), generator).to(self.device)
        with torch.no_grad():
            images = sample_dpmpp_2m(classifier_free_guidance(self.model, guidance), x_T, self.schedule, steps,
                                     cond=self.model.encode(prompts, control), clip_x0=clip_x0, progress=progress)
            if self.autoencoder is not None:
                images = self.autoencoder.decode(images).clamp(-1, 1)
        return output(images, output_type)


@dataclass(frozen=True)
class Task:
    """A task of the book: the shipped model that does it, and the guidance the book samples it with."""

    model: str
    guidance: float = 3.0


PIPELINES = {
    "digits": Task("digits"),
    "digits-by-class": Task("digits_class", guidance=2.0),
    "text-to-shapes": Task("shapes_text_v", guidance=3.0),
    "shapes-super-resolution": Task("shapes_sr"),
    "shapes-control": Task("shapes_control", guidance=3.0),
    "emoji-by-category": Task("emoji_latent_v", guidance=4.0),
    "text-to-emoji": Task("emoji_text_v", guidance=4.0),
    "emoji-super-resolution": Task("emoji_sr"),
    "emoji-control": Task("emoji_control", guidance=2.0),
}
"""The book's tasks (hyphenated, so that no task hides a model's name) → :class:`Task`, the model that does each."""
GUIDANCE = {task.model: task.guidance for task in PIPELINES.values()}
"""The guidance a model gets when loaded by its own name: its task's."""


def load_pipeline(name_or_path: str, device: str | torch.device = "cpu", *, progress: bool = True) -> Pipeline:
    """The pipeline of a task of the book (a name of :data:`PIPELINES`, e.g. ``"text-to-emoji"``), or of any model
    :func:`diffusion_lib.pretrained.load` loads (a shipped name such as ``"emoji_text"``, or a path): its model,
    schedule, autoencoder (for a latent model, the one its record names) and default guidance (its task's, else 3), on
    ``device``. The kind
    follows from the model: :class:`TextToImagePipeline` (a text-conditioned model), :class:`ControlNetPipeline`,
    :class:`SuperResolutionPipeline` (a model conditioned on an image), :class:`ClassPipeline` (by class) or
    :class:`UnconditionalPipeline`. ``progress`` shows the download of weights not yet cached.

    Raises:
        FileNotFoundError: no such task, shipped model or checkpoint (the message lists the tasks and the models).
        ValueError: the model does not draw images (a classifier, an autoencoder, a text encoder, a 2-D model).
    """
    from diffusion_lib import pretrained

    task = PIPELINES.get(str(name_or_path)) or Task(str(name_or_path), GUIDANCE.get(str(name_or_path), 3.0))
    try:
        model, schedule, record = pretrained.load(task.model, device, progress=progress)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{name_or_path!r} is neither a task ({sorted(PIPELINES)}) nor a model: {err}") from err
    if schedule is None or record["model_class"] == "MLPDenoiser":
        raise ValueError(f"{name_or_path!r} is a {record['model_class']}, not a model that draws images")
    latent = record["config"].get("data", {}).get("latent", "")
    autoencoder = pretrained.load(latent, device, progress=progress).model if latent else None
    parts = dict(name=str(name_or_path), model=model, schedule=schedule, record=record, autoencoder=autoencoder,
                 guidance=task.guidance)
    if isinstance(model, ControlledTextUNet):
        return ControlNetPipeline(**parts)
    if isinstance(model, TextConditionedUNet):
        return TextToImagePipeline(**parts)
    if getattr(model.config, "cond_channels", None):
        return SuperResolutionPipeline(**parts)
    if getattr(model.config, "num_classes", None) is not None:
        dataset = record["config"].get("data", {}).get("dataset")
        return ClassPipeline(**parts, class_names=class_names(dataset, model.config.num_classes))
    return UnconditionalPipeline(**parts)


def class_names(dataset: str | None, count: int) -> tuple[str, ...]:
    """The names of a class model's classes: the emoji's categories, the digits' "0" to "9", else none."""
    if dataset == "emoji":
        from diffusion_lib.data.emoji import load_emoji

        names = tuple(str(n) for n in load_emoji("train").category_names)
        return names if len(names) == count else ()
    return tuple(str(i) for i in range(count)) if dataset in ("digits", "mnist") and count == 10 else ()
