"""The end-of-trial evaluation's settings (evaluation.py runs it): plain Python, so that the CLI quotes its
defaults and the plan passes them on without importing torch."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EvalSettings", "DEFAULT_EPS"]

# the paper's range, 0.001 to 0.030, and 0: the clean accuracy on the same images, where every curve starts
DEFAULT_EPS = (0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.03)


@dataclass(frozen=True)
class EvalSettings:
    eps: tuple = DEFAULT_EPS
    steps: int = 10
    step_scale: float = 2.5        # step size = step_scale * eps / steps (Madry et al.'s choice)
    random_start: bool = True
    pgd_images: int = 1000
    saliency_per_class: int = 1
    batch_size: int = 500
    seed: int = 0

    @classmethod
    def from_dict(cls, d: dict) -> EvalSettings:
        d = dict(d)
        if "eps" in d:
            d["eps"] = tuple(float(e) for e in d["eps"])
        return cls(**d)

    @property
    def eps_text(self) -> str:
        """'0,0.001,0.002,...' as --eps takes it."""
        return ",".join(f"{e:g}" for e in self.eps)
