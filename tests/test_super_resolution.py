"""The cascade's super-resolution model: a fully convolutional U-Net that reads the noise level of its condition,
the training batches (crops, noise-conditioning augmentation), the config keys and the one-call cascade."""

import json

import pytest
import torch

from diffusion_lib.editing import degrade
from diffusion_lib.models.unet import UNet, UNetConfig
from diffusion_lib.pipelines import upscale
from diffusion_lib.schedules import NoiseSchedule
from diffusion_lib.train import Trainer
from diffusion_lib.train.super_resolution import SuperResolutionBatches, crop_windows

SMALL = dict(in_channels=3, ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(), groups=4, image_size=8,
             cond_channels=3)


def test_a_fully_convolutional_unet_has_no_attention_and_takes_any_side():
    from diffusion_lib.models.unet_blocks import Attention

    torch.manual_seed(0)
    model = UNet(**SMALL, fully_convolutional=True).eval()
    assert not any(isinstance(m, Attention) for m in model.modules())
    assert any(isinstance(m, Attention) for m in UNet(**SMALL).modules())  # the middle block's, by default
    for side in (8, 16, 24):
        x, image = torch.randn(2, 3, side, side), torch.randn(2, 3, side, side)
        with torch.no_grad():
            assert model(x, 10, {"image": image}).shape == (2, 3, side, side)
    with pytest.raises(ValueError, match=r"x_t's side must be divisible by 2\*\*\(len\(ch_mult\) - 1\) = 2, got 9"):
        model(torch.randn(1, 3, 9, 9), 10, {"image": torch.randn(1, 3, 9, 9)})
    with pytest.raises(ValueError, match=r"cond image must be a tensor of shape \(1, 3, 8, 8\) = \(B, cond_channels, "
                                         r"S, S\), the side of x_t, got \(1, 3, 16, 16\)"):
        model(torch.randn(1, 3, 8, 8), 10, {"image": torch.randn(1, 3, 16, 16)})
    with pytest.raises(ValueError, match=r"x_t must be a tensor of shape \(B, 3, 8, 8\)"):  # the default: one side
        UNet(**SMALL)(torch.randn(1, 3, 16, 16), 10, {"image": torch.randn(1, 3, 16, 16)})
    with pytest.raises(ValueError, match=r"a fully_convolutional UNet has no attention: attn_resolutions must be "
                                         r"empty, got \(4,\)"):
        UNetConfig(**{**SMALL, "attn_resolutions": (4,)}, fully_convolutional=True)


def test_the_noise_level_enters_the_embedding_and_is_required_exactly_when_configured():
    torch.manual_seed(0)
    model = UNet(**SMALL, noise_level_conditioning=True).eval()
    x, image = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        low = model(x, 10, {"image": image, "noise_level": torch.tensor([0, 0])})
        high = model(x, 10, {"image": image, "noise_level": torch.tensor([0, 500])})
    torch.testing.assert_close(low[0], high[0])  # each example reads its own level
    assert (low[1] - high[1]).abs().max() > 1e-3
    with pytest.raises(ValueError, match=r"cond\['noise_level'\] is required exactly when the UNet has "
                                         r"noise_level_conditioning, here True"):
        model(x, 10, {"image": image})
    with pytest.raises(ValueError, match=r"here False"):
        UNet(**SMALL)(x, 10, {"image": image, "noise_level": torch.tensor([0, 0])})
    with pytest.raises(ValueError, match=r"noise_level_conditioning is the noise level of an image condition: it "
                                         r"needs cond_channels"):
        UNetConfig(**{**SMALL, "cond_channels": None}, noise_level_conditioning=True)


def test_crop_windows_cuts_each_image_at_its_own_corner():
    images = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).reshape(2, 3, 6, 6)
    windows = crop_windows(images, torch.tensor([0, 2]), torch.tensor([1, 3]), 3)
    assert torch.equal(windows[0], images[0, :, 0:3, 1:4])
    assert torch.equal(windows[1], images[1, :, 2:5, 3:6])
    with pytest.raises(ValueError, match=r"side must be an int in \[1, 6\], got 7"):
        crop_windows(images, torch.tensor([0, 0]), torch.tensor([0, 0]), 7)


def test_super_resolution_batches_cut_the_same_window_from_image_and_condition_and_noise_the_condition():
    schedule = NoiseSchedule.cosine(1000)
    x0 = torch.rand(256, 3, 16, 16) * 2 - 1
    cond = {"image": degrade(x0, 8)}
    transform = SuperResolutionBatches(schedule, crop=8)
    out, out_cond = transform(x0, cond, torch.Generator().manual_seed(0))
    assert out.shape == (256, 3, 8, 8) and set(out_cond) == {"image"}
    # the window of the condition is the condition of the window: find each crop in its image, check the condition
    for i in range(0, 256, 37):
        corners = [(r, c) for r in range(9) for c in range(9) if torch.equal(x0[i, :, r:r + 8, c:c + 8], out[i])]
        (r, c), = corners
        assert torch.equal(out_cond["image"][i], cond["image"][i, :, r:r + 8, c:c + 8])
    again, _ = transform(x0, cond, torch.Generator().manual_seed(0))
    assert torch.equal(again, out)  # the generator decides everything
    corners = {(int(torch.nonzero((x0[i] == out[i, :, :1, :1]).all(0))[0, 0]),) for i in range(256)}
    assert len(corners) > 5  # the windows move

    noised = SuperResolutionBatches(schedule, max_level=300)
    out, out_cond = noised(x0, cond, torch.Generator().manual_seed(1))
    assert torch.equal(out, x0) and set(out_cond) == {"image", "noise_level"}
    levels = out_cond["noise_level"]
    assert levels.min() >= 0 and levels.max() <= 300 and len(levels.unique()) > 100
    # what was added is Gaussian noise of the level's size: (x̃ - sqrt(ᾱ) x) / sqrt(1 - ᾱ) has unit variance
    a = schedule.alphas_cumprod[levels][:, None, None, None]
    eps = (out_cond["image"] - a.sqrt() * cond["image"]) / (1 - a).sqrt()
    assert abs(eps.std().item() - 1) < 0.01 and abs(eps.mean().item()) < 0.01
    with pytest.raises(ValueError, match=r"max_level must be an int in \[0, 999\], got 1000"):
        SuperResolutionBatches(schedule, max_level=1000)
    with pytest.raises(ValueError, match=r"crop \(32\) must be at most the images' side \(16\)"):
        SuperResolutionBatches(schedule, crop=32)(x0, cond, torch.Generator())
    with pytest.raises(ValueError, match=r"a super-resolution batch needs cond = \{'image'"):
        transform(x0, None, torch.Generator())


def test_a_trainer_learns_on_crops_and_resumes_to_the_same_weights(tmp_path):
    schedule = NoiseSchedule.cosine(1000)
    x0 = torch.rand(32, 3, 16, 16) * 2 - 1

    def trainer():
        torch.manual_seed(0)
        model = UNet(**SMALL, fully_convolutional=True, noise_level_conditioning=True)
        return Trainer(model, schedule, x0, cond={"image": degrade(x0, 8)}, batch_size=8, ema_decay=0.9,
                       batch_transform=SuperResolutionBatches(schedule, crop=8, max_level=200), seed=3)

    whole = trainer()
    whole.fit(4)
    half = trainer()
    half.fit(2, checkpoint_path=tmp_path / "state")
    resumed = trainer()
    resumed.load_state(tmp_path / "state")
    resumed.fit(2)
    assert whole.history == resumed.history
    for a, b in zip(whole.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_upscale_samples_at_the_side_of_its_noise_and_checks_its_inputs():
    torch.manual_seed(0)
    schedule = NoiseSchedule.cosine(1000)
    model = UNet(**SMALL, fully_convolutional=True, noise_level_conditioning=True).eval()
    low = torch.rand(2, 3, 8, 8) * 2 - 1
    images = upscale(model, schedule, low, torch.randn(2, 3, 16, 16), noise_level=100, steps=3,
                     generator=torch.Generator().manual_seed(0))
    assert images.shape == (2, 3, 16, 16) and images.abs().max() <= 1
    with pytest.raises(ValueError, match=r"noise_level must be a timestep in \[0, 1000\)"):
        upscale(model, schedule, low, torch.randn(2, 3, 16, 16), noise_level=1000)
    with pytest.raises(ValueError, match=r"low and x_T must be square image batches .* got \(2, 3, 8, 8\) and "
                                         r"\(3, 3, 16, 16\)"):
        upscale(model, schedule, low, torch.randn(3, 3, 16, 16))
    plain = UNet(**{**SMALL, "image_size": 16}).eval()
    with pytest.raises(ValueError, match=r"\(0 for a model without noise-level conditioning\), got 5"):
        upscale(plain, schedule, low, torch.randn(2, 3, 16, 16), noise_level=5)
    assert upscale(plain, schedule, low, torch.randn(2, 3, 16, 16), steps=2).shape == (2, 3, 16, 16)


def test_a_config_trains_a_super_resolution_model_on_crops_with_noise_augmentation(tmp_path):
    from diffusion_lib.recipes.diffusion import build, export_denoiser, make_trainer
    from diffusion_lib.train.config import read_config

    config_file = tmp_path / "sr.toml"
    body = ('[data]\ndataset = "shapes"\nn_train = 64\nlow_resolution = 8\ncrop = 8\nnoise_augmentation = 250\n'
            '[model]\npreset = "shapes"\nattn_resolutions = []\nfully_convolutional = true\n'
            '[train]\nsteps = 2\nbatch_size = 4\n')
    config_file.write_text(body)
    config = read_config(config_file)
    built = build(config, torch.device("cpu"))
    assert built.images.shape[-1] == 16
    unet = built.model.config
    assert (unet.image_size, unet.fully_convolutional, unet.noise_level_conditioning, unet.cond_channels) == \
        (8, True, True, 3)
    assert torch.equal(built.cond["noise_level"], torch.zeros(64, dtype=torch.long))  # clean; training draws levels
    trainer = make_trainer(config, built, torch.device("cpu"))
    assert (trainer.batch_transform.crop, trainer.batch_transform.max_level) == (8, 250)
    trainer.fit(2)
    out = tmp_path / "out"
    export_denoiser(trainer, out, {"config": config, "steps": 2}, test_data=(built.images[:8], {
        k: v[:8] for k, v in built.cond.items()}))
    assert json.loads(out.with_suffix(".json").read_text())["test_loss"] > 0  # the test loss reads a clean condition
    for change, message in (
            (("crop = 8\n", ""), None),
            (("fully_convolutional = true\n", ""), r"data\.crop trains on windows and samples whole images; it needs a "
                                                   r"U-Net with model\.fully_convolutional = true"),
            (("low_resolution = 8\n", ""), r"data\.crop is for a super-resolution model; it needs "
                                           r"data\.low_resolution"),
            (("= 250", "= 1000"), r"data\.noise_augmentation is a timestep; it must be below schedule\.T = 1000, got "
                                  r"1000"),
            (("= 250", "= -2"), r"data\.noise_augmentation must be an int >= -1")):
        config_file.write_text(body.replace(*change))
        if message is None:
            read_config(config_file)
        else:
            with pytest.raises(ValueError, match=message):
                read_config(config_file)
