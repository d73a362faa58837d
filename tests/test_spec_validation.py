"""Invalid specs raise SpecError naming the layer path and the reason."""

import pytest

from netparity.spec import (Activation, AvgPool2d, BatchNorm, ConcatBranches, Conv2d, Dense, Dropout, Flatten,
                            MaxPool2d, Residual, Sequence, Spec, SpecError)


def infer(blocks, input_shape=(1, 28, 28)):
    return Spec("bad", input_shape, blocks).infer()


def expect(blocks, path, *words, input_shape=(1, 28, 28)):
    with pytest.raises(SpecError) as caught:
        infer(blocks, input_shape)
    assert caught.value.path == path, str(caught.value)
    for word in words:
        assert word in str(caught.value), str(caught.value)
    return caught.value


def test_kernel_larger_than_padded_input_names_the_nested_path():
    blocks = [Conv2d(4, 3), Conv2d(4, 3), Conv2d(4, 3),
              Sequence(layers=(Conv2d(8, 1), Conv2d(8, 7)))]
    expect(blocks, "blocks[3].layers[1]", "kernel 7x7 is larger than the padded input 5x5",
           input_shape=(1, 11, 11))


def test_concat_branches_with_different_spatial_sizes():
    branches = ConcatBranches(branches=(Sequence(layers=(Conv2d(4, 1),)),
                                        Sequence(layers=(Conv2d(4, 3),))))
    expect([branches], "blocks[0]", "different spatial sizes", "28x28", "26x26")


def test_residual_add_without_projection():
    block = Residual(body=Sequence(layers=(Conv2d(128, 3, padding=1),)))
    expect([Conv2d(64, 1), block], "blocks[1]", "residual add of 64 and 128 channels without a projection")


def test_residual_projection_fixes_it():
    block = Residual(body=Sequence(layers=(Conv2d(128, 3, padding=1),)), shortcut=Conv2d(128, 1))
    assert infer([Conv2d(64, 1), block]).output_shape == (128, 28, 28)


@pytest.mark.parametrize("layer, words", [
    (Conv2d(0, 3), "out_channels must be a positive integer"),
    (Conv2d(4, 3, stride=0), "stride must be a positive integer"),
    (Conv2d(4, 3, padding=-1), "padding must be a non-negative integer"),
    (MaxPool2d(0), "kernel must be a positive integer"),
    (Dense(-3), "out_features must be a positive integer"),
    (Conv2d(6, 3, groups=4), "not divisible by groups"),
])
def test_non_positive_sizes(layer, words):
    blocks = [layer] if not isinstance(layer, Dense) else [Flatten(), layer]
    expect(blocks, f"blocks[{len(blocks) - 1}]", words)


@pytest.mark.parametrize("p", [1.0, -0.1, 1.5])
def test_dropout_p_outside_unit_interval(p):
    expect([Conv2d(4, 3), Dropout(p)], "blocks[1]", "dropout p must be in [0, 1)")


def test_dropout_zero_is_valid():
    assert infer([Dropout(0.0)]).output_shape == (1, 28, 28)


def test_unknown_kind_in_json_names_the_path():
    text = ('{"input_shape": [1, 8, 8], "blocks": [{"kind": "conv2d", "out_channels": 2, "kernel": 3},'
            '{"kind": "sequence", "layers": [{"kind": "relu6"}]}]}')
    with pytest.raises(SpecError) as caught:
        Spec.from_json(text, "model.json")
    assert caught.value.path == "blocks[1].layers[0]"
    assert "unknown layer kind 'relu6'" in str(caught.value)


def test_unknown_field_in_json():
    with pytest.raises(SpecError, match=r"blocks\[0\]: conv2d has no field\(s\) kernal"):
        Spec.from_json('{"input_shape": [1, 8, 8], "blocks": [{"kind": "conv2d", "out_channels": 2, "kernal": 3}]}')


def test_bad_json_names_the_file():
    with pytest.raises(SpecError, match="model.json: not valid JSON"):
        Spec.from_json("{", "model.json")


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(SpecError, match="cannot read the spec file"):
        Spec.load(tmp_path / "absent.json")


def test_dense_on_an_image_asks_for_a_flatten():
    expect([Conv2d(4, 3), Dense(10)], "blocks[1]", "dense expects a flat", "flatten")


def test_conv_on_flat_input():
    expect([Flatten(), Conv2d(4, 3)], "blocks[1]", "conv2d expects a (C, H, W) input")


def test_pool_padding_more_than_half_the_kernel():
    expect([MaxPool2d(2, 2, 2)], "blocks[0]", "exceeds half the kernel")


def test_unknown_activation():
    expect([Activation("swish")], "blocks[0]", "unknown activation 'swish'")


def test_batchnorm_eps_and_momentum():
    expect([BatchNorm(eps=0)], "blocks[0]", "eps must be positive")
    expect([BatchNorm(momentum=1.5)], "blocks[0]", "momentum must be in [0, 1]")


def test_bad_input_shape():
    with pytest.raises(SpecError, match="input_shape"):
        Spec("x", (1, 0, 28), (Conv2d(2, 3),)).infer()


def test_avgpool_ceil_shapes_follow_pytorch():
    # PyTorch drops a last window that would start inside the right padding: H7 k2 s2 p1 -> 4, not 5.
    assert infer([AvgPool2d(2, 2, 1, ceil_mode=True)], (1, 7, 7)).output_shape == (1, 4, 4)
    assert infer([MaxPool2d(3, 2, 0, ceil_mode=True)], (1, 8, 8)).output_shape == (1, 4, 4)
