"""arcmirror's benchmark harness: arcmirror against skopeo, docker and the target's own floor.

Run it with ``python -m benchmarks.bench --help`` (or ``invoke bench``); from Python call
:func:`benchmarks.bench.run_benchmark`. Timing never runs in the test suite: the only test
(``tests/test_bench.py``) runs the harness at a tiny scale to prove it works end to end.

Modules, one job each (imports go one way, from the runner down to measure):

* :mod:`benchmarks.bench`     -- the runner: ``main`` (argparse), ``run_benchmark``, the run loop.
* :mod:`benchmarks.report`    -- the Markdown and text tables, the machine's description,
                                 ``docs/benchmarks.md``.
* :mod:`benchmarks.tools`     -- the peer tools and how each one is run.
* :mod:`benchmarks.scenarios` -- the synthetic releases, the source registries, each scenario's cases.
* :mod:`benchmarks.wan`       -- the WAN scenario's latency relays and its latency floor model.
* :mod:`benchmarks.measure`   -- timing a command, peak memory of a process tree, CPU, request
                                 counts, medians.

The harness imports only the test bed (``testbed/``); arcmirror runs as a subprocess.
"""
