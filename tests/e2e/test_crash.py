"""Crash consistency: kill -9 the server under concurrent writes, restart.

Every write that got a 200 must read back byte-identical; every object that
is listed must be one that was acknowledged or in flight, with exactly the
body that was sent (never a partial one); `fulcrum verify` must pass.
"""

from __future__ import annotations

import random
import threading
import time

from helpers import MiB, list_keys, sha256

THREADS = 8
CYCLES = 3
WRITE_SECS = 3.0
BUCKET = "crash"


class Writers:
    """THREADS threads PUTting random 1 KiB - 2 MiB objects until told to stop."""

    def __init__(self, fulcrum, cycle: int, seed: int):
        self.fulcrum = fulcrum
        self.cycle = cycle
        self.seed = seed
        self.lock = threading.Lock()
        self.sent: dict[str, str] = {}  # key -> sha256 of the body sent (acked or not)
        self.acked: dict[str, str] = {}  # key -> sha256, only after a 200
        self.errors_before_kill: list[str] = []
        self.killed = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(t,), daemon=True) for t in range(THREADS)]

    def _run(self, tid: int):
        rng = random.Random(self.seed * 1000 + tid)
        s3 = self.fulcrum.client(read_timeout=30)
        seq = 0
        while not self.killed.is_set():
            key = f"c{self.cycle}/t{tid}/{seq:05d}"
            body = rng.randbytes(rng.randint(1024, 2 * MiB))
            digest = sha256(body)
            with self.lock:
                self.sent[key] = digest
            try:
                s3.put_object(Bucket=BUCKET, Key=key, Body=body)
            except Exception as e:  # noqa: BLE001 - any failure ends this writer
                if not self.killed.is_set():
                    with self.lock:
                        self.errors_before_kill.append(f"{key}: {e!r}")
                return
            with self.lock:
                self.acked[key] = digest
            seq += 1

    def start(self):
        for t in self.threads:
            t.start()

    def join(self):
        for t in self.threads:
            t.join(timeout=60)
            assert not t.is_alive(), "a writer hung after the server was killed"


def test_kill_9_under_concurrent_writes(fulcrum):
    fulcrum.client().create_bucket(Bucket=BUCKET)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    sent: dict[str, str] = {}
    acked: dict[str, str] = {}

    for cycle in range(CYCLES):
        writers = Writers(fulcrum, cycle, seed + cycle)
        writers.start()
        # Kill at a random moment once writes flow (some acked, more in flight).
        deadline = time.monotonic() + 30
        while not writers.acked and not writers.errors_before_kill and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.2, WRITE_SECS))
        writers.killed.set()  # set first: failures from now on are expected
        fulcrum.kill()
        writers.join()
        ctx = f"seed={seed} cycle={cycle}"
        assert writers.errors_before_kill == [], f"{ctx}: PUTs failed before the kill: {writers.errors_before_kill[:5]}"
        assert writers.acked, f"{ctx}: no PUT was acknowledged before the kill"
        sent.update(writers.sent)
        acked.update(writers.acked)

        fulcrum.start()
        s3 = fulcrum.client()
        for key, digest in sorted(acked.items()):
            body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            assert sha256(body) == digest, f"{ctx}: acknowledged {key} reads back different bytes"

        listed = list_keys(s3, BUCKET)
        assert set(acked) <= set(listed), f"{ctx}: acknowledged keys missing from listing"
        for key in listed:
            assert key in sent, f"{ctx}: listed {key} was never written"
            if key not in acked:  # was in flight: must be whole or absent
                body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
                assert sha256(body) == sent[key], f"{ctx}: in-flight {key} is listed but partial"

        res = fulcrum.verify()
        assert res.returncode == 0, f"{ctx}: fulcrum verify failed:\n{res.stdout}\n{res.stderr}"
