"""Shared test setup.

The unit suite runs on CPU with tiny models built in code; no weights are downloaded.
"""

import torch

# Two cores and several tests that build small torch models: keep each test single-threaded
# so results are deterministic and parallel runs do not oversubscribe the machine.
torch.set_num_threads(1)
