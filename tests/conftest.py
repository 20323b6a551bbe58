"""Shared test setup.

The unit suite runs on CPU with tiny models built in code; no weights are downloaded.
"""

import pytest
import torch

# Two cores and several tests that build small torch models: keep each test single-threaded
# so results are deterministic and parallel runs do not oversubscribe the machine.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def inpaint_model_dir(tmp_path_factory):
    """A tiny 9-channel inpainting model in diffusers format (tests/tiny_diffusers.py), built once."""
    from tiny_diffusers import build_model_dir

    return build_model_dir(tmp_path_factory.mktemp("inpaint_model") / "tiny", in_channels=9)
