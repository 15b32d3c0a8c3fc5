"""Pipelines as people know them from diffusers: loaded by a task's name, called with prompts, returning images; and
the errors of the calls beneath them, named in the caller's terms."""

from __future__ import annotations

import importlib
import subprocess
import sys

import numpy as np
import pytest
import torch

import diffusion_lib
from diffusion_lib.pipelines import generate
from diffusion_lib.pretrained import load
from diffusion_lib.samplers import classifier_free_guidance, sample_dpmpp_2m
from diffusion_lib.tasks import (
    PIPELINES,
    ClassPipeline,
    ControlNetPipeline,
    SuperResolutionPipeline,
    TextToImagePipeline,
    UnconditionalPipeline,
    load_pipeline,
)


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def emoji_text():
    return load_pipeline("text-to-emoji")


def test_a_task_name_loads_its_model_with_its_autoencoder_and_guidance_and_the_kind_follows_from_the_model():
    kinds = {"digits": UnconditionalPipeline, "digits-by-class": ClassPipeline, "text-to-shapes": TextToImagePipeline,
             "shapes-super-resolution": SuperResolutionPipeline, "shapes-control": ControlNetPipeline,
             "emoji-by-category": ClassPipeline, "text-to-emoji": TextToImagePipeline,
             "emoji-super-resolution": SuperResolutionPipeline, "emoji-control": ControlNetPipeline}
    assert set(kinds) == set(PIPELINES)
    for name, kind in kinds.items():
        pipe = load_pipeline(name)
        assert type(pipe) is kind and pipe.guidance == PIPELINES[name].guidance, name
        latent = pipe.record["config"]["data"].get("latent")
        assert (pipe.autoencoder is None) == (not latent), name
    assert load_pipeline("emoji-by-category").class_names[1] == "Animals & Nature"
    assert type(load_pipeline("digits_flow")) is UnconditionalPipeline  # any shipped model's name works too
    assert load_pipeline("emoji_text").model.parameterization == "eps"  # a model's name, not a task's
    assert load_pipeline("emoji_text_v").guidance == 4.0  # a task's model by its own name: the task's guidance
    with pytest.raises(FileNotFoundError, match=r"'emoji_txt' is neither a task \(\['digits', .*\]\) nor a model"):
        load_pipeline("emoji_txt")
    with pytest.raises(ValueError, match="'digits_classifier' is a DigitsClassifier, not a model that draws images"):
        load_pipeline("digits_classifier")


def test_text_to_image_is_generate_with_the_noise_drawn_from_the_callers_generator(emoji_text):
    images = emoji_text(["cat face", "red apple"], num_images_per_prompt=2, steps=4, generator=seeded(0))
    model, schedule, record = load("emoji_text_v")
    x_T = torch.randn(4, 4, 8, 8, generator=seeded(0))
    expected = generate(model, schedule, ["cat face", "cat face", "red apple", "red apple"], x_T, guidance=4.0,
                        steps=4, autoencoder=load(record["config"]["data"]["latent"]).model)
    assert images.shape == (4, 3, 32, 32) and torch.equal(images, expected)
    # one caption, as a string: the same image, up to the rounding of another batch size
    assert torch.allclose(emoji_text("cat face", steps=4, generator=seeded(0)), images[:1], atol=1e-4)
    assert not torch.equal(emoji_text("cat face", steps=4, generator=seeded(1)), images[:1])
    pil = emoji_text("cat face", steps=4, generator=seeded(0), output_type="pil")
    array = emoji_text("cat face", steps=4, generator=seeded(0), output_type="np")
    assert len(pil) == 1 and pil[0].size == (32, 32) and pil[0].mode == "RGB"
    assert array.dtype == np.uint8 and array.shape == (1, 32, 32, 3) and np.array_equal(np.asarray(pil[0]), array[0])
    assert np.abs(array[0].astype(float) / 127.5 - 1 - images[0].permute(1, 2, 0).numpy()).max() <= 0.5 / 127.5 + 1e-6


def test_the_cascade_in_a_pipeline_call_is_generate_with_its_upscaler(emoji_text):
    sr = load_pipeline("emoji-super-resolution")
    big = emoji_text("fire", steps=3, generator=seeded(2), upscaler=sr, upscale_noise_level=100)
    model, schedule, record = load("emoji_text_v")
    generator = seeded(2)
    x_T = torch.randn(1, 4, 8, 8, generator=generator)
    expected = generate(model, schedule, ["fire"], x_T, guidance=4.0, steps=3,
                        autoencoder=load(record["config"]["data"]["latent"]).model,
                        upscaler=(sr.model, sr.schedule), upscale_noise_level=100, generator=generator)
    assert big.shape == (1, 3, 64, 64) and torch.equal(big, expected)


def test_a_class_pipeline_takes_ids_or_names_and_none_for_no_condition():
    pipe = load_pipeline("digits-by-class")
    by_name = pipe(["3", "7"], steps=3, generator=seeded(0))
    by_id = pipe([3, 7], steps=3, generator=seeded(0))
    model, schedule, _ = load("digits_class")
    x_T = torch.randn(2, 1, 8, 8, generator=seeded(0))
    with torch.no_grad():
        expected = sample_dpmpp_2m(classifier_free_guidance(model, 2.0), x_T, schedule, 3, cond=torch.tensor([3, 7]),
                                   clip_x0=1.0)
    assert torch.equal(by_name, by_id) and torch.equal(by_id, expected)
    free = pipe(None, 3, steps=3, generator=seeded(0))
    with torch.no_grad():
        expected = sample_dpmpp_2m(classifier_free_guidance(model, 1.0), torch.randn(3, 1, 8, 8, generator=seeded(0)),
                                   schedule, 3, cond=torch.full((3,), model.null_class), clip_x0=1.0)
    assert torch.equal(free, expected)
    with pytest.raises(ValueError, match=r"classes must be ids in \[0, 10\) or names of \['0', '1', .*\], got 'ten'"):
        pipe("ten")
    with pytest.raises(ValueError, match=r"classes must be ids in \[0, 10\) .*got 10"):
        pipe(10)


def test_a_controlnet_pipeline_samples_as_the_chapter_does_and_names_a_wrong_control_shape():
    pipe = load_pipeline("shapes-control")
    control = -torch.ones(1, 16, 16)
    control[:, 4:12, 4:12] = 1
    images = pipe("a large red square", control, num_images_per_prompt=2, steps=3, generator=seeded(0))
    model, schedule, _ = load("shapes_control")
    x_T = torch.randn(2, 3, 16, 16, generator=seeded(0))
    with torch.no_grad():
        expected = sample_dpmpp_2m(classifier_free_guidance(model, 3.0), x_T, schedule, 3,
                                   cond=model.encode(["a large red square"] * 2, control[None].expand(2, -1, -1, -1)),
                                   clip_x0=1.0)
    assert torch.equal(images, expected)
    with pytest.raises(ValueError, match=r"control must be a control image \(1, 16, 16\) or one per prompt "
                                         r"\(2, 1, 16, 16\), got shape \(1, 32, 32\)"):
        pipe(["a red circle", "a blue square"], torch.zeros(1, 32, 32))


def test_every_call_names_its_own_bad_arguments(emoji_text):
    with pytest.raises(ValueError, match="prompt must be a caption or a non-empty list of captions, got \\[\\]"):
        emoji_text([])
    with pytest.raises(ValueError, match="num_images_per_prompt must be an int >= 1, got 0"):
        emoji_text("cat face", 0)
    with pytest.raises(ValueError, match=r"output_type must be one of \('pt', 'pil', 'np'\), got 'png'"):
        emoji_text("cat face", output_type="png")
    with pytest.raises(ValueError, match="guidance must be a finite number"):
        emoji_text("cat face", guidance=float("nan"))
    with pytest.raises(ValueError, match="steps must be an int >= 1, got 0"):
        emoji_text("cat face", steps=0)


def test_generate_names_the_callers_mistakes_before_any_model_call():
    """The mistakes a new user makes, each once: every one used to end in a RuntimeError, AttributeError or
    IndexError from deep inside, or in latents returned as if they were images."""
    text, schedule, record = load("emoji_text_v")
    autoencoder = load(record["config"]["data"]["latent"]).model
    digits, digits_schedule, _ = load("digits_class")
    noise = torch.randn(1, 4, 8, 8)
    cases = [
        (dict(model=text, prompts=["cat face"], x_T=torch.randn(1, 3, 32, 32)),
         r"x_T must be a tensor of shape \(B, 4, 8, 8\) for this model \(one noise per prompt\), got shape "
         r"\(1, 3, 32, 32\)"),
        (dict(model=text, prompts=[], x_T=torch.randn(0, 4, 8, 8)),
         r"prompts must hold one prompt per row of x_T \(0\)"),
        (dict(model=text, prompts=["cat face", "fire"], x_T=noise),
         r"prompts must hold one prompt per row of x_T \(1\), got 2"),
        (dict(model=text, prompts=["cat face"], x_T=noise.double()),
         r"x_T must be torch.float32 like the model's weights, got torch.float64"),
        (dict(model=text, prompts=["cat face"], x_T=noise.numpy()), r"x_T must be a tensor .* got a ndarray"),
        (dict(model=text, prompts=torch.tensor([3]), x_T=noise),
         r"prompts must be captions \(a list of strings\) for a text-conditioned model, got a torch.int64 tensor"),
        (dict(model=digits, schedule=digits_schedule, prompts=["3"], x_T=torch.randn(1, 1, 8, 8)),
         r"prompts must be class ids \(a LongTensor of shape \(B,\)\) for a class-conditional model, got a list of "
         r"str"),
        (dict(model=digits, schedule=digits_schedule, prompts=torch.tensor([11]), x_T=torch.randn(1, 1, 8, 8)),
         r"prompts must be class ids in \[0, 10\] \(10: the null class, no condition\), got ids from 11 to 11"),
        (dict(model=text, prompts=["cat face"], x_T=noise, autoencoder=None),
         r"this model draws latents \(4 channels\), not images: pass its autoencoder"),
        (dict(model=text, prompts=["cat face"], x_T=noise, guidance=float("inf")), r"guidance must be a finite number"),
    ]
    for case, message in cases:
        arguments = {"schedule": schedule, "autoencoder": autoencoder, "guidance": 4.0, "steps": 2, **case}
        with pytest.raises(ValueError, match=message):
            generate(arguments.pop("model"), arguments.pop("schedule"), arguments.pop("prompts"),
                     arguments.pop("x_T"), **arguments)


def test_progress_shows_a_bar_per_sampling_loop_on_standard_error(emoji_text, capsys):
    emoji_text("cat face", steps=3, progress=True)
    assert "DPM-Solver++" in capsys.readouterr().err
    emoji_text("cat face", steps=3)
    assert capsys.readouterr().err == ""


def test_the_packages_front_door_names_the_public_api_and_imports_nothing_heavy_until_asked():
    for name, module in diffusion_lib.PUBLIC.items():
        assert getattr(diffusion_lib, name) is getattr(importlib.import_module(module), name), name
    from diffusion_lib import load as front_load

    assert front_load is load and set(diffusion_lib.PUBLIC) <= set(dir(diffusion_lib))
    with pytest.raises(AttributeError, match="module 'diffusion_lib' has no attribute 'lod'"):
        diffusion_lib.lod  # noqa: B018
    fresh = subprocess.run([sys.executable, "-c", "import sys, diffusion_lib; print('torch' in sys.modules)"],
                           capture_output=True, text=True, check=True)
    assert fresh.stdout.strip() == "False"


def test_editing_with_text_is_the_chapters_sdedit_or_inversion_and_refuses_a_flow_model():
    from diffusion_lib.data.shapes import captioned_shapes
    from diffusion_lib.editing import invert_and_edit, sdedit

    pipe = load_pipeline("text-to-shapes")
    source = captioned_shapes(2, seed=3, two_object_fraction=0.0)
    edited = pipe.edit(source.images, "a large blue circle", strength=0.5, steps=6, generator=seeded(0))
    model, schedule, _ = load("shapes_text_v")
    cond = model.encode_prompts(["a large blue circle"] * 2)
    with torch.no_grad():
        expected = sdedit(classifier_free_guidance(model, 3.0), source.images, schedule, 0.5, 6, cond=cond,
                          clip_x0=1.0, generator=seeded(0))
        inverted = invert_and_edit(classifier_free_guidance(model, 3.0), source.images, schedule, 0.5, 6,
                                   source_cond=model.encode_prompts(source.captions), cond=cond, inverter=model,
                                   clip_x0=1.0)
    assert torch.equal(edited, expected)
    assert torch.equal(pipe.edit(source.images, "a large blue circle", source_prompt=source.captions, strength=0.5,
                                 steps=6), inverted)
    with pytest.raises(ValueError, match=r"images must be a float tensor \(N, 3, 16, 16\) in \[-1, 1\], got shape "
                                         r"\(2, 3, 32, 32\)"):
        pipe.edit(torch.zeros(2, 3, 32, 32), "a red circle")
    with pytest.raises(ValueError, match=r"prompt must be one caption or one per image \(2\), got 3"):
        pipe.edit(source.images, ["a red circle"] * 3)
    latent = load_pipeline("text-to-emoji").edit(torch.zeros(1, 3, 32, 32), "fire", strength=0.3, steps=3)
    assert latent.shape == (1, 3, 32, 32)
    flow_text = TextToImagePipeline(name="a flow model", model=model, schedule=load("digits_flow").schedule,
                                    record={}, autoencoder=None, guidance=3.0)
    with pytest.raises(ValueError, match="samples on a flow-matching path; editing runs on the timesteps"):
        flow_text.edit(torch.zeros(1, 3, 32, 32), "fire")
