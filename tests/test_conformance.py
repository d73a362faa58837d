"""Every conformance case (spec/conformance.py) in the NumPy reference and in every installed
framework: outputs of every layer and the input gradient agree with the reference."""

import pytest

from netparity.backends import BACKEND_NAMES, available
from netparity.compare import check_parity
from netparity.spec import LAYER_KINDS
from netparity.spec.conformance import cases

CASES = {case.name: case for case in cases()}


def test_every_kind_has_conformance_cases():
    covered = {kind for case in CASES.values() for kind in case.covers}
    assert set(LAYER_KINDS) - covered == set()
    for case in CASES.values():
        kinds = {row.kind for row in case.spec.infer().rows}
        assert set(case.covers) <= kinds, (case.name, case.covers, kinds)


@pytest.mark.parametrize("name", list(CASES))
def test_conformance_case(name):
    frameworks = tuple(n for n in BACKEND_NAMES if n in available())
    result = check_parity(CASES[name].spec, frameworks, batch=3, seed=1)
    assert result.errors == {}, result.errors
    assert result.shape_parity, result.shape_mismatches[:3]
    assert result.parameter_parity, result.count_mismatches[:3]
    against_reference = {p.a: p for p in result.pairs if p.b == "reference"}
    assert set(against_reference) == set(frameworks), [(p.a, p.b) for p in result.pairs]
    for pair in result.pairs:
        assert pair.ok, pair
    assert result.ok
