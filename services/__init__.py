"""The four services. Each is a thin shell around payments_core; they never import each other."""
