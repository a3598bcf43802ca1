"""Knowledge distillation: train a small UltraLightUNet3D student from a frozen teacher (3D UX-Net or a larger
UltraLightUNet3D) with MONAI's unchanged ``SupervisedTrainer``.

Loss (:class:`DistillationLoss`)::

    L = seg_weight · DiceCE(student, label)
      + kd_weight · T² · KL(softmax(teacher / T) || softmax(student / T))       (mean over voxels)
      + feature_weight · mean_l MSE(proj_l(student feature_l), teacher feature_l)  (optional, LiteMedSAM-style)

How it plugs into a bundle (:class:`Distiller`): the bundle's ``network`` stays the student, so checkpoints
(``model.pt``) hold only the student and ``inference.json`` needs no change. The ``loss`` becomes a
:class:`Distiller`, which registers a forward pre-hook on the student: whenever the student runs in training mode with
gradients enabled, the hook runs the frozen teacher on the same input under ``torch.no_grad()`` (eval mode, all
parameters ``requires_grad=False``) and keeps its logits (and the requested features) for the loss call that follows.
Validation (student in eval mode) never runs the teacher. See ``bundles/*_ultralight_unet3d/configs/distill.json``.

Example::

    >>> student = create_model("ultralight_unet3d_t", out_channels=3)
    >>> teacher = create_model("ultralight_unet3d_m", out_channels=3)
    >>> loss_fn = Distiller(student, teacher, teacher_checkpoint="teacher.pt",
    ...                     criterion=DistillationLoss(kd_weight=1.0, temperature=2.0))
    >>> logits = student(x)          # (B, 3, *S); the teacher ran inside the hook
    >>> loss = loss_fn(logits, y)    # y: (B, 1, *S) integer labels
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import UserInputError

__all__ = ["DistillationLoss", "Distiller", "kd_kl_loss"]

logger = logging.getLogger(__name__)


def kd_kl_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 2.0) -> torch.Tensor:
    """T² · KL(softmax(t/T) || softmax(s/T)), summed over classes and averaged over batch and voxels.

    Args:
        student_logits: (B, K, *S).
        teacher_logits: (B, K, *S) (no gradient needed).
        temperature: T > 0.

    Returns:
        scalar tensor.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {list(student_logits.shape)} and teacher logits {list(teacher_logits.shape)} differ; "
            "student and teacher must have the same out_channels (num_classes)"
        )
    t = float(temperature)
    log_p_s = F.log_softmax(student_logits.float() / t, dim=1)
    log_p_t = F.log_softmax(teacher_logits.float() / t, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1)  # (B, *S)
    return kl.mean() * (t * t)


class DistillationLoss(nn.Module):
    """Segmentation loss on labels + temperature-scaled KL on logits + optional feature MSE.

    Args:
        seg_loss: loss on (student logits, label); defaults to ``DiceCELoss(to_onehot_y=True, softmax=True)``.
        seg_weight: weight of the segmentation loss. Defaults to 1.
        kd_weight: weight of the logit KL term. Defaults to 1.
        temperature: softmax temperature T (the KL term is scaled by T²). Defaults to 2.
        feature_weight: weight of the feature MSE term (0 disables it). Defaults to 0.
    """

    def __init__(
        self,
        seg_loss: nn.Module | None = None,
        seg_weight: float = 1.0,
        kd_weight: float = 1.0,
        temperature: float = 2.0,
        feature_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if min(seg_weight, kd_weight, feature_weight) < 0:
            raise ValueError("loss weights must be >= 0")
        if seg_loss is None:
            from monai.losses import DiceCELoss

            seg_loss = DiceCELoss(to_onehot_y=True, softmax=True)
        self.seg_loss = seg_loss
        self.seg_weight = float(seg_weight)
        self.kd_weight = float(kd_weight)
        self.temperature = float(temperature)
        self.feature_weight = float(feature_weight)
        self.last: dict[str, float] = {}  # components of the last call (for logging)

    def forward(
        self,
        student_logits: torch.Tensor,
        target: torch.Tensor,
        teacher_logits: torch.Tensor | None,
        feature_pairs: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> torch.Tensor:
        """Args:
            student_logits: (B, K, *S), or (B, N, K, *S) stacked deep-supervision outputs (main head first: the KL
                term uses the main head, ``seg_loss`` gets the whole tensor).
            target: (B, 1, *S) label map.
            teacher_logits: (B, K, *S), or None for the segmentation loss alone.
            feature_pairs: [(projected student feature, teacher feature)], each (B, C, *S') with equal shapes.

        Returns:
            scalar loss.
        """
        seg = self.seg_loss(student_logits, target)
        total = self.seg_weight * seg
        self.last = {"seg": float(seg.detach())}
        if teacher_logits is not None and self.kd_weight > 0:
            main = student_logits[:, 0] if student_logits.dim() == teacher_logits.dim() + 1 else student_logits
            kd = kd_kl_loss(main, teacher_logits.to(main.dtype), self.temperature)
            total = total + self.kd_weight * kd
            self.last["kd"] = float(kd.detach())
        if feature_pairs and self.feature_weight > 0:
            feat = torch.stack([F.mse_loss(s.float(), t.float()) for s, t in feature_pairs]).mean()
            total = total + self.feature_weight * feat
            self.last["feature"] = float(feat.detach())
        return total


def _get_module(root: nn.Module, name: str, what: str) -> nn.Module:
    try:
        return root.get_submodule(name)
    except AttributeError as err:
        names = [n for n, _ in root.named_modules() if n and n.count(".") < 2][:20]
        raise UserInputError(
            f"{what} has no module '{name}' for feature distillation; pick from e.g. {', '.join(names)}"
        ) from err


class Distiller(nn.Module):
    """Loss-side wrapper that makes MONAI's ``SupervisedTrainer`` distil: ``loss_function(student_logits, label)``.

    Args:
        student: the trained network (the bundle's ``network``); a forward pre-hook is registered on it.
        teacher: the teacher network (same input channels and ``out_channels`` as the student).
        teacher_checkpoint: teacher weights (plain state dict or ``{"model": ...}``; read with the rules of
            :func:`ultralight3d.checkpoint.load_weights`: ``weights_only``, non-finite weights refused). None keeps
            the teacher's current weights (only for tests / a teacher already loaded).
        criterion: a :class:`DistillationLoss` (default: DiceCE + KL with T=2).
        feature_layers: ``{student module name: teacher module name}`` whose outputs are matched by MSE (e.g.
            ``{"encoders.4": "encoder.stages.3"}``); a trainable 1x1 convolution projects the student feature to the
            teacher's channels when they differ, and the student feature is resized to the teacher's size if needed.
        probe_size: spatial size of the dry run that finds feature channel counts (a multiple of both networks'
            divisors).

    Raises:
        UserInputError: missing/unfitting teacher checkpoint or unknown feature module names.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        teacher_checkpoint: str | os.PathLike | None = None,
        criterion: DistillationLoss | None = None,
        feature_layers: Mapping[str, str] | None = None,
        probe_size: int = 32,
    ) -> None:
        super().__init__()
        if teacher_checkpoint is not None:
            from .checkpoint import load_weights

            if not os.path.isfile(teacher_checkpoint):
                raise UserInputError(
                    f"teacher checkpoint {teacher_checkpoint} not found; train the teacher bundle first and pass "
                    "--teacher_checkpoint PATH (its models/model.pt)"
                )
            load_weights(teacher, teacher_checkpoint)
        self.criterion = criterion or DistillationLoss()
        self._student = [student]  # a list keeps the student out of this module's parameters / state dict
        self.teacher = teacher
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        self.feature_layers = dict(feature_layers or {})
        self._teacher_logits: torch.Tensor | None = None
        self._student_feats: dict[str, torch.Tensor] = {}
        self._teacher_feats: dict[str, torch.Tensor] = {}
        self._capturing = False
        self.projections = nn.ModuleDict()
        self._handles = [student.register_forward_pre_hook(self._run_teacher)]
        for s_name, t_name in self.feature_layers.items():
            s_mod = _get_module(student, s_name, "the student")
            t_mod = _get_module(teacher, t_name, "the teacher")
            self._handles.append(s_mod.register_forward_hook(self._saver(self._student_feats, s_name)))
            self._handles.append(t_mod.register_forward_hook(self._saver(self._teacher_feats, s_name)))
        if self.feature_layers:
            self._build_projections(student, probe_size)
        n_t = sum(p.numel() for p in teacher.parameters())
        logger.info(
            "distillation: frozen teacher %s (%s params), features %s",
            type(teacher).__name__,
            f"{n_t:,}",
            self.feature_layers or "off",
        )

    @property
    def student(self) -> nn.Module:
        return self._student[0]

    def _saver(self, store: dict[str, torch.Tensor], key: str):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if self._capturing:
                store[key] = output[0] if isinstance(output, (list, tuple)) else output

        return hook

    def _build_projections(self, student: nn.Module, probe_size: int) -> None:
        in_ch = int(getattr(student, "in_channels", 1))
        spatial = int(getattr(student, "spatial_dims", 3))
        x = torch.zeros((1, in_ch) + (probe_size,) * spatial, device=next(student.parameters()).device)
        was_training = student.training
        student.eval()
        self._capturing = True
        try:
            with torch.no_grad():
                student(x)
                self.teacher.to(x.device)(x)
        finally:
            self._capturing = False
            student.train(was_training)
        conv = nn.Conv3d if spatial == 3 else nn.Conv2d
        for name in self.feature_layers:
            cs, ct = self._student_feats[name].shape[1], self._teacher_feats[name].shape[1]
            self.projections[name.replace(".", "_")] = conv(cs, ct, 1) if cs != ct else nn.Identity()
        self._student_feats.clear()
        self._teacher_feats.clear()

    def _run_teacher(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        if not (module.training and torch.is_grad_enabled()):
            return
        x = args[0]
        self.teacher.to(x.device)
        self.projections.to(x.device)
        self._capturing = bool(self.feature_layers)
        with torch.no_grad():
            out = self.teacher(x)
        self._teacher_logits = (out[0] if isinstance(out, (list, tuple)) else out).detach()

    def train(self, mode: bool = True) -> Distiller:
        """Projections follow ``mode``; the teacher always stays in eval mode."""
        super().train(mode)
        self.teacher.eval()
        return self

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters to add to the optimizer (the feature projections); the teacher's are frozen."""
        return self.projections.parameters()

    def forward(self, student_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Args:
            student_logits: the student's output for the batch whose teacher pass ran in the hook, (B, K, *S).
            target: (B, 1, *S) labels.

        Returns:
            scalar loss (segmentation-only when no teacher output is available, e.g. outside training).
        """
        teacher_logits, self._teacher_logits = self._teacher_logits, None
        pairs = []
        if self.feature_layers and teacher_logits is not None:
            for name in self.feature_layers:
                s, t = self._student_feats.pop(name), self._teacher_feats.pop(name)
                s = self.projections[name.replace(".", "_")](s)
                if s.shape[2:] != t.shape[2:]:
                    mode = "trilinear" if s.dim() == 5 else "bilinear"
                    s = F.interpolate(s, size=t.shape[2:], mode=mode, align_corners=False)
                pairs.append((s, t))
        self._capturing = False
        return self.criterion(student_logits, target, teacher_logits, pairs)

    def remove_hooks(self) -> None:
        """Detach from the student (it then trains / predicts without the teacher)."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
