"""Local stand-ins for external services (Evolution API, ...) used by e2e tests and benchmarks."""
