"""Stage 3, the symbolic calculus: activations and their derivatives, stable forms and the checks
every rewrite passes, the index-notation calculus, the output error."""
