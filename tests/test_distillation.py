"""Distillation: the teacher step, progressive distillation's targets, the consistency loss, the consistency sampler,
the students' objectives in the trainer (rounds, target network, exact resume) and their configs and command."""

import dataclasses
import itertools
import json
import math
import os

import pytest
import torch

from diffusion_lib import checkpoints
from diffusion_lib.data import load_digits
from diffusion_lib.distillation import (
    CLEAN,
    consistency_loss_per_example,
    ddim_teacher,
    levels,
    progressive_loss_per_example,
    progressive_targets,
    student_grid,
)
from diffusion_lib.forward import q_sample
from diffusion_lib.models.unet import unet_from_preset
from diffusion_lib.pretrained import load
from diffusion_lib.samplers import Trajectory, ddim_step, sample_consistency, sample_ddim
from diffusion_lib.schedules import NoiseSchedule
from diffusion_lib.train import Trainer
from diffusion_lib.train.command import main
from diffusion_lib.train.config import read_config
from diffusion_lib.train.students import ConsistencyDistillation, ProgressiveDistillation

COSINE = NoiseSchedule.cosine()
DIGITS = load_digits("train")[0][:256]


def constant_x0(point: torch.Tensor):
    """A denoiser whose x̂_0 is always ``point`` (C, H, W): the exact denoiser of data that is that one point."""
    def denoiser(x_t, t, cond=None):
        return point.expand_as(x_t)
    denoiser.parameterization = "x0"
    return denoiser


def small_teacher(seed=0):
    torch.manual_seed(seed)
    model = unet_from_preset("digits_small", dropout=0.0)
    model.parameterization, model.clip_x0 = "eps", 1.0
    return model


def test_levels_are_the_schedules_and_one_and_zero_at_the_data():
    x = torch.zeros(3, 1, 2, 2, dtype=torch.float64)
    alpha, sigma = levels(COSINE, torch.tensor([CLEAN, 0, 999]), x)
    assert alpha.shape == (3, 1, 1, 1) and alpha.dtype == torch.float64
    assert alpha[0].item() == 1 and sigma[0].item() == 0
    for row, t in ((1, 0), (2, 999)):
        assert alpha[row].item() == pytest.approx(math.sqrt(COSINE.alphas_cumprod[t]))
        assert sigma[row].item() == pytest.approx(math.sqrt(1 - COSINE.alphas_cumprod[t]))


def test_the_ddim_teacher_walks_its_grid_exactly_as_sample_ddim():
    teacher = small_teacher()
    x_T = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    step = ddim_teacher(teacher, COSINE)
    grid = student_grid(COSINE, 5)
    assert grid.tolist() == [999, 799, 599, 399, 199, CLEAN]
    x = x_T
    with torch.no_grad():
        for t, s in itertools.pairwise(grid):
            x = step(x, t.repeat(4), s.repeat(4))
        torch.testing.assert_close(x, sample_ddim(teacher, x_T, COSINE, 5), rtol=1e-5, atol=1e-5)
    # per example: each row may take its own step
    mixed = step(x_T, torch.tensor([999, 500, 20, 3]), torch.tensor([500, 20, 3, CLEAN]))
    for row, (t, s) in enumerate(((999, 500), (500, 20), (20, 3), (3, CLEAN))):
        alone = step(x_T[row:row + 1], torch.tensor([t]), torch.tensor([s]))
        torch.testing.assert_close(mixed[row:row + 1], alone)


def test_progressive_targets_make_one_student_step_land_where_two_teacher_steps_land():
    teacher = small_teacher()
    step = ddim_teacher(teacher, COSINE)
    x0 = DIGITS[:6]
    noise = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    index = torch.tensor([0, 1, 2, 3, 3, 0])
    x_t, t, target = progressive_targets(step, x0, noise, index, COSINE, 4)
    grid = student_grid(COSINE, 8)
    assert torch.equal(t, grid[2 * index]) and torch.equal(x_t, q_sample(COSINE, x0, t, noise))
    for row in range(6):
        t_row, m, s = (int(grid[2 * index[row] + k]) for k in range(3))
        two = step(step(x_t[row:row + 1], torch.tensor([t_row]), torch.tensor([m])), torch.tensor([m]),
                   torch.tensor([s]))
        alpha_bar_s = 1.0 if s == CLEAN else COSINE.alphas_cumprod[s].item()
        alpha_bar_t = COSINE.alphas_cumprod[t_row].item()
        eps = (x_t[row] - math.sqrt(alpha_bar_t) * target[row]) / math.sqrt(1 - alpha_bar_t)
        one = ddim_step(target[row], eps, alpha_bar_t, alpha_bar_s)
        torch.testing.assert_close(one, two[0], rtol=1e-4, atol=1e-4)


def test_a_teacher_that_knows_the_one_data_point_teaches_exactly_that_point():
    point = torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(3)).clamp(-1, 1)
    step = ddim_teacher(constant_x0(point), COSINE, clip_x0=None)
    x0 = point.expand(5, 1, 8, 8)
    noise = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    _, _, target = progressive_targets(step, x0, noise, torch.arange(5) % 4, COSINE, 4)
    torch.testing.assert_close(target, x0, rtol=1e-4, atol=1e-4)
    # and the student that knows it too has no loss, in either parameterization; one that does not has a loss
    for parameterization in ("x0", "v"):
        def knows(x_t, t, cond, parameterization=parameterization):
            if parameterization == "x0":
                return point.expand_as(x_t)
            alpha, sigma = levels(COSINE, t, x_t)
            return (alpha * x_t - point) / sigma  # v = (α x_t - x_0) / σ
        losses, _ = progressive_loss_per_example(knows, step, x0, noise, torch.arange(5) % 4, COSINE, 4,
                                                 parameterization=parameterization)
        assert losses.max() < 1e-6
    wrong, t = progressive_loss_per_example(constant_x0(point + 0.1), step, x0, noise, torch.arange(5) % 4, COSINE,
                                            4, parameterization="x0")
    expected = 0.01 / COSINE.one_minus_alphas_cumprod[t]  # (1 + SNR) ‖0.1‖²
    torch.testing.assert_close(wrong, expected.float(), rtol=1e-3, atol=1e-6)


def test_the_consistency_loss_is_zero_for_a_consistent_student_and_anchored_at_the_data():
    point = torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(5)).clamp(-1, 1)
    step = ddim_teacher(constant_x0(point), COSINE, clip_x0=None)
    x0 = point.expand(6, 1, 8, 8)
    noise = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(6))
    index = torch.tensor([0, 1, 2, 3, 3, 2])
    losses, t = consistency_loss_per_example(constant_x0(point), constant_x0(point), step, x0, noise, index, COSINE,
                                             4, parameterization="x0")
    assert losses.max() < 1e-10 and torch.equal(t, student_grid(COSINE, 4)[index])
    # a student consistent with itself but not with the data is wrong only where the chain meets the data
    shifted = constant_x0(point + 0.5)
    losses, _ = consistency_loss_per_example(shifted, shifted, step, x0, noise, index, COSINE, 4,
                                             parameterization="x0")
    assert losses[index < 3].max() < 1e-10
    torch.testing.assert_close(losses[index == 3], torch.full((2,), 0.25))


def test_sample_consistency_is_one_call_in_one_step_and_renoises_between_steps():
    point = torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(7)).clamp(-1, 1)
    x_T = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(sample_consistency(constant_x0(point), x_T, COSINE), point.expand(3, 1, 8, 8))
    seen = Trajectory()
    identity = lambda x_t, t, cond: x_t  # noqa: E731  (an x0-predictor that returns its input)
    out = sample_consistency(identity, x_T, COSINE, 3, parameterization="x0", clip_x0=None, callback=seen,
                             generator=torch.Generator().manual_seed(9))
    assert seen.timesteps.tolist() == [999, 666, 332]
    generator = torch.Generator().manual_seed(9)
    x = x_T
    for t in (666, 332):  # x_t = sqrt(ᾱ_t) x̂_0 + sqrt(1 - ᾱ_t) z
        a = COSINE.alphas_cumprod[t].item()
        x = math.sqrt(a) * x + math.sqrt(1 - a) * torch.randn(3, 1, 8, 8, generator=generator)
    torch.testing.assert_close(out, x)


def student_trainer(objective, seed=0, **kwargs):
    torch.manual_seed(seed)
    student = unet_from_preset("digits_small", dropout=0.1)
    student.load_state_dict(objective_teacher().state_dict())
    options = dict(batch_size=16, lr=1e-3, warmup_steps=2, ema_decay=0.9, log_every=2, parameterization="v")
    return Trainer(student, COSINE, DIGITS, objective=objective, **(options | kwargs))


def objective_teacher():
    return small_teacher(seed=11)


@pytest.mark.parametrize("make", [
    lambda: ProgressiveDistillation(objective_teacher(), COSINE, student_steps=4, round_steps=2),
    lambda: ConsistencyDistillation(objective_teacher(), COSINE, grid_steps=6, target_decay=0.5),
], ids=["progressive", "consistency"])
def test_a_distillation_resumes_bit_for_bit_across_rounds(tmp_path, make):
    straight = student_trainer(make())
    straight.fit(7)
    half = student_trainer(make())
    half.fit(3)
    half.save(tmp_path / "state")
    resumed = student_trainer(make(), seed=5)
    resumed.load_state(tmp_path / "state")
    resumed.fit(4)
    assert resumed.history == straight.history
    for model in ("model", "ema_model"):
        assert all(torch.equal(a, b) for a, b in zip(getattr(resumed, model).state_dict().values(),
                                                     getattr(straight, model).state_dict().values(), strict=True))
    held = "teacher" if isinstance(straight.objective, ProgressiveDistillation) else "target"
    assert all(torch.equal(a, b) for a, b in zip(getattr(resumed.objective, held).state_dict().values(),
                                                 getattr(straight.objective, held).state_dict().values(), strict=True))


def test_progressive_rounds_halve_the_steps_and_hand_the_students_ema_to_the_next_round():
    first = objective_teacher()
    objective = ProgressiveDistillation(first, COSINE, student_steps=4, round_steps=3)
    trainer = student_trainer(objective)
    assert objective.rounds == [4, 2, 1] and objective.student_steps == 4
    assert objective.teacher is objective.first_teacher
    trainer.fit(3)
    assert objective.student_steps == 2
    for teacher, ema, model in zip(objective.teacher.state_dict().values(), trainer.ema_model.state_dict().values(),
                                   trainer.model.state_dict().values(), strict=True):
        assert torch.equal(teacher, ema) and torch.equal(model, ema)
    assert not objective.teacher.training and not any(p.requires_grad for p in objective.teacher.parameters())
    trainer.fit(6)
    assert objective.student_steps == 1 and objective.round == 2  # the last round goes on past its end
    drawn = objective.draw(1000, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert drawn.unique().tolist() == [0]
    first_weights = first.state_dict()
    assert all(torch.equal(first_weights[k], v) for k, v in objective.first_teacher.state_dict().items())


def test_the_consistency_target_follows_the_student_at_its_decay():
    objective = ConsistencyDistillation(objective_teacher(), COSINE, grid_steps=6, target_decay=0.5)
    trainer = student_trainer(objective)
    before = [p.clone() for p in objective.target.parameters()]
    trainer.fit(1)
    for old, new, student in zip(before, objective.target.parameters(), trainer.model.parameters(), strict=True):
        torch.testing.assert_close(new, 0.5 * old + 0.5 * student)


def test_students_name_what_they_cannot_learn():
    with pytest.raises(ValueError, match="parameterization must be one of \\('x0', 'v'\\) for a distilled student"):
        student_trainer(ProgressiveDistillation(objective_teacher(), COSINE, student_steps=4, round_steps=2),
                        parameterization="eps")
    with pytest.raises(ValueError, match="student_steps must be a power of two"):
        ProgressiveDistillation(objective_teacher(), COSINE, student_steps=6, round_steps=2)
    with pytest.raises(ValueError, match="round_steps must be an int >= 1"):
        ProgressiveDistillation(objective_teacher(), COSINE, student_steps=4, round_steps=0)
    with pytest.raises(ValueError, match=r"target_decay must be a finite number in \[0, 1\)"):
        ConsistencyDistillation(objective_teacher(), COSINE, grid_steps=4, target_decay=1.0)
    with pytest.raises(ValueError, match="grid_steps must be an int in"):
        ConsistencyDistillation(objective_teacher(), COSINE, grid_steps=0)


DISTILL = """
[data]
dataset = "digits"

[model]
preset = "digits_small"
dropout = 0.0

[distill]
method = "progressive"
teacher = "TEACHER"
student_steps = 4
round_steps = 2

[train]
steps = 6
batch_size = 16
log_every = 2
checkpoint_every = 2
parameterization = "v"
"""

TEACHER = """
[data]
dataset = "digits"

[model]
preset = "digits_small"

[train]
steps = 2
batch_size = 16
log_every = 1
"""


def test_the_command_distils_a_teacher_and_keeps_every_rounds_student(tmp_path):
    (tmp_path / "teacher.toml").write_text(TEACHER)
    assert main([str(tmp_path / "teacher.toml"), "--out", str(tmp_path / "runs")]) == 0
    teacher_path = tmp_path / "runs" / "teacher-ema"
    config = tmp_path / "pd.toml"
    config.write_text(DISTILL.replace("TEACHER", str(teacher_path)))
    assert main([str(config), "--out", str(tmp_path / "runs"), "--steps", "0"]) == 0
    teacher, student = load(teacher_path).model, load(tmp_path / "runs" / "pd-ema").model
    assert all(torch.equal(a, b) for a, b in zip(student.state_dict().values(), teacher.state_dict().values(),
                                                 strict=True))  # 0 steps: the teacher's weights
    assert main([str(config), "--out", str(tmp_path / "runs2")]) == 0
    records = {n: json.loads((tmp_path / "runs2" / f"pd_{n}-ema.json").read_text()) for n in (4, 2)}
    assert {n: (r["steps"], r["sampler"]) for n, r in records.items()} == {
        4: (2, {"name": "ddim", "steps": 4}), 2: (4, {"name": "ddim", "steps": 2})}
    final = load(tmp_path / "runs2" / "pd-ema")
    assert final.record["sampler"] == {"name": "ddim", "steps": 1} and final.model.parameterization == "v"
    assert not (tmp_path / "runs2" / "pd_1-ema.json").exists()  # the last round's student is pd-ema
    # nothing an earlier run wrote is lost: a round's student counts as that run's output
    (tmp_path / "runs2" / "pd.json").unlink()
    (tmp_path / "runs2" / "pd.safetensors").unlink()
    with pytest.raises(SystemExit):
        main([str(config), "--out", str(tmp_path / "runs2")])

    consistency = tmp_path / "cd.toml"
    consistency.write_text(DISTILL.replace("TEACHER", str(teacher_path)).replace('"progressive"', '"consistency"')
                           .replace("student_steps = 4\nround_steps = 2", "grid_steps = 5"))
    assert main([str(consistency), "--out", str(tmp_path / "runs3")]) == 0
    assert load(tmp_path / "runs3" / "cd-ema").record["sampler"] == {"name": "consistency"}


@pytest.mark.parametrize(("edit", "message"), [
    (lambda text: text.replace('parameterization = "v"', 'parameterization = "eps"'),
     r"a \[distill\] student predicts 'v' or 'x0'"),
    (lambda text: text.replace('"progressive"', '"adversarial"'), r"distill\.method must be one of"),
    (lambda text: text.replace("student_steps = 4", "student_steps = 3"),
     r"distill\.student_steps must be a power"),
    (lambda text: text.replace("round_steps = 2", "round_steps = 2\nguidance = 2"), r"unknown key distill\.guidance"),
    (lambda text: text.replace('teacher = "TEACHER"\n', ""), r"missing required key distill\.teacher"),
    (lambda text: text + '\n[schedule]\nname = "rectified_flow"\n',
     r"\[distill\] distils a denoiser on a DDPM schedule"),
])
def test_bad_distill_configs_name_the_key_and_the_file(tmp_path, edit, message):
    config = tmp_path / "bad.toml"
    config.write_text(edit(DISTILL))
    with pytest.raises(ValueError, match=rf"bad\.toml: {message}"):
        read_config(config)


def test_a_student_must_be_built_as_its_teacher(tmp_path):
    from diffusion_lib.recipes.diffusion import build

    config = tmp_path / "pd.toml"
    config.write_text(DISTILL.replace("TEACHER", "digits"))  # the shipped digits model is not digits_small
    with pytest.raises(ValueError, match=r"distill\.teacher: the \[model\] table must build the network of digits"):
        build(read_config(config), torch.device("cpu"))
    config.write_text(DISTILL.replace("TEACHER", "digits").replace("digits_small", "digits")
                      + '\n[schedule]\nname = "linear"\n')
    with pytest.raises(ValueError, match=r"distill\.teacher: \[schedule\] must be that of digits, name = 'cosine'"):
        build(read_config(config), torch.device("cpu"))
    config.write_text(DISTILL.replace("TEACHER", "digits").replace("digits_small", "digits"))
    built = build(read_config(config), torch.device("cpu"))
    assert built.model.config == dataclasses.replace(built.teacher.config, dropout=0.0)


STOP_AFTER_STEP = """
import os
import signal
import sys

from diffusion_lib.train import Trainer
from diffusion_lib.train.command import main

STOP_AT = int(sys.argv[1])
train_step = Trainer.train_step


def stopped_train_step(self):  # Ctrl-C arrives while step STOP_AT runs
    loss = train_step(self)
    if self.step == STOP_AT:
        os.kill(os.getpid(), signal.SIGINT)
    return loss


Trainer.train_step = stopped_train_step
sys.exit(main(sys.argv[2:]))
"""


def test_a_stop_in_the_last_step_of_a_round_still_writes_that_rounds_student(tmp_path):
    """Ctrl-C during step 2, the end of the first round of a progressive distillation (4 -> 2 -> 1 steps, 2 steps a
    round), in a real process: it exits 130 having saved the state and written the 4-step student, which is the
    uninterrupted run's; a resumed run finishes the others. A state that ends a round whose student is missing (as
    an older version left it) gets the student written on resuming."""
    import signal
    import subprocess
    import sys

    (tmp_path / "teacher.toml").write_text(TEACHER)
    assert main([str(tmp_path / "teacher.toml"), "--out", str(tmp_path / "runs")]) == 0
    config = tmp_path / "pd.toml"
    config.write_text(DISTILL.replace("TEACHER", str(tmp_path / "runs" / "teacher-ema")))
    out = tmp_path / "stopped"
    script = tmp_path / "stop.py"
    script.write_text(STOP_AFTER_STEP)

    def run(stop_at: int, folder) -> subprocess.CompletedProcess:  # both runs on one thread: the same arithmetic
        return subprocess.run([sys.executable, str(script), str(stop_at), str(config), "--out", str(folder)],
                              capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)

    assert run(0, tmp_path / "straight").returncode == 0  # step 0 is never reached after a step: no stop
    stopped = run(2, out)
    assert stopped.returncode == 128 + signal.SIGINT, stopped.stderr
    assert "SIGINT: stopped at step 2 of 6" in stopped.stderr and "Traceback" not in stopped.stderr

    def same_weights(name: str) -> bool:
        ours, theirs = load(out / name).model.state_dict(), load(tmp_path / "straight" / name).model.state_dict()
        return all(torch.equal(ours[k], theirs[k]) for k in theirs)

    assert same_weights("pd_4-ema") and not (out / "pd_2-ema.json").exists()
    for file in checkpoints.files(out / "pd_4-ema"):
        file.unlink()
    resumed = subprocess.run([sys.executable, "-m", "diffusion_lib.train", str(config), "--out", str(out), "--resume"],
                             capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert all(same_weights(name) for name in ("pd_4-ema", "pd_2-ema", "pd-ema"))
