"""minitx: a from-scratch educational transformer library.

Install for use:          pip install .
Install for development:  pip install -e ".[dev]"
"""
from setuptools import find_packages, setup

setup(
    name="minitx",
    version="0.1.0",
    description="A readable pure-NumPy transformer library with hand-written backprop and CUDA kernels",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["minitx", "minitx.*"]),
    package_data={"minitx": ["py.typed", "cuda/simt.hpp"]},
    install_requires=[
        "numpy>=1.24",
        "regex>=2023.0",
        "tqdm>=4.60",
        "safetensors>=0.4",
        # One BLAS thread per data-parallel replica (minitx/train/parallel.py): without it two
        # replicas' BLAS threads fight over the same cores and training runs at about 0.6x.
        "threadpoolctl>=3.1",
    ],
    extras_require={
        # CuPy ships one wheel per CUDA major version; pick the one that matches the driver.
        "cuda12": ["cupy-cuda12x>=13"],
        "cuda13": ["cupy-cuda13x>=14"],
        "cuda": ["cupy-cuda13x>=14"],
        # Kept so that the README's earlier `pip install ".[fast]"` still works; threadpoolctl is core now.
        "fast": [],
        # Data parallelism across processes and machines: `mpiexec -n 2 minitx train`.
        "mpi": ["mpi4py>=3.1", "mpich"],
        "dev": ["pytest>=7", "hypothesis>=6.80"],
        "plot": ["matplotlib>=3.6"],
        # Open a tutorial as a notebook: jupytext --to notebook tutorials/02_attention.py
        "notebook": ["jupytext>=1.14", "matplotlib>=3.6"],
    },
    entry_points={"console_scripts": ["minitx=minitx.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Intended Audience :: Education",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
