"""The local embedding model others keep in ../shared (never copied into the project)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
MODEL_DIR = SHARED / "models" / "all-MiniLM-L6-v2-int8"

needs_model = pytest.mark.skipif(
    not (MODEL_DIR / "model.onnx").is_file(),
    reason=f"the shared ONNX model is not at {MODEL_DIR}",
)
