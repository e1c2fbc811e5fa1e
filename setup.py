"""Packaging for Uni-Fold: one distribution, two import packages.

``data_pipeline`` needs numpy (and gemmi / modelcif for structure files) only;
``uni_fold`` is the PyTorch side. Both ship in the ``uni-fold`` distribution.
"""
from setuptools import find_packages, setup

REFERENCE = [
    # The AlphaFold 2 reference used by the parity tests. 2.3.21+ imports an
    # undeclared CUDA kernel package, so the fork is pinned with a JAX that runs it.
    "alphafold-colabfold==2.3.20",
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "dm-haiku==0.0.17",
    "dm-tree",
    "ml-collections",
    "biopython<1.86",
]

setup(
    name="uni-fold",
    version="0.1.0",
    description="A trainable PyTorch reproduction of AlphaFold 2",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["uni_fold", "uni_fold.*", "data_pipeline", "data_pipeline.*"]),
    include_package_data=True,
    install_requires=[
        "numpy>=1.24",
        "torch>=2.1",
        "gemmi>=0.6.4",
        "biopython>=1.80",  # modified-residue letters in mmCIF SEQRES, as AF2
        "modelcif>=1.0",
        "safetensors>=0.4",
        "pyyaml>=6",
        "tqdm>=4.60",
        "matplotlib>=3.6",  # pLDDT / PAE / MSA-coverage plots of predict-structure
    ],
    extras_require={
        "test": ["pytest>=7", "pytest-xdist>=3", "hypothesis>=6.80"],
        "relax": ["openmm>=8.1", "pdbfixer>=1.9"],
        "reference": REFERENCE,
        # DeepSpeed builds against the installed torch: install it with
        # `pip install --no-build-isolation "deepspeed>=0.14"` after torch.
        "deepspeed": ["deepspeed>=0.14"],
    },
    entry_points={
        "console_scripts": [
            "precompute-alignments = data_pipeline.precompute:main",
            "download-params = uni_fold.download:main",
            "predict-structure = uni_fold.cli:main",
            "train-uni-fold = uni_fold.train.cli:main",
        ]
    },
    license="Apache-2.0",
)
