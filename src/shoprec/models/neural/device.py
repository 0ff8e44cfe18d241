"""Where a torch model runs and how its randomness is pinned: devices, seeds, RNG snapshots."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from shoprec.errors import ConfigError

__all__ = ["check_device", "resolve_device", "rng_state", "seeded", "set_rng_state"]


def check_device(device: object, where: str = "") -> str:
    """The device string if it is one of 'auto', 'cpu', 'cuda', 'cuda:N'; else a ConfigError."""
    if not isinstance(device, str) or not (
        device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit())
    ):
        raise ConfigError(
            f"The 'device' parameter{f' of {where}' if where else ''} must be one of "
            f"['auto', 'cpu', 'cuda', 'cuda:N']. Got {device!r} instead."
        )
    return device


def resolve_device(device: str, where: str = "") -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cpu', 'cuda' and 'cuda:N' are taken as given."""
    device = check_device(device, where)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} was asked for, but CUDA is not available here.")
    return torch.device(device)


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Run a block with torch's global RNG seeded and deterministic CPU ops; restore both after.

    The caller's RNG state is left as it was (torch.random.fork_rng), so fitting a model does not
    change the random numbers other code sees.
    """
    devices = [device.index or 0] if device.type == "cuda" else []
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_filling = torch.utils.deterministic.fill_uninitialized_memory
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        if device.type == "cpu":
            torch.use_deterministic_algorithms(True)
            # CPU kernels read no uninitialised memory; filling every new tensor costs bandwidth.
            torch.utils.deterministic.fill_uninitialized_memory = False
        # Denormal floats from tiny gradients slow CPU arithmetic many times over.
        flushing = torch.set_flush_denormal(True)
        try:
            yield
        finally:
            if flushing:
                torch.set_flush_denormal(False)
            torch.use_deterministic_algorithms(was_deterministic)
            torch.utils.deterministic.fill_uninitialized_memory = was_filling


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """The global torch RNG state (CPU, and the CUDA device in use) for a checkpoint."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    """Restore what `rng_state` returned."""
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
