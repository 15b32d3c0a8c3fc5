"""The plain loop of the auxiliary models: a run stopped and resumed from its saved state ends where an
uninterrupted one does, bit for bit."""

import math
import signal

import pytest
import torch
from torch import nn

from diffusion_lib.train import fit_on_one_thread


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.2), nn.Linear(8, 1))  # dropout: the global generator
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / 12)))
    generator = torch.Generator().manual_seed(seed)
    data = torch.randn(64, 4, generator=torch.Generator().manual_seed(9))

    def batch_loss():
        batch = data[torch.randint(0, 64, (8,), generator=generator)]
        return (model(batch) - batch.sum(1, keepdim=True)).square().mean()

    return model, optimizer, scheduler, generator, batch_loss


def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path):
    model, optimizer, scheduler, generator, loss = _setup()
    fit_on_one_thread(model, optimizer, 12, loss, scheduler=scheduler)
    straight = {k: v.clone() for k, v in model.state_dict().items()}

    model, optimizer, scheduler, generator, loss = _setup()
    with pytest.raises(KeyboardInterrupt):  # saved at 2 and 4, then stopped (and saved) at 5
        fit_on_one_thread(model, optimizer, 12, _stopping(loss, 5), scheduler=scheduler,
                          state_path=tmp_path / "state", checkpoint_every=2, generator=generator)
    model, optimizer, scheduler, generator, loss = _setup(seed=1)  # a fresh process: other weights, other draws
    seconds = fit_on_one_thread(model, optimizer, 12, loss, scheduler=scheduler, state_path=tmp_path / "state",
                                generator=generator, resume=True)
    assert all(torch.equal(straight[k], v) for k, v in model.state_dict().items())
    assert seconds > 0 and optimizer.param_groups[0]["lr"] == pytest.approx(1e-2 * 0.5 * (1 + math.cos(math.pi)))


def _stopping(loss, at: int):
    """``loss``, with a SIGTERM (as `kill` sends) during its ``at``-th call: the loop answers it after that step."""
    calls = []

    def stopping_loss():
        calls.append(1)
        if len(calls) == at:
            signal.raise_signal(signal.SIGTERM)
        return loss()

    return stopping_loss


def test_a_stop_request_saves_the_state_and_says_how_to_continue(tmp_path):
    model, optimizer, scheduler, generator, loss = _setup()
    stopping_loss = _stopping(loss, 3)
    with pytest.raises(KeyboardInterrupt, match=r"stopped at step 3 of 12; the state is saved in .*state"):
        fit_on_one_thread(model, optimizer, 12, stopping_loss, scheduler=scheduler, state_path=tmp_path / "state",
                          generator=generator)
    assert (tmp_path / "state.safetensors").is_file() and (tmp_path / "state.json").is_file()
    with pytest.raises(ValueError, match="the state was saved by a run of 12 steps; resume it with the same number "
                                         "of steps, not 20"):
        fit_on_one_thread(model, optimizer, 20, loss, state_path=tmp_path / "state", generator=generator,
                          resume=True)
    with pytest.raises(ValueError, match="resume needs a state_path"):
        fit_on_one_thread(model, optimizer, 12, loss, resume=True)
    with pytest.raises(ValueError, match="generator must be given exactly when the state holds one"):
        fit_on_one_thread(model, optimizer, 12, loss, state_path=tmp_path / "state", resume=True)


def _recipe(out, *args, stop_at: int | None = None) -> int:
    """A recipe command of the tiny model of these tests, through the shared command line."""
    from diffusion_lib.recipes.command import train_and_save_main

    def train(steps, seed, state, resume):
        model, optimizer, scheduler, generator, loss = _setup(seed)
        loss = loss if stop_at is None else _stopping(loss, stop_at)
        seconds = fit_on_one_thread(model, optimizer, steps, loss, scheduler=scheduler, state_path=state,
                                    generator=generator, resume=resume)
        return model, {"model_class": "tiny", "train_seconds": seconds}

    return train_and_save_main(["--out", str(out), "--steps", "12", *args], module="tests.tiny", name="tiny",
                               description="tiny", train=train, summary=lambda r: "trained", default_steps=12,
                               resumable=True)


def test_a_recipe_stopped_by_sigterm_resumes_with_resume_and_refuses_to_start_over_without_a_flag(tmp_path, capsys):
    from diffusion_lib import checkpoints

    assert _recipe(tmp_path / "straight") == 0
    assert _recipe(tmp_path / "stopped", stop_at=4) == 130
    assert "stopped at step 4 of 12; the state is saved in" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:
        _recipe(tmp_path / "stopped")
    assert refused.value.code == 2 and "tiny-state.json exists: pass --resume" in capsys.readouterr().err
    assert _recipe(tmp_path / "stopped", "--resume") == 0
    straight, _ = checkpoints.load(tmp_path / "straight" / "tiny")
    resumed, _ = checkpoints.load(tmp_path / "stopped" / "tiny")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
