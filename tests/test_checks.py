"""The shared argument checks: each names the argument and what was expected."""

import pytest
import torch

from diffusion_lib.checks import check_tensor


def test_check_tensor_returns_a_matching_tensor_and_names_free_sizes():
    x = torch.zeros(2, 3, dtype=torch.long)
    assert check_tensor("x", x, ("B", 3), dtype="integer") is x
    with pytest.raises(ValueError, match=r"x must be a tensor of shape \(B, 4\) = \(B, width\), got \(2, 3\)"):
        check_tensor("x", x, ("B", 4), meaning="(B, width)")
    with pytest.raises(ValueError, match=r"mask must be a bool tensor of shape \(2, 3\), got \(2, 3\) of dtype"):
        check_tensor("mask", x, (2, 3), dtype="bool")
    with pytest.raises(ValueError, match=r"labels must be an integer tensor of shape \(2,\), got \(2,\) of dtype"):
        check_tensor("labels", torch.zeros(2), (2,), dtype="integer")
    with pytest.raises(ValueError, match=r"x must be a tensor of shape \(B,\), got list"):
        check_tensor("x", [1, 2], ("B",))
