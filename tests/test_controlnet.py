"""Control by an image: the U-Net's residual inputs, the ControlNet branch (zero at the start, frozen base, guidance
keeps the control), silhouettes, the [control] config and the command that trains and ships one."""

import dataclasses

import pytest
import torch

from diffusion_lib.data.shapes import captioned_shapes, silhouettes
from diffusion_lib.models.controlnet import ControlledTextUNet, ControlNetConfig
from diffusion_lib.models.text import TextConditionedUNet, TextUNetConfig, Tokenizer
from diffusion_lib.models.unet import PRESETS, UNet
from diffusion_lib.pretrained import load
from diffusion_lib.schedules import NoiseSchedule
from diffusion_lib.train import Trainer
from diffusion_lib.train.command import main
from diffusion_lib.train.config import read_config

SHAPES = captioned_shapes(16, seed=3)
SMALL = dataclasses.replace(PRESETS["shapes"], ch=16, ch_mult=(1, 2), attn_resolutions=(8,), context_dim=16,
                            num_heads=2, groups=8)


def small_text_model(seed=0) -> TextConditionedUNet:
    torch.manual_seed(seed)
    return TextConditionedUNet(TextUNetConfig(SMALL, Tokenizer.from_captions(SHAPES.captions).vocab, dim=16, depth=1,
                                              heads=2))


def controlled(seed=0) -> ControlledTextUNet:
    base = small_text_model(seed)
    model = ControlledTextUNet(ControlNetConfig(base.config))
    model.base.load_state_dict(base.state_dict())
    model.start_from_base()
    return model


def inputs(n=4, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 16, 16, generator=generator), torch.randint(0, 1000, (n,), generator=generator)


def test_unet_residuals_are_added_to_the_features_the_decoder_reads():
    torch.manual_seed(0)
    unet = UNet(dataclasses.replace(SMALL, context_dim=None))
    x, t = inputs()
    features = unet.encode(x, t)
    assert [tuple(f.shape[1:]) for f in features] == unet.feature_shapes()
    assert unet.feature_shapes() == [(16, 16, 16), (16, 16, 16), (16, 8, 8), (32, 8, 8), (32, 8, 8)]
    zeros = [torch.zeros_like(f) for f in features]
    torch.testing.assert_close(unet(x, t, {"residuals": zeros}), unet(x, t), rtol=0, atol=0)
    nudged = [z.clone() for z in zeros]
    nudged[-1] += 1.0  # the middle block's output
    assert not torch.allclose(unet(x, t, {"residuals": nudged}), unet(x, t))
    with pytest.raises(ValueError, match=r"cond residuals must be a list of 5 tensors"):
        unet(x, t, {"residuals": zeros[:-1]})
    with pytest.raises(ValueError, match=r"cond residuals\[2\]"):
        unet(x, t, {"residuals": [*zeros[:2], zeros[3], *zeros[3:]]})
    added = torch.ones(4, 16, 16, 16)
    assert not torch.allclose(unet.encode(x, t, added=added)[0], features[0])
    torch.testing.assert_close(unet.encode(x, t, added=added)[0], features[0] + 1)


def test_an_untrained_controlnet_is_exactly_its_frozen_base_whatever_the_control():
    model = controlled()
    x, t = inputs()
    cond = model.encode(SHAPES.captions[:4], silhouettes(SHAPES.images[:4]))
    base_out = model.base(x, t, {"ids": cond["ids"], "mask": cond["mask"]})
    torch.testing.assert_close(model(x, t, cond), base_out, rtol=0, atol=0)
    other = {**cond, "control": -cond["control"]}
    torch.testing.assert_close(model(x, t, other), base_out, rtol=0, atol=0)
    for conv in model.zero:  # once the zero convolutions are not zero, the control steers the output
        torch.nn.init.normal_(conv.weight, std=0.1)
    with torch.no_grad():
        torch.nn.init.normal_(model.hint[-1].weight, std=0.1)
    assert not torch.allclose(model(x, t, cond), model(x, t, other))


def test_training_moves_only_the_branch_and_guidance_keeps_the_control():
    model = controlled()
    base_before = {k: v.clone() for k, v in model.base.state_dict().items()}
    branch_before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("base.")}
    cond = {k: v.cpu() for k, v in model.encode(SHAPES.captions, silhouettes(SHAPES.images)).items()}
    trainer = Trainer(model, NoiseSchedule.cosine(), SHAPES.images, cond=cond, cond_dropout=0.5, batch_size=8,
                      lr=1e-2, log_every=1)
    trainer.fit(3)
    assert not model.base.training
    assert all(torch.equal(v, base_before[k]) for k, v in model.base.state_dict().items())
    changed = [k for k, v in model.state_dict().items()
               if not k.startswith("base.") and not torch.equal(v, branch_before[k])]
    assert any(k.startswith("zero.") for k in changed) and any(k.startswith("hint.") for k in changed)
    drop = torch.tensor([True, False, True, False])
    dropped = model.drop_cond({k: v[:4] for k, v in cond.items()}, drop)
    assert torch.equal(dropped["control"], cond["control"][:4])
    assert not dropped["mask"][0].any() and torch.equal(dropped["mask"][1], cond["mask"][1])
    with pytest.raises(ValueError, match="cond must be a dict with keys 'ids', 'mask' and 'control'"):
        model(*inputs(), {"ids": cond["ids"][:4], "mask": cond["mask"][:4]})
    with pytest.raises(ValueError, match=r"cond control must be a tensor of shape \(4, 1, 16, 16\)"):
        model(*inputs(), {**{k: v[:4] for k, v in cond.items()}, "control": torch.zeros(4, 3, 16, 16)})


def test_silhouettes_mark_where_something_is_drawn():
    masks = silhouettes(SHAPES.images)
    assert masks.shape == (16, 1, 16, 16) and set(masks.unique().tolist()) <= {-1.0, 1.0}
    assert bool((masks == 1).any(dim=(1, 2, 3)).all())  # every scene has an object
    assert torch.equal(silhouettes(-torch.ones(2, 3, 16, 16)), -torch.ones(2, 1, 16, 16))


TEXT = """
[data]
dataset = "shapes"
n_train = 64

[model]
preset = "shapes"
ch = 16
ch_mult = [1, 2]
attn_resolutions = [8]
groups = 8
num_heads = 2

[text]
dim = 16
depth = 1
heads = 2

[train]
steps = 2
batch_size = 8
log_every = 1
cond_dropout = 0.1
"""

CONTROL = """
[data]
dataset = "shapes"
n_train = 64

[control]
base = "BASE"

[train]
steps = 2
batch_size = 8
log_every = 1
checkpoint_every = 1
cond_dropout = 0.1
"""


def test_the_command_trains_a_controlnet_on_a_frozen_base_and_loads_it_back(tmp_path):
    (tmp_path / "text.toml").write_text(TEXT)
    assert main([str(tmp_path / "text.toml"), "--out", str(tmp_path / "runs")]) == 0
    base_path = tmp_path / "runs" / "text-ema"
    (tmp_path / "control.toml").write_text(CONTROL.replace("BASE", str(base_path)))
    assert main([str(tmp_path / "control.toml"), "--out", str(tmp_path / "runs")]) == 0
    model, schedule, record = load(tmp_path / "runs" / "control-ema")
    base = load(base_path).model
    assert isinstance(model, ControlledTextUNet) and isinstance(schedule, NoiseSchedule)
    assert record["model_class"] == "ControlledTextUNet" and model.parameterization == "eps" and model.clip_x0 == 1.0
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in model.base.state_dict().items())
    assert model.config.base == base.config


@pytest.mark.parametrize(("text", "message"), [
    (CONTROL + "\n[model]\npreset = 'shapes'\n", r"a \[control\] config takes its network from control\.base; remove "
                                                 r"\[model\]"),
    (CONTROL.replace('dataset = "shapes"', 'dataset = "digits"'), r"\[control\] steers a text-to-image model"),
    (CONTROL.replace('base = "BASE"', 'base = "BASE"\nkind = "edges"'), r"control\.kind must be one of"),
    (CONTROL.replace("n_train = 64", "n_train = 64\nmirror = true"),
     r"\[control\] cannot be combined with data\.mirror"),
    (CONTROL.replace('base = "BASE"\n', ""), r"missing required key control\.base"),
])
def test_bad_control_configs_name_the_key_and_the_file(tmp_path, text, message):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(ValueError, match=rf"bad\.toml: {message}"):
        read_config(config)


def test_a_controlnet_needs_a_text_to_image_base_with_its_schedule_and_target(tmp_path):
    from diffusion_lib.recipes.diffusion import build

    config = tmp_path / "control.toml"
    config.write_text(CONTROL.replace("BASE", "digits"))
    with pytest.raises(ValueError, match=r"control\.base: digits is a UNet; a ControlNet steers a text-to-image"):
        build(read_config(config), torch.device("cpu"))
    config.write_text(CONTROL.replace("BASE", "shapes_text") + '\n[schedule]\nname = "linear"\n')
    with pytest.raises(ValueError, match=r"control\.base: \[schedule\] must be that of shapes_text"):
        build(read_config(config), torch.device("cpu"))
    config.write_text(CONTROL.replace("BASE", "shapes_text").replace("cond_dropout", 'parameterization = "v"\n'
                                                                                    "cond_dropout"))
    with pytest.raises(ValueError, match=r"control\.base: train\.parameterization must be that of shapes_text, 'eps'"):
        build(read_config(config), torch.device("cpu"))


def test_a_controlnet_starts_from_the_same_weights_whatever_the_global_random_state(tmp_path):
    """Two fresh runs of one [control] config start from one network: its new parts (the hint network, the zero
    convolutions' neighbours) are drawn from train.seed, as build() draws every other model's."""
    from diffusion_lib.recipes.diffusion import build

    config = tmp_path / "control.toml"
    config.write_text(CONTROL.replace("BASE", "shapes_text"))
    built = []
    for outside in (1, 2):
        torch.manual_seed(outside)  # whatever ran before in the process
        built.append(build(read_config(config), torch.device("cpu")).model.state_dict())
    assert all(torch.equal(built[0][k], built[1][k]) for k in built[0])
    config.write_text(CONTROL.replace("BASE", "shapes_text").replace("cond_dropout", "seed = 1\ncond_dropout"))
    reseeded = build(read_config(config), torch.device("cpu")).model.state_dict()
    assert any(not torch.equal(built[0][k], reseeded[k]) for k in built[0])


def test_a_control_image_must_be_finite_and_in_range():
    model = ControlledTextUNet(ControlNetConfig(small_text_model().config))
    control = torch.zeros(1, 1, 16, 16)
    assert model.encode(["a red circle"], control)["control"].shape == (1, 1, 16, 16)
    for bad, got in ((control.clone().fill_(float("nan")), "values from 0 to 0 and NaN"),
                     (control + 2, "values from 2 to 2"), (control.tolist(), "list")):
        with pytest.raises(ValueError, match=rf"control must be control images in \[-1, 1\] \(no NaN\), got {got}"):
            model.encode(["a red circle"], bad)


def test_a_latent_model_reads_a_pixel_control_halved_to_its_side():
    base = small_text_model()
    latent_unet = dataclasses.replace(base.config.unet, image_size=8, attn_resolutions=(4,))
    config = ControlNetConfig(dataclasses.replace(base.config, unet=latent_unet), control_size=32)
    assert config.control_side == 32
    model = ControlledTextUNet(config)
    strided = [m for m in model.hint if isinstance(m, torch.nn.Conv2d) and m.stride == (2, 2)]
    assert len(strided) == 2  # 32 -> 16 -> 8
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([3, 700])
    control = silhouettes(SHAPES.images[:2]).repeat_interleave(2, -1).repeat_interleave(2, -2)  # (2, 1, 32, 32)
    cond = model.encode(SHAPES.captions[:2], control)
    torch.testing.assert_close(model(x, t, cond), model.base(x, t, {"ids": cond["ids"], "mask": cond["mask"]}),
                               rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"cond control must be a tensor of shape \(2, 1, 32, 32\)"):
        model(x, t, {**cond, "control": control[..., :16, :16]})
    for size in (12, 24, 4):
        with pytest.raises(ValueError, match="control_size must be"):
            ControlNetConfig(dataclasses.replace(base.config, unet=latent_unet), control_size=size)


def test_emoji_silhouettes_mark_what_is_not_the_white_background():
    from diffusion_lib.data.emoji import silhouettes as emoji_silhouettes

    white = torch.ones(1, 3, 4, 4)
    white[..., 1, 2] = torch.tensor([1.0, -1.0, -1.0])  # a red pixel
    white[..., 3, 0] = 0.9                               # near-white (0.17 from white): background
    mask = emoji_silhouettes(white)
    assert mask.shape == (1, 1, 4, 4) and mask.sum().item() == -14  # one pixel drawn, fifteen background
    assert mask[0, 0, 1, 2] == 1


def test_the_silhouette_iou_reads_an_emoji_on_white_with_the_emoji_rule():
    from diffusion_lib.data import load_emoji
    from diffusion_lib.data.emoji import PNG_STYLES
    from diffusion_lib.data.emoji import silhouettes as emoji_silhouettes
    from diffusion_lib.evaluation.shapes import silhouette_iou

    images = load_emoji("test", styles=PNG_STYLES).images[:6]
    masks = emoji_silhouettes(images)
    assert silhouette_iou(images, masks, drawn=emoji_silhouettes).tolist() == [1.0] * 6
    assert (silhouette_iou(images, masks) < 1).all()  # the shapes' rule takes the white background for ink
