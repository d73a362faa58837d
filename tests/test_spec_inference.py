"""Shape and parameter inference, the zoo, and the JSON round trip."""

import json
import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st

from netparity.spec import (Activation, AvgPool2d, BatchNorm, Conv2d, Dense, Flatten, MaxPool2d, Sequence, Spec,
                            SpecError, init_weights, zoo)

ZOO = zoo.names()

REQUIRED = {"lenet", "lenet_bn", "alexnet", "vgg11", "vgg13", "vgg16", "vgg19", "nin", "googlenet", "resnet18",
            "resnet34", "densenet", "inception_mnist", "residual_mnist", "tv_alexnet", "tv_vgg11", "tv_vgg13",
            "tv_resnet18"}


def test_zoo_has_every_required_model():
    assert REQUIRED <= set(ZOO)


def test_vgg11_block_shapes():
    rows = zoo.get("vgg11").infer().top_level()
    assert [r.output_shape for r in rows] == [(64, 112, 112), (128, 56, 56), (256, 28, 28), (512, 14, 14),
                                               (512, 7, 7), (25088,), (4096,), (4096,), (10,)]


def test_width_ratio_divides_conv_channels_only():
    rows = zoo.get("vgg11", width_ratio=4).infer().top_level()
    assert rows[0].output_shape == (16, 112, 112) and rows[5].output_shape == (128 * 7 * 7,)
    assert rows[6].output_shape == (4096,)


def test_lenet_counts_by_hand():
    # conv 1*6*25+6, conv 6*16*25+16, dense 400*120+120, 120*84+84, 84*10+10
    assert zoo.get("lenet").infer().parameters == 156 + 2416 + 48120 + 10164 + 850


def test_lenet_bn_flattens_to_256():
    spec = zoo.get("lenet_bn")
    assert [r.output_shape for r in spec.infer().top_level() if r.kind == "flatten"] == [(256,)]


def test_inception_mnist_shapes():
    rows = zoo.get("inception_mnist").infer().top_level()
    assert rows[3].output_shape == (88, 12, 12) and rows[8].output_shape == (1408,)


def test_residual_mnist_flattens_to_512():
    assert zoo.get("residual_mnist").infer().top_level()[-2].output_shape == (512,)


@pytest.mark.parametrize("name, expected", [("tv_resnet18", 11_689_512), ("tv_alexnet", 61_100_840),
                                            ("tv_vgg11", 132_863_336), ("tv_vgg13", 133_047_848)])
def test_torchvision_counts_known_values(name, expected):
    assert zoo.get(name).infer().parameters == expected


@pytest.mark.parametrize("name", ["tv_resnet18", "tv_alexnet", "tv_vgg11", "tv_vgg13"])
def test_torchvision_state_dict_order_and_shapes(name):
    torchvision = pytest.importorskip("torchvision", reason="torchvision is not installed")
    native = getattr(torchvision.models, name[3:])(weights=None)
    theirs = [(tuple(v.shape)) for k, v in native.state_dict().items() if not k.endswith("num_batches_tracked")]
    ours = list(zoo.get(name).infer().weight_layout().values())
    assert ours == theirs
    assert zoo.get(name).infer().parameters == sum(p.numel() for p in native.parameters())


def test_overrides():
    spec = zoo.get("resnet18", in_channels=3, num_classes=7, input_size=64)
    assert spec.input_shape == (3, 64, 64) and spec.infer().output_shape == (7,)
    with pytest.raises(TypeError, match="takes no option"):
        zoo.get("lenet", width_ratio=2)
    with pytest.raises(KeyError, match="unknown zoo model"):
        zoo.get("lenet7")


def test_block_counts_are_sums_of_their_layers():
    inference = zoo.get("googlenet").infer()
    for row in inference.rows:
        inside = [r for r in inference.leaves() if r.path.startswith(row.path + ".")]
        if inside:
            assert row.parameters == sum(r.parameters for r in inside)


def test_execution_order_puts_blocks_after_their_layers():
    order = [r.path for r in zoo.get("resnet18").infer().execution_order()]
    assert len(order) == len(set(order)) == len(zoo.get("resnet18").infer().rows)
    assert order.index("blocks[1].layers[0].body.layers[4]") < order.index("blocks[1].layers[0].body") \
        < order.index("blocks[1].layers[0]") < order.index("blocks[1].layers[1]") < order.index("blocks[1]")
    assert order[-1] == "blocks[6]"


def test_weight_layout_matches_counts():
    for name in ZOO:
        inference = zoo.get(name).infer()
        layout = inference.weight_layout()
        total = sum(int(__import__("numpy").prod(s)) for s in layout.values())
        assert total == inference.parameters + inference.running_stats, name


def test_init_weights_is_seeded_and_shaped():
    spec = zoo.get("lenet_bn")
    a, b, c = init_weights(spec, 0), init_weights(spec, 0), init_weights(spec, 1)
    assert all((a[k] == b[k]).all() for k in a) and any((a[k] != c[k]).any() for k in a)
    assert {k: v.shape for k, v in a.items()} == spec.infer().weight_layout()
    assert (init_weights(spec, 0, nontrivial=False)["blocks[1].running_var"] == 1).all()


@pytest.mark.parametrize("name", ZOO)
def test_zoo_json_round_trip(name, tmp_path):
    spec = zoo.get(name)
    assert Spec.from_json(spec.to_json()) == spec
    spec.save(tmp_path / "m.json")
    assert Spec.load(tmp_path / "m.json") == spec


# -- generated specs ----------------------------------------------------------------------

@st.composite
def small_specs(draw):
    size = draw(st.integers(8, 20))
    layers = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["conv", "max", "avg", "bn", "act"]))
        k = draw(st.integers(1, 3))
        if kind == "conv":
            layers.append(Conv2d(draw(st.integers(1, 4)), k, draw(st.integers(1, 2)), draw(st.integers(0, 1)),
                                 bias=draw(st.booleans())))
        elif kind in ("max", "avg"):
            cls = MaxPool2d if kind == "max" else AvgPool2d
            extra = {} if kind == "max" else {"count_include_pad": draw(st.booleans())}
            layers.append(cls(k, draw(st.integers(1, 2)), draw(st.integers(0, k // 2)),
                              ceil_mode=draw(st.booleans()), **extra))
        elif kind == "bn":
            layers.append(BatchNorm(eps=draw(st.sampled_from([1e-5, 1e-3])), momentum=0.1))
        else:
            layers.append(Activation(draw(st.sampled_from(["relu", "sigmoid", "tanh"]))))
    layers += [Flatten(), Dense(draw(st.integers(1, 5)))]
    return Spec("generated", (draw(st.integers(1, 3)), size, size), (Sequence(layers=tuple(layers)),))


@given(small_specs())
@settings(max_examples=60, deadline=None)
def test_generated_specs_round_trip_through_json(spec):
    assert Spec.from_json(spec.to_json()) == spec


@given(small_specs())
@settings(max_examples=60, deadline=None)
def test_generated_specs_shapes_match_pytorch(spec):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    from netparity.backends import get_backend

    try:
        inference = spec.infer()
    except SpecError:
        return  # e.g. the stack shrank the image below a kernel: correctly refused
    backend = get_backend("torch")
    model = backend.build(spec)
    layers = backend.forward_layers(model, torch.zeros(1, *spec.input_shape).numpy())
    for row in inference.rows:
        assert layers[row.path].shape[1:] == row.output_shape, row.path
    counts = backend.parameter_counts(model)
    assert sum(c[0] for c in counts.values()) == inference.parameters


def test_importing_netparity_imports_no_framework():
    code = ("import sys, netparity, netparity.spec, netparity.backends, netparity.compare, netparity.cli;"
            "from netparity.spec import zoo; [zoo.get(n).infer() for n in zoo.names()];"
            "print(sorted(m for m in ('torch','mxnet','keras','tensorflow','jax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.strip().replace("'", '"')) == []
