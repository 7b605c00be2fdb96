"""End-of-trial evaluation: accuracy under L-inf PGD, and vanilla-gradient saliency maps.

Both work on 32x32 test images in [0, 1]; for image_dim 224 the resize is part of the attacked
function, so perturbations and saliency live in the original image space for every variant.
Every variant of a table is judged on the same images: a seeded subset for PGD, and the first
`per_class` images of each class (in a seeded order) for saliency. BatchNorm runs in eval mode.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .data import ImageSet
from .eval_settings import DEFAULT_EPS, EvalSettings

__all__ = ["EvalSettings", "pgd_attack", "robustness", "saliency", "saliency_indices", "gini",
           "top_mass", "evaluate_model", "DEFAULT_EPS"]

class ImageSpace(nn.Module):
    """model(resize(x)) in eval mode: the function attacks and saliency differentiate."""

    def __init__(self, model: nn.Module, image_dim: int):
        super().__init__()
        self.model, self.image_dim = model, image_dim

    def forward(self, x):
        if x.shape[-1] != self.image_dim:
            x = F.interpolate(x, size=self.image_dim, mode="bilinear", align_corners=False)
        return self.model(x).float()


def pgd_attack(f: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, step_size: float,
               random_start: bool, gen: torch.Generator) -> torch.Tensor:
    """L-inf PGD maximising cross-entropy; the result stays within eps of x and inside [0, 1]."""
    if eps == 0:
        return x.clone()
    delta = torch.zeros_like(x)
    if random_start:
        delta = (torch.rand(x.shape, generator=gen) * 2 - 1).to(x.device) * eps
    x_adv = (x + delta).clamp(0, 1)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(f(x_adv), y)
        (grad,) = torch.autograd.grad(loss, x_adv)
        with torch.no_grad():
            x_adv = x_adv + step_size * grad.sign()
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    return x_adv.detach()


def robustness(model: nn.Module, images: ImageSet, image_dim: int, s: EvalSettings) -> list[dict]:
    """Accuracy under PGD for every eps, on the same images (float32, batched on the model's device)."""
    f = ImageSpace(model, image_dim).eval()
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(s.seed)
    rows = []
    for eps in s.eps:
        correct = 0
        for start in range(0, len(images), s.batch_size):
            x = images.images[start:start + s.batch_size].to(device).float() / 255
            y = images.labels[start:start + s.batch_size].to(device)
            x_adv = pgd_attack(f, x, y, eps, s.steps, s.step_scale * eps / s.steps, s.random_start, gen)
            with torch.no_grad():
                correct += (f(x_adv).argmax(1) == y).sum().item()
        rows.append({"attack": "pgd_linf", "eps": float(eps), "steps": s.steps,
                     "step_size": s.step_scale * eps / s.steps, "accuracy": correct / len(images),
                     "n_images": len(images)})
    return rows


def saliency_indices(labels: torch.Tensor, per_class: int = 1, seed: int = 0) -> list[int]:
    """The first `per_class` images of each class in a seeded order: the same for every variant."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed)).tolist()
    picked, count = [], {}
    for i in order:
        c = int(labels[i])
        if count.get(c, 0) < per_class:
            picked.append(i)
            count[c] = count.get(c, 0) + 1
    return sorted(picked, key=lambda i: (int(labels[i]), i))


def saliency(model: nn.Module, x: torch.Tensor, y: torch.Tensor, image_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(|d score_y / d x| max over channels, predicted class): maps of shape (N, H, W)."""
    f = ImageSpace(model, image_dim).eval()
    x = x.clone().requires_grad_(True)
    scores = f(x)
    (grad,) = torch.autograd.grad(scores.gather(1, y[:, None]).sum(), x)
    return grad.abs().amax(dim=1).detach(), scores.argmax(1).detach()


def gini(values: torch.Tensor) -> float:
    """Gini coefficient of a non-negative map: 0 when uniform, near 1 when one pixel holds everything."""
    v = values.flatten().double().sort().values
    n = v.numel()
    if v.sum() <= 0:
        return 0.0
    index = torch.arange(1, n + 1, dtype=torch.float64)
    return float((2 * (index * v).sum() / (n * v.sum())) - (n + 1) / n)


def top_mass(values: torch.Tensor, fraction: float = 0.05) -> float:
    """Share of the total held by the top `fraction` of pixels (0.05 for a uniform map)."""
    v = values.flatten().double()
    k = max(1, int(round(fraction * v.numel())))
    total = v.sum()
    return float(v.topk(k).values.sum() / total) if total > 0 else 0.0


def evaluate_model(model: nn.Module, test: ImageSet, image_dim: int, s: EvalSettings) -> dict:
    """{"robustness": rows, "saliency": rows} for one trained model."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    subset = test.subset(s.pgd_images, seed=s.seed)
    result = {"robustness": robustness(model, subset, image_dim, s), "saliency": []}
    idx = saliency_indices(test.labels.cpu(), s.saliency_per_class, s.seed)
    if idx:
        index = torch.tensor(idx, device=test.labels.device)
        x = test.images[index].to(device).float() / 255
        y = test.labels[index].to(device)
        maps, predicted = saliency(model, x, y, image_dim)
        images = test.images[index].cpu()
        for i, m, label, pred, image in zip(idx, maps.cpu(), y.tolist(), predicted.tolist(), images):
            result["saliency"].append({
                "image_index": int(i), "label": int(label), "predicted": int(pred),
                "map": m.flatten().tolist(), "height": m.shape[0], "width": m.shape[1],
                "sparsity_gini": gini(m), "top5_mass": top_mass(m),
                "image": image.flatten().tolist()})  # the uint8 input (C, H, W), shown beside its map
    model.train(was_training)
    return result
