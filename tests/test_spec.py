"""symbp.frontend.spec: arch.yaml schema v1 -> Arch (valid files, every error class, hostile
YAML)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from textwrap import dedent

import pytest
import yaml
from conftest import hang_guard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symbp.errors import ExpressionError, SpecError
from symbp.frontend.reader import load_document
from symbp.frontend.spec import (
    ACTIVATION_ALIASES,
    BUILTIN_ACTIVATIONS,
    LOSSES,
    SCHEMA_VERSION,
    Arch,
    Layer,
    Loss,
    arch_from_mapping,
    load_arch,
    parse_arch,
)

EXAMPLE = dedent(
    """\
    name: seed_net          # optional
    layout: column
    dtype: float64
    input: 2
    layers:
      - units: 4
        activation: sigmoid
    loss: mse
    reduction: mean
    l2: 0.0
    activations:
      mish: "x*tanh(log(1 + exp(x)))"
    """
)

MINIMAL = "input: 3\nlayers:\n  - units: 2\n    activation: tanh\nloss: mse\n"


def spec_error(text: str | bytes, filename: str = "arch.yaml") -> SpecError:
    """The SpecError raised for a document (the test fails if none is raised)."""
    with pytest.raises(SpecError) as info:
        parse_arch(text, filename)
    return info.value


def where(error: SpecError) -> tuple[int | None, int | None, str | None]:
    """(line, column, path) of an error."""
    return error.line, error.column, error.path


def layers_doc(*activations: str) -> str:
    """A document with one 3-unit layer per activation."""
    body = "".join(f"  - units: 3\n    activation: {a}\n" for a in activations)
    return f"input: 2\nlayers:\n{body}loss: mse\n"


# --- valid files --------------------------------------------------------------------------


def test_example_gives_the_expected_arch() -> None:
    arch = parse_arch(EXAMPLE, "examples/seed.yaml")
    assert arch == Arch(
        name="seed_net",
        input=2,
        layers=(Layer(units=4, activation="sigmoid"),),
        loss=Loss(kind="mse"),
        layout="column",
        dtype="float64",
        reduction="mean",
        l2=0.0,
        activations=(("mish", "x*tanh(log(1 + exp(x)))"),),
    )
    assert arch.source == "examples/seed.yaml"
    assert arch.source_sha256 == hashlib.sha256(EXAMPLE.encode()).hexdigest()
    assert arch.layer_sizes == (2, 4)
    assert isinstance(arch.l2, float)


def test_marks_are_recorded_one_based() -> None:
    arch = parse_arch(EXAMPLE, "a.yaml")
    assert arch.mark("layers[0].activation") == (7, 17)
    assert arch.mark("layers[0].units") == (6, 12)
    assert arch.mark("loss") == (8, 7)
    assert arch.mark("activations.mish") == (12, 9)
    assert arch.mark("nope") is None
    assert ("input", 4, 8) in arch.marks


def test_defaults() -> None:
    arch = parse_arch(MINIMAL, "minimal.yaml")
    assert (arch.layout, arch.dtype, arch.reduction, arch.l2) == ("column", "float64", "mean", 0.0)
    assert arch.activations == () and arch.loss == Loss("mse") and arch.loss.expr is None
    assert arch.layer_sizes == (3, 2)


def test_aliases_are_resolved() -> None:
    arch = parse_arch(layers_doc("linear", "silu", "relu"))
    assert [layer.activation for layer in arch.layers] == ["identity", "swish", "relu"]
    assert ACTIVATION_ALIASES == {"linear": "identity", "silu": "swish"}


def test_every_builtin_activation_is_accepted() -> None:
    names = [a for a in BUILTIN_ACTIVATIONS if a != "softmax"] + ["softmax"]
    arch = parse_arch(layers_doc(*names))
    assert tuple(layer.activation for layer in arch.layers) == tuple(names)


def test_module_constants() -> None:
    assert SCHEMA_VERSION == 2 and LOSSES == ("mse", "bce", "cross_entropy")
    assert BUILTIN_ACTIVATIONS[0] == "identity" and "gelu" in BUILTIN_ACTIVATIONS


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("examples/my-net.v2.yaml", "my_net_v2"),
        ("2layers.yaml", "net_2layers"),
        ("class.yaml", "class_"),
        ("C:\\nets\\tiny net.yml", "tiny_net"),
        ("<string>", "net"),
        ("arch", "arch"),
    ],
)
def test_name_defaults_to_the_file_stem(filename: str, expected: str) -> None:
    assert parse_arch(MINIMAL, filename).name == expected


def test_load_arch_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tiny-net.yaml"
    path.write_text(EXAMPLE.replace("name: seed_net", "#"))
    arch = load_arch(path)
    assert arch.name == "tiny_net" and arch.source == str(path)
    assert arch.source_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_custom_losses_and_options() -> None:
    text = dedent(
        """\
        input: 4
        layout: row
        dtype: float32
        reduction: sum
        l2: 1e-4
        layers:
          - {units: 8, activation: mish}
          - {units: 1, activation: sigmoid}
        loss: {expr: "(yhat - y)**2"}
        activations: {mish: "x*tanh(softplus(x))", bent: "x + 0.5*x**2"}
        """
    )
    arch = parse_arch(text)
    assert (arch.layout, arch.dtype, arch.reduction, arch.l2) == ("row", "float32", "sum", 1e-4)
    assert arch.loss == Loss("expr", "(yhat - y)**2")
    assert arch.activations == (("bent", "x + 0.5*x**2"), ("mish", "x*tanh(softplus(x))"))


def test_bce_and_cross_entropy_allowed_with_any_activation() -> None:
    for loss in ("bce", "cross_entropy"):
        assert parse_arch(MINIMAL.replace("mse", loss)).loss.kind == loss


def test_arch_from_mapping_matches_the_file() -> None:
    doc = {
        "name": "seed_net",
        "input": 2,
        "layers": [{"units": 4, "activation": "sigmoid"}],
        "loss": "mse",
        "activations": {"mish": "x*tanh(log(1 + exp(x)))"},
    }
    arch = arch_from_mapping(doc)
    assert arch == parse_arch(EXAMPLE)
    assert arch.source == "<dict>" and arch.source_sha256 == "" and arch.marks == ()
    assert hash(arch) == hash(parse_arch(EXAMPLE))


def test_arch_from_mapping_validates_and_has_no_marks() -> None:
    with pytest.raises(SpecError) as info:
        arch_from_mapping({"input": 2, "layers": [{"units": True, "activation": "relu"}],
                           "loss": "mse"})  # fmt: skip
    assert info.value.path == "layers[0].units" and info.value.line is None
    assert info.value.file == "<dict>"


def test_repr_is_short() -> None:
    text = repr(parse_arch(EXAMPLE))
    assert text.startswith("Arch(name='seed_net'") and "marks" not in text and "sha256" not in text


def test_existing_examples_load() -> None:
    examples = Path(__file__).resolve().parent.parent / "examples"
    paths = sorted(examples.glob("*.yaml"))
    assert all(load_arch(path).layers for path in paths)


# --- errors: reading and YAML -------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(SpecError) as info:
        load_arch(path)
    assert info.value.file == str(path)
    assert "cannot read file: No such file or directory" in info.value.message


def test_yaml_syntax_error_has_the_problem_position() -> None:
    error = spec_error("input: 2\nlayers: [1, 2\nloss: mse\n")
    assert error.line == 3 and error.column is not None
    assert "invalid YAML" in error.message and error.file == "arch.yaml"
    assert "arch.yaml:3:" in str(error)


def test_python_tags_are_refused_and_never_run(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    doc = f'!!python/object/apply:os.system ["touch {canary}"]\n'
    path = tmp_path / "evil.yaml"
    path.write_text(doc)
    with pytest.raises(SpecError) as info:
        load_arch(path)
    assert "'!!python/object/apply:os.system' is not allowed" in info.value.message
    assert (info.value.line, info.value.column) == (1, 1)
    assert not canary.exists()
    error = spec_error(f"input: !!python/object/apply:os.system ['touch {canary}']\n")
    assert (error.line, error.column) == (1, 8) and not canary.exists()


@pytest.mark.parametrize(
    ("text", "fragment", "position"),
    [
        ("input: !!binary aGVsbG8=\n", "'!!binary' is not allowed", (1, 8)),
        ("input: 2001-12-14\n", "'!!timestamp' is not allowed", (1, 8)),
        ("input: !custom 2\n", "'!custom' is not allowed", (1, 8)),
        ("input: !!set {a, b}\n", "'!!set' is not allowed", (1, 8)),
        ("input: !!omap [{a: 1}]\n", "'!!omap' is not allowed", (1, 8)),
        ("a: &x {b: 1}\nc: <<\n", "'!!merge' is not allowed", (2, 4)),
        ("a: &x {b: 1}\nc: [<<]\n", "'!!merge' is not allowed", (2, 5)),
        ("a: &x {b: 1}\nc:\n  <<: !!omap [{b: 1}]\n", "'!!omap' is not allowed", (3, 7)),
    ],
)
def test_non_standard_tags_are_refused(text: str, fragment: str, position: tuple[int, int]) -> None:
    error = spec_error(text)
    assert fragment in error.message and (error.line, error.column) == position


def test_alias_bomb_is_refused_hang_guard() -> None:
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    error = hang_guard(lambda: spec_error("\n".join(lines) + "\n"))
    assert "expands to more than" in error.message


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000 + "]" * 100_000,
        "{a: " * 100_000 + "}" * 100_000,
        "".join("  " * i + "-\n" for i in range(300)),
        "- a\n" * 250_000,
        "layers:\n" + "  - {units: 4, activation: relu}\n" * 30_000,
        "x: " + "a " * 500_000,
        "x: 1" + "1" * 1_000_000,
        "# " + "c" * 1_000_000 + "\n",
    ],
    ids=[
        "flow-nesting",
        "map-nesting",
        "block-nesting",
        "many-nodes",
        "many-layers",
        "long-plain-scalar",
        "long-number",
        "long-comment",
    ],  # fmt: skip
)
def test_hostile_documents_are_refused_hang_guard(text: str) -> None:
    hang_guard(lambda: spec_error(text))


def test_size_limit() -> None:
    error = hang_guard(lambda: spec_error("#" * (1 << 20) + "\n"))
    assert "too large" in error.message


def test_recursive_alias() -> None:
    error = spec_error("a: &a [*a]\n")
    assert "recursive alias" in error.message and (error.line, error.column) == (1, 8)


def test_nul_byte() -> None:
    error = spec_error(b"input: 2\nlay\x00ers: []\n")
    assert "NUL" in error.message and (error.line, error.column) == (2, 4)


def test_invalid_utf8() -> None:
    error = spec_error(b"input: 2\nname: caf\xe9\n")
    assert "not valid UTF-8" in error.message and (error.line, error.column) == (2, 10)


def test_utf8_bom_is_accepted() -> None:
    assert parse_arch(b"\xef\xbb\xbf" + MINIMAL.encode()).input == 3


def test_multiple_documents() -> None:
    error = spec_error(MINIMAL + "---\n" + MINIMAL)
    assert "more than one YAML document" in error.message and error.line == 6


@pytest.mark.parametrize("text", ["", "# only a comment\n", "- 1\n", "just text\n", "~\n"])
def test_document_must_be_a_mapping(text: str) -> None:
    error = spec_error(text)
    assert error.message == "the file must be a mapping with keys input, layers, loss"


def test_duplicate_keys() -> None:
    error = spec_error("input: 2\nloss: mse\ninput: 3\n")
    assert "duplicate key 'input'" in error.message and "line 1" in error.message
    assert where(error) == (3, 1, "input")


def test_duplicate_keys_in_a_layer() -> None:
    error = spec_error(layers_doc("relu").replace("units: 3", "units: 3\n    units: 4"))
    assert where(error) == (4, 5, "layers[0].units")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("on: 1\n", "YAML reads 'on' as a boolean"),
        ("1: x\n", "YAML reads '1' as a number"),
        ("? [a]\n: 1\n", "got a list"),
    ],
)
def test_keys_must_be_strings(text: str, fragment: str) -> None:
    error = spec_error(text)
    assert fragment in error.message and error.line == 1


def test_yaml_11_octal_and_exponent_floats() -> None:
    error = spec_error(MINIMAL.replace("input: 3", "input: 010"))
    assert "leading zero" in error.message and (error.line, error.column) == (1, 8)
    assert parse_arch(MINIMAL + "l2: 1e-3\n").l2 == 0.001


# --- YAML merge keys ------------------------------------------------------------------------

HIDDEN = "input: 2\nlayers:\n  - &h {units: 4, activation: tanh}\n%s  - {units: 1}\nloss: mse\n"
TWO = "input: 2\nlayers:\n  - &a {units: 4, activation: tanh}\n  - &b {units: 5, bias: false}\n%s"


def merged_layer(text: str, index: int = 1) -> Layer:
    """Layer `index` of a document that merges mappings."""
    return parse_arch(text).layers[index]


@pytest.mark.parametrize(
    "text",
    [
        "a: &a {x: 1, y: 2}\nb: {<<: *a}\n",
        "a: &a {x: 1, y: 2}\nb: {<<: *a, y: 3}\n",
        "a: &a {x: 1, y: 2}\nb: {y: 3, <<: *a, z: 4}\n",
        "a: &a {x: 1}\nb: &b {x: 2, y: 2}\nc: {<<: [*a, *b]}\nd: {<<: [*b, *a]}\n",
        "a: &a {x: 1}\nb: &b {<<: *a, y: 2}\nc: {<<: *b, z: 3}\n",
        "a: {<<: {x: 1, y: [1, 2]}, y: 3}\n",
        "a: &a {x: {p: 1}}\nb:\n  <<: *a\n  w: 0\n",
        "a: &a {x: 1}\nb: {'<<': 1, x: 2}\n",
    ],
)
def test_merge_keys_read_as_pyyaml_reads_them(text: str) -> None:
    assert load_document(text.encode(), "a.yaml").value == yaml.safe_load(text)


def test_merge_key_copies_an_anchored_mapping() -> None:
    layer = merged_layer(HIDDEN % "  - <<: *h\n")
    assert (layer.units, layer.activation) == (4, "tanh")


def test_merge_key_list_earlier_mappings_win() -> None:
    layer = merged_layer(TWO % "  - <<: [*a, *b]\n  - {units: 1}\nloss: mse\n", 2)
    assert (layer.units, layer.activation, layer.bias) == (4, "tanh", False)
    layer = merged_layer(TWO % "  - <<: [*b, *a]\n  - {units: 1}\nloss: mse\n", 2)
    assert (layer.units, layer.activation, layer.bias) == (5, "tanh", False)


@pytest.mark.parametrize("entry", ["  - <<: *h\n    units: 7\n", "  - units: 7\n    <<: *h\n"])
def test_explicit_keys_override_merged_ones(entry: str) -> None:
    arch = parse_arch(HIDDEN % entry)
    assert (arch.layers[1].units, arch.layers[1].activation) == (7, "tanh")
    assert arch.mark("layers[1].units") == (5 if entry.startswith("  - <<") else 4, 12)
    assert arch.mark("layers[1].activation") == (3, 31), "the anchored value's own place"


def test_duplicate_explicit_keys_beside_a_merge_are_still_refused() -> None:
    error = spec_error(HIDDEN % "  - {<<: *h, units: 2, units: 3}\n")
    assert "duplicate key 'units' (first defined on line 4)" in error.message
    assert where(error) == (4, 24, "layers[1].units")


@pytest.mark.parametrize(
    ("entry", "fragment", "position"),
    [
        ("  - {<<: *h}\n", "the name 'block' is used by an earlier layer", (3, 43)),
        ("  - {type: add, from: input, <<: *h}\n", "it takes no units", (3, 9)),
    ],
)
def test_an_error_in_merged_content_points_at_its_definition(
    entry: str, fragment: str, position: tuple[int, int]
) -> None:
    text = HIDDEN.replace("activation: tanh}", "activation: tanh, name: block}") % entry
    error = spec_error(text)
    assert fragment in error.message
    assert (error.line, error.column) == position and error.path is not None
    assert error.path.startswith("layers[1].")


@pytest.mark.parametrize(
    ("entry", "got", "position"),
    [
        ("  - &l [1, 2]\n  - <<: *l\n", "got the value '1' inside the list", (4, 9)),
        ("  - <<: 3\n", "got the value '3'", (4, 9)),
        ("  - <<: [*h, tanh]\n", "got the value 'tanh' inside the list", (4, 14)),
        ("  - <<: [[*h]]\n", "got a list inside the list", (4, 10)),
    ],
)
def test_merging_what_is_not_a_mapping_is_refused(
    entry: str, got: str, position: tuple[int, int]
) -> None:
    error = spec_error(HIDDEN % entry)
    assert f"the merge key '<<' takes a mapping or a list of mappings, {got}" in error.message
    assert (error.line, error.column) == position and error.fix is not None


def test_a_second_merge_key_in_one_mapping_is_refused() -> None:
    error = spec_error(HIDDEN % "  - <<: *h\n    <<: *h\n")
    assert "a second merge key '<<'" in error.message and (error.line, error.column) == (5, 5)
    assert error.fix is not None and "<<: [*a, *b]" in error.fix


def test_merge_bombs_are_refused_hang_guard() -> None:
    big = "big: &big {" + ", ".join(f"k{i}: 0" for i in range(1000)) + "}\n"
    error = hang_guard(lambda: spec_error(big + "m: [" + "{<<: *big}, " * 100 + "]\n"))
    assert "copy more than" in error.message
    lines = ["a: &a {v: [lol, lol, lol, lol, lol, lol, lol, lol, lol]}"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} {{<<: *{prev}, w: [" + ", ".join([f"*{prev}"] * 9) + "]}")
    error = hang_guard(lambda: spec_error("\n".join(lines) + "\n"))
    assert "expands to more than" in error.message


# --- errors: schema -----------------------------------------------------------------------


def test_unknown_top_level_key_with_did_you_mean() -> None:
    error = spec_error(MINIMAL + "layer: []\n")
    assert "unknown key 'layer'" in error.message and "did you mean 'layers'?" in error.message
    assert error.fix is not None and "input, layers, loss" in error.fix
    assert where(error) == (6, 1, "layer")


def test_unknown_layer_key_with_did_you_mean() -> None:
    error = spec_error(layers_doc("relu").replace("units:", "unit:"))
    assert "did you mean 'units'?" in error.message
    assert where(error) == (3, 5, "layers[0].unit")


def test_missing_required_keys() -> None:
    error = spec_error("input: 2\n")
    assert "missing the required keys 'layers', 'loss'" in error.message
    assert error.line == 1 and error.fix == "add layers, loss"


def test_layer_without_activation_is_identity_and_dense_needs_units() -> None:
    # Schema v2: the activation defaults to identity; a dense layer still needs units.
    arch = parse_arch("input: 2\nlayers:\n  - units: 3\nloss: mse\n")
    assert arch.layers[0].activation == "identity" and arch.layers[0].type == "dense"
    error = spec_error("input: 2\nlayers:\n  - activation: tanh\nloss: mse\n")
    assert "missing the required key 'units'" in error.message
    assert where(error) == (3, 5, "layers[0]")


@pytest.mark.parametrize(
    ("value", "fragment", "fix"),
    [
        ("true", "got a boolean (true)", "write a whole number such as 1"),
        ("4.0", "got the number 4.0", "write 4"),
        ("4.5", "got the number 4.5", "write a whole number such as 1"),
        ('"4"', "got the string '4'", "remove the quotes: 4"),
        ("0", "must be between 1 and 1,000,000, got 0", "use a value from 1 to 1,000,000"),
        ("1000001", "got 1,000,001", "use a value from 1 to 1,000,000"),
        ("[4]", "got a list", "write a whole number such as 1"),
        ("", "got nothing (null)", "write a whole number such as 1"),
    ],
)
def test_units_must_be_a_positive_int(value: str, fragment: str, fix: str) -> None:
    error = spec_error(layers_doc("relu").replace("units: 3", f"units: {value}"))
    assert fragment in error.message and error.fix == fix
    assert error.path == "layers[0].units" and error.line == 3


def test_input_must_be_a_positive_int() -> None:
    error = spec_error(MINIMAL.replace("input: 3", "input: -1"))
    assert where(error) == (1, 8, "input") and "got -1" in error.message


@pytest.mark.parametrize(
    ("value", "fragment"),
    [("[]", "layers must not be empty"), ("relu", "layers must be a list"), ("", "a list")],
)
def test_layers_must_be_a_non_empty_list(value: str, fragment: str) -> None:
    error = spec_error(f"input: 2\nlayers: {value}\nloss: mse\n")
    assert fragment in error.message and error.path == "layers" and error.line == 2


def test_layer_entries_must_be_mappings() -> None:
    error = spec_error("input: 2\nlayers:\n  - relu\nloss: mse\n")
    assert "layer 0 must be a mapping" in error.message and where(error) == (3, 5, "layers[0]")


def test_too_many_layers() -> None:
    layers = [{"units": 1, "activation": "relu"}] * 10_001
    with pytest.raises(SpecError, match="too many layers"):
        arch_from_mapping({"input": 1, "layers": layers, "loss": "mse"})
    arch = arch_from_mapping({"input": 1, "layers": layers[:10_000], "loss": "mse"})
    assert len(arch.layers) == 10_000


def test_parameter_limit_names_the_count() -> None:
    error = spec_error("input: 100000\nlayers:\n  - {units: 100000, activation: relu}\nloss: mse\n")
    assert "10,000,100,000 parameters" in error.message and "2,000,000,000" in error.message
    assert where(error) == (3, 3, "layers")


def test_unknown_activation_with_did_you_mean() -> None:
    error = spec_error(layers_doc("relu", "sigmod"))
    assert "unknown activation 'sigmod' (did you mean 'sigmoid'?)" in error.message
    assert error.fix is not None and "leaky_relu" in error.fix and "silu" in error.fix
    assert where(error) == (6, 17, "layers[1].activation")


def test_softmax_on_hidden_layers_but_not_on_one_unit_or_an_image() -> None:
    assert parse_arch(layers_doc("softmax", "relu", "softmax")).layers[0].activation == "softmax"
    error = spec_error("input: 2\nlayers:\n  - {units: 1, activation: softmax}\nloss: mse\n")
    assert "single entry is the constant 1" in error.message
    assert error.fix is not None and "2 or more units" in error.fix
    assert where(error) == (3, 28, "layers[0].activation")
    error = spec_error(
        "layout: row\ninput: [1, 4, 4]\nlayers:\n"
        "  - {type: conv2d, filters: 2, kernel: 3, activation: softmax}\n"
        "  - {type: flatten}\n  - {units: 2}\nloss: mse\n"
    )
    assert "outputs the image [2, 2, 2]" in error.message and "flatten" in error.fix


def test_activation_must_be_a_string() -> None:
    error = spec_error(layers_doc("3"))
    assert "activation must be a string, got the number 3" in error.message


# --- errors: custom activations and expressions -------------------------------------------


def with_activations(block: str, use: str = "relu") -> str:
    """A document using activation `use` with the given `activations:` block."""
    return layers_doc(use) + "activations:\n" + block


@pytest.mark.parametrize(
    ("block", "fragment", "position"),
    [
        ("  relu: x\n", "'relu' is already a built-in activation", (7, 3)),
        ("  linear: x\n", "'linear' is already a built-in activation", (7, 3)),
        ("  my-act: x\n", "'my-act' has '-'", (7, 3)),
        ("  class: x\n", "'class' is a Python keyword", (7, 3)),
        ("  twice: 2\n", "expression string in x, got the number 2", (7, 10)),
        ("  - x\n", "activations must be a mapping", (7, 3)),
    ],
)
def test_custom_activation_names(block: str, fragment: str, position: tuple[int, int]) -> None:
    error = spec_error(with_activations(block))
    assert fragment in error.message and (error.line, error.column) == position


def test_invalid_custom_expression_is_located() -> None:
    error = spec_error(with_activations('  mish: "x*tanh(softplus(x)).real"\n', "mish"))
    assert isinstance(error, ExpressionError)
    assert where(error) == (7, 9, "activations.mish")
    assert "attribute access is not allowed" in error.message
    assert error.fix is not None and "the variables x" in error.fix
    assert str(error).startswith("error: arch.yaml:7:9: activations.mish: attribute access")


def test_custom_expression_uses_only_x() -> None:
    error = spec_error(with_activations("  f: y*x\n", "f"))
    assert "unknown name 'y'" in error.message and error.path == "activations.f"


def test_custom_activation_used_but_not_defined() -> None:
    error = spec_error(layers_doc("mish"))
    assert "unknown activation 'mish'" in error.message


def test_too_many_custom_activations() -> None:
    block = "".join(f"  act{i}: x\n" for i in range(17))
    assert (
        "too many custom activations (17, at most 16)"
        in spec_error(with_activations(block)).message
    )


def test_hostile_expression_in_file_is_refused_hang_guard() -> None:
    error = hang_guard(lambda: spec_error(with_activations('  f: "9**9**9**9"\n', "f")))
    assert isinstance(error, ExpressionError) and error.path == "activations.f"


def test_costly_expressions_are_refused_hang_guard() -> None:
    heavy = "cos(tanh(tan(3/(K.5 - 2*x + x**(-15/16)))))"
    block = "".join(f'  a{i}: "{heavy.replace("K", str(10 + i))}"\n' for i in range(16))
    error = hang_guard(lambda: spec_error(with_activations(block, "a0")))
    assert isinstance(error, ExpressionError) and "SymPy needs too much work" in error.message
    # The budget is SymPy's time: on a loaded machine the first one may pass and a later
    # one be refused. Whichever it is, the error points at its own line.
    line, column, path = where(error)
    index = int(str(path).removeprefix("activations.a"))
    assert (line, column) == (7 + index, 7) and 0 <= index < 16


# --- errors: loss, enums, l2, name --------------------------------------------------------


def test_unknown_loss_with_did_you_mean() -> None:
    error = spec_error(MINIMAL.replace("loss: mse", "loss: mes"))
    assert "unknown loss 'mes' (did you mean 'mse'?)" in error.message
    assert where(error) == (5, 7, "loss")


def test_loss_expression_written_as_a_plain_string() -> None:
    error = spec_error(MINIMAL.replace("loss: mse", "loss: (yhat - y)**2"))
    assert error.fix == 'for a custom loss write  loss: {expr: "(yhat - y)**2"}'


def test_loss_mapping_must_have_exactly_expr() -> None:
    error = spec_error(MINIMAL.replace("loss: mse", "loss: {exp: '(yhat-y)**2'}"))
    assert "did you mean 'expr'?" in error.message and where(error) == (5, 8, "loss.exp")
    error = spec_error(MINIMAL.replace("loss: mse", "loss: {expr: 2}"))
    assert "must be a string" in error.message


def test_invalid_loss_expression_is_located() -> None:
    error = spec_error(MINIMAL.replace("loss: mse", "loss:\n  expr: (yhat - y)**x"))
    assert isinstance(error, ExpressionError)
    assert where(error) == (6, 9, "loss.expr") and "must be a constant number" in error.message


@pytest.mark.parametrize(
    ("key", "value", "suggestion"),
    [("layout", "rows", "row"), ("dtype", "float63", "float64"), ("reduction", "men", "mean")],
)
def test_enums_with_did_you_mean(key: str, value: str, suggestion: str) -> None:
    error = spec_error(MINIMAL + f"{key}: {value}\n")
    assert f"unknown {key} '{value}' (did you mean '{suggestion}'?)" in error.message
    assert where(error) == (6, len(key) + 3, key)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("-0.1", "finite number >= 0"),
        (".inf", "finite number >= 0"),
        (".nan", "finite number >= 0"),
        ("true", "l2 must be a number, got a boolean"),
        ('"0.1"', "l2 must be a number, got the string '0.1'"),
    ],
)
def test_l2_must_be_a_finite_non_negative_number(value: str, fragment: str) -> None:
    error = spec_error(MINIMAL + f"l2: {value}\n")
    assert fragment in error.message and where(error) == (6, 5, "l2")


def test_l2_accepts_ints() -> None:
    assert parse_arch(MINIMAL + "l2: 1\n").l2 == 1.0


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("../evil", "must not contain '/'"),
        ("'a\\\\b'", "must not contain '/' or '\\'"),
        ("my net", "'my net' has ' '"),
        ("class", "'class' is a Python keyword"),
        ("résumé", "'résumé' has 'é', which is not ASCII"),
        ("9lives", "'9lives' starts with a digit"),
        ("a" * 65, "has 65 characters"),
        ("3", "name must be a string"),
    ],
)
def test_invalid_names(value: str, fragment: str) -> None:
    error = spec_error(f"name: {value}\n" + MINIMAL)
    assert fragment in error.message and where(error) == (1, 7, "name")


IDENTIFIER_RULE = (
    "must be an identifier: ASCII letters, digits and '_', not starting with a digit, "
    "not a Python keyword, at most 64 characters"
)


@pytest.mark.parametrize(
    ("text", "what", "place"),
    [
        ("name: σχ\n" + MINIMAL, "name", (1, 7)),
        (layers_doc("tanh").replace("units: 3", "units: 3\n    name: σχ"), "a layer name", (4, 11)),
        (with_activations("  σχ: x\n", "σχ"), "a custom activation name", (7, 3)),
    ],
    ids=["network", "layer", "activation"],
)
def test_a_non_ascii_name_is_refused_with_the_rule(
    text: str, what: str, place: tuple[int, int]
) -> None:
    error = spec_error(text)
    assert error.message == f"{what} {IDENTIFIER_RULE}; 'σχ' has 'σ', which is not ASCII"
    assert (error.line, error.column) == place and error.fix is not None


def test_a_layer_name_is_refused_with_what_breaks_the_rule() -> None:
    doc = layers_doc("tanh").replace("units: 3", "units: 3\n    name: %s")
    error = spec_error(doc % "class")
    assert error.message == f"a layer name {IDENTIFIER_RULE}; 'class' is a Python keyword"
    assert error.fix == "rename it, e.g. 'class_'" and where(error) == (4, 11, "layers[0].name")
    error = spec_error(doc % "2nd")
    assert error.message.endswith("; '2nd' starts with a digit")
    error = spec_error(doc % "3")
    assert error.message == "a layer name must be a string, got the number 3"


# --- property -----------------------------------------------------------------------------


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_random_text_raises_only_spec_error(text: str) -> None:
    def read() -> None:
        try:
            parse_arch(text)
        except SpecError:
            pass

    hang_guard(read)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_spec_error(data: bytes) -> None:
    try:
        parse_arch(data)
    except SpecError:
        pass


# ------------------------------------------------------------------ graphs (schema v2)

GRAPH_BASE = (
    "input: 2\nlayers:\n  - {units: 3, activation: tanh, name: h}\n%s  - {units: 1}\nloss: mse\n"
)


@pytest.mark.parametrize(
    ("middle", "path", "message", "fix"),
    [
        (
            "  - {type: add, from: nowhere}\n",
            "layers[1].from",
            "from names no earlier layer: 'nowhere'",
            "known: input, h",
        ),
        (
            "  - {type: add, from: later}\n  - {units: 3, name: later}\n",
            "layers[1].from",
            "from names layer 2 ('later'), which is not computed before this one",
            "move it",
        ),
        (
            "  - {type: add, from: me, name: me}\n",
            "layers[1].from",
            "which is not computed before this one",
            "name an earlier layer",
        ),
        (
            "  - {units: 3, name: h}\n",
            "layers[1].name",
            "'h' is used by an earlier layer",
            "unique",
        ),
        ("  - {units: 3, name: input}\n", "layers[1].name", "'input' is reserved", "another"),
        (
            "  - {units: 4}\n  - {type: add, from: h}\n",
            "layers[2].from",
            "shape mismatch at add: the previous layer gives (4,), 'h' gives (3,)",
            "dense layer of that size",
        ),
        (
            "  - {type: addd, from: h}\n",
            "layers[1].type",
            "unknown layer type 'addd' (did you mean 'add'?)",
            "dense, add, layernorm, batchnorm",
        ),
        (
            "  - {type: layernorm, units: 3}\n",
            "layers[1].units",
            "a layernorm layer keeps the size of its input (3); it takes no units",
            "remove units",
        ),
        (
            "  - {type: batchnorm, bias: false}\n",
            "layers[1].bias",
            "unknown key 'bias' in layer 1 (batchnorm)",
            "type, name, activation, eps",
        ),
        ("  - {units: 3, eps: 0.1}\n", "layers[1].eps", "unknown key 'eps'", "units, bias"),
        ("  - {type: batchnorm, eps: 0}\n", "layers[1].eps", "finite number > 0, got 0", "1e-5"),
        ("  - {type: layernorm, eps: -1e-3}\n", "layers[1].eps", "got -0.001", "1e-5"),
        ("  - {type: layernorm, eps: .nan}\n", "layers[1].eps", "got nan", "1e-5"),
        ("  - {type: layernorm, eps: yes}\n", "layers[1].eps", "eps must be a number", "1e-5"),
        ("  - {type: add}\n", "layers[1]", "missing the required key 'from'", "add from"),
        ("  - {type: add, from: 3}\n", "layers[1].from", "got the number 3", "earlier layer"),
        ("  - {units: 3, bias: 1}\n", "layers[1].bias", "bias must be true or false", "false"),
    ],
)
def test_graph_errors_name_the_place_and_the_fix(
    middle: str, path: str, message: str, fix: str
) -> None:
    error = spec_error(GRAPH_BASE % middle)
    assert error.path == path
    assert message in error.message
    assert error.fix is not None and fix in error.fix
    assert error.line is not None and error.line >= 4


def test_a_graph_file_is_read_into_kinds() -> None:
    arch = parse_arch(
        GRAPH_BASE % "  - {type: layernorm, activation: relu}\n  - {units: 3, bias: false}\n"
        "  - {type: add, from: h}\n  - {type: batchnorm, eps: 0.001}\n",
        "g.yaml",
    )
    kinds = [(layer.type, layer.units, layer.bias, layer.source) for layer in arch.layers]
    assert kinds == [
        ("dense", 3, True, None),
        ("layernorm", 3, True, None),
        ("dense", 3, False, None),
        ("add", 3, True, "h"),
        ("batchnorm", 3, True, None),
        ("dense", 1, True, None),
    ]
    assert arch.layers[4].eps == 0.001 and arch.layers[1].eps == 1e-5
    assert arch.layer_index["h"] == 1
