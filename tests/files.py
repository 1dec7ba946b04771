"""Writing fixture files for tests."""
import json
from pathlib import Path


def write(folder: Path, name: str, content) -> Path:
    """folder/name with content: bytes as they are, a string as text, anything else as JSON."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path
