"""The compiled parts, both optional: where no C compiler is at hand the install still succeeds.

- webapp/datasets/_csvscan.c: Cupola's CSV fast path (without it ingestion reads CSV files with
  pyarrow).
- trainer/_cpukernels.c: the engine's fused CPU kernels (without them the NumPy path runs the same
  operations as ufuncs). No fused multiply-adds, so their sums are NumPy's.

Everything else is declared in pyproject.toml.
"""

from setuptools import Extension, setup

FLAGS = ["-O3", "-fno-fast-math", "-ffp-contract=off", "-std=c11"]

setup(ext_modules=[
    Extension("webapp.datasets._csvscan", ["webapp/datasets/_csvscan.c"], optional=True, extra_compile_args=FLAGS),
    # No errno from sqrt (the kernels never read it): GCC then vectorises it.
    Extension("trainer._cpukernels", ["trainer/_cpukernels.c"], optional=True,
              extra_compile_args=[*FLAGS, "-fno-math-errno"]),
])
