"""Where the Matrix spec copy lives: ``$UZEL_MATRIX_SPEC``, else ``../shared/matrix-spec`` beside the repo."""
import os
from pathlib import Path

SPEC_DIR = Path(os.environ.get("UZEL_MATRIX_SPEC")
                or Path(__file__).resolve().parents[2] / "shared" / "matrix-spec")
