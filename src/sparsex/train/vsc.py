"""Training variational sparse coding (VSC), plain or class-aligned, on a grey-scale image set.

Objective per batch of ``B`` images (arXiv 2505.14476, on top of Tonolini et al.'s VSC)::

    L = 1/B sum_b [ BCE(x_b, decode(z_b)) + beta KL_ss(q(z | x_b) || p(z)) ] + lambda L_JSD(gamma, y)

- ``BCE`` summed over pixels, ``z_b`` sampled with the relaxed spike of scale ``c``
  (:meth:`sparsex.models.vsc.VSC.sample`), ``c`` ramped linearly from ``spike_scale_start`` to
  ``spike_scale_end`` over the first ``warmup_epochs`` (fractional epochs);
- ``KL_ss`` the spike-and-slab KL against a prior with spike probability ``alpha``
  (:func:`sparsex.losses.spike_slab_kl`);
- ``L_JSD`` the class-alignment loss (:func:`sparsex.losses.class_alignment_loss`): mean over
  classes of the mean pairwise Jensen-Shannon divergence between same-class spike probabilities.
  ``lambda = 0`` is plain VSC, the baseline, trained by the same code.

Batches are class-balanced (:class:`sparsex.data.sampler.ClassBalancedBatchSampler`): every class,
at least two samples each, in every batch, for both lambda = 0 and lambda > 0, so the two differ
only in the loss.

Every epoch is a stage of a :class:`~sparsex.train.run.RunFolder`: its checkpoint (model and Adam
state, under ``optimizer.*`` keys) is written atomically to ``<out>/stages/<e>-epoch<e>``, the one
before it removed, and its test-split metrics appended to ``metrics.json`` / ``stages.md``. A
restarted run with the same settings resumes after the last finished epoch and ends with the same
weights as an uninterrupted one (batches and noise come from ``seed`` and the epoch). The last
epoch also measures the linear probe and the class correlation matrix; ``<out>/checkpoint`` holds
the final model (``sparsex.models.load_model(path, family="vsc")``).

Under torchrun the model trains data-parallel (DistributedDataParallel): every rank draws the same
class-balanced global batch of ``batch_size`` images and takes its part of each class, so that
every rank's slice still holds same-class pairs (``batch_size >= 2 x classes x processes``); each
rank samples the codes from its own noise stream. The reconstruction and KL terms are means over
images, so their gradient is the global batch's; the JSD term is measured within each rank's
slice (pairs across ranks are not compared), so a distributed run is close to, not equal to, a
single process's. Rank 0 alone evaluates and writes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from .. import distributed
from ..checkpoint import Checkpoint
from ..checks import check_int, check_number
from ..data import create_dataset
from ..data.sampler import ClassBalancedBatchSampler, dataset_tensors
from ..errors import DataError, SparsexError
from ..losses import class_alignment_loss, spike_slab_kl
from ..metrics.latent import latent_metrics
from ..models import create_model
from ..models.vsc import FAMILY, VSC
from ..progress import progress_bar
from ..weights import load_state_dict_checked
from .base import TrainConfig, register_trainer
from .loop import MixedPrecision, open_run
from .run import removes_unstarted_run, run_stages

OPTIMIZER_PREFIX = "optimizer."


@dataclass
class VSCTrainConfig(TrainConfig):
    """Everything a VSC run depends on.

    ``lambda_jsd`` weighs the class-alignment loss (0: plain VSC). Its default, 10, was chosen on
    Fashion-MNIST (8 epochs, alpha 0.2; benchmark ``vsc_fashion``): lambda 1 cut the
    within-class JSD by only a quarter, lambda 10 by more than ten times at the same reconstruction
    BCE, and lambda 100 collapsed the code onto two dimensions shared by every class (BCE +4%,
    no class-specific dimension left). ``alpha`` is the prior's spike probability (smaller:
    sparser codes): at 0.5 the spikes of most dimensions hovered around 0.5, coin flips rather than
    a sparse code.
    """

    what = "VSC"

    data: str = "fashion-mnist"  # dataset (fashion-mnist; mnist with --root; digits for quick runs)
    root: str | None = None  # local folder with the dataset's files
    data_options: dict[str, Any] = field(default_factory=dict)  # dataset settings KEY=VALUE
    arch: str = "mlp"  # encoder/decoder: mlp or conv
    latent_dim: int = 64  # D: latent dimensions
    hidden_dim: int = 400  # hidden units of the mlp encoder and decoder
    conv_channels: int = 32  # channels of the conv encoder and decoder
    alpha: float = 0.2  # the prior's spike probability (smaller: sparser codes)
    beta: float = 1.0  # weight of the spike-and-slab KL term
    lambda_jsd: float = 10.0  # weight of the class-alignment JSD loss (0: plain VSC)
    epochs: int = 20  # training epochs
    batch_size: int = 250  # images per class-balanced batch (every class at least twice)
    lr: float = 1e-3  # learning rate
    spike_scale_start: float = 50.0  # scale c of the relaxed spike at the start of the warm-up
    spike_scale_end: float = 200.0  # scale c after the warm-up
    warmup_epochs: float = 5.0  # epochs over which c ramps linearly from start to end
    seed: int = 0  # seed of the initialisation, the batches and the sampled codes
    eval_batch_size: int = 1000  # images per forward pass in evaluation
    jsd_pairs: int = 20_000  # same-class pairs sampled for the within-class JSD metric
    probe_max_iter: int = 500  # iterations of the linear probe on the spike probabilities
    device: str = "cpu"  # torch device, e.g. cpu or cuda
    amp: bool = False  # mixed precision (sparsex.train.loop.MixedPrecision)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("latent_dim", "hidden_dim", "conv_channels", "epochs", "batch_size", "eval_batch_size",
                     "jsd_pairs", "probe_max_iter"):
            check_int(getattr(self, name), name, 1)
        check_number(self.lambda_jsd, "lambda_jsd (0 is plain VSC)", 0)
        check_number(self.alpha, "alpha (the prior's spike probability)", 0, 1, low_open=True, high_open=True)
        for name in ("beta", "warmup_epochs"):
            check_number(getattr(self, name), name, 0)
        for name in ("lr", "spike_scale_start", "spike_scale_end"):
            check_number(getattr(self, name), name, 0, low_open=True)
        if self.arch not in ("mlp", "conv"):
            raise SparsexError(f"unknown VSC architecture {self.arch!r}; valid: mlp, conv")
        if not isinstance(self.data_options, dict):
            raise SparsexError(f"data_options must be a mapping of dataset settings, got {self.data_options!r}")
        distributed.check_device(self.device)
        if not isinstance(self.amp, bool):
            raise SparsexError(f"amp must be true or false, got {self.amp!r}")

    def spike_scale(self, epoch: float) -> float:
        """The relaxed spike's scale ``c`` after ``epoch`` (fractional) epochs: linear warm-up."""
        ramp = 1.0 if self.warmup_epochs == 0 else min(1.0, epoch / self.warmup_epochs)
        return self.spike_scale_start + (self.spike_scale_end - self.spike_scale_start) * ramp


def load_image_split(config: VSCTrainConfig, split: str, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Images ``(N, C, H, W)`` in ``[0, 1]``, labels ``(N,)`` and class names of one split of
    ``config``'s dataset; a dataset whose items are not fixed-size images in ``[0, 1]`` raises
    :class:`DataError` naming the problem."""
    dataset = create_dataset(config.data, split=split, root=config.root, **config.data_options)
    if dataset.image_size is None:
        raise DataError(f"VSC needs images of one fixed size; dataset {config.data!r} has varying sizes "
                        f"(set its image_size, e.g. --data-options image_size=28)")
    images, labels = dataset_tensors(dataset, progress=progress)
    if images.dim() != 4:
        raise DataError(f"dataset {config.data!r} items are not images (C, H, W): got {tuple(images.shape[1:])}")
    if images.min() < 0 or images.max() > 1:
        raise DataError(f"dataset {config.data!r} has pixel values outside [0, 1]; VSC's BCE needs them in [0, 1]")
    return images, labels, list(dataset.classes)


def vsc_loss(model: VSC, images: torch.Tensor, labels: torch.Tensor, config: VSCTrainConfig, spike_scale: float,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """The training objective on one batch (module docstring) and its parts (``bce``, ``kl``,
    ``jsd`` per image, as floats). The JSD term is measured even when ``lambda_jsd`` is 0."""
    out = model(images, spike_scale=spike_scale, generator=generator)
    bce = F.binary_cross_entropy_with_logits(out.logits, images, reduction="none").flatten(1).sum(1).mean()
    kl = spike_slab_kl(out.mu, out.logvar, out.gamma, config.alpha).mean()
    if config.lambda_jsd > 0:
        jsd = class_alignment_loss(out.gamma, labels)
        loss = bce + config.beta * kl + config.lambda_jsd * jsd
    else:
        with torch.no_grad():
            jsd = class_alignment_loss(out.gamma, labels)
        loss = bce + config.beta * kl
    return loss, {"bce": bce.item(), "kl": kl.item(), "jsd": jsd.item()}


@torch.no_grad()
def evaluate_vsc(model: VSC, images: torch.Tensor, labels: torch.Tensor, classes: list[str], config: VSCTrainConfig,
                 train: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, Any]:
    """Test-split metrics of ``model``: ``bce`` (the objective's reconstruction term per image,
    one sampled code per image at ``spike_scale_end``, seeded), ``bce_code`` (reconstruction from
    the deterministic code ``mu * [gamma > 0.5]``), ``kl`` per image, then
    :func:`~sparsex.metrics.latent.latent_metrics` of the spike probabilities (with ``train``
    images and labels also the linear probe, the class correlation matrix and dimension kinds)."""
    model.eval()
    device = config.device
    generator = torch.Generator(device=device).manual_seed(config.seed + 7919)
    bce = bce_code = kl = 0.0
    gammas = []
    for batch in images.split(config.eval_batch_size):
        x = batch.to(device)
        mu, logvar, gamma = model.encode(x)
        sampled = model.decode(model.sample(mu, logvar, gamma, config.spike_scale_end, generator))
        bce += F.binary_cross_entropy_with_logits(sampled, x, reduction="sum").item()
        bce_code += F.binary_cross_entropy_with_logits(model.decode(model.code(mu, gamma)), x, reduction="sum").item()
        kl += spike_slab_kl(mu, logvar, gamma, config.alpha).sum().item()
        gammas.append(gamma.cpu())
    n = len(images)
    metrics: dict[str, Any] = {"bce": bce / n, "bce_code": bce_code / n, "kl": kl / n}
    train_gamma = model.encode_all(train[0], config.eval_batch_size, device) if train is not None else None
    metrics.update(latent_metrics(torch.cat(gammas), labels, classes, train_gamma=train_gamma,
                                  train_labels=None if train is None else train[1], jsd_pairs=config.jsd_pairs,
                                  probe_max_iter=config.probe_max_iter, seed=config.seed))
    return metrics


def _optimizer_tensors(optimiser: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Adam's per-parameter state as flat tensors ``optimizer.<param index>.<name>``."""
    out = {}
    for index, state in optimiser.state_dict()["state"].items():
        for name, value in state.items():
            out[f"{OPTIMIZER_PREFIX}{index}.{name}"] = torch.as_tensor(value)
    return out


def _load_optimizer(optimiser: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        index, name = key[len(OPTIMIZER_PREFIX):].split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optimiser.load_state_dict({"state": state, "param_groups": optimiser.state_dict()["param_groups"]})


def _rank_slice(batch: list[int], labels: torch.Tensor) -> torch.Tensor:
    """This rank's part of a class-balanced global batch: the batch ordered by class, then every
    N-th image from the rank on, so that a class with ``m >= 2N`` images in the batch gives every
    rank at least 2 (same-class pairs for the JSD term). The whole batch in a single process."""
    batch = torch.as_tensor(batch)
    if distributed.world_size() == 1:
        return batch
    return distributed.shard_indices(batch[torch.argsort(labels[batch], stable=True)])


def _check_distributed_batch(config: VSCTrainConfig, labels: torch.Tensor) -> None:
    """Under torchrun the global batch must split evenly and give every rank 2 images per class."""
    distributed.check_batch_size(config.batch_size)
    n, k = distributed.world_size(), len(labels.unique())
    if n > 1 and config.batch_size // k < 2 * n:
        raise SparsexError(f"VSC on {n} processes needs 2 images of each of the {k} classes on every process: "
                           f"batch_size >= {2 * k * n}, got {config.batch_size}")


@register_trainer("vsc", VSCTrainConfig, description="variational sparse coding, plain or class-aligned (lambda_jsd > 0)")
@removes_unstarted_run
def train_vsc(config: VSCTrainConfig, out: str | os.PathLike, overwrite: bool = False,
              progress: bool = True) -> dict[str, Any]:
    """Train (or resume) VSC as ``config`` says in the run folder ``out``; return the final metrics
    (the last epoch's record in ``metrics.json``)."""
    distributed.init(config.device)
    progress = progress and distributed.is_main()
    train_images, train_labels, classes = load_image_split(config, "train", progress)
    sampler = ClassBalancedBatchSampler(train_labels, config.batch_size, seed=config.seed, classes=classes)
    _check_distributed_batch(config, train_labels)
    test_images, test_labels, test_classes = load_image_split(config, "test", progress)
    if test_classes != classes:
        raise DataError(f"dataset {config.data!r}: the train and test splits name different classes")
    if tuple(test_images.shape[1:]) != tuple(train_images.shape[1:]):
        raise DataError(f"dataset {config.data!r}: train images are {tuple(train_images.shape[1:])}, "
                        f"test images {tuple(test_images.shape[1:])}")

    stages = [f"epoch{e + 1}" for e in range(config.epochs)]
    run = open_run(out, config, stages, overwrite=overwrite)
    device = config.device
    torch.manual_seed(config.seed)
    model: VSC = create_model("vsc", image_size=list(train_images.shape[2:]), channels=train_images.shape[1],
                              latent_dim=config.latent_dim, arch=config.arch, hidden_dim=config.hidden_dim,
                              conv_channels=config.conv_channels).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    checkpoint_config = {
        "model": {"name": "vsc", **model.settings()},
        "data": {"name": config.data, "root": config.root, "options": config.data_options, "classes": classes},
        "training": {"alpha": config.alpha, "beta": config.beta, "lambda_jsd": config.lambda_jsd,
                     "spike_scale_end": config.spike_scale_end, "seed": config.seed},
    }

    def resume(checkpoint: Checkpoint) -> None:
        state = checkpoint.state
        load_state_dict_checked(model, {k: v for k, v in state.items() if not k.startswith(OPTIMIZER_PREFIX)},
                                f"epoch checkpoint {checkpoint.path}")
        _load_optimizer(optimiser, {k: v for k, v in state.items() if k.startswith(OPTIMIZER_PREFIX)})

    net = distributed.wrap(model)
    precision = MixedPrecision(device, config.amp)
    world, rank = distributed.world_size(), distributed.rank()
    steps = len(sampler)
    bar = progress_bar(total=config.epochs * steps, desc=f"vsc lambda={config.lambda_jsd:g}", unit="step",
                       disable=not progress)

    def run_epoch(epoch: int) -> dict[str, Any]:
        model.train()
        sampler.set_epoch(epoch)
        bar.n = epoch * steps
        generator = torch.Generator(device=device).manual_seed((config.seed * 100_003 + epoch) * world + rank)
        totals = {"loss": 0.0, "bce": 0.0, "kl": 0.0, "jsd": 0.0}
        for step, batch in enumerate(sampler):
            scale = config.spike_scale(epoch + step / steps)
            batch = _rank_slice(batch, train_labels)
            with precision.autocast():
                loss, parts = vsc_loss(net, train_images[batch].to(device), train_labels[batch].to(device), config,
                                       scale, generator)
            precision.step(loss, optimiser)
            totals["loss"] += loss.item()
            for key, value in parts.items():
                totals[key] += value
            bar.update()
        record = {"epoch": epoch + 1, **{f"train_{k}": v / steps for k, v in distributed.all_reduce_mean(totals).items()}}
        record["spike_scale"] = config.spike_scale(epoch + 1)
        bar.set_postfix(epoch=epoch + 1, loss=f"{record['train_loss']:.2f}")
        return record

    def evaluate(epoch: int) -> dict[str, Any]:
        last = epoch == config.epochs - 1
        return evaluate_vsc(model, test_images, test_labels, classes, config,
                            train=(train_images, train_labels) if last else None)

    with bar:
        return run_stages(run, FAMILY, run_stage=run_epoch, evaluate=evaluate, resume=resume,
                          stage_state=lambda: {**model.state_dict(), **_optimizer_tensors(optimiser)},
                          final_state=lambda: model, checkpoint_config=lambda: checkpoint_config,
                          keep_last_stage_only=True)
