"""Fold a layer graph into the spec's blocks: the shared step of every importer.

An importer (MXNet symbol JSON, torch.fx, a Keras functional model) first turns the source model
into a small DAG of ``GraphNode``s that runs from one input to one output:

- a *leaf* holds one spec layer (conv2d, batchnorm, ...) applied to one input;
- a *merge* (``add``, ``mul`` or ``concat``) combines several inputs.

``fold_graph`` then writes that DAG as the spec's blocks by series-parallel decomposition: a chain
becomes consecutive layers (a ``sequence`` inside a branch), and a fork whose paths re-join at a
merge becomes one ``branches`` block with that merge, one branch per merge input in the merge's
input order (a direct edge from the fork to the merge is an ``identity`` branch; forks inside a
branch nest). Every spec layer takes its source node's name, so reports speak the user's language,
and ``FoldedGraph.paths`` maps each source node to its spec path, so that an importer can put the
node's weights on their canonical keys (``f"{paths[node]}.weight"``).

How: the fork of a merge is its immediate dominator (the last node that every path from the input
to the merge passes through). Walking back from the output along immediate dominators writes each
node into exactly one place; a node that two places would need (a node used by two merges that do
not nest, so the blocks could only express the graph by computing it twice) means the graph is not
series-parallel, and the error names that node. Nothing is approximated or duplicated.

Framework-free: this module imports nothing but the spec.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass, field

from ..spec.errors import NetparityError
from ..spec.layers import MERGES, Branches, Identity, Layer, Sequence, Shape
from ..spec.model import Spec


class GraphError(NetparityError, ValueError):
    """A graph that cannot be folded into the spec's blocks. ``node`` names the offending source
    node (empty when the problem is not about one node)."""

    def __init__(self, node: str, reason: str):
        self.node = node
        self.reason = reason
        super().__init__(f"node {node!r}: {reason}" if node else reason)


@dataclass(frozen=True)
class GraphNode:
    """One node of the source graph: ``layer`` applied to its one input, or ``merge``
    ("add", "mul", "concat") of its inputs, in order. ``name`` must be unique in the graph and
    differ from the graph input's name."""

    name: str
    inputs: tuple[str, ...]
    layer: Layer | None = None
    merge: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "inputs", tuple(self.inputs))

    @property
    def is_merge(self) -> bool:
        return self.merge is not None


def leaf(name: str, layer: Layer, input: str) -> GraphNode:
    """A node applying ``layer`` to the output of ``input``."""
    return GraphNode(name, (input,), layer=layer)


def merge(name: str, kind: str, inputs) -> GraphNode:
    """A node merging the outputs of ``inputs`` (in order) by ``kind``: add, mul or concat."""
    return GraphNode(name, tuple(inputs), merge=kind)


@dataclass(frozen=True)
class FoldedGraph:
    """The spec's top-level blocks and, for every source node, the spec path of the layer (or
    the ``branches`` block, for a merge) it became: ``blocks[3].branches[1].layers[0]``."""

    blocks: tuple[Layer, ...]
    paths: dict[str, str] = field(default_factory=dict)

    def spec(self, name: str, input_shape: Shape, description: str = "") -> Spec:
        return Spec(name, tuple(input_shape), self.blocks, description)


def fold_graph(nodes, input: str, output: str) -> FoldedGraph:
    """Fold the DAG of ``nodes`` (``GraphNode``s, any order) from the graph input named ``input``
    to the node named ``output`` into spec blocks. Raises ``GraphError`` naming the node when the
    graph is malformed (unknown or repeated names, a cycle, a node that does not lead to the
    output) or not series-parallel."""
    return _Folder(list(nodes), input, output).fold()


# -- implementation -------------------------------------------------------------------------

@dataclass
class _Placed:
    """A node as written into the blocks: a leaf, or a merge with its branches' contents."""

    node: GraphNode
    branches: list[list["_Placed"]] = field(default_factory=list)


class _Folder:
    def __init__(self, nodes: list[GraphNode], input: str, output: str):
        self.input, self.output = input, output
        self.nodes: dict[str, GraphNode] = {}
        for node in nodes:
            self._check_node(node)
            self.nodes[node.name] = node
        if output not in self.nodes:
            if output == input:
                raise GraphError(output, "the output is the graph input itself: there are no layers to import")
            raise GraphError(output, "the output is not a node of the graph")
        for node in self.nodes.values():
            for name in node.inputs:
                if name != input and name not in self.nodes:
                    raise GraphError(node.name, f"its input {name!r} is neither a node nor the graph input {input!r}")
        self.order = self._topological_order()
        self._check_everything_leads_to_output()
        self.idom, self.depth = self._dominators()
        self.placed_in: dict[str, str] = {}  # node -> the merge (or "the output") whose chain holds it

    # -- checks ------------------------------------------------------------------------
    def _check_node(self, node: GraphNode) -> None:
        if not isinstance(node, GraphNode):
            raise GraphError("", f"expected GraphNode objects, got {type(node).__name__}")
        if not node.name or not isinstance(node.name, str):
            raise GraphError(str(node.name), "a node needs a non-empty string name")
        if node.name == self.input:
            raise GraphError(node.name, "a node has the graph input's name")
        if node.name in self.nodes:
            raise GraphError(node.name, "two nodes have this name")
        if (node.layer is None) == (node.merge is None):
            raise GraphError(node.name, "a node holds either a layer or a merge, not both or neither")
        if node.is_merge:
            if node.merge not in MERGES:
                raise GraphError(node.name, f"unknown merge {node.merge!r}; the spec merges by {', '.join(MERGES)}")
            if not node.inputs:
                raise GraphError(node.name, f"a {node.merge} merge needs at least one input")
        else:
            if not isinstance(node.layer, Layer):
                raise GraphError(node.name, f"expected a spec layer, got {type(node.layer).__name__}")
            if len(node.inputs) != 1:
                raise GraphError(node.name, f"a layer takes one input, this node has {len(node.inputs)}")

    def _topological_order(self) -> list[str]:
        """Nodes in an order where every node comes after its inputs (Kahn's algorithm, stable
        in the given node order); a node left over lies on a cycle."""
        waiting = {name: len(set(node.inputs) - {self.input}) for name, node in self.nodes.items()}
        consumers: dict[str, list[str]] = {name: [] for name in self.nodes}
        for name, node in self.nodes.items():
            for source in set(node.inputs) - {self.input}:
                consumers[source].append(name)
        ready = deque(name for name, count in waiting.items() if count == 0)
        order: list[str] = []
        while ready:
            name = ready.popleft()
            order.append(name)
            for consumer in consumers[name]:
                waiting[consumer] -= 1
                if waiting[consumer] == 0:
                    ready.append(consumer)
        if len(order) != len(self.nodes):
            stuck = next(name for name in self.nodes if waiting[name] > 0)
            raise GraphError(stuck, "the graph has a cycle through this node")
        self.consumers = consumers
        return order

    def _check_everything_leads_to_output(self) -> None:
        reached, todo = set(), [self.output]
        while todo:
            name = todo.pop()
            if name in reached or name == self.input:
                continue
            reached.add(name)
            todo.extend(self.nodes[name].inputs)
        unused = [name for name in self.order if name not in reached]
        if unused:
            listed = ", ".join(repr(n) for n in unused[:5]) + (", ..." if len(unused) > 5 else "")
            raise GraphError(unused[0], f"{len(unused)} node(s) do not lead to the output {self.output!r} "
                                        f"({listed}); cut the graph before folding it")

    def _dominators(self) -> tuple[dict[str, str], dict[str, int]]:
        """Immediate dominators of a DAG in one pass over a topological order: a node's
        dominator is the nearest common dominator of its inputs."""
        idom: dict[str, str] = {}
        depth = {self.input: 0}

        def common(a: str, b: str) -> str:
            while a != b:
                if depth[a] >= depth[b]:
                    a = idom[a]
                else:
                    b = idom[b]
            return a

        for name in self.order:
            inputs = self.nodes[name].inputs
            dominator = inputs[0]
            for other in inputs[1:]:
                dominator = common(dominator, other)
            idom[name] = dominator
            depth[name] = depth[dominator] + 1
        return idom, depth

    # -- folding -----------------------------------------------------------------------
    def fold(self) -> FoldedGraph:
        chain = self._chain(self.input, self.output, "the output")
        paths: dict[str, str] = {}
        blocks = tuple(self._write(item, f"blocks[{i}]", paths) for i, item in enumerate(chain))
        return FoldedGraph(blocks, paths)

    def _chain(self, start: str, stop: str, owner: str) -> list[_Placed]:
        """What turns the value of ``start`` into the value of ``stop`` (``start`` dominates
        ``stop``), in execution order. ``owner`` names the merge whose branch this is."""
        placed: list[_Placed] = []
        name = stop
        while name != start:
            node = self.nodes[name]
            self._claim(name, owner)
            if node.is_merge:
                fork = self.idom[name]
                branches = [self._chain(fork, source, name) for source in node.inputs]
                placed.append(_Placed(node, branches))
                name = fork
            else:
                placed.append(_Placed(node))
                name = node.inputs[0]
        placed.reverse()
        return placed

    def _claim(self, name: str, owner: str) -> None:
        if name in self.placed_in:
            users = ", ".join(repr(c) for c in self.consumers[name])
            first, second = self.placed_in[name], owner
            where = (f"two inputs of merge {first!r}" if first == second
                     else f"both {_owner(first)} and {_owner(second)}")
            raise GraphError(name, f"the graph is not series-parallel: this node's output is used by {users}, "
                                   f"paths that do not re-join at one merge of their own, so the spec's blocks "
                                   f"would need it in {where}, computing it twice")
        self.placed_in[name] = owner

    def _write(self, item: _Placed, path: str, paths: dict[str, str]) -> Layer:
        node = item.node
        paths[node.name] = path
        if not node.is_merge:
            return dataclasses.replace(node.layer, name=node.name)
        branches = tuple(self._write_chain(chain, f"{path}.branches[{i}]", paths)
                         for i, chain in enumerate(item.branches))
        return Branches(branches=branches, merge=node.merge, name=node.name)

    def _write_chain(self, chain: list[_Placed], path: str, paths: dict[str, str]) -> Layer:
        if not chain:
            return Identity()
        if len(chain) == 1:
            return self._write(chain[0], path, paths)
        return Sequence(layers=tuple(self._write(item, f"{path}.layers[{i}]", paths) for i, item in enumerate(chain)))


def _owner(owner: str) -> str:
    return owner if owner == "the output" else f"a branch of merge {owner!r}"


__all__ = ["GraphError", "GraphNode", "FoldedGraph", "fold_graph", "leaf", "merge"]
