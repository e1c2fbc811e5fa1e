"""Test-wide settings: deterministic torch, the reference (JAX) on the CPU in fp32."""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Test tensors are small and pytest-xdist already runs one worker per core: torch's
    intra-op thread pool would only add overhead (and oversubscribe the 2-core CI machine)."""
    try:
        import torch
    except ImportError:  # data_pipeline tests run without torch too
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
