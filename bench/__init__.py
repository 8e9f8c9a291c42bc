"""procwire's benchmark suite: every workload of issue 3 against procwire and websocketd.

Run ``python -m bench`` (``--quick`` for a short run, ``--help`` for the knobs)
or ``make bench``.
"""
