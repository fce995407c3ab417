"""symbp's benchmark harness: generated code against a GEMM floor, textbook NumPy and frameworks.

Run it as a script (`python bench/run.py --quick`); see bench/README.md.
"""
