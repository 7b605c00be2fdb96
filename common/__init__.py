"""What every package of scs-sweep uses: the user errors, the defaults, the vocabulary, the trial config,
the end-of-trial evaluation's settings, and where runs, the store and data live (a folder or a URI).

Plain Python: nothing here imports torch or ray (locations.py imports pyarrow, its only dependency), so the
read commands, the plan and the store use it without the training core, and the training core uses it
without the rest of the project. It imports nothing of the project's other packages.
"""
