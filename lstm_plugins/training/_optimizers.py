"""Optimizer construction: parameter groups shaped by techniques, fused where it is safe."""

from __future__ import annotations

from typing import Any, Literal

import torch

OptimizerName = Literal["adam", "adamw", "sgd", "rmsprop"]
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
}


def configure_optimization(model: Any, name: str, learning_rate: float) -> Any:
    """What ``configure_optimizers`` returns: the optimizer, with the learning-rate scheduler a
    technique configures (``configure_lr_scheduler``) when there is one."""
    optimizer = build_optimizer(model, name, learning_rate)
    scheduler = model._hook.configure_lr_scheduler(model=model, optimizer=optimizer)
    if scheduler is None:
        return optimizer
    return {"optimizer": optimizer, "lr_scheduler": dict(scheduler)}


def build_optimizer(model: Any, name: str, learning_rate: float) -> torch.optim.Optimizer:
    """The optimizer ``name`` over the model's trainable parameters, in the groups the
    ``configure_parameter_groups`` hook shapes.

    The fused implementation is used where the device has one, except under an AMP loss scaler:
    a fused optimizer unscales gradients inside ``step()``, so Lightning then skips unscaling
    before ``on_before_optimizer_step`` and observers and clippers would see gradients
    multiplied by the loss scale.
    """
    named = [(parameter_name, p) for parameter_name, p in model.named_parameters() if p.requires_grad]
    groups: list[dict[str, Any]] = [
        {"params": [p for _, p in named], "names": [parameter_name for parameter_name, _ in named]}
    ]
    model._hook.configure_parameter_groups(model=model, parameter_groups=groups)
    for group in groups:
        group.pop("names", None)
    optimizer_class = OPTIMIZERS[name]
    precision = getattr(model._trainer, "precision_plugin", None)
    loss_scaler = getattr(precision, "scaler", None)
    if model.device.type in ("cpu", "cuda") and loss_scaler is None:
        try:
            return optimizer_class(groups, lr=learning_rate, fused=True)
        except (RuntimeError, TypeError, ValueError):
            pass  # no fused implementation for this optimizer, dtype or torch version
    return optimizer_class(groups, lr=learning_rate)
