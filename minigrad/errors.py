"""The engine's error types."""


class ShapeError(ValueError):
    """Operands whose shapes do not fit the op; the message names the op and the shapes."""
