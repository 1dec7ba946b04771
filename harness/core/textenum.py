"""A string enum that prints as its value: the base of every kind the nouns name in words."""
import enum


class TextEnum(str, enum.Enum):
    """Compares equal to its value, prints as it, and goes into JSON as it."""

    def __str__(self) -> str:
        return self.value
