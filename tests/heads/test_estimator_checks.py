"""scikit-learn's own estimator checks on every head; the ones that do not apply are expected failures, with why.

The bag head (abmil) runs them as a plain classifier: without ``bag_index`` each row is a bag of one tile. Its bag
interface has its own tests in test_abmil.py.
"""

import warnings

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from pipeline.heads import HEAD_NAMES, make_head

CLASS_WEIGHT = (
    "class_weight is 'balanced' or None by design: every head is compared under the same weighting, and a per-class "
    "dict is not offered on the command line"
)


def _expected_failures(head) -> dict[str, str]:
    failures = {"check_class_weight_classifiers": CLASS_WEIGHT}
    if head.kind in ("mlp", "abmil"):
        failures["check_sample_weight_equivalence_on_dense_data"] = (
            "minibatch AdamW with early stopping on held-out groups: repeating a row (for abmil: a bag) changes the "
            "batches and the inner split, so it is not the same as doubling its weight"
        )
    return failures


def _heads():
    heads = [make_head(name, seed=0) if name == "logreg" else make_head(name, seed=0, n_jobs=1) for name in HEAD_NAMES]
    # one abmil member is enough for the contract (members are averaged, see test_abmil.py) and 3x faster
    return [head.set_params(n_models=1) if head.kind == "abmil" else head for head in heads]


@parametrize_with_checks(_heads(), expected_failed_checks=_expected_failures)
def test_heads_follow_the_scikit_learn_contract(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the checks provoke convergence and data-conversion warnings on purpose
        check(estimator)


def test_an_unfitted_head_raises_not_fitted_error():
    from sklearn.exceptions import NotFittedError

    for head in _heads():
        with pytest.raises(NotFittedError):
            head.predict([[0.0, 1.0]])
