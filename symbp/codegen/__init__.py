"""Stage 5, code generation: the program IR (statements built from the derivation's SymPy
equations, with common subexpressions and buffer placement), before any backend prints it."""
