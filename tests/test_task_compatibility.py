"""Every built-in technique works with every task, or refuses at construction saying why."""

import pytest
import torch

from lstm_plugins.data import SequenceBatch
from lstm_plugins.model import (
    LSTMClassifier,
    LSTMForecaster,
    LSTMLanguageModel,
    LSTMRegressor,
    LSTMSequenceLabeller,
)
from lstm_plugins.techniques import available_techniques

BUILT_INS = sorted(name for name, info in available_techniques().items() if info.distribution.startswith("lstm-plugins "))
LENGTHS = torch.tensor([6, 3, 5])


def _features(num_features=3):
    features = torch.randn(3, 6, num_features, generator=torch.Generator().manual_seed(0))
    features[torch.arange(6) >= LENGTHS.unsqueeze(1)] = 0
    return features


def _step_labels():
    labels = torch.randint(0, 4, (3, 6), generator=torch.Generator().manual_seed(1))
    return labels.masked_fill(torch.arange(6) >= LENGTHS.unsqueeze(1), -100)


TASKS = {
    "classification": (lambda t: LSTMClassifier(3, 4, hidden_size=8, num_layers=2, optimizer="adamw", techniques=t),
                       lambda: SequenceBatch(_features(), LENGTHS, torch.tensor([0, 3, 1]))),
    "regression": (lambda t: LSTMRegressor(3, 2, hidden_size=8, num_layers=2, optimizer="adamw", techniques=t),
                   lambda: SequenceBatch(_features(), LENGTHS, torch.randn(3, 2))),
    "sequence_labelling": (lambda t: LSTMSequenceLabeller(3, 4, hidden_size=8, num_layers=2, optimizer="adamw", techniques=t),
                           lambda: SequenceBatch(_features(), LENGTHS, _step_labels())),
    "forecasting": (lambda t: LSTMForecaster(1, 4, hidden_size=8, num_layers=2, optimizer="adamw", techniques=t),
                    lambda: SequenceBatch(_features(1), torch.full((3,), 6), torch.randn(3, 4))),
    "language_model": (lambda t: LSTMLanguageModel(11, embedding_size=4, hidden_size=8, num_layers=2, optimizer="adamw", techniques=t),
                       lambda: SequenceBatch(torch.randint(0, 11, (3, 6)), torch.full((3,), 6), torch.randint(0, 11, (3, 6)))),
}
# The refusals there are, and what they must say: anything else must train.
REFUSED = {
    ("language_model", "zoneout"): "`language_model` task carries the LSTM's state",
    **{(task, "embedding_dropout"): "needs token inputs" for task in TASKS if task != "language_model"},
    # A summary or a parallel branch gives one vector per sequence; these tasks read every step.
    **{(task, technique): f"`{technique}` technique cannot work with the `{task}` task"
       for task in ("sequence_labelling", "language_model") for technique in ("summary", "fcn_branch")},
}


def test_every_built_in_is_covered():
    assert len(BUILT_INS) == 20


@pytest.mark.parametrize("technique", BUILT_INS)
@pytest.mark.parametrize("task", sorted(TASKS))
def test_a_built_in_trains_with_a_task_or_refuses_naming_why(task, technique):
    build, batch = TASKS[task]
    if (task, technique) in REFUSED:
        with pytest.raises(ValueError, match=REFUSED[task, technique]):
            build([technique])
        return
    torch.manual_seed(0)
    model = build([technique])
    optimizer = model.configure_optimizers()
    for step in range(2):  # two steps: state carried, statistics updated, masks redrawn
        loss = model.training_step(batch(), step)
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    predictions = model(batch().features, batch().lengths)
    assert torch.isfinite(predictions).all()
