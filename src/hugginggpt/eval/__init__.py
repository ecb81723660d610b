"""Measuring the pipeline: planning quality on TaskBench, and latency benchmarks."""
