"""arcmirror's benchmark harness: arcmirror against skopeo, docker and the target's own floor.

Run it with ``python -m benchmarks.bench --help`` (or ``invoke bench``); from Python call
:func:`benchmarks.bench.run_benchmark`. Timing never runs in the test suite: the only test
(``tests/test_bench.py``) runs the harness at a tiny scale to prove it works end to end.
"""
