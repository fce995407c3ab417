"""The NumPy backend: its runtime helpers (runtime.py) and the copying of the ones a module
uses into the generated file (inline.py)."""
