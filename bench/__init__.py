"""Benchmark harness: ocync against skopeo and the theoretical minimum (`python -m bench`)."""
