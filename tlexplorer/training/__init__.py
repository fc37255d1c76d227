"""Source training, fine-tuning, per-epoch evaluation and the history table.

>>> from tlexplorer.training import TrainOptions, train_transfer, load_run   # doctest: +SKIP
>>> result = train_transfer(data, {"name": "digits-alexnet"}, TrainOptions(), "runs/digits")
>>> run = load_run("runs/digits"); source, target = run.build_models()
"""
from .config_file import ConfigError, TrainOptions, load_train_config, normalize_model_spec
from .history import (COLUMNS, DATASETS, HISTORY_SCHEMA, MODELS, HistoryError, best_accuracies, empty_history,
                      final_accuracies, read_history, validate_history, write_history)
from .recorder import HistoryRecorder, evaluate_model
from .runs import Run, load_run
from .trainer import RunResult, stratified_subsample, train_transfer

__all__ = ["ConfigError", "TrainOptions", "load_train_config", "normalize_model_spec",
           "COLUMNS", "DATASETS", "HISTORY_SCHEMA", "MODELS", "HistoryError", "best_accuracies",
           "empty_history", "final_accuracies", "read_history", "validate_history", "write_history",
           "HistoryRecorder", "evaluate_model", "Run", "load_run", "RunResult", "stratified_subsample",
           "train_transfer"]
