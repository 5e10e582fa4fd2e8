"""A contract that breaks the determinism rules (the registry must refuse it)."""

from __future__ import annotations

import random
import time

from chaincode.api import Context, Contract, function


class Sneaky(Contract):
    name = "sneaky"
    version = "1.0"

    @function
    def roll(self, ctx: Context) -> bytes:
        return str(random.random() + time.time() / 2.5).encode()
