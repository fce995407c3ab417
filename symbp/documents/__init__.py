"""The documents (LaTeX and Markdown), from the IR, the symbolic calculus and the derivation."""
