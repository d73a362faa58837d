"""verify_port on the catalogue of hand-written ports: every correct port passes, every
classic mistake is flagged at the right layer with the right diagnosis, in all three
frameworks as candidates and every ordered pair of frameworks."""

import pytest

from netparity.backends import available

from ports.catalogue import CORRECT, WRONG

pytestmark = pytest.mark.skipif(len(available()) < 3, reason="the catalogue spans torch, mxnet and keras; "
                                                               "install all three (pip install 'netparity[all]')")

# A Keras port that permutes NHWC to NCHW before Flatten flattens in PyTorch's order: with
# weights copied layout-aware (as verify_port does) it is the same function. The mistake
# exists only for weights copied naively, which verify_port never does.
EQUIVALENT_AFTER_LAYOUT_AWARE_COPY = {"cnn-flatten_order-keras"}


def verify(entry):
    from netparity.compare.port import verify_port

    # as a user runs it: the training-mode comparison is on by default
    return verify_port(entry.reference_factory(), entry.factory(), input_shape=entry.input_shape)


@pytest.mark.parametrize("entry", CORRECT, ids=lambda e: e.name)
def test_correct_port_is_equivalent(entry):
    report = verify(entry)
    assert report.alignment_error is None and report.equivalent, report.summary()
    assert report.training is not None and report.training.meaningful and report.training.ok, report.summary()


@pytest.mark.parametrize("entry", WRONG, ids=lambda e: e.name)
def test_wrong_port_is_flagged_at_the_right_layer_with_the_right_diagnosis(entry):
    report = verify(entry)
    if entry.name in EQUIVALENT_AFTER_LAYOUT_AWARE_COPY:
        assert report.equivalent, report.summary()
        return
    assert not report.equivalent, report.summary()
    if entry.mistake_code == "missing_bias":
        # one parameter fewer: the alignment itself names the conv without a bias
        assert report.alignment_error is None or entry.wrong_layer_hint in report.alignment_error
    if entry.training_only:
        # eval-mode outputs agree; one training step shows it at the hinted layer
        assert report.training_only and report.first_divergence is None, report.summary()
        assert report.training.first_divergence.endswith(entry.wrong_layer_hint), report.summary()
    else:
        assert report.first_divergence is not None or report.alignment_error, report.summary()
    if report.first_divergence is not None:
        assert report.first_divergence.candidate_name.endswith(entry.wrong_layer_hint), report.summary()
    assert report.diagnosis_code == entry.mistake_code, report.summary()
