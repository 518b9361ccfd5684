"""Exception types whose messages are meant for the person running the tool.

Every message names the file or value at fault, what was expected and how to fix it. The command-line entry
points turn a :class:`PipelineError` into a one-line message and exit status 2, never a traceback.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base class for errors the user can fix."""


class ConfigError(PipelineError, ValueError):
    """A setting or flag has a value that is not allowed."""


class DataLayoutError(PipelineError):
    """The data folder does not have the expected layout."""


class ImageReadError(PipelineError):
    """One image or mask cannot be used; extraction skips that image and goes on."""


class SlideReadError(ImageReadError):
    """One whole-slide image cannot be opened or read (unsupported format, corrupt or truncated file).

    Extraction skips that slide and goes on.
    """


class SlideMppError(ImageReadError):
    """A slide's micrometres per pixel are neither in its metadata nor given with ``--mpp``; that slide is skipped."""


class SlideLibraryError(PipelineError):
    """No library that reads whole-slide images is installed (OpenSlide or tiffslide)."""


class ModelLoadError(PipelineError):
    """The model or its weights cannot be loaded."""


class CacheError(PipelineError):
    """The feature cache is missing, mixed, corrupt or from another schema."""


class LabelsError(PipelineError):
    """The label file cannot be read or does not match the cached images."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run; the message says what was kept and how to resume. The entry points exit with 130."""
