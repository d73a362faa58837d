"""Property-based tests (hypothesis): random valid specs over every layer kind compute the same
function in the NumPy reference and every installed framework; random invalid specs are refused
with a SpecError naming the place, never another exception.

CI runs NETPARITY_FUZZ_EXAMPLES (default 200) networks, the same ones every run when the CI
environment variable is set (derandomized: a red CI is a change in the code, not a new draw); `make
fuzz` runs thousands of fresh ones and prints the seed to reproduce a failure
(pytest --hypothesis-seed=N). What fuzzing finds becomes a fix and, where it is a framework fact, a
conformance case.
"""

import os

from hypothesis import HealthCheck, given, settings

from netparity.backends import BACKEND_NAMES, available
from netparity.compare import check_parity
from netparity.spec import Spec, SpecError

from spec_strategies import mutations, specs

EXAMPLES = int(os.environ.get("NETPARITY_FUZZ_EXAMPLES", "200"))
DERANDOMIZE = bool(os.environ.get("CI"))
FRAMEWORKS = tuple(n for n in BACKEND_NAMES if n in available())


@settings(max_examples=EXAMPLES, deadline=None, derandomize=DERANDOMIZE,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(specs())
def test_random_specs_agree_in_every_framework(spec):
    result = check_parity(spec, FRAMEWORKS, batch=2)
    assert result.errors == {}, (spec.to_json(), result.errors)
    assert result.shape_parity, (spec.to_json(), result.shape_mismatches[:3])
    assert result.parameter_parity, (spec.to_json(), result.count_mismatches[:3])
    bad = [p for p in result.pairs if not p.ok]
    assert not bad and result.ok, (spec.to_json(), bad)


@settings(max_examples=max(EXAMPLES, 500), deadline=None, derandomize=DERANDOMIZE,
          suppress_health_check=[HealthCheck.too_slow])
@given(mutations())
def test_invalid_specs_raise_a_spec_error_naming_the_place(case):
    data, path = case
    try:
        Spec.from_dict(data).infer()
    except SpecError as error:
        assert error.path == path, (path, str(error), data)
    else:
        raise AssertionError(f"accepted an invalid spec (mutated at {path}): {data}")
