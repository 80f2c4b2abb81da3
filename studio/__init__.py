"""GAN Art Studio: train a small GAN on your own paintings."""
import os

# Before torch (and its OpenMP) loads: idle OpenMP threads sleep instead of spinning. On a
# laptop something else always wants a core (a browser, this studio's own web server), and
# spinning threads take it from the one with work to do: on 2 cores, one other busy process
# made training steps many times slower with spinning threads, hardly at all with sleeping ones
# (benchmarks/thread_contention.py, README "Speed"). A value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
