"""Shared by the framework checks: the proxy's URL, and what a refused transaction must say.

Each check runs one framework's own example against slotproxy at $REDIS_URL. With
$EXPECT=works it must succeed; with $EXPECT=refused (slotproxy's default
cross_slot_transactions = "refuse") it must fail with the CROSSSLOT error that names the
option, so a user learns the way out from the error itself.
"""

import os
import sys

URL = os.environ["REDIS_URL"]
EXPECT = os.environ.get("EXPECT", "works")


def run(check):
    """Runs `check()`; exits 0 when the outcome is the expected one, 1 otherwise."""
    try:
        check()
    except Exception as error:  # the framework's own exception type varies
        text = f"{type(error).__name__}: {error}"
        if EXPECT == "refused" and "cross_slot_transactions" in text:
            print(f"refused as expected: {text}")
            sys.exit(0)
        print(f"failed: {text}", file=sys.stderr)
        raise
    if EXPECT == "refused":
        print("expected the cross-slot transaction to be refused, but it ran", file=sys.stderr)
        sys.exit(1)
    print("ok")
