"""One way to load any model the library saves, shipped with it or trained by you: :func:`load`.

    model, schedule, record = load("digits")                   # a denoiser and its noise schedule
    classifier = load("digits_classifier").model               # any other model: schedule is None
    model, schedule, record = load("runs/digits-ema")          # a checkpoint you trained, by path

``name_or_path`` is resolved by :func:`diffusion_lib.checkpoints.resolve`: a path whose ``.json`` exists, else the
name of a checkpoint shipped in ``diffusion_lib/pretrained/``. Every checkpoint's record names its ``model_class``
and holds every field of that class's frozen dataclass config (``model_config``); the model is rebuilt as
``model_class(config)`` (:data:`MODELS`) and its weights loaded after the integrity check of
:func:`diffusion_lib.checkpoints.load`.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import torch
from torch import nn

from diffusion_lib import checkpoints, weights
from diffusion_lib.checks import is_real
from diffusion_lib.families import FAMILIES
from diffusion_lib.forward import PARAMETERIZATIONS, PATH_PARAMETERIZATIONS
from diffusion_lib.models.autoencoder import Autoencoder, AutoencoderConfig
from diffusion_lib.models.classifier import DigitsClassifier, DigitsClassifierConfig
from diffusion_lib.models.controlnet import ControlledTextUNet, ControlNetConfig
from diffusion_lib.models.dit import DiT, DiTConfig
from diffusion_lib.models.emoji_classifier import EmojiClassifier, EmojiClassifierConfig
from diffusion_lib.models.mlp import MLPConfig, MLPDenoiser
from diffusion_lib.models.shapes_classifier import ShapesClassifier, ShapesClassifierConfig
from diffusion_lib.models.text import TextConditionedUNet, TextUNetConfig
from diffusion_lib.models.text_pretraining import MaskedWordConfig, MaskedWordModel
from diffusion_lib.models.unet import UNet, UNetConfig
from diffusion_lib.paths import RectifiedFlowPath
from diffusion_lib.schedules import NoiseSchedule

# a record's model_class → (the class, its config class); the denoisers also carry a noise schedule
DENOISERS = {"UNet": (UNet, UNetConfig), "TextConditionedUNet": (TextConditionedUNet, TextUNetConfig),
             "MLPDenoiser": (MLPDenoiser, MLPConfig), "DiT": (DiT, DiTConfig),
             "ControlledTextUNet": (ControlledTextUNet, ControlNetConfig)}
MODELS: dict[str, tuple[type[nn.Module], type]] = {
    **DENOISERS,
    **{model_class.__name__: (model_class, config_class) for model_class, config_class in FAMILIES.values()},
    **{model_class.__name__: (model_class, config_class) for model_class, config_class in (
        (DigitsClassifier, DigitsClassifierConfig), (ShapesClassifier, ShapesClassifierConfig),
        (EmojiClassifier, EmojiClassifierConfig),
        (Autoencoder, AutoencoderConfig), (MaskedWordModel, MaskedWordConfig))},
}


class Pretrained(NamedTuple):
    """What :func:`load` returns; unpacks as ``model, schedule, record``."""

    model: nn.Module
    """The network, in eval mode on the device asked for."""
    schedule: NoiseSchedule | RectifiedFlowPath | None
    """The noise schedule a denoiser was trained with (the rectified-flow path for a flow-matching model, which the
    samplers of :mod:`diffusion_lib.path_samplers` take); None for any other model."""
    record: dict[str, Any]
    """The checkpoint's JSON record: how it was made (``command``, ``config``) and what it measured."""


def load(name_or_path: str | os.PathLike, device: str | torch.device = "cpu", *, progress: bool = True) -> Pretrained:
    """Load a saved model in one call: a shipped name (``"digits"``, ``"shapes_classifier"``, ...) or a path (with or
    without ``.json``), e.g. ``runs/digits-ema`` written by ``python -m diffusion_lib.train``. A shipped model's
    weights are read from the package's folder in a clone of the book's repository, else from the cache, else
    downloaded once from the book's release, verified against the SHA-256 its record holds
    (:mod:`diffusion_lib.weights`; ``progress`` shows the download's progress bar).

    A denoiser (a ``UNet``, ``TextConditionedUNet`` or ``DiT``) carries ``clip_x0``, the bound of the data it was
    trained on (1.0 for pixels in [-1, 1]; None for latents), and ``parameterization``, what it predicts (``"eps"``,
    ``"x0"``, ``"v"``, or ``"flow"`` for a flow-matching model; ``"eps"`` for a record that does not say), which the
    samplers apply by default, and comes with its :class:`~diffusion_lib.schedules.NoiseSchedule`:
    ``sample_ddim(model, x_T, schedule)`` gives valid images. A flow-matching model comes with its
    :class:`~diffusion_lib.paths.RectifiedFlowPath` instead: ``sample_euler(model, x_T, path, uniform_times(10))``.

    Returns:
        :class:`Pretrained` (model in eval mode on ``device``, its schedule or None, the JSON record).

    Raises:
        FileNotFoundError: no such checkpoint (neither a path nor a shipped name; the message lists the shipped ones).
        OSError: a shipped model's weights must be downloaded and cannot be (:func:`diffusion_lib.weights.download`).
        ValueError: the files are not a whole, unchanged checkpoint (see :func:`diffusion_lib.checkpoints.load`), or
            the record is not a loadable model: a training state (``OUT/NAME``, written for ``--resume``), or a
            record that lacks a key or a model config field (the message names the file and the key).
    """
    path = checkpoints.resolve(name_or_path)
    tensors, record = checkpoints.load(path, weights.tensor_file(path, progress=progress))
    json_file = checkpoints.files(path)[0]
    for part in record.get("shared", []):
        tensors.update(shared_tensors(part, json_file, progress))
    if "optimizer_param_groups" in record:
        raise ValueError(f"{json_file} is a training state (written for --resume), not an exported model; load "
                         f"{path.parent / (path.name + '-ema')} instead (the training command writes it beside every "
                         "state it saves)")
    denoiser = record.get("model_class") in DENOISERS
    required = [("model_class", f"one of {sorted(MODELS)}"), ("model_config", "the model's config")]
    if denoiser:
        required += [("config", "the training config"), ("clip_x0", "a number or null")]
    for key, expected in required:
        if key not in record:
            raise ValueError(f"{json_file} lacks the key {key!r} ({expected}) of an exported model")
    if record["model_class"] not in MODELS:
        raise ValueError(f"{json_file}: model_class must be one of {sorted(MODELS)}, got {record['model_class']!r}")
    model_class, config_class = MODELS[record["model_class"]]
    schedule = _schedule(record, json_file) if denoiser else None
    model = model_class(checkpoints.config_from_record(config_class, record["model_config"],
                                                       f"{json_file}: model_config"))
    model.load_state_dict(tensors)
    if denoiser:
        model.clip_x0 = None if record["clip_x0"] is None else float(record["clip_x0"])
        model.parameterization = record.get("parameterization", "eps")  # older records: all ε models
        trained = record.get("config", {}).get("train", {}).get("parameterization")
        if trained is not None and trained != model.parameterization:
            raise ValueError(f"{json_file}: parameterization is {model.parameterization!r} (or absent: 'eps') but "
                             f"config.train.parameterization says the model was trained to predict {trained!r}; "
                             "the record was edited after it was exported")
        allowed = PATH_PARAMETERIZATIONS if isinstance(schedule, RectifiedFlowPath) else PARAMETERIZATIONS
        if model.parameterization not in allowed:
            raise ValueError(f"{json_file}: parameterization must be one of {allowed}, got "
                             f"{model.parameterization!r}")
    return Pretrained(model.to(device).eval(), schedule, record)


def shared_tensors(part: Any, json_file, progress: bool) -> dict[str, torch.Tensor]:
    """The tensors a record holds by reference: ``part`` = ``{"model": NAME, "from": PREFIX, "to": PREFIX,
    "tensors_sha256": SHA}`` names a checkpoint beside ``json_file`` whose tensors under ``from`` this model holds,
    frozen, under ``to`` (a ControlNet's base model, a frozen text encoder: stored once). The other checkpoint must
    still be the one it was made with (its tensors' SHA-256 is ``tensors_sha256``).

    Raises:
        ValueError: ``part`` is not such an entry, or the other checkpoint's weights have changed since.
    """
    if not (isinstance(part, dict) and {"model", "from", "to", "tensors_sha256"} <= part.keys()):
        raise ValueError(f"{json_file}: each entry of shared must name model, from, to and tensors_sha256, got "
                         f"{part!r}")
    source = json_file.parent / part["model"]
    tensors, record = checkpoints.load(source, weights.tensor_file(source, progress=progress))
    if record["tensors_sha256"] != part["tensors_sha256"]:
        raise ValueError(f"{json_file} holds the weights of {part['model']!r} as they were when it was made (SHA-256 "
                         f"{part['tensors_sha256']}), but {checkpoints.files(source)[1]} now has "
                         f"{record['tensors_sha256']}: the two no longer belong together")
    start = part["from"]
    return {part["to"] + key[len(start):]: value for key, value in tensors.items() if key.startswith(start)}


def _schedule(record: dict[str, Any], json_file) -> NoiseSchedule | RectifiedFlowPath:
    """The noise schedule (or flow-matching path) of an exported denoiser's record, after checking its ``clip_x0``
    and ``config.schedule``."""
    clip_x0 = record["clip_x0"]
    if clip_x0 is not None and (not is_real(clip_x0) or clip_x0 <= 0):
        raise ValueError(f"{json_file}: clip_x0 must be a number > 0 or null, got {clip_x0!r}")
    schedule_config = record["config"].get("schedule") if isinstance(record["config"], dict) else None
    if not isinstance(schedule_config, dict) or not {"name", "T"} <= schedule_config.keys():
        raise ValueError(f"{json_file}: config.schedule must hold the schedule's name and T, got {schedule_config!r}")
    return process(schedule_config["name"], schedule_config["T"])


def process(name: str, T: int) -> NoiseSchedule | RectifiedFlowPath:
    """What a training config's ``schedule.name`` names: a DDPM schedule of T steps, or the rectified-flow path of
    flow matching (``"rectified_flow"``, continuous in time: T is not used)."""
    return RectifiedFlowPath() if name == "rectified_flow" else NoiseSchedule.from_name(name, T)
