"""Test-wide settings: deterministic torch, the reference (JAX) on the CPU in fp32."""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
