"""Each head declares its parameters once, in one table of scikit-learn rules, checked at fit."""

import numpy as np
import pytest
from sklearn.utils._param_validation import InvalidParameterError

from pipeline.errors import ConfigError
from pipeline.heads import HEAD_NAMES, make_head
from pipeline.heads.base import PositiveInts


@pytest.mark.parametrize("name", HEAD_NAMES)
def test_every_parameter_has_one_rule_and_no_rule_lacks_a_parameter(name):
    head = make_head(name)
    assert set(head._parameter_constraints) == set(head.get_params(deep=False))


@pytest.mark.parametrize("name", HEAD_NAMES)
def test_a_bad_parameter_is_a_config_error_and_scikit_learns_error(name):
    head = make_head(name).set_params(seed=-1)
    with pytest.raises(ConfigError, match=r"The 'seed' parameter of \w+Head must be an int in the range \[0, inf\)") \
            as caught:
        head.fit(np.eye(4), [0, 1, 0, 1])
    assert isinstance(caught.value, InvalidParameterError) and isinstance(caught.value, ValueError)


def test_positive_ints_rule():
    rule = PositiveInts()
    assert rule.is_satisfied_by((256,)) and rule.is_satisfied_by([64, 32]) and rule.is_satisfied_by(())
    assert not any(rule.is_satisfied_by(value) for value in ((64, 0), (True,), (2.0,), 256, "256"))
    assert str(rule) == "a tuple of positive ints"
