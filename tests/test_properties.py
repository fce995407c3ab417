"""Property-based tests: random valid architectures are right; random invalid input is refused."""

from __future__ import annotations

import hypothesis.strategies as st
import numpy as np
import yaml
from hypothesis import HealthCheck, given, settings

from symbp.check.gradcheck import check_module, workspace_problems
from symbp.errors import SpecError
from symbp.frontend.spec import arch_from_mapping, parse_arch
from tests.conftest import build_module, hang_guard

HIDDEN = ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "swish", "gelu"]
OUTPUT_LOSS = [
    ("identity", "mse"),
    ("sigmoid", "bce"),
    ("softmax", "cross_entropy"),
    ("tanh", "mse"),
    ("softmax", "mse"),
    ("sigmoid", "cross_entropy"),
    ("softplus", "mse"),
]


@st.composite
def architectures(draw) -> dict:
    depth = draw(st.integers(1, 3))
    hidden = [
        {"units": draw(st.integers(1, 4)), "activation": draw(st.sampled_from(HIDDEN))}
        for _ in range(depth - 1)
    ]
    output, loss = draw(st.sampled_from(OUTPUT_LOSS))
    units = draw(st.integers(2, 3)) if output == "softmax" else draw(st.integers(1, 3))
    return {
        "name": "prop",
        "input": draw(st.integers(1, 4)),
        "layers": [*hidden, {"units": units, "activation": output}],
        "loss": loss,
        "layout": draw(st.sampled_from(["column", "row"])),
        "dtype": draw(st.sampled_from(["float64", "float32"])),
        "reduction": draw(st.sampled_from(["mean", "sum"])),
        "l2": draw(st.sampled_from([0.0, 0.01, 0.5])),
    }


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(doc=architectures(), seed=st.integers(0, 1000))
def test_random_architectures_pass_finite_differences(
    tmp_path_factory, doc: dict, seed: int
) -> None:
    arch = arch_from_mapping({**doc, "dtype": "float64"})
    module = build_module(arch, tmp_path_factory.mktemp("prop"))
    rows = check_module(module, arch, seed=seed, n=4)
    assert all(r.ok for r in rows), [(r.name, r.max_rel) for r in rows]
    assert all(np.isfinite(r.max_abs) for r in rows)
    # Batches of 1 and 3 through make_workspace: the same bits as the allocating call.
    assert workspace_problems(module, arch, seed=seed, n=1 + 2 * (seed % 2)) == []


VALID = {
    "input": 2,
    "layers": [{"units": 3, "activation": "tanh"}, {"units": 1, "activation": "sigmoid"}],
    "loss": "bce",
}
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True),
    st.text(max_size=30),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


@st.composite
def broken_documents(draw) -> str:
    doc = yaml.safe_load(yaml.safe_dump(VALID))
    action = draw(st.sampled_from(["drop", "replace", "add", "layer"]))
    key = draw(st.sampled_from(sorted(doc)))
    if action == "drop":
        del doc[key]
    elif action == "replace":
        doc[key] = draw(JUNK)
    elif action == "add":
        doc[draw(st.text(min_size=1, max_size=12))] = draw(JUNK)
    else:
        doc["layers"][0][draw(st.sampled_from(["units", "activation", "extra"]))] = draw(JUNK)
    return yaml.safe_dump(doc)


@settings(max_examples=150, deadline=None)
@given(text=st.one_of(broken_documents(), st.text(max_size=300), st.binary(max_size=200)))
def test_invalid_documents_never_crash(text) -> None:
    data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")

    def read() -> None:
        try:
            parse_arch(data, "fuzz.yaml")
        except SpecError as exc:
            message = exc.format()
            assert "fuzz.yaml" in message and len(message.splitlines()) <= 12

    hang_guard(read)
