"""One of N processes predicting at once: reads (model, frame, seconds) pickled on stdin, prints calls/s.

Started by bench/serving.py (parallel_in_process) with its BLAS/OpenMP threads pinned to one.
"""

import pickle
import sys
import time

model, frame, seconds = pickle.load(sys.stdin.buffer)
for _ in range(20):
    model.predict_proba(frame)
calls, start = 0, time.perf_counter()
while time.perf_counter() - start < seconds:
    model.predict_proba(frame)
    calls += 1
print(calls / (time.perf_counter() - start))
