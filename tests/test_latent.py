"""Latent diffusion: the autoencoder, its latent scale, and training a denoiser on latents through the CLI."""

import pytest
import torch

from diffusion_lib.data.shapes import captioned_shapes
from diffusion_lib.metrics import psnr
from diffusion_lib.models.autoencoder import Autoencoder, AutoencoderConfig
from diffusion_lib.pretrained import load
from diffusion_lib.recipes.autoencoder import TEST_DRAW, TWO_OBJECT_FRACTION


def test_the_autoencoder_halves_the_side_and_checks_its_input():
    torch.manual_seed(0)
    model = Autoencoder(AutoencoderConfig(channels=3, latent_channels=4, width=8)).eval()
    x = torch.rand(5, 3, 16, 16) * 2 - 1
    z = model.encode(x, batch_size=2)
    assert z.shape == (5, 4, 8, 8) and not z.requires_grad
    assert model.decode(z).shape == (5, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(z, model.posterior(x)[0], atol=1e-6)  # the posterior mean, batched the same
    with pytest.raises(ValueError, match=r"x must be images \(B, 3, H, W\) with H and W divisible by 2, got "
                                         r"\(5, 3, 15, 15\)"):
        model.encode(x[..., :15, :15])
    with pytest.raises(ValueError, match=r"z must be latents \(B, 4, h, w\), got \(5, 3, 8, 8\)"):
        model.decode(torch.zeros(5, 3, 8, 8))


def test_two_halvings_take_32x32_images_to_8x8_latents_and_back():
    torch.manual_seed(0)
    model = Autoencoder(AutoencoderConfig(channels=3, latent_channels=4, width=8, downsamples=2)).eval()
    assert model.factor == 4
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    z = model.encode(x)
    assert z.shape == (3, 4, 8, 8)
    assert model.decode(z).shape == (3, 3, 32, 32)
    with pytest.raises(ValueError, match=r"divisible by 4, got \(3, 3, 30, 30\)"):
        model.encode(x[..., :30, :30])
    with pytest.raises(ValueError, match="downsamples must be an int >= 1, got 0"):
        AutoencoderConfig(downsamples=0)
    one = Autoencoder(AutoencoderConfig(width=8))  # one halving keeps the layer names of the shipped shapes model
    assert set(one.state_dict()) == set(load("shapes_autoencoder").model.state_dict())


def test_fit_scale_gives_latents_of_unit_variance_and_decode_undoes_it():
    torch.manual_seed(0)
    model = Autoencoder(AutoencoderConfig(width=8)).eval()
    x = torch.rand(64, 3, 16, 16) * 2 - 1
    scale = model.fit_scale(x)
    z = model.encode(x)
    assert float(z.std()) == pytest.approx(1.0, abs=1e-5)
    assert float(model.bound) == pytest.approx(float(z.abs().max()), rel=1e-6)
    assert torch.allclose(z, model.posterior(x)[0].detach() * scale, atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(model.decode(z), model.decoder(model.posterior(x)[0]), atol=1e-5)


def test_the_kl_term_vanishes_when_the_posterior_is_the_prior():
    torch.manual_seed(0)
    model = Autoencoder(AutoencoderConfig(width=8))
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    last = model.encoder[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)  # mean 0, log-variance 0: q(z | x) = N(0, I)
    with torch.no_grad():
        free = model.loss(x, 0.0, torch.Generator().manual_seed(1))
        heavy = model.loss(x, 1e6, torch.Generator().manual_seed(1))
        assert float(heavy) == pytest.approx(float(free), rel=1e-6)
        torch.nn.init.constant_(last.bias, 0.5)  # now the posterior is not the prior: the KL term is positive
        assert float(model.loss(x, 1e6, torch.Generator().manual_seed(1))) > float(free) + 1e3


def test_the_shipped_autoencoder_still_reconstructs_as_its_record_says():
    model, _, meta = load("shapes_autoencoder")
    test = captioned_shapes(*TEST_DRAW, two_object_fraction=TWO_OBJECT_FRACTION)
    z = model.encode(test.images)
    with torch.no_grad():
        reconstructions = model.decode(z).clamp(-1, 1)
    assert psnr(reconstructions, test.images) == pytest.approx(meta["test_psnr_db"], abs=0.01)
    assert meta["test_psnr_db"] > 30 and min(meta["test_attributes_kept"].values()) > 0.97, meta
    assert float(z.std()) == pytest.approx(1.0, abs=0.05)  # the scale, fitted on the training scenes
    assert meta["command"] == "python -m diffusion_lib.recipes.autoencoder --out diffusion_lib/pretrained"


def test_the_shipped_emoji_autoencoder_reconstructs_unseen_emoji_as_its_record_says():
    from diffusion_lib.data import load_emoji
    from diffusion_lib.data.emoji import PNG_STYLES

    model, _, meta = load("emoji_autoencoder")
    test = load_emoji("test", styles=PNG_STYLES)
    z = model.encode(test.images)
    assert z.shape == (len(test), 4, 8, 8)  # 32x32x3 to 8x8x4: 12 times fewer numbers
    with torch.no_grad():
        reconstructions = model.decode(z).clamp(-1, 1)
    assert psnr(reconstructions, test.images) == pytest.approx(meta["test_psnr_db"], abs=0.01)
    classifier = load("emoji_classifier").model
    kept = classifier.predict(reconstructions)["category"] == classifier.predict(test.images)["category"]
    assert float(kept.float().mean()) == pytest.approx(meta["test_category_kept"], abs=1e-4)
    assert float(model.encode(load_emoji("train", styles=PNG_STYLES).images).std()) == pytest.approx(1.0, abs=1e-3)
    assert meta["command"] == "python -m diffusion_lib.recipes.emoji_autoencoder --out diffusion_lib/pretrained"


def test_a_latent_config_trains_on_the_autoencoders_latents(tmp_path):
    from diffusion_lib.recipes.diffusion import load_data
    from diffusion_lib.train.config import read_config

    config_file = tmp_path / "latent.toml"
    config_file.write_text('[data]\ndataset = "shapes"\nn_train = 300\nlatent = "shapes_autoencoder"\n'
                           '[model]\npreset = "shapes"\nin_channels = 4\nimage_size = 8\n[train]\nsteps = 1\n')
    config = read_config(config_file)
    latents, captions = load_data(config["data"])
    images = captioned_shapes(300, 0, two_object_fraction=0.5).images
    assert latents.shape == (300, 4, 8, 8) and len(captions) == 300
    assert torch.allclose(latents, load("shapes_autoencoder").model.encode(images), atol=1e-5)
    config_file.write_text(config_file.read_text().replace("[model]", "low_resolution = 8\n[model]"))
    with pytest.raises(ValueError, match=r"data\.latent and data\.low_resolution cannot be combined"):
        read_config(config_file)


def test_the_shipped_latent_model_draws_what_one_object_prompts_ask_for_once_decoded():
    from diffusion_lib.evaluation.shapes import adherence
    from diffusion_lib.samplers import classifier_free_guidance, sample_dpmpp_2m

    model, schedule, meta = load("shapes_latent")
    autoencoder = load(meta["config"]["data"]["latent"]).model
    prompts = captioned_shapes(48, 5, two_object_fraction=0.0)
    x_T = torch.randn(48, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        z = sample_dpmpp_2m(classifier_free_guidance(model, 3.0), x_T, schedule, 10,
                            cond=model.encode_prompts(prompts.captions), clip_x0=float(autoencoder.bound))
        images = autoencoder.decode(z).clamp(-1, 1)
    assert float(z.abs().max()) <= float(autoencoder.bound) * 1.5  # within the training latents' range
    scores = adherence(load("shapes_classifier").model.predict(images), prompts.scenes)
    assert scores["one.all"] > 0.85, scores


def test_generate_takes_class_ids_for_a_class_conditional_model_and_names_a_bad_prompt():
    from diffusion_lib.pipelines import generate
    from diffusion_lib.samplers import classifier_free_guidance, sample_dpmpp_2m

    model, schedule, _ = load("digits_class")
    labels = torch.arange(6)
    x_T = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    images = generate(model, schedule, labels, x_T, guidance=2.0, steps=8)
    with torch.no_grad():
        expected = sample_dpmpp_2m(classifier_free_guidance(model, 2.0), x_T, schedule, 8, cond=labels, clip_x0=1.0)
    assert torch.equal(images, expected)
    with pytest.raises(ValueError, match=r"prompts must hold one prompt per row of x_T \(6\), got 5"):
        generate(model, schedule, labels[:5], x_T)


def test_the_emoji_autoencoder_recipe_gives_the_same_weights_twice_and_records_its_settings():
    from diffusion_lib.recipes.emoji_autoencoder import CONFIG, train_emoji_autoencoder

    first, _ = train_emoji_autoencoder(2, seed=3)
    second, record = train_emoji_autoencoder(2, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values(),
                                                 strict=True))
    assert record["mirror"] and record["model_config"]["downsamples"] == CONFIG.downsamples == 2
    assert {"test_psnr_db", "test_category_kept", "scale", "bound", "train_seconds"} <= set(record)


def test_the_shipped_five_style_autoencoder_reconstructs_unseen_emoji_as_its_record_says():
    """emoji_autoencoder16: 32x32x3 to 16x16x4 latents on all five styles; above 30 dB on emoji it never saw."""
    from diffusion_lib.data import load_emoji

    model, _, meta = load("emoji_autoencoder16")
    test = load_emoji("test")
    z = model.encode(test.images)
    assert z.shape == (len(test), 4, 16, 16)  # a third of the pixels' numbers
    with torch.no_grad():
        reconstructions = model.decode(z).clamp(-1, 1)
    assert psnr(reconstructions, test.images) == pytest.approx(meta["test_psnr_db"], abs=0.01)
    assert meta["test_psnr_db"] >= 30 and meta["styles"] == list(load_emoji("test").style_names)
    for style, value in meta["test_psnr_db_by_style"].items():
        chosen = test.style == test.style_names.index(style)
        assert psnr(reconstructions[chosen], test.images[chosen]) == pytest.approx(value, abs=0.01), style
    assert float(model.encode(load_emoji("train").images).std()) == pytest.approx(1.0, abs=1e-3)
    assert meta["command"].startswith("python -m diffusion_lib.recipes.emoji_autoencoder16 --out ")
