"""PGD and saliency: their invariants on tiny models, and their rows in the store."""
import pytest
import torch
from torch import nn

from common.config import TrialConfig
from trainables.data import ImageSet
from trainables.evaluation import (
    EvalSettings,
    evaluate_model,
    gini,
    pgd_attack,
    robustness,
    saliency,
    saliency_indices,
    top_mass,
)
from trainables.train import Trainer


@pytest.fixture(scope="module")
def trained(tiny_data):
    # 4 epochs: clearly above chance (about 0.65 on this data), so there is accuracy for PGD to take away
    trainer = Trainer(TrialConfig(arch="rohrer25k", layer="scs", activation="none", pooling="maxabs",
                                  dataset="synthetic", epochs=4, batch_size=64), *tiny_data)
    for _ in range(4):
        trainer.train_epoch()
    return trainer


def test_pgd_at_eps_zero_leaves_accuracy_unchanged(trained):
    s = EvalSettings(eps=(0.0,), steps=3, pgd_images=128)
    subset = trained.test_set.subset(128)
    clean = (trained.model.eval()(subset.images.float() / 255).argmax(1) == subset.labels).float().mean().item()
    assert robustness(trained.model, subset, 32, s)[0]["accuracy"] == pytest.approx(clean)


def test_accuracy_does_not_rise_with_eps_on_the_same_images(trained):
    s = EvalSettings(eps=(0.0, 0.01, 0.03, 0.1), steps=5, pgd_images=128)
    accs = [r["accuracy"] for r in robustness(trained.model, trained.test_set.subset(128), 32, s)]
    assert accs[0] > 0.5
    for a, b in zip(accs, accs[1:]):
        assert b <= a + 2 / 128  # within noise of two images
    assert accs[-1] < accs[0]


def test_perturbations_stay_within_eps_and_the_unit_box(trained):
    x = trained.test_set.images[:32].float() / 255
    y = trained.test_set.labels[:32]
    f = trained.model.eval()
    start = torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    x_adv = pgd_attack(f, x, y, 0.03, 5, 0.01, start)
    assert (x_adv - x).abs().max().item() <= 0.03 + 1e-6
    assert x_adv.min().item() >= 0 and x_adv.max().item() <= 1
    assert (x_adv != x).any()


class ConstantModel(nn.Module):
    """Ignores its input entirely."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.tensor([0.0, 3.0] + [0.0] * 8))

    def forward(self, x):
        return self.bias.expand(x.shape[0], 10) + 0 * x.sum(dim=(1, 2, 3))[:, None]


def test_a_model_that_ignores_its_input_is_unaffected():
    images = ImageSet(torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8),
                      torch.tensor([1] * 20 + [0] * 20))
    rows = robustness(ConstantModel(), images, 32, EvalSettings(eps=(0.0, 0.03, 0.3), steps=3))
    assert [r["accuracy"] for r in rows] == [0.5, 0.5, 0.5]


class OnePixelModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.linspace(-1, 1, 10))

    def forward(self, x):
        return x[:, 1, 5, 7:8] * self.w  # reads only pixel (5, 7) of the green channel


def test_saliency_of_a_one_pixel_model_sits_on_that_pixel():
    x = torch.rand(4, 3, 32, 32)
    maps, predicted = saliency(OnePixelModel(), x, torch.tensor([9, 9, 0, 3]), 32)
    assert maps.shape == (4, 32, 32)
    flat = maps.flatten(1)
    assert (flat.argmax(1) == 5 * 32 + 7).all()
    assert (flat.sum(1) == flat.max(1).values).all()  # every other pixel is exactly zero
    assert gini(maps[0]) > 0.99 and top_mass(maps[0]) == pytest.approx(1.0)
    assert gini(torch.ones(32, 32)) == pytest.approx(0.0, abs=1e-9)
    assert top_mass(torch.ones(32, 32)) == pytest.approx(51 / 1024)


def test_saliency_images_are_the_same_for_every_variant_and_cover_each_class(tiny_data):
    _, test = tiny_data
    a = saliency_indices(test.labels, per_class=2, seed=3)
    assert a == saliency_indices(test.labels, per_class=2, seed=3)
    assert sorted({int(test.labels[i]) for i in a}) == list(range(10)) and len(a) == 20


def test_evaluation_rows_land_in_the_store_with_unique_keys(trained, tmp_path):
    from results.rows import evaluation_rows
    from results.store import ParquetStore

    result = evaluate_model(trained.model, trained.test_set, 32, EvalSettings(steps=2, pgd_images=64))
    store = ParquetStore(str(tmp_path / "store"))
    for _ in range(2):  # evaluating again replaces, never duplicates
        store.write_trial("exp", "t0", evaluation_rows("t0", result))
    rob = store.read_table("robustness").to_pylist()
    assert sorted(r["eps"] for r in rob) == [0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.03]
    assert all(r["n_images"] == 64 and r["steps"] == 2 for r in rob)
    sal = store.read_table("saliency").to_pylist()
    assert len(sal) == 10 and len({r["image_index"] for r in sal}) == 10
    assert all(len(r["map"]) == 32 * 32 and 0 <= r["sparsity_gini"] <= 1 for r in sal)


# -- a device whose memory is small (the GPU side emulated on the CPU) -----------------------------------
def _batch_sizes_seen(model):
    seen = []
    handle = model.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0]))
    return seen, handle


def test_pgd_batches_fit_a_device_with_little_free_memory_and_give_the_same_accuracy(trained, monkeypatch):
    """ResNet18 at 224 pixels ran all 500 PGD images in one float32 batch: tens of GB, more than a 24 GB
    GPU. The batch is now bounded by the device's free memory over the measured memory per image; random
    starts are drawn for all images at once, so the accuracies do not depend on the batch."""
    import trainables.evaluation as evaluation

    s = EvalSettings(eps=(0.0, 0.01, 0.03), steps=3, pgd_images=100, batch_size=500)
    subset = trained.test_set.subset(100)
    seen, handle = _batch_sizes_seen(trained.model)
    roomy = robustness(trained.model, subset, 32, s)
    handle.remove()
    assert max(seen) == 100  # the CPU: no bound, one batch

    monkeypatch.setattr(evaluation, "free_memory", lambda device: 40 * 2 ** 20)      # 40 MB free
    monkeypatch.setattr(evaluation, "bytes_per_image", lambda f, x, y: 2 ** 20)       # 1 MB per image
    seen, handle = _batch_sizes_seen(trained.model)
    tight = robustness(trained.model, subset, 32, s)
    handle.remove()
    assert max(seen) == 20  # half of the 40 MB free, at 1 MB an image
    assert [r["accuracy"] for r in tight] == [r["accuracy"] for r in roomy]


def test_an_out_of_memory_batch_is_halved_and_redone_with_the_same_result(trained, monkeypatch):
    """Where the estimate is wrong, a batch the GPU cannot hold is halved and redone, not a failed trial."""
    s = EvalSettings(eps=(0.0, 0.03), steps=2, pgd_images=64, batch_size=64)
    subset = trained.test_set.subset(64)
    expected = [r["accuracy"] for r in robustness(trained.model, subset, 32, s)]

    def small_device(module, args):
        if args[0].shape[0] > 16:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (emulated)")

    handle = trained.model.register_forward_pre_hook(small_device)
    try:
        got = [r["accuracy"] for r in robustness(trained.model, subset, 32, s)]
        maps, predicted = saliency(trained.model, subset.images[:40].float() / 255, subset.labels[:40], 32)
    finally:
        handle.remove()
    assert got == expected
    assert maps.shape == (40, 32, 32) and predicted.shape == (40,)
