"""Asset metadata shared by the groups."""
import base64
from pathlib import Path


def png_markdown(path: Path, alt: str = "figure") -> str:
    """A PNG inline in Markdown metadata (the UI renders it), with where the file is."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()})\n\n`{path}`"
