"""The one compiled part: Cupola's CSV fast path (webapp/datasets/_csvscan.c).

Everything else is declared in pyproject.toml. The extension is optional: where no C compiler
is at hand the install still succeeds, and ingestion reads CSV files with pyarrow instead.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("webapp.datasets._csvscan", ["webapp/datasets/_csvscan.c"], optional=True,
                             extra_compile_args=["-O3", "-fno-fast-math", "-std=c11"])])
