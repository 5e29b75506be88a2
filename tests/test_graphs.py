"""The compiled graphs' structure: one while loop per recurrence, what runs inside it, and a
graph whose size does not grow with the sequence length.

Graphs are read through public APIs only: `ConcreteFunction.graph.as_graph_def(
add_shapes=True)` is a `GraphDef` whose `library.function` holds every function the graph calls
(a while loop's body among them, named by the While node's `body` attribute), each node with
its op type, its inputs and the static shapes of its outputs (`_output_shapes`).

The decoder's sizes are those of tests/test_decoder.py (batch 3, source length 4, units 7,
attention units 3, context 6, vocabulary 19); decoding runs the tiny translators of
tests/test_decode.py.
"""

import numpy as np
import pytest
import tensorflow as tf
from test_decode import IDS, SOURCES, ids, numpy, tiny_translator
from test_decoder import (
    ATTENTION_UNITS,
    BATCH,
    CONTEXT_DIM,
    SRC_LEN,
    UNITS,
    VOCAB,
    make_decoder,
    make_inputs,
    twin,
)

from bahdanau_keras.decode import beam_search_decode, encode, greedy_decode
from bahdanau_keras.kernels import decoder_loop

WHILE = ("While", "StatelessWhile")


# -- reading a GraphDef -------------------------------------------------------------------------

def graph_def(concrete_function):
    """The `GraphDef` of a traced function, every node with its output shapes."""
    return concrete_function.graph.as_graph_def(add_shapes=True)


def functions(graph):
    """`{name: FunctionDef}` of every function a `GraphDef` calls, however deeply nested."""
    return {function.signature.name: function for function in graph.library.function}


def node_count(graph):
    """Nodes of a `GraphDef`: its own and those of every function it calls."""
    return len(graph.node) + sum(len(function.node_def) for function in graph.library.function)


def loops(nodes):
    return [node for node in nodes if node.op in WHILE]


def loop_body(graph):
    """The body (a `FunctionDef`) of the one top-level while loop of a `GraphDef`."""
    (loop,) = loops(graph.node)
    return functions(graph)[loop.attr["body"].func.name]


def output_shapes(node):
    """The static shapes of a node's outputs, as tuples (`None` for an unknown size)."""
    # Without the attribute, every test that looks for a shape would find none and pass.
    assert "_output_shapes" in node.attr, f"node {node.name!r} ({node.op}) has no shapes"
    return [None if shape.unknown_rank else tuple(d.size if d.size >= 0 else None
                                                  for d in shape.dim)
            for shape in node.attr["_output_shapes"].list.shape]


def output_shape(node):
    return output_shapes(node)[0]


def live_nodes(function):
    """Nodes of a `FunctionDef` whose results reach its outputs: the runtime prunes the rest.

    An input is written `node:output:index`, `^node` (a control input) or the name of one of
    the function's arguments; so is each entry of `ret`, the function's outputs."""
    nodes = {node.name: node for node in function.node_def}
    live, stack = {}, list(function.ret.values())
    while stack:
        name = stack.pop().lstrip("^").split(":")[0]
        if name in nodes and name not in live:
            live[name] = nodes[name]
            stack.extend(nodes[name].input)
    return list(live.values())


def resource_arguments(function):
    """The arguments of a `FunctionDef` that are resource handles (variables)."""
    return [arg.name for arg in function.signature.input_arg
            if arg.type == tf.resource.as_datatype_enum]


# -- teacher forcing: the decoder's loop --------------------------------------------------------

def trace_call(decoder, tgt_len):
    call = tf.function(decoder.call)
    return call.get_concrete_function(
        tf.TensorSpec([BATCH, tgt_len], tf.int32), tf.TensorSpec([BATCH, SRC_LEN, CONTEXT_DIM]),
        tf.TensorSpec([BATCH, SRC_LEN], tf.bool), tf.TensorSpec([BATCH, UNITS]))


@pytest.fixture(scope="module")
def plain_decoder():
    return make_decoder(seed=1)


def test_teacher_forcing_is_one_while_loop(plain_decoder, monkeypatch):
    step_traces = []
    original = plain_decoder.cell

    def counting(*args, **kwargs):
        step_traces.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(plain_decoder, "cell", counting)
    short, long = trace_call(plain_decoder, 2), trace_call(plain_decoder, 11)
    # The step is traced once per graph, whatever the target length: no Python loop over time.
    assert len(step_traces) == 2
    short_graph, long_graph = graph_def(short), graph_def(long)
    short_nodes, long_nodes = node_count(short_graph), node_count(long_graph)
    assert long_nodes == short_nodes
    long_loops = [node.name for node in loops(long_graph.node)]
    assert len(long_loops) == 1, long_loops
    # The loop's results are what `call` computes eagerly.
    target, annotations, mask, state = make_inputs(seed=12, tgt_len=11)
    for x, y in zip(long(*map(tf.constant, (target, annotations, mask, state))),
                    plain_decoder(target, annotations, mask, state)):
        np.testing.assert_allclose(x.numpy(), y.numpy(), atol=1e-5)


def test_step_invariant_work_is_outside_the_loop(plain_decoder):
    """The loop body reads only the attention's own weights (W_a and v_a, through the layer):
    C and U are read (and split) once before the loop, and the key projection U_a h, the
    embedding, the input projection, the deep output and the vocabulary projection run
    outside it."""
    graph = graph_def(trace_call(plain_decoder, 6))
    body = loop_body(graph)
    read_shapes = sorted(output_shape(node) for node in body.node_def
                         if node.op == "ReadVariableOp")
    attention = plain_decoder.attention
    assert read_shapes == sorted([tuple(attention.query_dense.kernel.shape),
                                  tuple(attention.score_vector.shape)])
    outer_reads = {output_shape(node) for node in graph.node if node.op == "ReadVariableOp"}
    assert tuple(plain_decoder.context_kernel.shape) in outer_reads
    assert tuple(plain_decoder.recurrent_kernel.shape) in outer_reads
    assert tuple(attention.key_dense.kernel.shape) in outer_reads
    body_types = {node.op for node in body.node_def}
    assert not body_types & {"GatherV2", "ResourceGather", "Max"}
    # The one batched product is the context, Σ_j α_ij h_j: [batch, 1, src] x [batch, src, C].
    batched = [output_shape(node) for node in body.node_def if node.op == "BatchMatMulV2"]
    assert batched == [(BATCH, 1, CONTEXT_DIM)]
    # Nothing in the body has a vocabulary-sized axis.
    assert not [node.name for node in body.node_def
                for shape in output_shapes(node) if VOCAB in (shape or ())]


# -- teacher forcing: the fused kernel's loops --------------------------------------------------

def fused_and_reference(seed, **kwargs):
    reference = make_decoder(seed=seed, implementation="reference", **kwargs)
    return twin(reference, implementation="fused"), reference


def loop_products(decoder):
    """Output shapes of the matrix products that the while loops of a training step's graph
    compute (the forward loop and its gradient). Products whose result does not reach the
    loop body's outputs are left out: the runtime prunes them."""
    target, annotations, mask, state = make_inputs(seed=33)

    @tf.function
    def gradients(target, annotations, mask, state):
        with tf.GradientTape() as tape:
            logits, _ = decoder(target, annotations, mask, state)
            loss = tf.reduce_sum(logits)
        return tape.gradient(loss, decoder.trainable_variables)

    graph = graph_def(gradients.get_concrete_function(target, annotations, mask, state))
    # Every function the graph calls (the loops and their gradients may sit in functions).
    library = functions(graph)
    bodies = {node.attr["body"].func.name
              for nodes in [graph.node, *(f.node_def for f in library.values())]
              for node in loops(nodes)}
    assert len(bodies) == 2  # the forward loop and its gradient
    return {output_shape(node) for name in bodies for node in live_nodes(library[name])
            if node.op == "MatMul"}


def test_kernels_are_not_differentiated_inside_the_loop():
    """No product in the fused loops has a kernel's shape: the gradients of C, [U_z; U_r], U
    and W_a are computed after the loop. The reference, differentiated step by step, has
    them in its gradient loop."""
    fused, reference = fused_and_reference(seed=33, loop_shards=1)
    kernel_shapes = {(CONTEXT_DIM, 3 * UNITS), (UNITS, 2 * UNITS), (UNITS, UNITS),
                     (UNITS, ATTENTION_UNITS), (UNITS, ATTENTION_UNITS + 2 * UNITS)}
    products = loop_products(fused)
    assert (BATCH, 3 * UNITS) in products  # C c_i
    assert not products & kernel_shapes
    assert {(CONTEXT_DIM, 3 * UNITS), (UNITS, 2 * UNITS), (UNITS, UNITS),
            (UNITS, ATTENTION_UNITS)} <= loop_products(reference)


def test_fused_is_one_loop_that_reads_no_weight(monkeypatch):
    """The kernel is traced once per graph, whatever the target length, as one while loop
    whose body reads no weight (they are read, split and concatenated once before it): no
    variable's handle even enters the body."""
    fused, _ = fused_and_reference(seed=12)
    traces = []
    original = decoder_loop.time_loop

    def counting(*args, **kwargs):
        traces.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(decoder_loop, "time_loop", counting)
    short, long = graph_def(trace_call(fused, 2)), graph_def(trace_call(fused, 11))
    assert len(traces) == 2
    short_nodes, long_nodes = node_count(short), node_count(long)
    assert long_nodes == short_nodes
    body = loop_body(long)
    assert not [node.name for node in body.node_def if node.op == "ReadVariableOp"]
    assert not resource_arguments(body)
    assert not [node.name for node in body.node_def
                for shape in output_shapes(node) if VOCAB in (shape or ())]


# -- decoding -----------------------------------------------------------------------------------

def decoding_graph(function):
    """Nodes of a traced decoding function (with the functions it calls), and its top-level
    loops."""
    graph = graph_def(function.get_concrete_function(IDS))
    return node_count(graph), len(loops(graph.node))


@pytest.mark.parametrize("decode", [greedy_decode, beam_search_decode])
def test_decoding_is_one_while_loop_whatever_the_maximum_length(decode):
    translator = tiny_translator(0)
    sizes = []
    for max_length in (3, 40):
        sizes.append(decoding_graph(tf.function(
            lambda s, m=max_length: decode(translator, s, max_length=m))))
    (small, small_loops), (large, large_loops) = sizes
    assert small == large
    # The encoder's recurrent layers have loops of their own; decoding adds exactly one.
    _, encoder_loops = decoding_graph(tf.function(lambda s: encode(translator, s)))
    assert small_loops == large_loops == encoder_loops + 1
    # ... and the loop really runs for as many steps as needed.
    out = numpy(decode(translator, ids(SOURCES), max_length_a=0.0, max_length_b=30))
    assert out["tokens"].shape[-1] > 3


def custom_gradient_nodes(graph):
    """Nodes of a `GraphDef` (its functions' too) that `tf.custom_gradient` made: they name
    their gradient function in `_gradient_op_type`, which a SavedModel does not keep."""
    nodes = list(graph.node) + [node for function in graph.library.function
                                for node in function.node_def]
    return [node.name for node in nodes if "_gradient_op_type" in node.attr]


@pytest.mark.parametrize("decode", [greedy_decode, beam_search_decode])
def test_decoding_holds_no_custom_gradient(decode):
    """Decoding, what an exported SavedModel holds, runs the fused encoder without its
    written-out gradient (TensorFlow would warn, loading it, that the gradient was not
    saved); a training forward pass keeps it."""
    translator = tiny_translator(0)
    assert translator.encoder.implementation == "auto"  # the fused GRUs, here on a CPU
    decoding = graph_def(tf.function(lambda s: decode(translator, s)).get_concrete_function(IDS))
    assert not custom_gradient_nodes(decoding)
    training = graph_def(tf.function(
        lambda s: translator.encoder(s, training=True)[0]).get_concrete_function(IDS))
    assert custom_gradient_nodes(training)
