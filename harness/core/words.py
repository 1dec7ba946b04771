"""How a count is said in words: '1 scenario', '2 scenarios', '1 entry'."""
from typing import Optional

IRREGULAR = {"entry": "entries", "is": "are", "has": "have"}


def counted(count: int, noun: str, plural: Optional[str] = None) -> str:
    """`count` and the noun in the number it takes."""
    return f"{count} {noun if count == 1 else plural or IRREGULAR.get(noun, noun + 's')}"
