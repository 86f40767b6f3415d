# The image `mlflow run ... --backend kubernetes` runs: medadv with its `gpu` extra (TensorFlow with CUDA).
#   docker build -t registry.example.org/medadv/medadv-gpu:0.1.0 . && docker push registry.example.org/medadv/medadv-gpu:0.1.0
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# MLflow's project folder: entry point commands (`python steps/...`) run from here, and `--build-image` copies
# the project on top of it.
WORKDIR /mlflow/projects/code
COPY . .

# pyproject.toml depends on tensorflow-cpu and the gpu extra adds tensorflow: both wheels unpack into the same
# `tensorflow` package, so the CPU one is removed and the CUDA one laid down again over the files they share.
RUN pip install ".[gpu]" \
    && pip uninstall --yes tensorflow-cpu \
    && pip install --no-deps --force-reinstall "tensorflow==2.21.0"

RUN useradd --create-home --uid 1000 medadv
USER 1000
ENV MEDADV_HOME=/home/medadv/.medadv
