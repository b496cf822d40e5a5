"""Benchmarks of the receiver, the fold, the whole pipeline and the read queries.

``python -m bench [--quick]`` starts what it needs, measures
every figure next to a baseline taken in the same run, prints a table and writes the raw
figures to ``bench/results/``.
"""
