"""The two ready-made models: a classifier and a regressor, each a task on :class:`SequenceModel`."""

from __future__ import annotations

from collections.abc import Sequence

from lstm_plugins.model._module import SequenceModel
from lstm_plugins.model._tasks import ClassificationTask, RegressionLoss, RegressionTask
from lstm_plugins.techniques._registry import TechniqueSpec
from lstm_plugins.training._optimizers import OptimizerName


class LSTMClassifier(SequenceModel):
    """Sequence classifier: a fused ``torch.nn.LSTM`` with a technique stack and cross-entropy.

    ``num_classes=2`` is binary classification with a two-way softmax. Validation and test
    report accuracy, macro recall and macro F1 (per-class vectors in :attr:`test_results`)
    through torchmetrics, synchronised across processes (:class:`ClassificationTask`).

    Args:
        input_size: features per time step (the embedding size for token inputs).
        num_classes: number of classes, at least 2.
        hidden_size, num_layers, bidirectional, optimizer, learning_rate, techniques,
            num_embeddings, stop_on_nonfinite_loss: keyword-only, as for :class:`SequenceModel`.

    Example:
        >>> from lstm_plugins import LSTMClassifier
        >>> from lstm_plugins.plugins import Dropout, GradientClipping
        >>> model = LSTMClassifier(12, 9, bidirectional=True,
        ...                        techniques=[GradientClipping(1.0), Dropout(output=0.3), "grad_norm"])
        >>> [type(t).__name__ for t in model.techniques]
        ['GradientClipping', 'Dropout', 'GradientNorms']
    """

    def __init__(
        self,
        input_size: int,
        num_classes: int,
        *,
        hidden_size: int = 64,
        num_layers: int = 1,
        bidirectional: bool = False,
        optimizer: OptimizerName = "adam",
        learning_rate: float = 1e-3,
        techniques: Sequence[TechniqueSpec] = (),
        num_embeddings: int | None = None,
        stop_on_nonfinite_loss: bool = True,
    ) -> None:
        super().__init__(
            input_size, ClassificationTask(num_classes), hidden_size=hidden_size, num_layers=num_layers,
            bidirectional=bidirectional, optimizer=optimizer, learning_rate=learning_rate,
            techniques=techniques, num_embeddings=num_embeddings, stop_on_nonfinite_loss=stop_on_nonfinite_loss,
        )
        self.num_classes = self.task.num_classes


class LSTMRegressor(SequenceModel):
    """Sequence regressor (forecasting, scoring): the same LSTM, techniques and data path as
    :class:`LSTMClassifier`, with a mean-squared or mean-absolute error loss.

    Validation and test report MAE, RMSE and R² through torchmetrics, synchronised across
    processes (:class:`RegressionTask`). Targets are ``(batch,)`` floats for ``num_outputs=1``,
    else ``(batch, num_outputs)``.

    Args:
        input_size: features per time step.
        num_outputs: values predicted per sequence.
        loss: ``"mse"`` (mean squared error) or ``"mae"`` (mean absolute error).
        target_mean, target_std: the training targets' statistics (a data module's
            ``target_mean`` / ``target_std``): the head learns standardised targets and predicts
            in the original units; saved with the hyper-parameters.
        hidden_size, num_layers, bidirectional, optimizer, learning_rate, techniques,
            num_embeddings, stop_on_nonfinite_loss: keyword-only, as for :class:`SequenceModel`.

    Example:
        >>> import torch
        >>> from lstm_plugins import LSTMRegressor
        >>> model = LSTMRegressor(2, techniques=["gradient_clipping"])
        >>> model(torch.randn(4, 10, 2), torch.tensor([10, 3, 7, 1])).shape
        torch.Size([4])
    """

    def __init__(
        self,
        input_size: int,
        num_outputs: int = 1,
        *,
        loss: RegressionLoss = "mse",
        target_mean: float | Sequence[float] | None = None,
        target_std: float | Sequence[float] | None = None,
        hidden_size: int = 64,
        num_layers: int = 1,
        bidirectional: bool = False,
        optimizer: OptimizerName = "adam",
        learning_rate: float = 1e-3,
        techniques: Sequence[TechniqueSpec] = (),
        num_embeddings: int | None = None,
        stop_on_nonfinite_loss: bool = True,
    ) -> None:
        super().__init__(
            input_size,
            RegressionTask(num_outputs, loss, target_mean=target_mean, target_std=target_std),
            hidden_size=hidden_size, num_layers=num_layers,
            bidirectional=bidirectional, optimizer=optimizer, learning_rate=learning_rate,
            techniques=techniques, num_embeddings=num_embeddings, stop_on_nonfinite_loss=stop_on_nonfinite_loss,
        )
        self.num_outputs = self.task.num_outputs
        self.loss_name = self.task.loss_name
