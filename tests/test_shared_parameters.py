"""A parameter read by several nodes gets the sum of their gradients (the parameter table,
symbp.ir.graph.Graph.parameter_consumers): a network whose second dense layer reads the
first one's weight matrix, built as a graph by hand (the file format ties weights with the
sequence kinds), checked against central differences and its own hvp."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import numpy as np
from conftest import make_arch

from symbp.backends.numpy import runtime
from symbp.backends.numpy.emit import module_context
from symbp.backends.numpy.inline import helper_source
from symbp.codegen.program import build_program
from symbp.derivation.derive import derive
from symbp.derivation.network import derive_network
from symbp.derivation.numbering import network_numbering
from symbp.ir.graph import build_graph
from symbp.render import header_lines, render


def _tied_module(tmp_path: Path, l2: float):
    arch = make_arch(
        name="tied",
        layout="row",
        input=3,
        layers=[{"units": 3, "activation": "tanh"}, {"units": 3, "activation": "sigmoid"}],
        loss="mse",
        l2=l2,
    )
    graph = build_graph(arch)
    first, second = graph.nodes
    shared = dataclasses.replace(second, params=(first.params[0], second.params[1]))
    graph = dataclasses.replace(graph, nodes=(first, shared))
    assert graph.parameter_consumers[first.params[0]] == (first, shared)
    d = derive(arch)
    net = derive_network(d, graph)
    ctx = module_context(build_program(d, net, network_numbering(d, net)))
    ctx["runtime"] = helper_source([*ctx["helpers"], *runtime.TEMPLATE_CALLS])
    ctx["header"] = "\n".join(header_lines("network.py.j2", "tied", ""))
    path = tmp_path / "tied.py"
    path.write_text(render("network.py.j2", ctx))
    spec = importlib.util.spec_from_file_location(f"tied_{id(path)}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_a_shared_weight_gets_the_sum_of_its_gradients(tmp_path: Path) -> None:
    for l2 in (0.0, 0.3):
        folder = tmp_path / f"l2_{l2}"
        folder.mkdir()
        m = _tied_module(folder, l2)
        assert sorted(m.init_params(0)) == ["W1", "b1", "b2"]  # one weight, read twice
        rng = np.random.default_rng(1)
        params = {k: rng.standard_normal(v.shape) for k, v in m.init_params(0).items()}
        X, Y = rng.standard_normal((5, 3)), rng.random((5, 3))
        _, grads = m.loss_and_grads(params, X, Y)
        for key, value in params.items():
            fd = np.zeros_like(value)
            for idx in np.ndindex(value.shape):
                h = 1e-6
                up = {**params, key: value.copy()}
                down = {**params, key: value.copy()}
                up[key][idx] += h
                down[key][idx] -= h
                fd[idx] = (m.loss(up, X, Y) - m.loss(down, X, Y)) / (2 * h)
            np.testing.assert_allclose(grads[key], fd, rtol=1e-6, atol=1e-9)
        v = {k: rng.standard_normal(a.shape) for k, a in params.items()}
        hv = m.hvp(params, X, Y, v)
        eps = 1e-6
        up = m.loss_and_grads({k: params[k] + eps * v[k] for k in params}, X, Y)[1]
        down = m.loss_and_grads({k: params[k] - eps * v[k] for k in params}, X, Y)[1]
        for key in params:
            np.testing.assert_allclose(hv[key], (up[key] - down[key]) / (2 * eps), rtol=1e-5,
                                       atol=1e-8)  # fmt: skip
