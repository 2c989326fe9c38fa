"""Training kit for LineRelifer: data synthesis, preparation, metrics and evaluation."""
