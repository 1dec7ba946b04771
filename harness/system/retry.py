"""One way to wait: poll a condition until it holds, a give-up condition holds, or time runs out
(the NixOS test driver's `retry`, without the exception)."""
import time
from typing import Callable, Optional, TypeVar

T = TypeVar("T")


def poll(condition: Callable[[], Optional[T]], timeout_s: float, interval_s: float = 0.02,
         give_up: Callable[[], bool] = lambda: False) -> Optional[T]:
    """The first truthy value of `condition()`, or None once `give_up()` is true or `timeout_s`
    has passed. `condition` is asked once more after `give_up`, so a last change is not missed."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if give_up():
            return condition() or None
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval_s)
