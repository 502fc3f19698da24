"""SQuAD question answering: data, features, predictions, metrics, the run_qa comparison, calibration, training.

The public pieces, importable from here:

    from cpu_inference_helpers.qa import EvaluationSettings, evaluate_modes, format_table, load_examples, predict
"""

from cpu_inference_helpers.qa.calibration import calibration_batches, load_calibration_examples, require_disjoint
from cpu_inference_helpers.qa.data import SquadExample, load_examples
from cpu_inference_helpers.qa.evaluation import REAL_CHECKPOINT_COMMAND, Evaluation, EvaluationSettings, evaluate_modes
from cpu_inference_helpers.qa.features import QAFeatures, prepare_validation_features
from cpu_inference_helpers.qa.metrics import paired_f1_change, squad_metrics
from cpu_inference_helpers.qa.predict import Predictions, predict, score_model
from cpu_inference_helpers.qa.report import comparison_table, format_table

__all__ = [
    "REAL_CHECKPOINT_COMMAND",
    "Evaluation",
    "EvaluationSettings",
    "Predictions",
    "QAFeatures",
    "SquadExample",
    "calibration_batches",
    "comparison_table",
    "evaluate_modes",
    "format_table",
    "load_calibration_examples",
    "load_examples",
    "paired_f1_change",
    "predict",
    "prepare_validation_features",
    "require_disjoint",
    "score_model",
    "squad_metrics",
]
