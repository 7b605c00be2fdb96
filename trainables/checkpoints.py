"""Reading a checkpoint's model weights for `init_from`: refused in one ConfigError line unless it is one.

A trainer checkpoint (what every trial writes, `defaults.CHECKPOINT_FILE`) holds the model's state dict
under "model"; a plain state dict of tensors is accepted too. Anything else (a file that is not a torch
checkpoint, a pickle that weights_only refuses, a checkpoint without tensors) is the user's to fix, so it
is refused when the sweep is planned (plan.py) and, should the file change later, when the trial starts,
where the trial fails once with this line instead of being retried. The file may be in an object store
(a URI, locations.py): a later stage's trials on nodes without a shared disk read their first stage's
checkpoint from the sweep's storage.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from common.config import ConfigError
from common.errors import first_line
from common.uris import is_uri

__all__ = ["read_model_weights"]


def read_model_weights(path: str | Path) -> dict:
    """The model weights a checkpoint file holds (name -> tensor, on the CPU); a URI is downloaded first."""
    if is_uri(str(path)):
        # pyarrow only where an object store is named: the training core runs where only torch is installed
        from common.locations import Location, LocationError

        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / Path(str(path).split("?", 1)[0]).name
            try:
                where = Location(str(path))
                where.download(where.path, local)
            except (LocationError, OSError) as exc:
                raise ConfigError(f"init_from {path} cannot be read ({first_line(exc, 200)}); "
                                  f"give a trainer.pt that a sweep wrote") from None
            return read_model_weights(local)
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"init_from {path} is not a checkpoint file (give a trainer.pt, or \"@GROUP\" for the "
                          f"trained run of another group of the sweep)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch.load raises many kinds for a file that is not a checkpoint
        raise ConfigError(f"init_from {path} is not a checkpoint of scs-sweep "
                          f"({type(exc).__name__}: {first_line(exc, 160)}); "
                          f"give a trainer.pt that a sweep wrote") from None
    weights = state.get("model", state) if isinstance(state, dict) else None
    if not isinstance(weights, dict) or not weights or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()):
        raise ConfigError(f"init_from {path} holds no model weights (a trainer.pt has them under 'model'); give "
                          f"a trainer.pt that a sweep wrote")
    return weights
