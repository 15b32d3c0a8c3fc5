"""Training on the rectified-flow path (flow matching) and training a diffusion transformer: the loss, the trainer,
the config checks, the command line and the loader."""

import pytest
import torch

from diffusion_lib.data import load_digits
from diffusion_lib.losses import diffusion_loss_per_example, evaluate_loss, flow_loss_per_example
from diffusion_lib.models.dit import DiT
from diffusion_lib.models.unet import unet_from_preset
from diffusion_lib.path_samplers import sample_euler, uniform_times
from diffusion_lib.paths import RectifiedFlowPath
from diffusion_lib.pretrained import load
from diffusion_lib.schedules import NoiseSchedule
from diffusion_lib.train import Trainer
from diffusion_lib.train.command import main
from diffusion_lib.train.config import read_config

DIGITS = load_digits("train")[0][:256]
RF = RectifiedFlowPath()


def test_the_flow_loss_regresses_the_velocity_at_the_path_point_and_time():
    x0 = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    eps = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0])
    seen = {}

    def oracle(x_t, time, cond):
        seen.update(x_t=x_t, time=time)
        return eps - x0  # the velocity of the straight path

    losses, drawn = flow_loss_per_example(oracle, x0, RF, t=t, noise=eps)
    assert torch.equal(drawn, t) and losses.abs().max() == 0
    torch.testing.assert_close(seen["x_t"], (1 - t).reshape(-1, 1, 1, 1) * x0 + t.reshape(-1, 1, 1, 1) * eps)
    torch.testing.assert_close(seen["time"], 1000 * t)  # the network's time on this path
    zero, _ = flow_loss_per_example(lambda x_t, time, cond: torch.zeros_like(x_t), x0, RF, t=t, noise=eps)
    torch.testing.assert_close(zero, (eps - x0).square().flatten(1).mean(1))
    for parameterization, target in (("eps", eps), ("x0", x0)):
        loss, _ = flow_loss_per_example(lambda x_t, time, cond, target=target: target, x0, RF, t=t, noise=eps,
                                        parameterization=parameterization)
        assert loss.abs().max() == 0


def test_the_flow_loss_draws_t_then_the_noise_from_its_generator():
    x0 = torch.randn(7, 3)
    model = lambda x_t, time, cond: x_t  # noqa: E731
    a = flow_loss_per_example(model, x0, RF, generator=torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(3)
    t = torch.rand(7, generator=generator)
    noise = torch.randn(7, 3, generator=generator)
    b = flow_loss_per_example(model, x0, RF, t=t, noise=noise)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], t) and bool(((t >= 0) & (t < 1)).all())


def test_the_losses_name_a_process_they_cannot_train_on():
    x0 = torch.randn(2, 3)
    with pytest.raises(ValueError, match="path must be a RectifiedFlowPath"):
        flow_loss_per_example(lambda x, t, c: x, x0, NoiseSchedule.cosine())
    with pytest.raises(ValueError, match="schedule must be a NoiseSchedule, got RectifiedFlowPath"):
        diffusion_loss_per_example(lambda x, t, c: x, x0, RF)
    with pytest.raises(ValueError, match="parameterization must be one of"):
        diffusion_loss_per_example(lambda x, t, c: x, x0, NoiseSchedule.cosine(), parameterization="flow")


def _flow_trainer(seed=0, **kwargs):
    torch.manual_seed(seed)
    options = dict(batch_size=16, lr=1e-3, warmup_steps=2, ema_decay=0.99, log_every=2, parameterization="flow")
    return Trainer(unet_from_preset("digits_small", dropout=0.1), RF, DIGITS, **(options | kwargs))


def test_flow_matching_trains_resumes_bit_for_bit_and_its_loss_falls(tmp_path):
    straight = _flow_trainer()
    straight.fit(6)
    half = _flow_trainer()
    half.fit(3)
    half.save(tmp_path / "state")
    resumed = _flow_trainer(seed=5)
    resumed.load_state(tmp_path / "state")
    resumed.fit(3)
    assert resumed.history == straight.history
    assert all(torch.equal(a, b) for a, b in zip(resumed.model.state_dict().values(),
                                                 straight.model.state_dict().values(), strict=True))
    centres, _ = straight.loss_by_t()
    assert centres[0] == pytest.approx(0.05) and centres[-1] == pytest.approx(0.95)  # buckets of the time in [0, 1]
    assert int(straight.bucket_count.sum()) == 6 * 16

    trainer = _flow_trainer(batch_size=64, lr=2e-3, warmup_steps=5, log_every=10)
    history = torch.tensor(trainer.fit(40))
    assert history[-10:].mean() < 0.7 * history[:10].mean(), history


def test_a_trainer_names_a_parameterization_its_process_cannot_use():
    with pytest.raises(ValueError, match="parameterization must be one of"):
        Trainer(unet_from_preset("digits_small"), NoiseSchedule.cosine(), DIGITS, parameterization="flow")
    with pytest.raises(ValueError, match="schedule must be a NoiseSchedule or a RectifiedFlowPath"):
        Trainer(unet_from_preset("digits_small"), "cosine", DIGITS)


FLOW = """
[data]
dataset = "digits"

[model]
preset = "digits_small"

[schedule]
name = "rectified_flow"

[train]
steps = 3
batch_size = 8
warmup_steps = 1
ema_decay = 0.9
log_every = 1
parameterization = "flow"
"""

DIT = """
[data]
dataset = "digits"
class_conditional = true

[model]
arch = "dit"
in_channels = 1
image_size = 8
patch_size = 2
dim = 32
depth = 2
num_heads = 4

[schedule]
name = "cosine"
T = 100

[train]
steps = 3
batch_size = 8
warmup_steps = 1
ema_decay = 0.9
cond_dropout = 0.1
log_every = 1
"""


def test_the_command_line_trains_a_flow_model_that_loads_with_its_path_and_samples(tmp_path):
    config = tmp_path / "flow.toml"
    config.write_text(FLOW)
    assert main([str(config), "--out", str(tmp_path / "runs")]) == 0
    model, path, meta = load(tmp_path / "runs" / "flow-ema")
    assert isinstance(path, RectifiedFlowPath) and model.parameterization == meta["parameterization"] == "flow"
    test_images, _ = load_digits("test")
    assert meta["test_loss"] == pytest.approx(evaluate_loss(model, test_images, path, seed=0), rel=1e-5)
    with torch.no_grad():
        images = sample_euler(model, torch.randn(3, 1, 8, 8), path, uniform_times(4))
    assert images.shape == (3, 1, 8, 8) and images.abs().max() <= 1  # x̂_0 clipped to the pixels' range


def test_the_command_line_trains_a_class_conditional_dit_that_loads_back_the_same(tmp_path):
    config = tmp_path / "dit.toml"
    config.write_text(DIT)
    assert main([str(config), "--out", str(tmp_path / "runs")]) == 0
    model, schedule, meta = load(tmp_path / "runs" / "dit-ema")
    assert isinstance(model, DiT) and model.config.num_classes == 10 and schedule.T == 100
    assert meta["model_class"] == "DiT" and meta["model_config"]["dim"] == 32
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert model(x, torch.tensor([5, 50]), torch.tensor([3, 10])).shape == x.shape


@pytest.mark.parametrize(("text", "message"), [
    (FLOW.replace('parameterization = "flow"', 'parameterization = "score"'), r"train\.parameterization must be one"),
    (FLOW.replace('name = "rectified_flow"', 'name = "cosine"'),
     r"train\.parameterization = 'flow' \(a velocity\) needs schedule\.name = 'rectified_flow'"),
    (FLOW.replace('name = "rectified_flow"', 'name = "edm"'), r"schedule\.name must be one of"),
    (DIT.replace('arch = "dit"', 'arch = "mlp"'), r"model\.arch must be one of \['dit', 'unet'\]"),
    (DIT.replace("depth = 2", "depth = 2\nch_mult = [1, 2]"), r"unknown key model\.ch_mult; expected arch or one of"),
    (DIT.replace("patch_size = 2", "patch_size = 3"), r"\[model\] patch_size must divide image_size"),
    (DIT.replace('dataset = "digits"\nclass_conditional = true', 'dataset = "shapes"') + "\n[text]\ndim = 16\n",
     r"a \[text\] model is a U-Net with cross-attention"),
    (DIT.replace("class_conditional = true", "low_resolution = 4"),
     r"data\.low_resolution conditions a U-Net on an image"),
])
def test_bad_flow_and_dit_configs_name_the_key_and_the_file(tmp_path, text, message):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(ValueError, match=rf"bad\.toml: {message}"):
        read_config(config)


class Recorder(torch.nn.Module):
    """A denoiser that remembers what it was called with."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.calls = []

    def forward(self, x_t, t, cond=None):
        self.calls.append((x_t.detach().clone(), t.detach().clone()))
        return self.scale * x_t


def test_a_coupling_replaces_the_fresh_noise_by_each_examples_own():
    data = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))
    recorder = Recorder()
    trainer = Trainer(recorder, RF, data, coupling=2 * data, batch_size=8, parameterization="flow")
    trainer.fit(3)
    for x_t, time in recorder.calls:  # x_t = (1 - t) x_0 + t x_1 = (1 + t) x_0 for one of the rows of the data
        t = (time / 1000).reshape(-1, 1)
        x_0 = x_t / (1 + t)
        assert (x_0[:, None] - data[None]).abs().amax(-1).min(1).values.max() < 1e-5
    with pytest.raises(ValueError, match=r"coupling must be a tensor of the data's shape \(40, 3\)"):
        Trainer(Recorder(), RF, data, coupling=data[:5])


def test_reflow_trains_on_the_teachers_pairs_from_the_teachers_weights(tmp_path):
    from diffusion_lib.path_samplers import sample_dpmpp_2m_on_path
    from diffusion_lib.recipes.diffusion import reflow_pairs

    config = tmp_path / "flow.toml"
    config.write_text(FLOW)
    assert main([str(config), "--out", str(tmp_path / "runs")]) == 0
    teacher_path = tmp_path / "runs" / "flow-ema"
    x_0, x_1 = reflow_pairs(str(teacher_path), 6, 3, seed=4, device=torch.device("cpu"), batch=4)
    teacher, path, _ = load(teacher_path)
    with torch.no_grad():
        torch.testing.assert_close(x_0, sample_dpmpp_2m_on_path(teacher, x_1, path, uniform_times(3)))
    assert torch.equal(x_1, torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(4)))

    reflow = tmp_path / "reflow.toml"
    reflow.write_text(FLOW.replace('dataset = "digits"', f'dataset = "digits"\nreflow = "{teacher_path}"\n'
                                   "reflow_pairs = 16\nreflow_steps = 2"))
    assert main([str(reflow), "--out", str(tmp_path / "runs"), "--steps", "0"]) == 0
    student = load(tmp_path / "runs" / "reflow-ema").model
    assert all(torch.equal(a, b) for a, b in zip(student.state_dict().values(), teacher.state_dict().values(),
                                                 strict=True))  # 0 steps: the teacher's weights
    assert main([str(reflow), "--out", str(tmp_path / "runs2")]) == 0


@pytest.mark.parametrize(("edit", "message"), [
    (lambda text: text.replace('dataset = "digits"', 'dataset = "digits"\nreflow = "digits_flow"')
     .replace('name = "rectified_flow"', 'name = "cosine"').replace('parameterization = "flow"', ""),
     r"data\.reflow straightens a flow-matching model; it needs schedule\.name = 'rectified_flow'"),
    (lambda text: text.replace('dataset = "digits"', 'dataset = "digits"\nreflow = "x"\nclass_conditional = true'),
     r"data\.reflow trains an unconditional model; it cannot be combined with data\.class_conditional"),
    (lambda text: text.replace('dataset = "digits"', 'dataset = "digits"\nreflow = "x"\nreflow_pairs = 0'),
     r"data\.reflow_pairs must be an int >= 1"),
])
def test_bad_reflow_configs_name_the_key_and_the_file(tmp_path, edit, message):
    config = tmp_path / "bad.toml"
    config.write_text(edit(FLOW))
    with pytest.raises(ValueError, match=rf"bad\.toml: {message}"):
        read_config(config)


def test_generate_samples_a_class_conditional_flow_model_on_its_path(tmp_path):
    from diffusion_lib.pipelines import generate

    config = tmp_path / "flow_class.toml"
    config.write_text(FLOW.replace('dataset = "digits"', 'dataset = "digits"\nclass_conditional = true')
                      .replace("log_every = 1", "log_every = 1\ncond_dropout = 0.2"))
    assert main([str(config), "--out", str(tmp_path / "runs")]) == 0
    model, path, _ = load(tmp_path / "runs" / "flow_class-ema")
    assert isinstance(path, RectifiedFlowPath) and model.config.num_classes == 10
    x_T = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    images = generate(model, path, torch.tensor([0, 1, 2, 3]), x_T, guidance=2.0, steps=3)
    assert images.shape == (4, 1, 8, 8) and images.abs().max() <= 1
    with torch.no_grad():  # the same as the solver called by hand with guidance
        from diffusion_lib.path_samplers import sample_dpmpp_2m_on_path
        from diffusion_lib.samplers import classifier_free_guidance

        by_hand = sample_dpmpp_2m_on_path(classifier_free_guidance(model, 2.0), x_T, path, uniform_times(3),
                                          cond=torch.tensor([0, 1, 2, 3]), clip_x0=1.0)
    assert torch.equal(images, by_hand)
