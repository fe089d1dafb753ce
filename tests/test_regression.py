"""LSTMRegressor and the adding problem."""

import pytest
import torch
from conftest import make_batch, quiet_trainer

from lstm_plugins import LSTMRegressor
from lstm_plugins.data import MEAN_PREDICTOR_MSE, AddingProblemDataModule, adding_problem


def test_adding_problem_data():
    features, targets = adding_problem(2000, 30, seed=1)
    values, markers = features[..., 0], features[..., 1]
    assert ((values >= 0) & (values <= 1)).all()
    assert torch.equal(markers[:, :15].sum(1), torch.ones(2000))  # one marker in each half
    assert torch.equal(markers[:, 15:].sum(1), torch.ones(2000))
    torch.testing.assert_close((values * markers).sum(1), targets)
    # Predicting the mean sits on the 1/6 plateau.
    assert ((targets - 1.0) ** 2).mean().item() == pytest.approx(MEAN_PREDICTOR_MSE, abs=0.015)
    again, _ = adding_problem(2000, 30, seed=1)
    assert torch.equal(again, features)
    assert not torch.equal(adding_problem(2000, 30, seed=2)[0], features)


def test_regressor_learns_the_adding_problem():
    torch.manual_seed(0)
    datamodule = AddingProblemDataModule(length=10, train_size=2000, val_size=200, test_size=500, batch_size=50)
    model = LSTMRegressor(2, hidden_size=32, learning_rate=0.01, techniques=["gradient_clipping"])
    trainer = quiet_trainer(max_epochs=6)
    trainer.fit(model, datamodule=datamodule)
    trainer.test(model, datamodule=datamodule, verbose=False)
    results = model.test_results
    assert results["test/rmse"].item() ** 2 < 0.2 * MEAN_PREDICTOR_MSE  # far below the plateau
    assert results["test/r2"].item() > 0.8
    assert results["test/mae"].item() < results["test/rmse"].item() + 1e-6


def test_regressor_metrics_and_losses_against_references():
    torch.manual_seed(0)
    batch = make_batch([6, 3, 9, 4], num_features=2)
    targets = torch.randn(4)
    for loss, reference in (("mse", torch.nn.functional.mse_loss), ("mae", torch.nn.functional.l1_loss)):
        model = LSTMRegressor(2, loss=loss)
        predictions = model(batch.features, batch.lengths)
        assert predictions.shape == (4,)
        assert model.task.loss(predictions, targets).item() == pytest.approx(reference(predictions, targets).item())
    multi = LSTMRegressor(2, num_outputs=3)
    assert multi(batch.features, batch.lengths).shape == (4, 3)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"num_outputs": 0}, "Expected `num_outputs` to be a positive int, but got 0."),
        ({"loss": "huber"}, "Expected `loss` to be one of 'mse', 'mae', but got 'huber'."),
    ],
)
def test_regressor_arguments(arguments, message):
    with pytest.raises(ValueError, match=message):
        LSTMRegressor(2, **arguments)


def test_regressor_checks_the_data_module():
    trainer = quiet_trainer(max_epochs=1)
    with pytest.raises(ValueError, match="`input_size`=3 but the data module has `num_features`=2"):
        trainer.fit(LSTMRegressor(3), datamodule=AddingProblemDataModule(length=10, train_size=50))
