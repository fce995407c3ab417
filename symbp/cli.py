"""The symbp command: a thin layer that parses arguments, calls the library and sets exit codes.

Exit status: 0 success, 1 check failed (gradcheck, generate --check), 2 invalid input
or refused write, 3 internal error.
"""

from __future__ import annotations

import argparse
import difflib
import math
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from symbp.errors import SymbpError
from symbp.ir.labels import SECTION_LEVELS
from symbp.options import MODULE_SUFFIX, STYLES, TARGETS, TRANSPOSES
from symbp.version import __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="symbp",
        description="Derive backpropagation with SymPy; generate NumPy and LaTeX.",
    )
    parser.add_argument("--version", action="version", version=f"symbp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    gen = sub.add_parser("generate", help="write <name>.py and <name>.tex for an architecture file")
    gen.add_argument("arch", nargs="+", help="architecture file(s) (arch.yaml)")
    gen.add_argument("-o", "--out", default="generated", help="output folder (default: generated/)")
    gen.add_argument("--force", action="store_true", help="overwrite files symbp did not write")
    gen.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 with a diff if outputs are stale",
    )
    gen.add_argument("--timings", action="store_true", help="print the time of each stage")
    gen.add_argument(
        "--target",
        action="append",
        choices=TARGETS,
        default=None,
        help="the module to write (repeat for both): numpy (default) writes <name>.py, NumPy "
        "alone; array-api writes <name>_xp.py, the same functions for PyTorch, JAX, CuPy "
        "or NumPy arrays (row layout). With --check and no --target: every module present",
    )
    gen.add_argument(
        "--body", action="store_true", help="also write <name>_body.tex to \\input into a paper"
    )
    gen.add_argument(
        "--section-level",
        choices=SECTION_LEVELS,
        default=None,
        help="the body's top headings (with --body): subsection (default: the network is one "
        "section of a paper, e.g. an appendix, which the paper's \\section opens) or section",
    )
    gen.add_argument(
        "--layers",
        action="store_true",
        help="add the layer-by-layer appendix to the documents: every layer's equations "
        "specialised, numbered after the equations the code cites (which do not move)",
    )
    gen.add_argument(
        "--style",
        choices=STYLES,
        default="full",
        help="full (default): the whole document; paper: the mathematics alone, without the "
        "narration about SymPy, storage and overflow and without the cost section",
    )
    gen.add_argument(
        "--bold",
        action="store_true",
        help="write vectors and matrices in bold in the documents "
        "(\\mathbf{W}, \\boldsymbol{\\delta})",
    )
    gen.add_argument(
        "--transpose",
        choices=tuple(TRANSPOSES),
        default="T",
        help="the transpose symbol of the documents: T (default, \\mathsf{T}), top (\\top) or "
        "intercal (\\intercal)",
    )
    gen.add_argument("--pdf", action="store_true", help="also compile <name>.pdf with pdflatex")
    gen.add_argument(
        "--with-tests", action="store_true", help="also write test_<name>.py (numpy + pytest only)"
    )
    sub.add_parser("schema", help="print the JSON Schema of arch.yaml (for editors)")
    from symbp.check import verify

    verify.add_parser(sub)
    chk = sub.add_parser("gradcheck", help="check generated gradients by finite differences")
    chk.add_argument("arch", help="the architecture file (arch.yaml)")
    chk.add_argument("--seed", type=int, default=0, help="random seed for data and parameters")
    return parser


def _stale(files: dict[str, str], out: Path) -> list[str]:
    """Unified diffs between what would be written and what is on disk."""
    diffs = []
    for name, text in files.items():
        target = out / name
        old = target.read_text(encoding="utf-8") if target.exists() else ""
        if old != text:
            diffs.append(
                "".join(
                    difflib.unified_diff(
                        old.splitlines(keepends=True),
                        text.splitlines(keepends=True),
                        fromfile=str(target),
                        tofile=f"{target} (regenerated)",
                    )
                )
                or f"{target}: missing\n"
            )
    return diffs


def _generate(args: argparse.Namespace) -> int:
    """Generate every file given; with --check, compare instead of writing."""
    from symbp.frontend.spec import load_arch
    from symbp.pipeline import check_targets, generate, output_names

    out = Path(args.out)
    if args.section_level is not None and not args.body:
        _parser().error("--section-level sets the headings of the body: add --body")
    # Refusals that need no derivation come first: a bad file, a file in the way.
    archs = [load_arch(a) for a in args.arch]
    targets = {arch.name: _targets(args, arch.name, out) for arch in archs}
    if not args.check:
        for arch in archs:
            names = output_names(arch, args.body, args.with_tests, targets[arch.name])
            check_targets(names, out, args.force)
    # Derive and render everything first: an invalid file means nothing is written.
    progress = _progress if sys.stderr.isatty() else None
    level = args.section_level or "subsection"
    from symbp.documents.latex import Notation

    notation = Notation(bold=args.bold, transpose=args.transpose)
    results = [
        generate(
            a,
            body_only=args.body,
            with_tests=args.with_tests,
            progress=progress,
            section_level=level,
            layers=args.layers,
            style=args.style,
            notation=notation,
            targets=targets[a.name],
        )
        for a in archs
    ]
    if progress:
        print(file=sys.stderr)
    if args.timings:
        for result in results:
            for stage, seconds in result.timings.items():
                print(f"{result.arch.name}: {stage:>8} {seconds * 1000:8.1f} ms", file=sys.stderr)
    if args.check:
        return _check(results, out)
    return _write(results, out, args)


def _targets(args: argparse.Namespace, name: str, out: Path) -> tuple[str, ...]:
    """The modules to generate: those asked for (in TARGETS' order); with --check and none
    asked for, the NumPy module and every other one the folder holds."""
    if args.target:
        return tuple(t for t in TARGETS if t in args.target)
    if args.check:
        present = [t for t in TARGETS if (out / f"{name}{MODULE_SUFFIX[t]}.py").exists()]
        return tuple(dict.fromkeys(["numpy", *present]))
    return ("numpy",)


def _progress(message: str) -> None:
    """One status line on a terminal, rewritten in place."""
    print(f"\rsymbp: {message:<70}", end="", file=sys.stderr, flush=True)


def _check(results: list, out: Path) -> int:
    diffs = [diff for result in results for diff in _stale(result.files, out)]
    for diff in diffs:
        sys.stdout.write(diff)
    if diffs:
        print(f"symbp: {len(diffs)} output(s) in {out} are stale", file=sys.stderr)
        return 1
    print(f"symbp: outputs in {out} are up to date", file=sys.stderr)
    return 0


def _write(results: list, out: Path, args: argparse.Namespace) -> int:
    from symbp.pipeline import write_files

    for result in results:
        for path in write_files(result.files, out, force=args.force):
            print(f"wrote {path}")
        if args.pdf:
            from symbp.pdf import compile_pdf

            print(f"wrote {compile_pdf(out / f'{result.arch.name}.tex')}")
    return 0


def _gradcheck(args: argparse.Namespace) -> int:
    from symbp.check.gradcheck import TOLERANCE, format_table, gradcheck
    from symbp.frontend.spec import load_arch

    with warnings.catch_warnings():
        # NaN from a loss undefined at the test point is reported below, once.
        warnings.simplefilter("ignore", RuntimeWarning)
        rows, taylor, workspace = gradcheck(load_arch(args.arch), seed=args.seed)
    print(format_table(rows))
    if not all(math.isfinite(r.max_abs) for r in rows):
        print(
            "FAILED: the loss or its gradient is not finite at the random test point. The loss "
            "may be undefined for outputs this network produces (log(yhat) after an identity "
            "or tanh output, say), or an activation for some inputs (x**(1/3) for x < 0): "
            "choose activations whose ranges suit the loss and the next layer."
        )
        return 1
    print(
        f"Taylor test along a random direction: first-order remainder slope {taylor.first:.2f} "
        f"(expect ~2), with the hvp term {taylor.second:.2f} (expect ~3)"
        + (" [at rounding level: the loss is flat here]" if taylor.flat else "")
        + (" [second remainder at rounding level]" if taylor.floor and not taylor.flat else "")
        + (
            f" [v.Hv against central differences of g.v: relative error {taylor.hvp_error:.1e}]"
            if taylor.hvp_error is not None
            else ""
        )
        + (
            f" [steps from {taylor.largest_step:g}: the larger ones did not fit, as across a kink]"
            if taylor.largest_step != 0.05
            else ""
        )
    )
    print(
        "make_workspace: "
        + ("; ".join(workspace) if workspace else "same loss and gradients, bit for bit")
    )
    failed = [r.name for r in rows if not r.ok] + (["workspace"] if workspace else [])
    if failed or not taylor.ok:
        print(f"FAILED: {', '.join(failed) or 'Taylor slopes'} (tolerance {TOLERANCE:g})")
        return 1
    print(f"all {len(rows)} gradients match central differences (tolerance {TOLERANCE:g})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `symbp` console script."""
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return 2
    try:
        if args.command == "generate":
            return _generate(args)
        if args.command == "verify":
            from symbp.check import verify

            return verify.run(args)
        if args.command == "schema":
            from symbp.frontend.schema import schema_json

            sys.stdout.write(schema_json())
            return 0
        return _gradcheck(args)
    except SymbpError as exc:
        print(exc.format(), file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("symbp: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: no traceback
        print(
            f"symbp: internal error ({type(exc).__name__}: {exc}); "
            "please report it with the input file",
            file=sys.stderr,
        )
        return 3


if __name__ == "__main__":
    sys.exit(main())
