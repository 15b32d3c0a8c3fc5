"""Checks of a diffusion training config against the models it names and the shape of its data, made before any data
is loaded or any network built, so that the training command can refuse a config in one line naming the key.

:func:`diffusion_lib.train.config.read_config` checks what a config says on its own. What it cannot know is in other
files: whether ``distill.teacher``, ``control.base``, ``data.reflow`` and ``data.latent`` name checkpoints of the
right kind, trained on the config's schedule and data; whether the network's input is the data's shape; whether
``data.hold_out`` names emoji that exist. :func:`check_config` reads the checkpoints' JSON records (never their
weights) and the shipped emoji names, and raises a ValueError naming the key.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from diffusion_lib import checkpoints
from diffusion_lib.data.emoji import load_emoji
from diffusion_lib.models.dit import DiTConfig
from diffusion_lib.models.unet import PRESETS, UNetConfig

SHAPES = {"digits": (1, 8), "mnist": (1, 28), "fashion_mnist": (1, 28), "cifar10": (3, 32), "shapes": (3, 16)}
"""data.dataset -> (channels, side) of its images; emoji are (3, data.size)."""


def record_of(name: str, key: str) -> dict[str, Any]:
    """The JSON record of the checkpoint ``name`` (a path or a shipped name) that the config's ``key`` names."""
    try:
        json_file = checkpoints.files(checkpoints.resolve(name))[0]
        record = json.loads(json_file.read_text())
    except (FileNotFoundError, OSError, ValueError) as err:
        raise ValueError(f"{key}: {err}") from None
    if not isinstance(record, dict) or not isinstance(record.get("model_class"), str):
        raise ValueError(f"{key}: {json_file} is not a model's record (no model_class)")
    return record


def schedule_of(record: dict[str, Any]) -> tuple[str, int] | None:
    """(name, T) of the schedule a model was trained on, from its record; None where it does not say."""
    schedule = record.get("config", {}).get("schedule")
    return (schedule["name"], schedule["T"]) if isinstance(schedule, dict) else None


def check_same_schedule(config: dict[str, dict[str, Any]], record: dict[str, Any], key: str, name: str) -> None:
    theirs = schedule_of(record)
    if theirs is not None and theirs != (config["schedule"]["name"], config["schedule"]["T"]):
        raise ValueError(f"{key}: [schedule] must be that of {name}, name = {theirs[0]!r}, T = {theirs[1]}; got "
                         f"name = {config['schedule']['name']!r}, T = {config['schedule']['T']}")


def unet_config_of(record: dict[str, Any]) -> dict[str, Any]:
    """The U-Net fields of a denoiser's record: its ``model_config``, or for a text model its ``unet``."""
    fields = record.get("model_config", {})
    return fields.get("unet", {}) if record["model_class"] == "TextConditionedUNet" else fields


def data_shape(config: dict[str, dict[str, Any]]) -> tuple[int, int, str]:
    """(channels, side, what they are) of what the model of ``config`` learns: the images of data.dataset, the
    latents of data.latent's autoencoder, or the samples of data.reflow's model."""
    data = config["data"]
    channels, side = (3, data["size"]) if data["dataset"] == "emoji" else SHAPES[data["dataset"]]
    what = f"data.dataset = {data['dataset']!r}"
    if data["latent"]:
        record = record_of(data["latent"], "data.latent")
        if record["model_class"] != "Autoencoder":
            raise ValueError(f"data.latent: {data['latent']} is a {record['model_class']}, not an Autoencoder")
        fields = record["model_config"]
        if fields["channels"] != channels:
            raise ValueError(f"data.latent: {data['latent']} encodes {fields['channels']}-channel images; {what} "
                             f"has {channels}")
        channels, side = fields["latent_channels"], side // 2 ** fields["downsamples"]
        what = f"the latents of data.latent = {data['latent']!r}"
    if data["reflow"]:
        record = record_of(data["reflow"], "data.reflow")
        if record["model_class"] != "UNet" or (schedule_of(record) or ("",))[0] != "rectified_flow":
            raise ValueError(f"data.reflow: {data['reflow']} is not an unconditional flow-matching U-Net (a "
                             f"{record['model_class']} on {schedule_of(record)})")
        theirs = record["config"]["data"]
        for field in ("dataset", "size", "latent"):
            if theirs.get(field, data[field]) != data[field]:
                raise ValueError(f"data.reflow: {data['reflow']} learned data.{field} = {theirs[field]!r}; the "
                                 f"config has {data[field]!r} (its test loss is measured on the same data)")
        if record["model_config"].get("num_classes"):
            raise ValueError(f"data.reflow: {data['reflow']} is class-conditional; reflow trains an unconditional "
                             "model")
    return channels, side, what


def network_config(config: dict[str, dict[str, Any]], channels: int) -> UNetConfig | DiTConfig | None:
    """The network that [model] describes, as far as the data do not decide it (None for a [control] config, whose
    network is its base's). The training builds it with the number of classes and the context size added."""
    model = config["model"]
    if "control" in config:
        return None
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in model.items() if k not in ("preset", "arch")}
    if config["data"]["low_resolution"]:
        overrides.setdefault("cond_channels", channels)
        overrides.setdefault("noise_level_conditioning", config["data"]["noise_augmentation"] >= 0)
    if config["data"]["crop"]:
        overrides.setdefault("image_size", config["data"]["crop"])
    try:
        if model.get("arch", "unet") == "dit":
            return DiTConfig(**overrides)
        return dataclasses.replace(PRESETS[model["preset"]], **overrides)
    except (TypeError, ValueError) as err:
        raise ValueError(f"[model]: {err}") from None


def check_network(config: dict[str, dict[str, Any]], network: UNetConfig | DiTConfig,
                  shape: tuple[int, int, str]) -> None:
    """The network's input must be the data's shape (a crop's side, for a model trained on crops)."""
    channels, side, what = shape
    side = config["data"]["crop"] or side
    if network.in_channels != channels:
        raise ValueError(f"model.in_channels: {what} has {channels} channels; the network reads "
                         f"{network.in_channels} (set model.in_channels = {channels})")
    if network.image_size != side:
        crop = " (a crop of data.crop)" if config["data"]["crop"] else ""
        raise ValueError(f"model.image_size: {what} is {side}x{side}{crop}; the network reads "
                         f"{network.image_size}x{network.image_size} (set model.image_size = {side})")


def check_teacher(config: dict[str, dict[str, Any]], network: UNetConfig | DiTConfig | None) -> None:
    """distill.teacher must be a U-Net (no text) on the config's schedule whose network [model] builds."""
    name = config["distill"]["teacher"]
    record = record_of(name, "distill.teacher")
    if record["model_class"] != "UNet":
        raise ValueError(f"distill.teacher: {name} is a {record['model_class']}; distillation takes an unconditional "
                         "or class-conditional UNet")
    check_same_schedule(config, record, "distill.teacher", name)
    theirs = checkpoints.config_from_record(UNetConfig, record["model_config"], f"distill.teacher: {name}")
    if not isinstance(network, UNetConfig) or (dataclasses.replace(network, dropout=0.0, num_classes=None)
                                               != dataclasses.replace(theirs, dropout=0.0, num_classes=None)):
        raise ValueError(f"distill.teacher: the [model] table must build the network of {name} to start from its "
                         f"weights (dropout may differ); {name} is {theirs}")


def check_reflow_source(config: dict[str, dict[str, Any]], network: UNetConfig | DiTConfig | None) -> None:
    """The [model] table must build data.reflow's network: the reflowed model starts from its weights."""
    name = config["data"]["reflow"]
    theirs = checkpoints.config_from_record(UNetConfig, record_of(name, "data.reflow")["model_config"],
                                            f"data.reflow: {name}")
    if network != theirs:
        raise ValueError(f"data.reflow: the [model] table must build the network of {name} to start from its weights; "
                         f"{name} is {theirs}")


def check_base(config: dict[str, dict[str, Any]], shape: tuple[int, int, str]) -> None:
    """control.base must be a text-to-image model with the config's schedule, target, latents and data shape."""
    name = config["control"]["base"]
    record = record_of(name, "control.base")
    if record["model_class"] != "TextConditionedUNet":
        raise ValueError(f"control.base: {name} is a {record['model_class']}; a ControlNet steers a text-to-image "
                         "model (a TextConditionedUNet)")
    check_same_schedule(config, record, "control.base", name)
    target = record.get("parameterization", "eps")
    if target != config["train"]["parameterization"]:
        raise ValueError(f"control.base: train.parameterization must be that of {name}, {target!r}; "
                         f"got {config['train']['parameterization']!r}")
    theirs = record.get("config", {}).get("data", {}).get("latent", "")
    if config["data"]["latent"] != theirs:
        raise ValueError(f"control.base: data.latent must be that of {name}, {theirs!r}; got "
                         f"{config['data']['latent']!r}")
    network = checkpoints.config_from_record(UNetConfig, unet_config_of(record), f"control.base: {name}")
    if (network.in_channels, network.image_size) != shape[:2]:
        raise ValueError(f"control.base: {name} reads {network.in_channels}x{network.image_size}x{network.image_size}; "
                         f"{shape[2]} is {shape[0]}x{shape[1]}x{shape[1]}")


def check_text_encoder(config: dict[str, dict[str, Any]]) -> None:
    """text.encoder, where given, must be a pretrained masked-word model of the [text] table's size."""
    name = config["text"]["encoder"]
    record = record_of(name, "text.encoder")
    if record["model_class"] != "MaskedWordModel":
        raise ValueError(f"text.encoder: {name} is a {record['model_class']}, not a pretrained text encoder (a "
                         "MaskedWordModel)")
    for key in ("dim", "depth", "max_len"):
        if record["model_config"][key] != config["text"][key]:
            raise ValueError(f"text.{key} must be that of text.encoder = {name!r}, {record['model_config'][key]}; "
                             f"got {config['text'][key]}")


def check_emoji_names(data: dict[str, Any], prompts: list[str]) -> None:
    """data.hold_out and data.repeat_names must name emoji among ``prompts`` (the training split's names)."""
    for key in ("hold_out", "repeat_names"):
        unknown = sorted(set(data[key]) - set(prompts))
        if unknown:
            raise ValueError(f"data.{key}: {unknown} are not names of training emoji (as prompts: lower case, no "
                             "colons or commas)")


def check_config(config: dict[str, dict[str, Any]]) -> None:
    """Check a config that :func:`~diffusion_lib.train.config.read_config` accepted against the checkpoints it names
    and the shape of its data, reading records only.

    Raises:
        ValueError: the message starts with the key at fault ("distill.teacher: ...", "model.image_size: ...").
    """
    shape = data_shape(config)
    network = network_config(config, shape[0])
    if network is not None:
        check_network(config, network, shape)
    if "distill" in config:
        check_teacher(config, network)
    if config["data"]["reflow"]:
        check_reflow_source(config, network)
    if "control" in config:
        check_base(config, shape)
    if "text" in config and config["text"]["encoder"]:
        check_text_encoder(config)
    if config["data"]["hold_out"] or config["data"]["repeat_names"]:
        check_emoji_names(config["data"], load_emoji("train", styles=config["data"]["styles"]).prompts)
