"""The contract between ``training/`` (which writes model folders) and ``service/`` (which serves them).

numpy and ONNX Runtime only: no torch, no BentoML, so both halves import it and every format
decision lives here once:

- ``latents``: seed -> latent vector (and seed -> class for conditional models);
- ``manifest``: the ``model.json`` format, read, validated and written;
- ``pixels``: float images <-> uint8, the one rounding rule;
- ``realness``: discriminator outputs -> the realness score users see;
- ``files``: sha256 of files, atomic writes;
- ``onnx_runtime``: the ONNX Runtime session options every loader uses.

docs/model-format.md describes the folder for people.
"""
