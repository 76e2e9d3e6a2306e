"""What the benches share: running commands, servers, wrk, MLflow's scoring server.

A bench is run as a script (``python bench/serving.py``), so ``bench/`` is first on sys.path and
these modules import as ``lib.*``. The programs a bench starts as child processes are files in
``bench/programs/``.
"""
