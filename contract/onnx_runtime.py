"""The ONNX Runtime session options of every loader (service, exporter parity checks, metrics)."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

CPU = "CPUExecutionProvider"

# Severity 3 = errors only: ORT's warnings about unused initialisers etc. drown the start-up log.
ort.set_default_logger_severity(3)


def session_options(intra_op_threads: int | None = 0) -> ort.SessionOptions:
    """``intra_op_threads`` 0 or None: ONNX Runtime's own choice (one per physical core)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = intra_op_threads or 0
    options.inter_op_num_threads = 1
    # Spinning intra-op threads burn the core the event loop (or a training run) needs between
    # small batches.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def cpu_session(
    model: Path | str | bytes, intra_op_threads: int | None = 0
) -> ort.InferenceSession:
    """A CPU session of an ONNX file (or its bytes) with ``session_options``."""
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(
        source, sess_options=session_options(intra_op_threads), providers=[CPU]
    )
