"""Stage 2, the intermediate representation: the graph of tensors and layer nodes, the arrays'
bindings, the reduction and image nodes of whole-array expressions, equation numbers."""
