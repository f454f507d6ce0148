"""Variational sparse coding (VSC): a VAE with a spike-and-slab latent space, for small images.

Tonolini, Jensen, Murray-Smith, "Variational Sparse Coding", UAI 2019 (arXiv 1812.02833); the
class-aligned variant (arXiv 2505.14476) is the same model trained with an extra loss
(:func:`sparsex.losses.class_alignment_loss`, see :mod:`sparsex.train.vsc`).

The encoder maps an image ``(C, H, W)`` in ``[0, 1]`` to, per latent dimension ``j``, the slab's
mean ``mu_j``, its log-variance ``log sigma_j^2`` and the spike probability ``gamma_j`` (the
probability that the dimension is active). A latent code is ``z = s * (mu + sigma * eps)`` with
``eps ~ N(0, 1)`` and the relaxed spike ``s = sigmoid(c (eta + gamma - 1))``, ``eta ~ U(0, 1)``:
for a large scale ``c`` it tends to a Bernoulli(gamma) draw, while gradients reach ``gamma``.
The decoder maps ``z`` to per-pixel Bernoulli logits. Two architectures: ``mlp`` (one hidden layer,
as in Tonolini et al.) and ``conv`` (two stride-2 convolutions each way; sides divisible by 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from ..checks import check_images, check_int
from ..errors import InputError, SparsexError
from .base import MODELS

FAMILY = "vsc"
ARCHITECTURES = ("mlp", "conv")
#: A latent dimension counts as active where its spike probability exceeds this (docs/metrics.md).
ACTIVE_THRESHOLD = 0.5


@dataclass
class VSCOutput:
    """What :class:`VSC` computes for a batch of ``B`` images with ``D`` latent dimensions.

    ``logits (B, C, H, W)``: the decoder's per-pixel Bernoulli logits (``recon`` = their sigmoid);
    ``mu``, ``logvar``, ``gamma (B, D)``: the slab mean, slab log-variance and spike probability;
    ``z (B, D)``: the latent code that was decoded.
    """

    logits: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor
    gamma: torch.Tensor
    z: torch.Tensor

    @property
    def recon(self) -> torch.Tensor:
        return torch.sigmoid(self.logits)


class VSC(nn.Module):
    """Spike-and-slab VAE for ``channels x image_size`` images (``image_size`` an int or ``(H, W)``).

    ``latent_dim`` D latent dimensions; ``arch`` "mlp" or "conv"; ``hidden_dim`` units of the
    fully connected hidden layer (both architectures); ``conv_channels`` the first convolution's
    channels (the second has twice as many).
    """

    family = FAMILY

    def __init__(self, image_size: int | Sequence[int] = 28, channels: int = 1, latent_dim: int = 64,
                 arch: str = "mlp", hidden_dim: int = 400, conv_channels: int = 32) -> None:
        super().__init__()
        size = image_size if isinstance(image_size, (list, tuple)) else [image_size, image_size]
        if len(size) != 2:
            raise SparsexError(f"VSC setting image_size={image_size!r} must be an int or (height, width)")
        self.image_size = (check_int(size[0], "VSC setting image_size", 1, error=SparsexError),
                           check_int(size[1], "VSC setting image_size", 1, error=SparsexError))
        self.channels = check_int(channels, "VSC setting channels", 1, error=SparsexError)
        self.latent_dim = check_int(latent_dim, "VSC setting latent_dim", 1, error=SparsexError)
        self.hidden_dim = check_int(hidden_dim, "VSC setting hidden_dim", 1, error=SparsexError)
        self.conv_channels = check_int(conv_channels, "VSC setting conv_channels", 1, error=SparsexError)
        if arch not in ARCHITECTURES:
            raise SparsexError(f"unknown VSC architecture {arch!r}; valid: {', '.join(ARCHITECTURES)}")
        self.arch = arch
        h, w = self.image_size
        pixels = self.channels * h * w
        if arch == "mlp":
            self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(pixels, hidden_dim), nn.ReLU())
            self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, pixels),
                                         nn.Unflatten(1, (self.channels, h, w)))
        else:
            if h % 4 or w % 4:
                raise SparsexError(f"the conv VSC needs image sides divisible by 4, got {h}x{w}; use arch 'mlp'")
            c1, c2 = conv_channels, 2 * conv_channels
            grid = c2 * (h // 4) * (w // 4)
            self.encoder = nn.Sequential(
                nn.Conv2d(self.channels, c1, 4, 2, 1), nn.ReLU(), nn.Conv2d(c1, c2, 4, 2, 1), nn.ReLU(),
                nn.Flatten(), nn.Linear(grid, hidden_dim), nn.ReLU())
            self.decoder = nn.Sequential(
                nn.Linear(latent_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, grid), nn.ReLU(),
                nn.Unflatten(1, (c2, h // 4, w // 4)), nn.ConvTranspose2d(c2, c1, 4, 2, 1), nn.ReLU(),
                nn.ConvTranspose2d(c1, self.channels, 4, 2, 1))
        self.to_mu = nn.Linear(hidden_dim, latent_dim)
        self.to_logvar = nn.Linear(hidden_dim, latent_dim)
        self.to_spike = nn.Linear(hidden_dim, latent_dim)  # logit of gamma

    def settings(self) -> dict[str, Any]:
        """The constructor's arguments (JSON-serialisable), for checkpoints."""
        return {"image_size": list(self.image_size), "channels": self.channels, "latent_dim": self.latent_dim,
                "arch": self.arch, "hidden_dim": self.hidden_dim, "conv_channels": self.conv_channels}

    def check_input(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, channels, H, W)`` of the model's size, finite, in ``[0, 1]``; one-line
        :class:`InputError` otherwise."""
        h, w = self.image_size
        expected = f"(B, {self.channels}, {h}, {w})"
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != (self.channels, h, w):
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise InputError(f"VSC model expects images {expected}, got {got}")
        check_images(x)
        if x.numel() and (x.min() < 0 or x.max() > 1):
            raise InputError("VSC images must lie in [0, 1] (the decoder models pixels as Bernoulli probabilities)")
        return x

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(mu, logvar, gamma)``, each ``(B, D)``, of images ``x (B, C, H, W)`` in ``[0, 1]``."""
        hidden = self.encoder(self.check_input(x))
        return self.to_mu(hidden), self.to_logvar(hidden), torch.sigmoid(self.to_spike(hidden))

    @torch.no_grad()
    def encode_all(self, images: torch.Tensor, batch_size: int = 1000,
                   device: str | torch.device | None = None) -> torch.Tensor:
        """Spike probabilities ``gamma (N, D)`` (on the CPU) of ``images (N, C, H, W)``, in batches."""
        device = device or next(self.parameters()).device
        return torch.cat([self.encode(batch.to(device))[2].cpu() for batch in images.split(batch_size)])

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Per-pixel Bernoulli logits ``(B, C, H, W)`` of latent codes ``z (B, D)``."""
        if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[1] != self.latent_dim:
            got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise InputError(f"VSC decoder expects codes (B, {self.latent_dim}), got {got}")
        return self.decoder(z)

    @staticmethod
    def sample(mu: torch.Tensor, logvar: torch.Tensor, gamma: torch.Tensor, spike_scale: float,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Spike-and-slab reparameterisation: ``z = sigmoid(c (eta + gamma - 1)) * (mu + exp(logvar / 2) eps)``
        with ``eps ~ N(0, 1)``, ``eta ~ U(0, 1)`` and ``c = spike_scale`` (Tonolini et al., Sec. 3.2)."""
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        eta = torch.rand(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        spike = torch.sigmoid(spike_scale * (eta + gamma - 1))
        return spike * (mu + torch.exp(0.5 * logvar) * eps)

    @staticmethod
    def code(mu: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        """The deterministic code: the slab means of the active dimensions, ``mu * [gamma > 0.5]``."""
        return mu * (gamma > ACTIVE_THRESHOLD).to(mu.dtype)

    def forward(self, x: torch.Tensor, spike_scale: float | None = None,
                generator: torch.Generator | None = None) -> VSCOutput:
        """Encode and decode ``x (B, C, H, W)``. With ``spike_scale`` (the relaxed spike's ``c``) the code
        is sampled (:meth:`sample`, for training); without it, it is the deterministic :meth:`code`."""
        mu, logvar, gamma = self.encode(x)
        z = self.code(mu, gamma) if spike_scale is None else self.sample(mu, logvar, gamma, spike_scale, generator)
        return VSCOutput(self.decode(z), mu, logvar, gamma, z)


@MODELS.register("vsc", description="variational sparse coding: spike-and-slab VAE (mlp or conv) for small images")
def create_vsc(**cfg: Any) -> VSC:
    return VSC(**cfg)
