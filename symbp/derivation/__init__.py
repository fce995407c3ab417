"""Stage 4, the derivation over the network: every node's forward, backward, tangent and R-operator
equations, one module per layer kind (kinds/)."""
