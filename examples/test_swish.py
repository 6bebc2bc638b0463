# pytest examples/test_swish.py
"""Your own Function in your own test suite (README, "Check your own Function")."""

import pytest
import torch
from swish import Swish, SwishTextbook, swish

from neuronlab.gradcheck import check_function
from neuronlab.testing import assert_function_matches


def test_swish_matches_torch_in_float64_and_bfloat16():
    assert_function_matches(Swish, swish, dtypes=("float64", "bfloat16"))


def test_the_textbook_backward_passes_finite_differences_and_fails_in_bfloat16():
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    assert check_function(SwishTextbook.apply, x, reference=swish).ok  # float64 FD: passes
    with pytest.raises(AssertionError, match="bfloat16 ∂L/∂x"):  # generated inputs, bfloat16
        assert_function_matches(SwishTextbook, swish, dtypes=("bfloat16",))
