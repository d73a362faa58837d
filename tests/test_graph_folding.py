"""backends/graph_folding.py: small DAGs folded into the spec's blocks.

Each foldable graph is also *run*: node by node (every leaf as a one-layer spec in the float64
NumPy reference, merges in NumPy) and as the folded spec with the nodes' weights placed through
the path map. The two must agree, so a wrong branch order, a lost node or a weight on the wrong
key fails here, not only a different structure.
"""

import numpy as np
import pytest

from netparity.backends.graph_folding import FoldedGraph, GraphError, GraphNode, fold_graph, leaf, merge
from netparity.spec import (Activation, BatchNorm, Branches, Conv2d, Dense, Flatten, GlobalAvgPool, Identity,
                            MaxPool2d, NetparityError, Sequence, Spec, init_weights)
from netparity.spec import reference

INPUT_SHAPE = (4, 6, 6)


def conv(channels: int, kernel: int = 3) -> Conv2d:
    return Conv2d(channels, kernel, padding=kernel // 2)


def run_node_by_node(nodes, x: np.ndarray, input_shape, seed: int = 0):
    """The graph's output computed node by node, and each leaf's weights (name -> {key: array})."""
    by_name = {n.name: n for n in nodes}
    values, shapes, weights = {"x": x}, {"x": tuple(input_shape)}, {}
    pending = list(nodes)
    while pending:
        node = next(n for n in pending if all(i in values for i in n.inputs))
        pending.remove(node)
        inputs = [values[i] for i in node.inputs]
        if node.is_merge:
            if node.merge == "concat":
                values[node.name] = np.concatenate(inputs, axis=1)
            elif node.merge == "add":
                values[node.name] = sum(inputs[1:], inputs[0])
            else:
                values[node.name] = np.prod(np.broadcast_arrays(*inputs), axis=0)
            shapes[node.name] = values[node.name].shape[1:]
            continue
        assert len(shapes[node.inputs[0]]) == 3, "a spec's input is (C, H, W): the run graphs keep images"
        spec = Spec(node.name, shapes[node.inputs[0]], (node.layer,))
        layer_weights = init_weights(spec, seed=seed + len(weights), nontrivial=True)
        model = reference.build(spec)
        reference.set_weights(model, layer_weights)
        values[node.name] = reference.forward(model, inputs[0])
        shapes[node.name] = values[node.name].shape[1:]
        weights[node.name] = {key.split(".", 1)[1]: value for key, value in layer_weights.items()}
    assert set(values) == {"x", *by_name}
    return values, weights


def check_folding_computes_the_graph(nodes, output: str, input_shape=INPUT_SHAPE) -> FoldedGraph:
    folded = fold_graph(nodes, "x", output)
    spec = folded.spec("folded", input_shape)
    spec.infer()
    x = np.random.default_rng(3).standard_normal((2, *input_shape))
    values, node_weights = run_node_by_node(nodes, x, input_shape)
    weights = {f"{folded.paths[name]}.{key}": value
               for name, own in node_weights.items() for key, value in own.items()}
    assert set(weights) == set(spec.infer().weight_layout())
    model = reference.build(spec)
    reference.set_weights(model, weights)
    np.testing.assert_allclose(reference.forward(model, x), values[output], rtol=1e-12, atol=1e-12)
    # every node kept its name on the layer (or branches block) it became
    inference = spec.infer()
    for name, path in folded.paths.items():
        assert inference.row(path).layer.name == name
    assert set(folded.paths) == {n.name for n in nodes}
    return folded


def test_a_chain_becomes_top_level_blocks_in_order():
    nodes = [leaf("conv0", conv(8), "x"), leaf("bn0", BatchNorm(), "conv0"), leaf("relu0", Activation(), "bn0"),
             leaf("pool0", MaxPool2d(2), "relu0")]
    folded = check_folding_computes_the_graph(nodes, "pool0")
    assert [b.kind for b in folded.blocks] == ["conv2d", "batchnorm", "activation", "maxpool2d"]
    assert folded.paths == {"conv0": "blocks[0]", "bn0": "blocks[1]", "relu0": "blocks[2]", "pool0": "blocks[3]"}


def test_residual_with_identity_shortcut():
    nodes = [leaf("stem", conv(4), "x"),
             leaf("c1", conv(4), "stem"), leaf("b1", BatchNorm(), "c1"), leaf("r1", Activation(), "b1"),
             leaf("c2", conv(4), "r1"), leaf("b2", BatchNorm(), "c2"),
             merge("plus", "add", ["b2", "stem"]), leaf("out", Activation(), "plus")]
    folded = check_folding_computes_the_graph(nodes, "out")
    block = folded.blocks[1]
    assert isinstance(block, Branches) and block.merge == "add" and block.name == "plus"
    body, shortcut = block.branches
    assert isinstance(body, Sequence) and [l.name for l in body.layers] == ["c1", "b1", "r1", "c2", "b2"]
    assert isinstance(shortcut, Identity)
    assert folded.paths["c2"] == "blocks[1].branches[0].layers[3]"
    assert folded.paths["plus"] == "blocks[1]" and folded.paths["out"] == "blocks[2]"


def test_residual_keeps_the_merge_input_order_and_a_projection_branch():
    # the shortcut first, then the body; a 1x1 projection is a one-layer branch, not a sequence
    nodes = [leaf("proj", conv(6, 1), "x"), leaf("c1", conv(6), "x"), leaf("b1", BatchNorm(), "c1"),
             merge("plus", "add", ["proj", "b1"])]
    folded = check_folding_computes_the_graph(nodes, "plus")
    (block,) = folded.blocks
    assert isinstance(block.branches[0], Conv2d) and block.branches[0].name == "proj"
    assert folded.paths["proj"] == "blocks[0].branches[0]"
    assert folded.paths["b1"] == "blocks[0].branches[1].layers[1]"


def test_squeeze_and_excitation_gate():
    nodes = [leaf("c", conv(4), "x"),
             leaf("squeeze", GlobalAvgPool(keepdims=True), "c"), leaf("fc1", Conv2d(2, 1), "squeeze"),
             leaf("relu", Activation(), "fc1"), leaf("fc2", Conv2d(4, 1), "relu"),
             leaf("gate", Activation("sigmoid"), "fc2"), merge("scale", "mul", ["c", "gate"])]
    folded = check_folding_computes_the_graph(nodes, "scale")
    se = folded.blocks[1]
    assert se.merge == "mul" and isinstance(se.branches[0], Identity)
    assert [l.name for l in se.branches[1].layers] == ["squeeze", "fc1", "relu", "fc2", "gate"]


def test_inception_like_concat_of_four_branches():
    nodes = [leaf("b1", conv(2, 1), "x"),
             leaf("b2a", conv(3, 1), "x"), leaf("b2b", conv(4), "b2a"),
             leaf("b3a", conv(1, 1), "x"), leaf("b3b", conv(2, 5), "b3a"),
             leaf("b4a", MaxPool2d(3, 1, 1), "x"), leaf("b4b", conv(2, 1), "b4a"),
             merge("cat", "concat", ["b1", "b2b", "b3b", "b4b"])]
    folded = check_folding_computes_the_graph(nodes, "cat")
    (block,) = folded.blocks
    assert block.merge == "concat" and len(block.branches) == 4
    assert folded.spec("f", INPUT_SHAPE).infer().output_shape == (2 + 4 + 2 + 2, 6, 6)


def test_nested_forks_nest():
    # a residual whose body holds an inception-like concat, itself holding a residual
    nodes = [leaf("a", conv(4), "x"),
             leaf("inner", conv(4), "a"), merge("inner_add", "add", ["inner", "a"]),
             leaf("left", conv(2, 1), "inner_add"), leaf("right", conv(2, 1), "inner_add"),
             merge("cat", "concat", ["left", "right"]),
             merge("outer_add", "add", ["cat", "a"]), leaf("top", Activation(), "outer_add")]
    folded = check_folding_computes_the_graph(nodes, "top")
    outer = folded.blocks[1]
    assert outer.name == "outer_add"
    body = outer.branches[0]
    assert [l.kind for l in body.layers] == ["branches", "branches"]
    assert folded.paths["inner"] == "blocks[1].branches[0].layers[0].branches[0]"
    assert folded.paths["right"] == "blocks[1].branches[0].layers[1].branches[1]"


def test_densenet_style_repeated_concat_with_the_input():
    nodes, previous = [], "x"
    for i in range(3):
        nodes += [leaf(f"bn{i}", BatchNorm(), previous), leaf(f"relu{i}", Activation(), f"bn{i}"),
                  leaf(f"conv{i}", conv(2), f"relu{i}"), merge(f"cat{i}", "concat", [previous, f"conv{i}"])]
        previous = f"cat{i}"
    folded = check_folding_computes_the_graph(nodes, "cat2")
    assert [b.name for b in folded.blocks] == ["cat0", "cat1", "cat2"]
    assert all(isinstance(b.branches[0], Identity) for b in folded.blocks)
    assert folded.spec("d", INPUT_SHAPE).infer().output_shape == (4 + 3 * 2, 6, 6)


def test_the_same_node_twice_in_a_merge_is_two_identity_branches():
    nodes = [leaf("a", conv(4), "x"), merge("double", "add", ["a", "a"])]
    folded = check_folding_computes_the_graph(nodes, "double")
    assert [type(b) for b in folded.blocks[1].branches] == [Identity, Identity]


def test_a_merge_of_the_graph_input_itself():
    nodes = [leaf("a", conv(4), "x"), merge("skip", "add", ["x", "a"])]
    folded = check_folding_computes_the_graph(nodes, "skip")
    assert isinstance(folded.blocks[0].branches[0], Identity) and folded.paths["a"] == "blocks[0].branches[1]"


def test_node_order_does_not_matter():
    nodes = [leaf("a", conv(4), "x"), leaf("b", conv(4), "a"), merge("m", "add", ["b", "a"]),
             leaf("c", Activation(), "m")]
    assert fold_graph(list(reversed(nodes)), "x", "c") == fold_graph(nodes, "x", "c")


def test_a_node_used_by_two_merges_that_do_not_nest_is_refused_by_name():
    # a feeds m1 and m2; m1 also feeds m2: a would sit in two branches of m2 (a Wheatstone bridge)
    nodes = [leaf("a", conv(4), "x"), leaf("b", conv(4), "x"), merge("m1", "add", ["a", "b"]),
             merge("m2", "add", ["a", "m1"])]
    with pytest.raises(GraphError, match="node 'a': the graph is not series-parallel") as caught:
        fold_graph(nodes, "x", "m2")
    assert caught.value.node == "a" and isinstance(caught.value, NetparityError)
    assert "'m1', 'm2'" in str(caught.value)


def test_a_shared_node_in_two_inputs_of_one_merge_is_refused():
    # add(f(a), g(a), x): a would be computed in two branches of the three-way add
    nodes = [leaf("a", conv(4), "x"), leaf("f", conv(4), "a"), leaf("g", conv(4), "a"),
             merge("sum3", "add", ["f", "g", "x"])]
    with pytest.raises(GraphError, match="two inputs of merge 'sum3'") as caught:
        fold_graph(nodes, "x", "sum3")
    assert caught.value.node == "a"


def test_a_node_used_inside_a_branch_and_after_the_merge_is_refused():
    nodes = [leaf("a", conv(4), "x"), leaf("b", conv(4), "a"), merge("m", "add", ["b", "x"]),
             merge("n", "add", ["m", "a"])]
    with pytest.raises(GraphError, match="node 'a'"):
        fold_graph(nodes, "x", "n")


@pytest.mark.parametrize("nodes, output, message", [
    ([leaf("a", conv(4), "x"), leaf("a", conv(4), "a")], "a", "node 'a': two nodes have this name"),
    ([leaf("x", conv(4), "x")], "x", "node 'x': a node has the graph input's name"),
    ([leaf("a", conv(4), "y")], "a", "node 'a': its input 'y' is neither a node nor the graph input 'x'"),
    ([leaf("a", conv(4), "x")], "b", "node 'b': the output is not a node of the graph"),
    ([], "x", "the output is the graph input itself"),
    ([leaf("a", conv(4), "x"), leaf("b", conv(4), "x")], "a", r"node 'b': 1 node\(s\) do not lead to the output 'a'"),
    ([leaf("a", conv(4), "x"), merge("b", "add", ["a", "c"]), leaf("c", conv(4), "b")], "c", "has a cycle"),
    ([merge("m", "max", ["x", "x"])], "m", "node 'm': unknown merge 'max'"),
    ([merge("m", "add", [])], "m", "needs at least one input"),
    ([GraphNode("a", ("x", "x"), layer=conv(4))], "a", "a layer takes one input, this node has 2"),
    ([GraphNode("a", ("x",), layer=conv(4), merge="add")], "a", "either a layer or a merge"),
    ([GraphNode("a", ("x",), layer="conv")], "a", "expected a spec layer, got str"),
])
def test_malformed_graphs_are_refused_naming_the_node(nodes, output, message):
    with pytest.raises(GraphError, match=message):
        fold_graph(nodes, "x", output)


def test_flat_layers_and_dense_heads_fold_too():
    nodes = [leaf("pool", GlobalAvgPool(), "x"), leaf("fc1", Dense(8), "pool"), leaf("fc2", Dense(8), "fc1"),
             merge("sum", "add", ["fc1", "fc2"]), leaf("flat", Flatten(), "sum")]
    folded = fold_graph(nodes, "x", "flat")
    assert folded.spec("h", INPUT_SHAPE).infer().output_shape == (8,)
    assert folded.paths["fc2"] == "blocks[2].branches[1]"
