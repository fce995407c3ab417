"""The array-API backend: the module's functions written against the Python array API
standard, for the caller's NumPy, PyTorch, JAX or CuPy arrays."""
