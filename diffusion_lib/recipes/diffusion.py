"""Recipe: the diffusion models of the book, from a checked training config (:mod:`diffusion_lib.train.config`)
to an exported denoiser; ``python -m diffusion_lib.train CONFIG`` runs it.

The command writes ``OUT/NAME.safetensors`` + ``.json`` (the full training state, resumable with ``--resume``) and
``OUT/NAME-ema.safetensors`` + ``.json`` (the EMA weights and the model's config only: what
:func:`diffusion_lib.pretrained.load` loads).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.distributed as dist

from diffusion_lib import __version__, checkpoints
from diffusion_lib import data as datasets
from diffusion_lib.data.emoji import STYLES, emoji_arrays, in_style
from diffusion_lib.data.emoji import silhouettes as emoji_silhouettes
from diffusion_lib.data.shapes import silhouettes
from diffusion_lib.editing import degrade
from diffusion_lib.losses import evaluate_loss
from diffusion_lib.models.controlnet import ControlledTextUNet, ControlNetConfig
from diffusion_lib.models.dit import DiT, DiTConfig
from diffusion_lib.models.text import TextConditionedUNet, TextUNetConfig, Tokenizer
from diffusion_lib.models.unet import PRESETS, UNet
from diffusion_lib.path_samplers import sample_dpmpp_2m_on_path, uniform_times
from diffusion_lib.paths import RectifiedFlowPath
from diffusion_lib.pretrained import load, process
from diffusion_lib.recipes.preflight import check_config, check_emoji_names
from diffusion_lib.schedules import NoiseSchedule
from diffusion_lib.train import Trainer
from diffusion_lib.train.config import SHAPES_TEST
from diffusion_lib.train.objectives import NoiseWeighting
from diffusion_lib.train.runs import StopRequest
from diffusion_lib.train.students import ConsistencyDistillation, ProgressiveDistillation
from diffusion_lib.train.super_resolution import SuperResolutionBatches


def load_data(data: dict[str, Any], split: str = "train", *, captions: bool = False) -> tuple[torch.Tensor, Any]:
    """A split of ``data.dataset`` as (images (N, C, H, W) in [-1, 1], labels (N,)), or for shapes (images,
    captions); for emoji the labels are the categories, or with ``captions`` the captions as prompts
    (:attr:`~diffusion_lib.data.emoji.EmojiSet.prompts`), which a [text] model learns, in the styles ``data.styles``
    names (with ``data.style_prompts`` every image twice, the second time by its name :func:`in_style` of its style);
    ``data.hold_out`` names emoji
    taken out of the training split (to ask for them as new compositions), and the images of the emoji that
    ``data.repeat_names`` names appear ``data.repeat`` times (the copies after the originals). With ``data.mirror``
    the training split also holds every image mirrored left to right (after the originals, with the same labels);
    with ``data.latent``, the images' latents (N, c, h, w) in place of the images."""
    root = Path(data["root"]).expanduser()
    name = data["dataset"]
    if name == "shapes":
        n, seed = (data["n_train"], 0) if split == "train" else SHAPES_TEST
        shapes = datasets.captioned_shapes(n, seed, two_object_fraction=data["two_object_fraction"])
        images, labels = shapes.images, shapes.captions
    elif name == "emoji":
        emoji = datasets.load_emoji(split, styles=data["styles"], path=emoji_arrays(data["size"], root, progress=True))
        images, labels = emoji.images, emoji.prompts if captions else emoji.category
        if captions and data["style_prompts"]:  # every image twice: by its name, then by its name in its style
            images = torch.cat([images, images])
            styles = [emoji.style_names[s] for s in emoji.style.tolist()]
            labels = labels + [in_style(p, style) for p, style in zip(labels, styles, strict=True)]
        if split == "train" and (data["hold_out"] or data["repeat_names"]):
            check_emoji_names(data, emoji.prompts)
            names = emoji.prompts * (2 if captions and data["style_prompts"] else 1)  # each image's emoji
            kept = [i for i, prompt in enumerate(names) if prompt not in data["hold_out"]]
            extra = [i for i, prompt in enumerate(names) if prompt in data["repeat_names"]]
            kept += extra * (data["repeat"] - 1)
            images = images[kept]
            labels = [labels[i] for i in kept] if captions else labels[kept]
    elif name == "digits":
        images, labels = datasets.load_digits(split)
    else:
        loader = {"mnist": datasets.load_mnist, "fashion_mnist": datasets.load_fashion_mnist,
                  "cifar10": datasets.load_cifar10}[name]
        images, labels = loader(root, split)
    if data["mirror"] and split == "train":
        images = torch.cat([images, images.flip(-1)])
        labels = labels + labels if isinstance(labels, list) else torch.cat([labels, labels])
    if data["latent"]:
        images = load(data["latent"]).model.encode(images)
    return images, labels


class Built(NamedTuple):
    """What :func:`build` makes of a config."""

    model: torch.nn.Module
    schedule: NoiseSchedule | RectifiedFlowPath
    images: torch.Tensor
    cond: Any
    coupling: torch.Tensor | None
    """The noise paired with each image for reflow (see :func:`reflow_pairs`), else None."""
    teacher: torch.nn.Module | None = None
    """The teacher of a [distill] config (the model starts from its weights), else None."""


def reflow_pairs(teacher_name: str, pairs: int, steps: int, seed: int, device: torch.device,
                 batch: int = 2000) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_0, x_1), each (pairs, C, H, W): ``pairs`` draws of noise x_1 (seeded ``seed``) and where the flow-matching
    model ``teacher_name`` takes them, by DPM-Solver++(2M) in ``steps`` steps along its path; the coupling that reflow
    (Liu et al. 2022) trains a straighter flow on."""
    teacher, path, _ = load(teacher_name, device=device)
    config = teacher.config
    generator = torch.Generator().manual_seed(seed)
    x_1 = torch.randn(pairs, config.in_channels, config.image_size, config.image_size, generator=generator)
    with torch.no_grad():
        x_0 = torch.cat([sample_dpmpp_2m_on_path(teacher, x_1[i:i + batch].to(device), path, uniform_times(steps)).cpu()
                         for i in range(0, pairs, batch)])
    return x_0, x_1


def build(config: dict[str, dict[str, Any]], device: torch.device) -> Built:
    """The model, schedule, data, cond (what :func:`condition` gives) and coupling of a checked config; the schedule is
    the rectified-flow path for ``schedule.name = "rectified_flow"``. With ``data.reflow`` the data are the teacher's
    :func:`reflow_pairs` and the model starts from the teacher's weights; with [distill] the model starts from the
    teacher's weights too, and the teacher comes back as ``teacher``; with [control], the model is a ControlNet on
    the frozen base (:func:`build_controlled`). The config is checked against the models it names and its data's
    shape first (:func:`~diffusion_lib.recipes.preflight.check_config`)."""
    check_config(config)
    if "control" in config:
        return build_controlled(config, device)
    dit = config["model"].get("arch", "unet") == "dit"
    name = config["model"].get("preset")
    data = config["data"]
    if data["reflow"]:
        images, coupling = reflow_pairs(data["reflow"], data["reflow_pairs"], data["reflow_steps"],
                                        config["train"]["seed"] + 2, device)
        labels = None
    else:
        (images, labels), coupling = load_data(data, captions=captioned(config)), None
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in config["model"].items()
                 if k not in ("preset", "arch")}
    if config["data"]["class_conditional"]:
        overrides.setdefault("num_classes", int(labels.max()) + 1)
    if config["data"]["low_resolution"]:
        overrides.setdefault("cond_channels", images.shape[1])
        overrides.setdefault("noise_level_conditioning", config["data"]["noise_augmentation"] >= 0)
    if config["data"]["crop"]:  # the model learns on windows of this side
        overrides.setdefault("image_size", config["data"]["crop"])
    torch.manual_seed(config["train"]["seed"])  # the model's initial weights
    if dit:
        model = DiT(DiTConfig(**overrides))
    elif "text" in config:
        text = dict(config["text"])
        pretrained = text.pop("encoder")
        unet_config = dataclasses.replace(PRESETS[name], **overrides, context_dim=text["dim"])
        if config["data"]["dataset"] == "emoji":  # the words of every emoji's name, so that any name can be asked
            # for (a word only held-out emoji use keeps its initial embedding: no image taught it anything)
            every = datasets.load_emoji("all", path=emoji_arrays(config["data"]["size"], config["data"]["root"]))
            words = every.prompts + [in_style("", style) for style in STYLES if config["data"]["style_prompts"]]
        else:
            words = labels
        model = TextConditionedUNet(TextUNetConfig(unet_config, Tokenizer.from_captions(words).vocab, **text))
        if pretrained:
            masked_word_model, _, encoder_record = load(pretrained)
            model.load_encoder(masked_word_model.encoder, encoder_record["vocab"])
    else:
        model = UNet(dataclasses.replace(PRESETS[name], **overrides))
    model = model.to(device)
    if data["reflow"]:
        model.load_state_dict(load(data["reflow"]).model.state_dict())
    schedule = process(config["schedule"]["name"], config["schedule"]["T"])
    teacher = start_from_teacher(config, model, device) if "distill" in config else None
    return Built(model, schedule, images, condition(config, model, images, labels), coupling, teacher)


def build_controlled(config: dict[str, dict[str, Any]], device: torch.device) -> Built:
    """A [control] config's model (checked by :func:`~diffusion_lib.recipes.preflight.check_base`): a
    :class:`~diffusion_lib.models.controlnet.ControlledTextUNet` whose frozen base is the shipped model
    ``control.base`` and whose trainable copy starts from its encoder, with the base's schedule, the captioned
    training images and their ``cond`` (captions and control images)."""
    base, schedule, _ = load(config["control"]["base"], device=device)
    images, pixels, captions = controlled_data(config)
    control_size = pixels.shape[-1] if config["data"]["latent"] else None  # a latent model reads pixel controls
    torch.manual_seed(config["train"]["seed"])  # the initial weights of the parts that do not copy the base
    model = ControlledTextUNet(ControlNetConfig(base.config, control_channels=1, control_size=control_size,
                                                hint_channels=config["control"]["hint_channels"]))
    model.base.load_state_dict(base.state_dict())
    model.start_from_base()
    model = model.to(device)
    return Built(model, schedule, images, condition(config, model, pixels, captions), None)


def controlled_data(config: dict[str, dict[str, Any]], split: str = "train") -> tuple[torch.Tensor, torch.Tensor,
                                                                                          list[str]]:
    """A [control] config's data: (what the model learns: the images, or their latents with data.latent; the pixel
    images, whose silhouettes are the controls; the captions)."""
    pixels, captions = load_data({**config["data"], "latent": ""}, split, captions=True)
    latent = config["data"]["latent"]
    return (load(latent).model.encode(pixels) if latent else pixels), pixels, captions


def start_from_teacher(config: dict[str, dict[str, Any]], student: torch.nn.Module,
                       device: torch.device) -> torch.nn.Module:
    """Load the teacher of a [distill] config, check that the student has its network (dropout aside) and schedule,
    copy its weights into the student, and return it."""
    name = config["distill"]["teacher"]
    teacher = load(name, device=device).model
    if dataclasses.replace(teacher.config, dropout=0.0) != dataclasses.replace(student.config, dropout=0.0):
        raise ValueError(f"distill.teacher: the [model] table must build the teacher's network to start from its "
                         f"weights (dropout may differ); got {student.config}, {name} is {teacher.config}")
    student.load_state_dict(teacher.state_dict())
    return teacher


def student_objective(config: dict[str, dict[str, Any]], teacher: torch.nn.Module, schedule: NoiseSchedule):
    """The :mod:`diffusion_lib.train.students` objective of a [distill] config."""
    distill = config["distill"]
    if distill["method"] == "progressive":
        return ProgressiveDistillation(teacher, schedule, student_steps=distill["student_steps"],
                                       round_steps=distill["round_steps"])
    return ConsistencyDistillation(teacher, schedule, grid_steps=distill["grid_steps"],
                                   target_decay=float(distill["target_decay"]))


def round_exports(config: dict[str, dict[str, Any]], export_path: Path, steps: int) -> list[tuple[int, int, Path]]:
    """(step, student steps, path) of each round of a progressive distillation that ``steps`` completes, but the last
    (its 1-step student is ``OUT/NAME-ema``): the student of the round whose students sample in N steps is exported
    at the round's end to ``OUT/NAME_N-ema``, so that every round's student is kept. Empty for any other config."""
    distill = config.get("distill")
    if distill is None or distill["method"] != "progressive":
        return []
    rounds = [distill["student_steps"] >> k for k in range(distill["student_steps"].bit_length())]
    stem = export_path.name.removesuffix("-ema")
    return [((k + 1) * distill["round_steps"], n, export_path.with_name(f"{stem}_{n}-ema"))
            for k, n in enumerate(rounds[:-1]) if (k + 1) * distill["round_steps"] <= steps]


def captioned(config: dict[str, dict[str, Any]]) -> bool:
    """Whether a config's model reads captions (a [text] model, or a ControlNet on one)."""
    return "text" in config or "control" in config


def condition(config: dict[str, dict[str, Any]], model, images: torch.Tensor, labels):
    """The ``cond`` of each example for a config: class labels, tokenised captions, the low-resolution image of a
    super-resolution model (with noise level 0 where it has noise-conditioning augmentation), a ControlNet's captions
    and controls (``images`` then are the pixel images), or None."""
    if "control" in config:  # the captions, and where each (pixel) image is drawn
        drawn = emoji_silhouettes if config["data"]["dataset"] == "emoji" else silhouettes
        return {k: v.cpu() for k, v in model.encode(labels, drawn(images)).items()}
    if "text" in config:
        return {k: v.cpu() for k, v in model.encode_prompts(labels).items()}
    if config["data"]["class_conditional"]:
        return labels
    if config["data"]["low_resolution"]:
        degraded = {"image": degrade(images, config["data"]["low_resolution"])}
        if config["data"]["noise_augmentation"] >= 0:  # a clean condition (training draws its own levels)
            degraded["noise_level"] = torch.zeros(len(images), dtype=torch.long)
        return degraded
    return None


def export_denoiser(trainer, path, meta: dict[str, Any], test_data=None) -> Path:
    """Write the EMA weights (or the raw ones without EMA) and what is needed to rebuild the model, with
    ``clip_x0``, the bound of its data (1.0 for pixels in [-1, 1], None for latents), and ``parameterization``, what
    it predicts, which the samplers apply.

    The record names ``model_class`` and ``model_config``, which :func:`diffusion_lib.pretrained.load` rebuilds the
    model from. With ``test_data`` = (images, labels), the JSON also records the denoising loss on it
    (:func:`diffusion_lib.losses.evaluate_loss`, seed 0), a number anyone can check again after loading.
    """
    model = trainer.ema_model if trainer.ema_model is not None else trainer.model
    record = {**meta, "model_class": type(trainer.model).__name__,
              "model_config": dataclasses.asdict(trainer.model.config), "steps": trainer.step,
              "weights": "ema" if trainer.ema_model is not None else "raw",
              "clip_x0": None if meta["config"]["data"]["latent"] else 1.0,  # pixels lie in [-1, 1]
              "parameterization": trainer.parameterization}
    if test_data is not None:
        images, cond = test_data
        cond = {k: v.to(trainer.device) for k, v in cond.items()} if isinstance(cond, dict) else cond
        cond = cond.to(trainer.device) if isinstance(cond, torch.Tensor) else cond
        record["test_loss"] = evaluate_loss(model, images.to(trainer.device), trainer.schedule, cond=cond, seed=0,
                                            parameterization=trainer.parameterization)
    return checkpoints.save(path, dict(model.state_dict()), record)


def make_trainer(config: dict[str, dict[str, Any]], built: Built, device: torch.device, objective=None) -> Trainer:
    """The :class:`~diffusion_lib.train.Trainer` of a checked config's ``[train]`` table, for what :func:`build` made
    of it (and a distillation ``objective``, else None; ``train.timesteps`` or ``train.weighting`` other than the
    defaults make a :class:`~diffusion_lib.train.objectives.NoiseWeighting`); a super-resolution model's batches go
    through :class:`~diffusion_lib.train.super_resolution.SuperResolutionBatches` (``data.crop``,
    ``data.noise_augmentation``)."""
    t = config["train"]
    if objective is None and (t["timesteps"] != "uniform" or t["weighting"] != "none"):
        objective = NoiseWeighting(built.schedule, timesteps=t["timesteps"], weighting=t["weighting"],
                                   snr_gamma=float(t["snr_gamma"]), lognormal_mean=float(t["lognormal_mean"]),
                                   lognormal_std=float(t["lognormal_std"]))
    data = config["data"]
    level = data["noise_augmentation"]
    transform = SuperResolutionBatches(built.schedule, crop=data["crop"] or None,
                                       max_level=None if level < 0 else level) if data["low_resolution"] else None
    return Trainer(built.model, built.schedule, built.images, cond=built.cond, coupling=built.coupling,
                   objective=objective, batch_transform=transform, cond_dropout=float(t["cond_dropout"]),
                   batch_size=t["batch_size"],
                   lr=float(t["lr"]), weight_decay=float(t["weight_decay"]), warmup_steps=t["warmup_steps"],
                   decay_steps=t["steps"] if t["lr_schedule"] == "cosine" else None,
                   grad_clip=None if t["grad_clip"] is False else float(t["grad_clip"]), ema_decay=t["ema_decay"],
                   amp=None if t["amp"] == "none" else t["amp"], compile=t["compile"], device=device, seed=t["seed"],
                   log_every=t["log_every"], parameterization=t["parameterization"])


def train_and_export(config: dict[str, dict[str, Any]], steps: int, state_path: Path, export_path: Path, *,
                     command: str, resume: bool, device: torch.device | None = None) -> int:
    """Train the model of a checked config (:func:`diffusion_lib.train.config.read_config`) to ``steps`` steps,
    saving the resumable training state at ``state_path`` every ``train.checkpoint_every`` steps, then export the
    EMA denoiser to ``export_path`` (also beside every state saved, marked ``in_progress``); under ``torchrun``, on
    every process (rank 0 logs and writes). ``device`` None: each process's GPU if there is one, else the CPU.

    Returns:
        The exit status: 0 done, 128 + the signal's number after SIGINT or SIGTERM (a resumable state saved first).
    """
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None or distributed:
        device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    rank = dist.get_rank() if distributed else 0

    try:
        built = build(config, device)
        model, images = built.model, built.images
        t = config["train"]
        objective = None if built.teacher is None else student_objective(config, built.teacher, built.schedule)
        trainer = make_trainer(config, built, device, objective)
        if resume:
            trainer.load_state(state_path)
            if rank == 0:
                print(f"resumed from {state_path} at step {trainer.step}")
        meta = {"config": config, "command": command, "world_size": trainer.world_size,
                "torch_version": torch.__version__, "library_version": __version__}
        if rank == 0:
            print(f"{sum(p.numel() for p in model.parameters()):,} parameters; {len(images):,} training images; "
                  f"device {device}; {trainer.world_size} process(es); steps {trainer.step} -> {steps}")
        if "control" in config:  # the controls come from the pixels, also for a latent model
            test_images, test_pixels, test_labels = controlled_data(config, "test")
        else:
            test_images, test_labels = load_data(config["data"], "test", captions=captioned(config))
            test_pixels = test_images
        test_data = (test_images, condition(config, model, test_pixels, test_labels))
        rounds = round_exports(config, export_path, steps)

        def export_so_far() -> None:  # beside every saved state: a stopped or killed run leaves a model that loads
            export_denoiser(trainer, export_path, {**meta, "train_seconds": round(trainer.train_seconds, 1),
                                                   "in_progress": True})

        with StopRequest() as stop:
            # a round that ended in the step a stop came in is exported before leaving; one whose end is the state
            # a resumed run starts from (stopped there by an older version) is exported on resuming
            for until in sorted({step for step, _, _ in rounds if step >= trainer.step} | {steps}):
                before = trainer.step
                trainer.fit(max(until - trainer.step, 0), progress=True, checkpoint_every=t["checkpoint_every"],
                            checkpoint_path=state_path, meta=meta, should_stop=stop, on_save=export_so_far)
                for step, student_steps, path in rounds:
                    written = all(file.is_file() for file in checkpoints.files(path))
                    if step == until == trainer.step and rank == 0 and (trainer.step > before or not written):
                        export_denoiser(trainer, path, {**meta, "train_seconds": round(trainer.train_seconds, 1),
                                                        "sampler": {"name": "ddim", "steps": student_steps}},
                                        test_data=test_data)
                        print(f"step {step}: wrote the {student_steps}-step student {path}.*")
                if stop.received is not None:
                    break
        if stop.received is not None:
            if rank == 0:
                print(f"{signal.Signals(stop.received).name}: stopped at step {trainer.step} of {steps} and saved "
                      f"{state_path} (its EMA weights, which load, as {export_path}); continue with --resume",
                      file=sys.stderr)
            return 128 + stop.received
        if rank == 0:
            seconds = trainer.train_seconds  # over every run of a resumed training
            sampler = {"sampler": student_sampler(config, objective)} if objective is not None else {}
            export_denoiser(trainer, export_path, {**meta, "train_seconds": round(seconds, 1), **sampler,
                                                   "final_loss": trainer.history[-1] if trainer.history else None},
                            test_data=test_data)
            print(f"done in {seconds:.0f} s; wrote {state_path}.* and {export_path}.*")
    finally:
        if distributed:
            dist.destroy_process_group()
    return 0


def student_sampler(config: dict[str, dict[str, Any]], objective) -> dict[str, Any]:
    """How a distilled student samples, for its record: DDIM in the last round's steps (progressive), or
    multistep consistency sampling (consistency)."""
    if config["distill"]["method"] == "progressive":
        return {"name": "ddim", "steps": objective.student_steps}
    return {"name": "consistency"}
