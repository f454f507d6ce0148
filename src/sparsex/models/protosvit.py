"""ProtoS-ViT (Turbé et al., arXiv 2406.10025): a sparse prototype head on frozen patch features
(ViT tokens as a grid, or a CNN map), with prototypes shared across classes.

On features ``F (B, C, h, w)``:

1. **projection head**: 1x1 convolutions, a linear path plus a non-linear branch,
   ``Z = conv(F) + conv(GELU(conv(F)))``, then L2 normalisation over channels at every patch;
2. **prototypes**: ``P`` learnable vectors ``q_p`` (orthogonal initialisation), used as unit
   vectors. Cosine similarity at every patch, normalised by a softmax over prototypes with
   temperature ``tau``: ``A[p, i, j] = softmax_p(<q_p / |q_p|, Z[:, i, j]> / tau)``, which
   assigns each patch softly to its prototypes;
3. **prototype head**: per prototype, a depthwise 3x3 then a depthwise 1x1 convolution over its
   map ``A_p`` (independent kernels per prototype), LayerNorm over the prototypes at every patch,
   ReLU: the maps ``M (B, P, h, w)``; the score is the spatial maximum ``s_p = max_{i,j} M_p``
   (its arg-max kept for explanations);
4. **classifier**: ``logits_c = sum_p s_p W[c, p]`` with ``W >= 0`` (clamped after every
   optimiser step, see :meth:`ProtoSViTHead.constrain`) and no bias; softmax outputs. At
   inference, importances ``s_p W[c, p]`` at or below ``importance_threshold`` are zeroed in the
   logits, so only the prototypes an explanation shows enter the decision. Class-prototype
   connections that never matter on the training set can be pruned
   (:meth:`ProtoSViTHead.prune_unused`).

Two presets of the same head (``ProtoSViTConfig.preset``); the steps above are ``"sparsex"`` (the
default). ``"official"`` follows the public code (github.com/hturbe/protosvit,
``src/learning/models/ClassificationModulePrune.py``, ``backbones/dinov2/DinoFeaturizer.py``,
``utils/modules.py``, ``configs/model/classification_prototype.yaml``); steps 1, 3 and 4 become:

1. projection ``Z = normalise(Linear(ReLU(code)))`` with
   ``code = drop(conv(drop(F)) + conv(ReLU(conv_CC(drop(F)))))``: the branch's hidden width is
   the input width ``C``, ``drop`` is channel dropout (``Dropout2d(0.1)``, a fresh mask at each
   of its three uses) and a ReLU and a ``D x D`` linear map follow the sum;
3. the depthwise 3x3 and 1x1 convolutions run in parallel and are summed,
   ``conv3x3(A_p) + conv1x1(A_p)``, and the LayerNorm has ``eps = 1e-6`` (sparsex: 1e-5);
4. ``W`` is clamped to ``[0, 5]`` (``NonNegLinear``), initialised as ``|U(-1/sqrt(P), 1/sqrt(P))|``,
   and at inference importances strictly below the threshold are zeroed (an importance equal to
   it is kept; sparsex drops it).

The forward also returns the similarities ``A`` (:class:`ProtoSViTOutput`), which the official
tanh loss acts on. Training (cross-entropy + tanh presence loss + Hoyer-Square on the
importances) lives in :mod:`sparsex.train.protosvit`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_int, check_number
from ..errors import InputError, SparsexError
from .base import MODELS, PrototypeOutput, check_head_features

PRESETS = ("sparsex", "official")
#: the class weights' initialisation: ``official`` ``|U(-1/sqrt(P), 1/sqrt(P))|`` (the public code's NonNegLinear; the
#: default of both presets, chosen on validation worlds: docs/methods.md) or ``vote`` ``U(0, 2/P)`` (logits start near
#: the mean score; about 9x smaller at P = 300, sparsex's preset's start before 2026-12-06)
WEIGHT_INITS = ("vote", "official")
OFFICIAL_DROPOUT = 0.1  # Dropout2d of the official featuriser (classification_prototype.yaml: image_encoder.dropout)
OFFICIAL_MAX_WEIGHT = 5.0  # NonNegLinear.forward clamps the class weights to [0, 5]


def check_weight_init(value: Any) -> None:
    """A one-line error unless ``value`` is one of :data:`WEIGHT_INITS` (the model's and the trainer's check)."""
    if value not in WEIGHT_INITS:
        raise SparsexError(f"unknown ProtoS-ViT weight_init {value!r}; valid: {', '.join(WEIGHT_INITS)}")


@dataclass
class ProtoSViTOutput(PrototypeOutput):
    """:class:`PrototypeOutput` plus ``similarities (B, P, h, w)``, the softmax-normalised cosine
    similarities ``A`` the prototype head starts from (the official tanh loss acts on them)."""

    similarities: torch.Tensor | None = None


@dataclass(frozen=True)
class ProtoSViTConfig:
    """``in_channels`` C of the backbone map, ``num_classes`` K, ``num_prototypes`` P,
    ``embed_dim`` D of the projection, ``temperature`` tau of the softmax over prototypes,
    ``importance_threshold`` below which importances are zeroed at inference, ``preset`` the
    architecture (``"sparsex"`` or ``"official"``, see the module docstring)."""

    in_channels: int
    num_classes: int
    num_prototypes: int = 300
    embed_dim: int = 256
    temperature: float = 0.1
    importance_threshold: float = 0.0
    preset: str = "sparsex"
    weight_init: str | None = None  # the class weights' start: "official" or "vote" (None: official, see WEIGHT_INITS)

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise SparsexError(f"unknown ProtoS-ViT preset {self.preset!r}; valid presets: {', '.join(PRESETS)}")
        if self.weight_init is not None:
            check_weight_init(self.weight_init)
        for name in ("in_channels", "num_classes", "num_prototypes", "embed_dim"):
            check_int(getattr(self, name), f"ProtoS-ViT setting {name}", 1, error=SparsexError)
        if self.num_classes < 2:
            raise SparsexError(f"ProtoS-ViT needs at least 2 classes, got num_classes={self.num_classes}")
        check_number(self.temperature, "ProtoS-ViT temperature", 0, low_open=True, error=SparsexError)
        check_number(self.importance_threshold, "ProtoS-ViT importance_threshold", 0, error=SparsexError)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ProtoSViTHead(nn.Module):
    """The ProtoS-ViT head (see the module docstring). ``forward(features)`` ->
    :class:`ProtoSViTOutput`."""

    family = "protosvit"

    def __init__(self, config: ProtoSViTConfig) -> None:
        super().__init__()
        self.config = config
        c, d, p, k = config.in_channels, config.embed_dim, config.num_prototypes, config.num_classes
        self.official = config.preset == "official"
        self.project = nn.Conv2d(c, d, 1)
        if self.official:
            self.project_branch = nn.Sequential(nn.Conv2d(c, c, 1), nn.ReLU(), nn.Conv2d(c, d, 1))
            self.project_out = nn.Conv2d(d, d, 1)  # the official nn.Linear(D, D) on every patch
            self.dropout = nn.Dropout2d(OFFICIAL_DROPOUT)
        else:
            self.project_branch = nn.Sequential(nn.Conv2d(c, d, 1), nn.GELU(), nn.Conv2d(d, d, 1))
        self.prototypes = nn.Parameter(torch.empty(p, d))
        nn.init.orthogonal_(self.prototypes)
        self.spatial = nn.Conv2d(p, p, 3, padding=1, groups=p)
        self.pointwise = nn.Conv2d(p, p, 1, groups=p)
        self.norm = nn.LayerNorm(p, eps=1e-6 if self.official else 1e-5)
        if (config.weight_init or "official") == "official":
            # NonNegLinear.reset_parameters: |kaiming_uniform(a=sqrt(5))| = |U(-1/sqrt(P), 1/sqrt(P))|
            self.weight = nn.Parameter(torch.rand(k, p) / math.sqrt(p))
        else:  # non-negative start around a uniform vote: logits_c ~ mean score at initialisation
            self.weight = nn.Parameter(torch.rand(k, p) * (2.0 / p))
        self.register_buffer("connections", torch.ones(k, p))  # 0 for pruned class-prototype connections

    @property
    def sigmoid_outputs(self) -> bool:
        return False

    @property
    def contribution_threshold(self) -> float:
        """Importances at or below this are zeroed in the logits at inference (and so are not
        contributions); the official preset keeps an importance exactly equal to it."""
        return self.config.importance_threshold

    @property
    def max_weight(self) -> float | None:
        """Upper clamp of ``W``: 5 in the official preset, none in sparsex's."""
        return OFFICIAL_MAX_WEIGHT if self.official else None

    def class_weights(self) -> torch.Tensor:
        """Effective class weights ``(K, P)``: ``W`` clamped to ``[0, max_weight]`` on the
        connections not pruned."""
        return self.weight.clamp(0, self.max_weight) * self.connections

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=1)

    @torch.no_grad()
    def constrain(self) -> None:
        """Projected gradient step: clamp ``W`` to ``[0, max_weight]`` (called after each update),
        so weights pushed below zero become exactly zero and may grow back."""
        self.weight.clamp_(0, self.max_weight)

    def embeddings(self, features: torch.Tensor) -> torch.Tensor:
        """``F (B, C, h, w)`` -> the projected, L2-normalised patch embeddings ``Z (B, D, h, w)``."""
        check_head_features(features, self.config.in_channels, "ProtoS-ViT")
        if not self.official:
            return F.normalize(self.project(features) + self.project_branch(features), dim=1)
        code = self.dropout(self.project(self.dropout(features)) + self.project_branch(self.dropout(features)))
        return F.normalize(self.project_out(torch.relu(code)), dim=1)

    def similarities(self, features: torch.Tensor) -> torch.Tensor:
        """``F (B, C, h, w)`` -> the softmax-normalised cosine similarities ``A (B, P, h, w)``."""
        z = self.embeddings(features)
        q = F.normalize(self.prototypes, dim=1)
        return torch.softmax(torch.einsum("bdhw,pd->bphw", z, q) / self.config.temperature, dim=1)

    def maps_from_similarities(self, similarities: torch.Tensor) -> torch.Tensor:
        """Similarities ``A (B, P, h, w)`` -> the prototype maps ``M (B, P, h, w)`` (non-negative):
        depthwise 3x3 then 1x1 (sparsex) or their sum (official), LayerNorm over ``P``, ReLU."""
        if self.official:
            a = self.spatial(similarities) + self.pointwise(similarities)
        else:
            a = self.pointwise(self.spatial(similarities))
        return torch.relu(self.norm(a.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))

    def prototype_maps(self, features: torch.Tensor) -> torch.Tensor:
        """``F (B, C, h, w)`` -> the prototype maps ``M (B, P, h, w)`` (non-negative)."""
        return self.maps_from_similarities(self.similarities(features))

    def logits(self, scores: torch.Tensor) -> torch.Tensor:
        """Scores ``s (B, P)`` -> logits ``(B, K)``: ``s W^T`` in training; at inference the sum
        of the importances ``s_p W[c, p]`` above the threshold (official: at or above it)."""
        weights = self.class_weights()
        threshold = self.config.importance_threshold
        if self.training or threshold == 0:
            return scores @ weights.T
        importances = scores[:, None, :] * weights[None]  # (B, K, P)
        kept = importances >= threshold if self.official else importances > threshold
        return (importances * kept).sum(dim=2)

    def forward(self, features: torch.Tensor) -> ProtoSViTOutput:
        similarities = self.similarities(features)
        maps = self.maps_from_similarities(similarities)
        scores, locations = maps.flatten(2).max(dim=2)
        return ProtoSViTOutput(self.logits(scores), scores, maps, locations, similarities)

    @torch.no_grad()
    def prune_unused(self, max_scores: torch.Tensor, eps: float = 1e-3, floor: float = 0.0) -> int:
        """Prune the class-prototype connections that never matter on the training set.

        ``max_scores (P,)`` is each prototype's largest score over the training set, so (with
        ``W >= 0``) ``W[c, p] * max_scores[p]`` is the largest importance connection ``(c, p)``
        ever had. Connections where that is at most ``eps``, or at most ``importance_threshold``
        (official preset: below it), are fixed to zero: at inference they never entered a
        training-set logit anyway (the importance threshold dropped them), so training-set
        predictions do not change, and prototypes left with no connection (never firing, or never
        important) leave the explanation vocabulary. Connections whose largest importance is at
        most ``floor`` go too (sparsex: a fraction of a typical training logit, see
        :class:`~sparsex.train.protosvit.ProtoSViTTrainConfig`'s ``prune_fraction``); unlike the
        two rules above, this one can change training-set predictions.
        Returns how many connections were pruned now.
        """
        if not isinstance(max_scores, torch.Tensor) or max_scores.shape != (self.config.num_prototypes,):
            got = tuple(max_scores.shape) if isinstance(max_scores, torch.Tensor) else type(max_scores).__name__
            raise InputError(f"max_scores must have shape ({self.config.num_prototypes},), got {got}")
        largest = self.class_weights() * max_scores.to(self.weight.device)[None]
        threshold = self.config.importance_threshold
        dropped = largest < threshold if self.official else largest <= threshold
        unused = ((largest <= max(eps, floor)) | dropped) & (self.connections > 0)
        self.connections[unused] = 0.0
        return int(unused.sum().item())


@MODELS.register("protosvit", description="ProtoS-ViT: shared cosine prototypes, depthwise head, non-negative classifier")
def create_protosvit(**cfg: Any) -> ProtoSViTHead:
    return ProtoSViTHead(ProtoSViTConfig(**cfg))
