"""The framework-neutral model core: layers (one class per layer type), their composition,
and the workloads built from them. Imports no framework."""
