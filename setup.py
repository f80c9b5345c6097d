"""network3: Nielsen's chapter-6 convolutional networks on Theano-PyMC."""
import sys

from setuptools import find_packages, setup

if sys.version_info[:2] not in ((3, 10), (3, 11)):
    sys.exit("network3 needs Python 3.10 or 3.11 (this is %d.%d): Theano-PyMC 1.1.2 imports "
             "distutils, which Python 3.12 removed, and numpy 1.23.5, which its C code needs, has "
             "no wheels past 3.11; 3.10 and 3.11 are the versions network3 is tested on."
             % sys.version_info[:2])

setup(
    name="network3",
    version="0.1.0",
    description="Michael Nielsen's network3.py and chapter-6 experiments on Theano-PyMC",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["network3", "network3.*"]),
    package_data={"network3": ["kernels/*.h"]},
    python_requires=">=3.10,<3.12",
    install_requires=[
        # numpy 2 breaks Theano's generated C; 1.24+ removed np.bool, used at import.
        "theano-pymc==1.1.2",
        "numpy==1.23.5",
        "scipy==1.10.1",      # its wheel bundles the OpenBLAS that Theano links
        "matplotlib==3.8.4",  # plots of run logs
        "contourpy<1.3.3",    # matplotlib's dependency; later releases need numpy>=1.25
        "pyparsing<3.2",      # matplotlib 3.8 warns with pyparsing 3.2+
        "tqdm>=4.60",         # progress bars
    ],
    extras_require={"test": ["pytest>=7"]},
    entry_points={"console_scripts": ["network3=network3.cli:main"]},
)
