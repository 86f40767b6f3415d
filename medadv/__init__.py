"""medadv: attack medical deep-learning models and measure how they break, tracked in MLflow."""

import os
import warnings

# Keras 3 runs on TensorFlow here; choose it before anything imports keras. TensorFlow's C++ start-up lines
# (absl, oneDNN, CUDA probing, NodeDef) are hidden up to ERROR; a step's --verbose sets the level back to 0.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Figures are files logged to MLflow; never open a window.
os.environ.setdefault("MPLBACKEND", "Agg")
# ART probes for PyTorch at import; medadv never uses it.
warnings.filterwarnings("ignore", message="PyTorch not found", category=UserWarning)

__version__ = "0.1.0"
