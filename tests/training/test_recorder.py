import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from tlexplorer.training import HistoryError, HistoryRecorder, evaluate_model, read_history


class Fixed(nn.Module):
    """Logits given per input: the input *is* the logit vector."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return x + self.dummy


def test_evaluate_matches_hand_computation():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 3.0], [0.5, 0.4, 0.0], [0.0, 0.0, 1.0], [1.0, 2.0, 0.0]])
    labels = torch.tensor([0, 1, 0, 2, 2])
    model = Fixed().train()
    acc, loss, n = evaluate_model(model, DataLoader(TensorDataset(logits, labels), batch_size=2))
    assert n == 5 and acc == pytest.approx(3 / 5)
    assert loss == pytest.approx(float(F.cross_entropy(logits, labels)), rel=1e-6)
    assert model.training  # mode restored


def test_recorder_log_evaluate_save(tmp_path):
    rec = HistoryRecorder()
    rec.log(model="source", epoch=1, dataset="source_train", accuracy=0.5, loss=1.25)
    rec.log(model="source", epoch=np.int64(2), dataset="source_train", accuracy=torch.tensor(0.75))
    x = torch.eye(3)
    acc, loss = rec.evaluate(Fixed(), TensorDataset(x, torch.tensor([0, 1, 1])),
                             model="target", epoch=1, dataset="target_val")
    assert acc == pytest.approx(2 / 3) and loss > 0
    assert len(rec) == 3
    path = rec.save(tmp_path / "history.parquet")
    df = read_history(path)
    assert df.height == 3 and df.filter(df["model"] == "target")["accuracy"][0] == pytest.approx(2 / 3)
    assert df["loss"].null_count() == 1


@pytest.mark.parametrize("kwargs, message", [
    ({"model": "student"}, "model must be one of"),
    ({"dataset": "val"}, "dataset must be one of"),
    ({"epoch": 0}, "1-based"),
    ({"epoch": 1.5}, "1-based"),
    ({"epoch": True}, "1-based"),
    ({"accuracy": 97.0}, r"accuracy must be in \[0, 1\]"),
    ({"accuracy": "high"}, "accuracy must be a number"),
    ({"loss": float("inf")}, "loss must be finite"),
])
def test_recorder_rejects_bad_rows(kwargs, message):
    row = {"model": "source", "epoch": 1, "dataset": "source_val", "accuracy": 0.5, "loss": 0.1, **kwargs}
    with pytest.raises(HistoryError, match=message):
        HistoryRecorder().log(**row)


def test_recorder_duplicate_rows_fail_on_save(tmp_path):
    rec = HistoryRecorder()
    for _ in range(2):
        rec.log(model="source", epoch=1, dataset="source_val", accuracy=0.5)
    with pytest.raises(HistoryError, match="repeats"):
        rec.save(tmp_path / "h.parquet")
    assert not list(tmp_path.iterdir())
