"""Checks that may read every stage: verify (against sympy.diff of the scalar loss), the reference
network, gradcheck."""
