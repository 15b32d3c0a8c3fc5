"""The diffusion transformer: shapes, adaLN-Zero, patches and positions, conditioning, parameter count, training,
errors, and the state dict."""

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from diffusion_lib.models.dit import (
    TIME_FREQUENCIES,
    DiT,
    DiTBlock,
    DiTConfig,
    patchify,
    sincos_position_embedding,
    unpatchify,
)

# A small model that still has every part: 16 patches of 2x2, two blocks of two heads, labels.
SMALL = {"image_size": 8, "patch_size": 2, "dim": 32, "depth": 2, "num_heads": 2}


def small(seed: int = 0, **overrides) -> DiT:
    torch.manual_seed(seed)
    return DiT(**{**SMALL, **overrides})


def nontrivial(model: DiT, seed: int = 0) -> DiT:
    """``model`` with its zero-initialised layers (every modulation Linear, the final Linear) drawn at random, so that
    every block and the final layer depend on their inputs and on the condition."""
    g = torch.Generator().manual_seed(seed)
    layers = [block.modulation for block in model.blocks] + [model.final.modulation, model.final.linear]
    with torch.no_grad():
        for layer in layers:
            for p in (layer.weight, layer.bias):
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return model


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def batch(model: DiT, b: int = 4, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    cfg = model.config
    x = torch.randn(b, cfg.in_channels, cfg.image_size, cfg.image_size, generator=g)
    t = torch.randint(0, 1000, (b,), generator=g)
    return x, t


def permute_patches(x: torch.Tensor, p: int, perm: torch.Tensor) -> torch.Tensor:
    """The images ``x`` with their p×p patches moved: patch ``perm[n]`` goes to place n."""
    return unpatchify(patchify(x, p)[:, perm], p, x.shape[1])


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"in_channels": 3},
        {"in_channels": 3, "out_channels": 6},
        {"in_channels": 4, "out_channels": 1, "patch_size": 1},
        {"image_size": 16, "patch_size": 4, "num_heads": 4},
        {"num_classes": 10, "mlp_ratio": 2.0},
    ],
    ids=["small", "rgb", "channels", "patch1", "patch4", "classes"],
)
def test_output_has_the_input_shape(overrides):
    model = nontrivial(small(**overrides)).eval()
    x, t = batch(model, b=3)
    out = model(x, t)
    cfg = model.config
    assert cfg.num_patches == (cfg.image_size // cfg.patch_size) ** 2
    assert model.pos_embed.shape == (1, cfg.num_patches, cfg.dim)
    assert out.shape == (3, cfg.output_channels, cfg.image_size, cfg.image_size)
    assert out.dtype == x.dtype and torch.isfinite(out).all() and out.abs().sum() > 0


def test_config_can_be_given_whole_or_with_overrides():
    cfg = DiTConfig(**SMALL)
    assert DiT(cfg).config == cfg
    assert DiT(cfg, depth=1).config == DiTConfig(**{**SMALL, "depth": 1})
    assert len(DiT(cfg, depth=3).blocks) == 3
    assert DiTConfig().output_channels == 1 and DiTConfig(out_channels=2).output_channels == 2


# --------------------------------------------------------------------------- adaLN-Zero and initialisation


def test_untrained_model_outputs_exactly_zero_and_every_block_is_the_identity():
    model = small(num_classes=5)
    x, t = batch(model)
    assert torch.all(model(x, t, torch.tensor([0, 1, 2, 5])) == 0)
    h, c = torch.randn(4, 16, 32), torch.randn(4, 32)
    for block in model.blocks:
        assert torch.equal(block(h, c), h)


def test_after_changing_the_final_layer_the_output_depends_on_t_and_the_class():
    model = small(num_classes=5).eval()
    with torch.no_grad():  # the final layer only: the blocks are still the identity
        for p in model.final.parameters():
            p.copy_(0.3 * torch.randn(p.shape))
    x, _ = batch(model)
    labels = torch.tensor([0, 1, 2, 3])
    out = model(x, 10, labels)
    assert out.abs().min() > 0
    assert not torch.allclose(out, model(x, 900, labels))
    assert not torch.allclose(out, model(x, 10, torch.tensor([4, 4, 4, 4])))


def test_initialisation_follows_the_reference():
    model = small(num_classes=10)
    zero = [*(b.modulation for b in model.blocks), model.final.modulation, model.final.linear]
    for layer in zero:
        assert not layer.weight.any() and not layer.bias.any()
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and module not in zero:
            assert not module.bias.any(), name
            fan_out, fan_in = module.weight.shape
            if name.startswith("time_embed"):
                assert 0.015 < module.weight.std() < 0.025, name  # normal(0, 0.02)
            else:  # Xavier uniform: within ±sqrt(6 / (fan_in + fan_out)), std = bound / sqrt(3)
                bound = math.sqrt(6 / (fan_in + fan_out))
                assert module.weight.abs().max() <= bound, name
                assert abs(module.weight.std() / (bound / math.sqrt(3)) - 1) < 0.15, name
    w = model.patch_embed.weight  # (D, C, p, p): Xavier with fan_in C·p·p, like a Linear
    assert w.abs().max() <= math.sqrt(6 / (32 + 4)) and not model.patch_embed.bias.any()
    assert 0.015 < model.class_embed.weight.std() < 0.025
    assert model.class_embed.weight.shape == (11, 32)  # num_classes + 1 rows: the last is the null class


def test_block_follows_its_equations():
    """h + gate₁ · attention(LN(h)(1 + scale₁) + shift₁), then h + gate₂ · MLP(LN(h)(1 + scale₂) + shift₂), with the
    attention written out head by head."""
    torch.manual_seed(0)
    block = DiTBlock(16, 4, 2.0, 0.0)
    nn.init.normal_(block.modulation.weight, std=0.3)
    h, c = torch.randn(2, 5, 16), torch.randn(2, 16)
    shift1, scale1, gate1, shift2, scale2, gate2 = F.linear(F.silu(c), block.modulation.weight,
                                                            block.modulation.bias)[:, None].chunk(6, dim=2)

    def attention(a):
        q, k, v = block.qkv(a).split(16, dim=2)  # (B, N, 16) each; head i has the features 4i .. 4i + 3
        heads = []
        for i in range(4):
            qi, ki, vi = (z[:, :, 4 * i:4 * i + 4] for z in (q, k, v))
            heads.append(torch.softmax(qi @ ki.transpose(1, 2) / 2.0, dim=-1) @ vi)  # sqrt(4) = 2
        return block.proj(torch.cat(heads, dim=2))

    def ln(a):
        return (a - a.mean(-1, keepdim=True)) / torch.sqrt(a.var(-1, unbiased=False, keepdim=True) + 1e-6)

    expected = h + gate1 * attention(ln(h) * (1 + scale1) + shift1)
    mlp = block.fc2(F.gelu(block.fc1(ln(expected) * (1 + scale2) + shift2), approximate="tanh"))
    expected = expected + gate2 * mlp
    assert block.fc1.out_features == 32  # int(dim · mlp_ratio)
    torch.testing.assert_close(block(h, c), expected)


# --------------------------------------------------------------------------- patches


@pytest.mark.parametrize(("channels", "p", "side"), [(1, 1, 4), (1, 2, 8), (3, 2, 8), (3, 4, 16), (4, 8, 8)])
def test_unpatchify_inverts_patchify_exactly(channels, p, side):
    x = torch.randn(2, channels, side, side)
    tokens = patchify(x, p)
    assert tokens.shape == (2, (side // p) ** 2, p * p * channels)
    assert torch.equal(unpatchify(tokens, p, channels), x)
    assert torch.equal(patchify(unpatchify(tokens, p, channels), p), tokens)


def test_patchify_layout_agrees_with_the_patch_conv():
    """A conv whose weight copies each patch element to the feature where ``patchify`` puts it, (u·p + v)·C + c,
    gives ``patchify``'s tokens in the model's order (conv output flattened row by row)."""
    channels, p = 3, 2
    conv = nn.Conv2d(channels, p * p * channels, kernel_size=p, stride=p, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        for u in range(p):
            for v in range(p):
                for c in range(channels):
                    conv.weight[(u * p + v) * channels + c, c, u, v] = 1
    x = torch.randn(2, channels, 8, 8)
    assert torch.equal(conv(x).flatten(2).transpose(1, 2), patchify(x, p))
    # and, spelled out: token 1 is the patch in row 0, column 1; its feature 1 is row 0, column 0, channel 1
    assert patchify(x, p)[0, 1, 1] == x[0, 1, 0, 2]
    assert patchify(x, p)[0, 4, (1 * p + 0) * channels + 2] == x[0, 2, 3, 0]  # token 4: row 1, column 0


# --------------------------------------------------------------------------- positions


def test_positional_embedding_is_a_fixed_sine_cosine_buffer():
    model = small()
    pe = model.pos_embed
    assert pe.shape == (1, 16, 32) and not pe.requires_grad
    assert "pos_embed" not in model.state_dict() and "pos_embed" in dict(model.named_buffers())
    assert all(p is not pe for p in model.parameters())
    torch.testing.assert_close(pe[0], sincos_position_embedding(32, 4))
    # position (0, 0): sin 0 = 0 and cos 0 = 1 in both the column and the row halves
    assert torch.equal(pe[0, 0], torch.tensor([0.0] * 8 + [1.0] * 8 + [0.0] * 8 + [1.0] * 8))
    # each of the dim/2 (sin, cos) pairs has norm 1; all 16 codes differ
    torch.testing.assert_close(pe[0].norm(dim=1), torch.full((16,), 4.0))
    assert torch.cdist(pe[0], pe[0]).add(torch.eye(16)).min() > 0.1
    # the first quarter codes the column: tokens 1 (row 0, col 1) and 5 (row 1, col 1) share it, and not the rest
    assert torch.equal(pe[0, 1, :16], pe[0, 5, :16]) and not torch.equal(pe[0, 1, 16:], pe[0, 5, 16:])


def test_moving_the_patches_changes_the_output_beyond_moving_it():
    """With the positional embedding, where a patch is matters: the output for shuffled patches is not the shuffled
    output."""
    model = nontrivial(small()).eval()
    x, t = batch(model)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(0))
    moved = model(permute_patches(x, 2, perm), t)
    assert (moved - permute_patches(model(x, t), 2, perm)).abs().max() > 1e-2


def test_without_positions_the_model_is_equivariant_to_permuting_patches():
    """With the positional embedding zeroed, nothing but attention mixes the tokens, and attention ignores their
    order: permuting the input patches permutes the output patches the same way."""
    model = nontrivial(small(num_classes=3)).eval()
    model.pos_embed.zero_()
    x, t = batch(model)
    labels = torch.tensor([0, 1, 2, 3])
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(0))
    out = model(x, t, labels)
    assert out.abs().mean() > 0.1
    torch.testing.assert_close(model(permute_patches(x, 2, perm), t, labels), permute_patches(out, 2, perm))


# --------------------------------------------------------------------------- conditioning


def test_time_changes_the_output_and_a_scalar_t_is_the_whole_batchs():
    model = nontrivial(small()).eval()
    x, _ = batch(model)
    assert not torch.allclose(model(x, 10), model(x, 900))
    torch.testing.assert_close(model(x, 10), model(x, torch.full((4,), 10)))
    torch.testing.assert_close(model(x, torch.tensor(10)), model(x, 10))
    out = model(x, torch.tensor([10.5, 10.5, 10.5, 10.5]))  # fractional timesteps are accepted
    assert torch.isfinite(out).all() and not torch.allclose(out, model(x, 10))


def test_no_label_means_the_null_class():
    model = nontrivial(small(num_classes=10)).eval()
    x, t = batch(model)
    null = torch.full((4,), model.null_class)
    assert model.null_class == 10
    torch.testing.assert_close(model(x, t), model(x, t, null))
    torch.testing.assert_close(model(x, t, {"labels": null}), model(x, t, null))
    torch.testing.assert_close(model(x, t, {}), model(x, t, null))
    assert not torch.allclose(model(x, t, null), model(x, t, torch.zeros(4, dtype=torch.long)))


def test_null_class_needs_class_conditioning():
    with pytest.raises(ValueError, match="num_classes"):
        _ = small().null_class
    with pytest.raises(ValueError, match="num_classes"):
        small().drop_cond(torch.zeros(2, dtype=torch.long), torch.tensor([True, False]))


def test_drop_cond_turns_the_dropped_examples_into_the_null_class():
    model = small(num_classes=10)
    labels = torch.tensor([1, 2, 3, 4])
    drop = torch.tensor([True, False, True, False])
    assert torch.equal(model.drop_cond(labels, drop), torch.tensor([10, 2, 10, 4]))
    dropped = model.drop_cond({"labels": labels}, drop)
    assert set(dropped) == {"labels"} and torch.equal(dropped["labels"], torch.tensor([10, 2, 10, 4]))
    assert torch.equal(labels, torch.tensor([1, 2, 3, 4]))  # the input is left alone
    assert model.drop_cond({}, drop) == {}
    with pytest.raises(ValueError, match=r"unknown keys \['context', 'image'\]"):
        model.drop_cond({"labels": labels, "context": torch.randn(4, 3, 8), "image": torch.randn(4, 1, 8, 8)}, drop)
    with pytest.raises(ValueError, match="cond must be"):
        model.drop_cond([1, 2, 3, 4], drop)
    # the model sees a dropped example exactly as an unlabelled one
    x, t = batch(nontrivial(model).eval())
    out = model(x, t, model.drop_cond(labels, drop))
    torch.testing.assert_close(out[[0, 2]], model(x, t)[[0, 2]])
    torch.testing.assert_close(out[[1, 3]], model(x, t, labels)[[1, 3]])


# --------------------------------------------------------------------------- parameter count


def expected_parameters(cfg: DiTConfig) -> int:
    """Count each layer from the config: the patch conv, the timestep MLP, the class embedding, the blocks (qkv,
    attention output, two MLP Linears, the adaLN Linear; the LayerNorms have no parameters) and the final layer."""
    d, p, hidden = cfg.dim, cfg.patch_size, int(cfg.dim * cfg.mlp_ratio)

    def linear(i, o):
        return i * o + o

    conv = cfg.in_channels * p * p * d + d
    time = linear(TIME_FREQUENCIES, d) + linear(d, d)
    classes = (cfg.num_classes + 1) * d if cfg.num_classes is not None else 0
    block = linear(d, 3 * d) + linear(d, d) + linear(d, hidden) + linear(hidden, d) + linear(d, 6 * d)
    final = linear(d, 2 * d) + linear(d, p * p * cfg.output_channels)
    return conv + time + classes + cfg.depth * block + final


@pytest.mark.parametrize(
    "overrides",
    [
        {"num_classes": 10},
        {**SMALL, "in_channels": 3, "out_channels": 6, "mlp_ratio": 2.5},
        {**SMALL, "patch_size": 4, "image_size": 16, "num_classes": 1},
    ],
    ids=["default-classes", "channels", "patch4"],
)
def test_parameter_count_matches_the_formula(overrides):
    cfg = DiTConfig(**overrides)
    with torch.device("meta"):  # no memory, no init time
        model = DiT(cfg)
    assert n_params(model) == expected_parameters(cfg)


def test_default_config_with_ten_classes_has_1_272_324_parameters():
    with torch.device("meta"):
        model = DiT(in_channels=1, image_size=8, patch_size=2, dim=128, depth=4, num_heads=4, num_classes=10)
    assert n_params(model) == 1_272_324


# --------------------------------------------------------------------------- training


def test_first_gradient_reaches_only_the_final_linear_and_every_parameter_after_two_steps():
    """adaLN-Zero: with every gate and the final Linear at zero, the first backward pass reaches the final Linear
    alone; one step later the modulations and the residual stream; after two steps, every parameter."""
    model = small(num_classes=3)
    x, t = batch(model)
    labels = torch.tensor([0, 1, 2, 3])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    reached = []
    for _ in range(3):
        optimizer.zero_grad()
        (model(x, t, labels) - x).square().mean().backward()
        reached.append({name for name, p in model.named_parameters() if p.grad is not None and p.grad.any()})
        optimizer.step()
    assert reached[0] == {"final.linear.weight", "final.linear.bias"}
    assert "blocks.0.qkv.weight" not in reached[1] and "blocks.0.modulation.weight" in reached[1]
    assert reached[2] == {name for name, _ in model.named_parameters()}


def test_a_few_steps_reduce_the_epsilon_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    model = small(num_classes=4)
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(16, 1, 8, 8, generator=g), torch.randn(16, 1, 8, 8, generator=g)
    t = torch.randint(0, 1000, (16,), generator=g)
    labels = torch.randint(0, 4, (16,), generator=g)
    alpha_bar = torch.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2)[:, None, None, None] ** 2
    x_t = alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = (model(x_t, t, labels) - eps).square().mean()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(eps.square().mean().item())  # an untrained DiT predicts zero
    assert losses[-1] < 0.7 * losses[0]


# --------------------------------------------------------------------------- modes, dtypes, layouts


def test_eval_mode_is_deterministic_and_train_mode_drops_out():
    model = nontrivial(small(dropout=0.3))
    x, t = batch(model)
    model.eval()
    torch.testing.assert_close(model(x, t), model(x, t), rtol=0, atol=0)
    model.train()
    assert not torch.allclose(model(x, t), model(x, t))


def test_channels_last_input_gives_the_same_output():
    model = nontrivial(small(in_channels=3)).eval()
    x, t = batch(model)
    torch.testing.assert_close(model(x.to(memory_format=torch.channels_last), t), model(x, t))


def test_output_has_the_dtype_of_x_t():
    model = nontrivial(small()).eval()
    x, t = batch(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, t)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, model(x, t), rtol=0.1, atol=0.1)
    model = model.to(torch.bfloat16)
    assert model(x.bfloat16(), t).dtype == torch.bfloat16


def test_state_dict_round_trip_gives_identical_outputs():
    model = nontrivial(small(num_classes=5)).eval()
    fresh = small(seed=1, num_classes=5).eval()
    fresh.load_state_dict(model.state_dict())  # strict: no pos_embed in it, none expected
    x, t = batch(model)
    labels = torch.tensor([0, 1, 4, 5])
    assert torch.equal(fresh(x, t, labels), model(x, t, labels))


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"in_channels": 0}, "in_channels must be an int >= 1"),
        ({"in_channels": True}, "in_channels"),
        ({"out_channels": 0}, "out_channels must be None or an int >= 1"),
        ({"image_size": 0}, "image_size"),
        ({"patch_size": 3}, "patch_size must divide image_size"),
        ({"patch_size": 0}, "patch_size must be an int"),
        ({"dim": 30, "num_heads": 1}, "dim must be a multiple of 4"),
        ({"dim": 0}, "dim must be an int"),
        ({"depth": 0}, "depth"),
        ({"num_heads": 3}, "num_heads must divide dim"),
        ({"num_heads": 2.0}, "num_heads must be an int"),
        ({"mlp_ratio": 0}, "mlp_ratio must be a finite number > 0"),
        ({"mlp_ratio": 0.01}, r"mlp_ratio must give the MLP at least one hidden unit"),
        ({"mlp_ratio": float("nan")}, "mlp_ratio"),
        ({"num_classes": 0}, "num_classes"),
        ({"num_classes": 2.5}, "num_classes"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
    ],
)
def test_bad_config_raises_naming_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DiTConfig(**{**SMALL, **kwargs})


def test_config_must_be_a_dit_config():
    with pytest.raises(ValueError, match="config must be a DiTConfig"):
        DiT({"dim": 32})


@pytest.mark.parametrize(
    ("make_args", "match"),
    [
        (lambda x, t: (x[:, :, :4, :4], t, None), r"x_t must be a tensor of shape \(B, 1, 8, 8\)"),
        (lambda x, t: (x.repeat(1, 3, 1, 1), t, None), "x_t"),
        (lambda x, t: (x[0], t, None), "x_t"),
        (lambda x, t: (x.numpy(), t, None), "x_t"),
        (lambda x, t: (x, t[:3], None), r"t must be .* \(4,\)"),
        (lambda x, t: (x, "10", None), "t must be"),
        (lambda x, t: (x, t, torch.tensor([0, 1, 2, 11])), r"labels must lie in \[0, num_classes=10\]"),
        (lambda x, t: (x, t, torch.tensor([0, -1, 2, 3])), r"labels must lie in \[0, num_classes=10\]"),
        (lambda x, t: (x, t, torch.zeros(4)), "labels must be an integer tensor"),
        (lambda x, t: (x, t, torch.zeros(3, dtype=torch.long)), r"labels .* \(4,\)"),
        (lambda x, t: (x, t, {"context": torch.randn(4, 5, 8)}), r"unknown keys \['context'\]"),
        (lambda x, t: (x, t, {"label": torch.zeros(4, dtype=torch.long)}), r"unknown keys \['label'\]"),
        (lambda x, t: (x, t, "a red circle"), "cond must be"),
    ],
)
def test_bad_inputs_raise_saying_what_was_expected(make_args, match):
    model = small(num_classes=10)
    x, t = batch(model)
    with pytest.raises(ValueError, match=match):
        model(*make_args(x, t))


def test_labels_on_a_model_without_classes_raise():
    model = small()
    x, t = batch(model)
    with pytest.raises(ValueError, match="num_classes=None"):
        model(x, t, torch.zeros(4, dtype=torch.long))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: patchify(torch.randn(2, 1, 8, 8), 0), "p must be an int >= 1"),
        (lambda: patchify(torch.randn(2, 1, 8, 7), 2), r"x must be a tensor of shape \(B, C, H, W\)"),
        (lambda: patchify(torch.randn(1, 8, 8), 2), "x must be"),
        (lambda: unpatchify(torch.randn(2, 15, 4), 2, 1), "tokens must be .* N a square number"),
        (lambda: unpatchify(torch.randn(2, 16, 4), 2, 3), r"tokens must be .* \(B, N, 12\)"),
        (lambda: unpatchify(torch.randn(2, 16, 4), 2, 0), "channels must be an int >= 1"),
        (lambda: sincos_position_embedding(30, 4), "dim must be a multiple of 4"),
    ],
)
def test_bad_helper_arguments_raise_naming_them(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --------------------------------------------------------------------------- compilation


def test_compiles_as_one_graph():
    """fullgraph=True fails on any graph break (a Python branch on tensor data, a .item()); aot_eager traces as
    torch.compile does without inductor's code generation (about 1 s here)."""
    torch._dynamo.reset()
    model = nontrivial(small(num_classes=10)).eval()
    x, t = batch(model)
    labels = torch.tensor([0, 3, 9, 10])
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x, t, labels), model(x, t, labels), rtol=0, atol=1e-5)
