"""The serving side: ONNX Runtime + numpy + Pillow behind BentoML. Never imports torch or training/."""
