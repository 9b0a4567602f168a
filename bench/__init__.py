"""Benchmarks on the local test bed; `python -m bench` (or `make bench`) runs them all."""
