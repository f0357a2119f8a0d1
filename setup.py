"""Builds the Cython hot path (ext/) into sensor._core.

All stages (source, decode, flow, stream, http1) are included into one
translation unit so the C compiler can inline across stage boundaries;
cross-module cimports would turn every per-packet call into an indirect one.
"""
from Cython.Build import cythonize
from setuptools import Extension, setup

ext = Extension(
    "sensor._core",
    ["ext/core.pyx"],
    include_dirs=["ext"],
    extra_compile_args=["-O3"],
)

setup(ext_modules=cythonize([ext], language_level=3, include_path=["ext"],
                            compiler_directives={"boundscheck": False, "wraparound": False,
                                                 "cdivision": True, "initializedcheck": False}))
