"""Executors that run a run's cells somewhere other than this machine, each with the contract
of ``harness.runner.run_cells``: ``ray`` (a Ray cluster; needs ``pip install
'framebench[ray]'``). Importing this package imports no executor."""
