"""Built keys are cached by their bytes: reused, and never answering for other bytes."""

from __future__ import annotations

import pytest

from sigbus.protocol import sealing
from sigbus.protocol.errors import OpenError
from sigbus.protocol.sealing import (
    SuiteId,
    SuitePolicy,
    data_key_info,
    generate_sealing_key,
    new_data_key,
    open_data_key,
    seal_data_key,
)

ANY_SUITE = SuitePolicy(allow_classical=True)
INFO = data_key_info("msg-cache-test", "social", "key-1")


@pytest.mark.parametrize("suite", list(SuiteId))
def test_a_private_key_is_built_once_per_process(suite: SuiteId) -> None:
    pair = generate_sealing_key(suite)
    keys = [new_data_key() for _ in range(3)]
    sealed = [seal_data_key(suite, pair.public_bytes, k, INFO, policy=ANY_SUITE) for k in keys]
    before = sealing._private_key.cache_info()
    assert [open_data_key(suite, pair.private_bytes, s, INFO) for s in sealed] == keys
    after = sealing._private_key.cache_info()
    assert after.misses - before.misses == 1
    assert after.hits - before.hits == 2


@pytest.mark.parametrize("suite", list(SuiteId))
def test_a_cached_key_never_opens_for_another_key(suite: SuiteId) -> None:
    old, new = generate_sealing_key(suite), generate_sealing_key(suite)
    data_key = new_data_key()
    to_new = seal_data_key(suite, new.public_bytes, data_key, INFO, policy=ANY_SUITE)
    seal_data_key(
        suite, old.public_bytes, data_key, INFO, policy=ANY_SUITE
    )  # both public keys now cached
    open_data_key(
        suite,
        old.private_bytes,
        seal_data_key(suite, old.public_bytes, data_key, INFO, policy=ANY_SUITE),
        INFO,
    )
    with pytest.raises(OpenError):
        open_data_key(suite, old.private_bytes, to_new, INFO)
    assert open_data_key(suite, new.private_bytes, to_new, INFO) == data_key


def test_a_malformed_key_is_refused_every_time() -> None:
    for _ in range(2):  # an exception is not cached as a key
        with pytest.raises(OpenError):
            open_data_key(SuiteId.MLKEM768_X25519, b"\x01" * 10, b"\x00" * 1168, INFO)
        with pytest.raises(ValueError, match="wrong length"):
            seal_data_key(
                SuiteId.MLKEM768_X25519, b"\x01" * 10, new_data_key(), INFO, policy=ANY_SUITE
            )
