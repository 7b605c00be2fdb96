"""End-of-trial evaluation: accuracy under L-inf PGD, and vanilla-gradient saliency maps.

Both work on 32x32 test images in [0, 1]; for image_dim 224 the resize is part of the attacked
function, so perturbations and saliency live in the original image space for every variant.
Every variant of a table is judged on the same images: a seeded subset for PGD, and the first
`per_class` images of each class (in a seeded order) for saliency. BatchNorm runs in eval mode.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from common.eval_settings import DEFAULT_EPS, EvalSettings

from .data import ImageSet

__all__ = ["EvalSettings", "pgd_attack", "robustness", "saliency", "saliency_indices", "gini",
           "top_mass", "evaluate_model", "attack_batch_size", "DEFAULT_EPS"]

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
               start: torch.Tensor | None = None) -> torch.Tensor:
    """L-inf PGD maximising cross-entropy from x + eps * start (start in [-1, 1], or None for x itself); the
    result stays within eps of x and inside [0, 1]."""
    if eps == 0:
        return x.clone()
    x_adv = x if start is None else (x + start.to(x.device) * eps).clamp(0, 1)
    for _ in range(steps):
        x_adv = x_adv.detach().requires_grad_(True)
        loss = F.cross_entropy(f(x_adv), y)
        (grad,) = torch.autograd.grad(loss, x_adv)
        with torch.no_grad():
            x_adv = x_adv + step_size * grad.sign()
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    return x_adv.detach()


# Of the memory a GPU has free, what one attack batch may take: the rest is headroom for cuDNN's workspaces
# and the caching allocator's fragmentation.
MEMORY_SHARE = 0.5


def free_memory(device: torch.device) -> int | None:
    """Bytes free on a GPU (None on the CPU, whose batches are not bounded here)."""
    if device.type != "cuda":
        return None
    return torch.cuda.mem_get_info(device)[0]


def bytes_per_image(f: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """The GPU memory one image of an attack step takes (forward, and backward to the input, float32):
    the peak over a step of a few images, divided by their count (the fixed part included: an over-estimate)."""
    device = x.device
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    probe = x.detach().clone().requires_grad_(True)
    torch.autograd.grad(F.cross_entropy(f(probe), y), probe)
    torch.cuda.synchronize(device)
    return max(1.0, (torch.cuda.max_memory_allocated(device) - base) / len(x))


def attack_batch_size(f: nn.Module, x: torch.Tensor, y: torch.Tensor, requested: int) -> int:
    """`requested` images per attack batch, or fewer where the device's free memory would not hold them
    (ResNet18 at 224 pixels: tens of MB per image, so 500 images would need 20-40 GB)."""
    free = free_memory(x.device)
    if free is None:
        return requested
    per_image = bytes_per_image(f, x[:4], y[:4])
    return max(1, min(requested, int(MEMORY_SHARE * free / per_image)))


def _batched(run, n: int, batch: int):
    """run(start, stop) over [0, n) in batches of `batch`, halving it after a GPU out-of-memory error and
    redoing that batch (every input of a batch is drawn beforehand, so its result does not change)."""
    out, begin = [], 0
    while begin < n:
        try:
            out.append(run(begin, min(n, begin + batch)))
        except torch.cuda.OutOfMemoryError:
            if batch == 1:
                raise
            batch = max(1, batch // 2)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        begin += batch
    return out


def robustness(model: nn.Module, images: ImageSet, image_dim: int, s: EvalSettings) -> list[dict]:
    """Accuracy under PGD for every eps, on the same images (float32, batched on the model's device in
    batches that fit its memory). Random starts are drawn per eps for all images at once from one seeded
    CPU generator, so the result does not depend on the batch size."""
    f = ImageSpace(model, image_dim).eval()
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(s.seed)
    n = len(images)

    def batch_of(begin: int, stop: int):
        return (images.images[begin:stop].to(device).float() / 255, images.labels[begin:stop].to(device))

    batch = attack_batch_size(f, *batch_of(0, min(n, 4)), s.batch_size) if n else s.batch_size
    rows = []
    for eps in s.eps:
        starts = (torch.rand(images.images.shape, generator=gen) * 2 - 1) if s.random_start and eps else None

        def attack(begin: int, stop: int, eps=eps, starts=starts) -> int:
            x, y = batch_of(begin, stop)
            x_adv = pgd_attack(f, x, y, eps, s.steps, s.step_scale * eps / s.steps,
                               None if starts is None else starts[begin:stop])
            with torch.no_grad():
                return (f(x_adv).argmax(1) == y).sum().item()

        correct = sum(_batched(attack, n, batch))
        rows.append({"attack": "pgd_linf", "eps": float(eps), "steps": s.steps,
                     "step_size": s.step_scale * eps / s.steps, "accuracy": correct / n,
                     "n_images": n})
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
    """(|d score_y / d x| max over channels, predicted class): maps of shape (N, H, W), in batches that fit
    the device's memory (as the attack's)."""
    f = ImageSpace(model, image_dim).eval()

    def one_batch(begin: int, stop: int):
        xb = x[begin:stop].clone().requires_grad_(True)
        scores = f(xb)
        (grad,) = torch.autograd.grad(scores.gather(1, y[begin:stop, None]).sum(), xb)
        return grad.abs().amax(dim=1).detach(), scores.argmax(1).detach()

    if not len(x):
        return x.new_zeros((0, *x.shape[2:])), y.clone()
    parts = _batched(one_batch, len(x), attack_batch_size(f, x[:4], y[:4], len(x)))
    return torch.cat([m for m, _ in parts]), torch.cat([p for _, p in parts])


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
