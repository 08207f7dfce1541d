"""Reliability suite, crash part: kill -9 under mixed S3 / STOW-RS / C-STORE load.

N cycles on one data dir. Each cycle: the server (started fresh in cycle 1,
else the one restarted at the end of the previous cycle) takes concurrent
  * S3 PUTs (boto3; 4 KiB - 2 MiB single PUTs, multipart uploads of one
    small part or 5 MiB + a tail),
  * STOW-RS batches of generated instances (the whole Part 10 file),
  * C-STORE of generated instances over pynetdicom associations (chunked:
    the file's dataset bytes go on the wire),
each client recording what was acknowledged (S3: 200; STOW-RS: the
ReferencedSOPSequence; C-STORE: status 0x0000). At a seeded random moment
the server gets SIGKILL; it is restarted on the same data dir and then every
acknowledged object and instance of every cycle so far must read back byte
for byte (S3 GET by SHA-256; WADO-RS with transfer-syntax=*: the STOW file,
or the C-STORE dataset after the meta group), listing and QIDO must show
nothing that was never sent, whatever was in flight is either absent or
whole, and `fulcrum verify` exits 0.

    FULCRUM_E2E_CRASH_CYCLES   cycles (default 5; the long form is 100+)
    FULCRUM_E2E_CRASH_SEED     replay a run (the seed is printed and named in
                               every failure; it fixes the kill delays, the
                               S3 sizes and the batch sizes, not the timing)
"""

from __future__ import annotations

import itertools
import os
import random
import threading
import time
from dataclasses import dataclass, field

import pytest
from botocore.exceptions import ClientError

import dicom_gen
from dicom_helpers import SUCCESS, DicomWeb, send_chunked, stored_problems
from helpers import MiB, error_code, list_keys, sha256, sha256_stream

CYCLES = int(os.environ.get("FULCRUM_E2E_CRASH_CYCLES", "5"))
SEED = os.environ.get("FULCRUM_E2E_CRASH_SEED")
BUCKET = "crash-mixed"
S3_THREADS, STOW_THREADS, CSTORE_THREADS = 3, 2, 2
KILL_WINDOW_SECS = 3.0  # kill this long at most after every client had a write acknowledged
FIRST_ACKS_TIMEOUT_SECS = 60
# Generated instances per cycle and client kind: (rows = columns, how many),
# 10 KB and 130 KB files. More than the clients send before the kill (STOW-RS
# is the fastest), so the kill finds them busy.
POOL = {"stow": ((64, 360), (256, 90)), "cstore": ((64, 120), (256, 30))}


@dataclass
class Ledger:
    """What one kind of client sent in a cycle and what the server acknowledged.
    sent: id -> what was sent (S3: (sha256, size); DICOM: a dicom_gen.Instance)."""

    kind: str
    cycle: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: dict = field(default_factory=dict)
    acked: set = field(default_factory=set)
    errors: list = field(default_factory=list)  # failures the server was alive to cause

    def send(self, ident, what):
        with self.lock:
            self.sent[ident] = what

    def ack(self, ident):
        with self.lock:
            self.acked.add(ident)

    def error(self, msg: str):
        with self.lock:
            self.errors.append(f"cycle {self.cycle} {self.kind}: {msg}")


class MixedLoad:
    """S3, STOW-RS and C-STORE clients writing to `srv` until the kill."""

    def __init__(self, srv, cycle: int, seed: int, stow_pool, cstore_pool):
        self.srv, self.cycle, self.seed = srv, cycle, seed
        self.killed = threading.Event()  # set just before SIGKILL: connection errors expected from then on
        self.s3 = Ledger("S3", cycle)
        self.stow = Ledger("STOW-RS", cycle)
        self.cstore = Ledger("C-STORE", cycle)
        self.pools = {"stow": (iter(stow_pool), threading.Lock()), "cstore": (iter(cstore_pool), threading.Lock())}
        self.threads = (
            [threading.Thread(target=self._s3, args=(t,), daemon=True) for t in range(S3_THREADS)]
            + [threading.Thread(target=self._stow, args=(t,), daemon=True) for t in range(STOW_THREADS)]
            + [threading.Thread(target=self._cstore, args=(t,), daemon=True) for t in range(CSTORE_THREADS)]
        )

    @property
    def ledgers(self) -> tuple[Ledger, Ledger, Ledger]:
        return self.s3, self.stow, self.cstore

    def _take(self, pool: str, n: int) -> list:
        it, lock = self.pools[pool]
        with lock:
            return list(itertools.islice(it, n))

    def _failed(self, led: Ledger, what: str, exc: Exception) -> None:
        """A client call raised: expected once the kill is under way, else an error."""
        if not self.killed.is_set():
            led.error(f"{what}: {exc!r}"[:500])

    def _s3(self, tid: int):
        rng = random.Random(f"{self.seed}/s3/{tid}")
        s3 = self.srv.client(read_timeout=60)
        for seq in itertools.count():
            if self.killed.is_set():
                return
            key = f"c{self.cycle:03d}/t{tid}/{seq:05d}"
            roll = rng.random()
            if roll < 0.55:
                sizes = [rng.randint(4 * 1024, 64 * 1024)]
            elif roll < 0.85:
                sizes = [rng.randint(64 * 1024, 2 * MiB)]
            elif roll < 0.93:
                sizes = [rng.randint(4 * 1024, MiB), None]  # multipart, one (last, so small) part
            else:
                sizes = [5 * MiB, rng.randint(1, MiB), None]  # multipart: minimum part + tail
            multipart = sizes[-1] is None
            parts = [rng.randbytes(n) for n in sizes if n is not None]
            body = b"".join(parts)
            self.s3.send(key, (sha256(body), len(body)))
            what = f"{'multipart ' if multipart else ''}PUT {key} ({len(body)} bytes)"
            try:
                if multipart:
                    up = s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
                    done = []
                    for n, part in enumerate(parts, 1):
                        etag = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=up, PartNumber=n, Body=part)["ETag"]
                        done.append({"PartNumber": n, "ETag": etag})
                    s3.complete_multipart_upload(
                        Bucket=BUCKET, Key=key, UploadId=up, MultipartUpload={"Parts": done}
                    )
                else:
                    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
            except ClientError as e:  # an HTTP error response: the server was alive to send it
                self.s3.error(f"{what}: {error_code(e)} {e}")
                return
            except Exception as e:  # noqa: BLE001 - connection errors end this client
                self._failed(self.s3, what, e)
                return
            self.s3.ack(key)

    def _stow(self, tid: int):
        rng = random.Random(f"{self.seed}/stow/{tid}")
        dw = DicomWeb(self.srv, timeout=60)
        while not self.killed.is_set():
            batch = self._take("stow", rng.randint(1, 6))
            if not batch:
                return
            for inst in batch:
                self.stow.send(inst.sop_uid, inst)
            what = f"STOW-RS of {len(batch)} ({', '.join(i.path.name for i in batch)} ...)"
            try:
                res = dw.stow([inst.read() for inst in batch])
            except Exception as e:  # noqa: BLE001
                self._failed(self.stow, what, e)
                return
            sent = {inst.sop_uid for inst in batch}
            for sop in res.referenced:
                if sop in sent:
                    self.stow.ack(sop)
                else:
                    self.stow.error(f"{what}: ReferencedSOPSequence names {sop}, which was not in the request")
            if res.status != 200 or res.failed or set(res.referenced) != sent:
                self.stow.error(f"{what}: {res}")
                return

    def _cstore(self, tid: int):
        rng = random.Random(f"{self.seed}/cstore/{tid}")
        while not self.killed.is_set():
            batch = self._take("cstore", rng.randint(1, 8))  # one association each
            if not batch:
                return
            for inst in batch:
                self.cstore.send(inst.sop_uid, inst)
            by_path = {inst.path: inst for inst in batch}
            statuses = send_chunked(
                "127.0.0.1", self.srv.dicom_port, self.srv.dicom_aet, list(by_path), calling=f"CRASHSCU{tid}"
            )
            for path, status in statuses.items():
                if status == SUCCESS:
                    self.cstore.ack(by_path[path].sop_uid)
                elif isinstance(status, int):  # a DIMSE response: the server was alive to send it
                    self.cstore.error(f"C-STORE {path.name} ({by_path[path].sop_uid}): status 0x{status:04X}")
                elif not self.killed.is_set():
                    self.cstore.error(f"C-STORE {path.name} ({by_path[path].sop_uid}): {status}")
            if any(s != SUCCESS for s in statuses.values()):
                return

    def start(self):
        for t in self.threads:
            t.start()

    def wait_first_acks(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(led.acked or led.errors for led in self.ledgers):
                return
            if not any(t.is_alive() for t in self.threads):
                return
            time.sleep(0.02)

    def join(self, ctx: str):
        for t in self.threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in self.threads), f"{ctx}: a client hung after the server was killed"

    def summary(self) -> str:
        out = ", ".join(f"{led.kind} {len(led.acked)}/{len(led.sent)} acked" for led in self.ledgers)
        drained = [name for name, (it, _) in self.pools.items() if next(it, None) is None]
        return out + (f" (all of the {'/'.join(drained)} pool sent before the kill)" if drained else "")


@dataclass
class History:
    """Every cycle's ledgers, merged per kind."""

    s3_sent: dict = field(default_factory=dict)  # key -> (sha256, size)
    s3_acked: set = field(default_factory=set)
    stow_sent: dict = field(default_factory=dict)  # sop -> Instance
    stow_acked: set = field(default_factory=set)
    cstore_sent: dict = field(default_factory=dict)
    cstore_acked: set = field(default_factory=set)

    def add(self, load: MixedLoad):
        for name, led in (("s3", load.s3), ("stow", load.stow), ("cstore", load.cstore)):
            getattr(self, f"{name}_sent").update(led.sent)
            getattr(self, f"{name}_acked").update(led.acked)


def _generate_pools(root, cycle: int):
    """Fresh instances for this cycle: (STOW pool, C-STORE pool), sizes mixed.
    UIDs come from the dicom_gen seed, unique per cycle, kind and size."""
    pools = []
    for k, kind in enumerate(("stow", "cstore")):
        pool = []
        for j, (size, count) in enumerate(POOL[kind]):
            gen_seed = 100 + (cycle * 2 + k) * 2 + j
            pool += dicom_gen.generate(
                root / f"cycle{cycle:03d}" / kind / str(size),
                seed=gen_seed,
                patients=1,
                studies_per_patient=1,
                series_per_study=2,
                instances_per_series=count // 2,
                rows=size,
                columns=size,
                patient_id_prefix=f"CR{kind[0].upper()}",
            )
        random.Random(cycle * 2 + k).shuffle(pool)
        pools.append(pool)
    return pools


def _check_s3(s3, h: History) -> list[str]:
    problems = []

    def compare(key: str, state: str):
        want, size = h.s3_sent[key]
        try:
            got, n = sha256_stream(s3.get_object(Bucket=BUCKET, Key=key)["Body"])
        except ClientError as e:
            problems.append(f"S3 {state} {BUCKET}/{key} ({size} bytes): GET failed: {error_code(e)}")
            return
        if got != want:
            problems.append(f"S3 {state} {BUCKET}/{key}: read back {n} bytes sha256 {got[:16]}, sent {size} {want[:16]}")

    for key in sorted(h.s3_acked):
        compare(key, "acknowledged")
    listed = set(list_keys(s3, BUCKET))
    problems += [f"S3 acknowledged {BUCKET}/{k} missing from ListObjectsV2" for k in sorted(h.s3_acked - listed)]
    problems += [f"S3 {BUCKET}/{k} listed but never sent" for k in sorted(listed - h.s3_sent.keys())]
    for key in sorted((listed & h.s3_sent.keys()) - h.s3_acked):
        compare(key, "in-flight (listed, so it must be whole)")
    return problems


def _check_dicom(dw: DicomWeb, h: History) -> list[str]:
    where = dw.locate()
    problems = [
        f"QIDO lists {sop} ({where[sop]}), which was never sent"
        for sop in sorted(where.keys() - h.stow_sent.keys() - h.cstore_sent.keys())
    ]
    for kind, sent, acked, whole in (
        ("STOW-RS", h.stow_sent, h.stow_acked, True),
        ("C-STORE", h.cstore_sent, h.cstore_acked, False),
    ):
        acked_files = [sent[sop].path for sop in sorted(acked)]
        problems += [f"{kind} acknowledged {p}" for p in stored_problems(dw, acked_files, whole_file=whole, where=where)]
        in_flight = [sent[sop].path for sop in sorted(sent.keys() - acked) if sop in where]
        problems += [
            f"{kind} in-flight (listed, so it must be whole) {p}"
            for p in stored_problems(dw, in_flight, whole_file=whole, where=where)
        ]
    return problems


# A hang guard: each check reads back everything so far, so time grows with the square of CYCLES.
@pytest.mark.timeout(300 + 60 * CYCLES + CYCLES**2)
def test_kill_9_under_mixed_s3_stow_cstore(pacs, tmp_path):
    seed = int(SEED) if SEED else random.randrange(1 << 30)
    rng = random.Random(seed)
    print(f"crash suite: seed={seed} cycles={CYCLES} (replay: FULCRUM_E2E_CRASH_SEED={seed})")
    pacs.client().create_bucket(Bucket=BUCKET)
    history = History()
    for cycle in range(1, CYCLES + 1):
        ctx = f"seed={seed} cycle={cycle}/{CYCLES}"
        t0 = time.monotonic()
        stow_pool, cstore_pool = _generate_pools(tmp_path / "instances", cycle)
        load = MixedLoad(pacs, cycle, rng.randrange(1 << 30), stow_pool, cstore_pool)
        delay = rng.uniform(0, KILL_WINDOW_SECS)
        load.start()
        load.wait_first_acks(FIRST_ACKS_TIMEOUT_SECS)
        time.sleep(delay)
        load.killed.set()  # first: failures from now on are the kill's
        pacs.kill()
        load.join(ctx)
        t_kill = time.monotonic()
        errors = [e for led in load.ledgers for e in led.errors]
        assert not errors, f"{ctx}: writes failed while the server was up:\n" + "\n".join(errors[:20])
        idle = [led.kind for led in load.ledgers if not led.acked]
        assert not idle, f"{ctx}: no {' / '.join(idle)} write acknowledged before the kill ({load.summary()})"
        history.add(load)

        pacs.start().wait_dicom_ready()
        problems = _check_s3(pacs.client(), history) + _check_dicom(DicomWeb(pacs), history)
        assert not problems, f"{ctx}: after kill -9 and restart ({len(problems)} problems):\n" + "\n".join(
            problems[:40]
        )
        res = pacs.verify()
        assert res.returncode == 0, f"{ctx}: fulcrum verify exited {res.returncode}:\n{res.stdout}\n{res.stderr}"
        print(
            f"cycle {cycle}: killed {delay:.2f}s after the first acks ({t_kill - t0:.1f}s), {load.summary()};"
            f" checked {len(history.s3_acked)} objects, {len(history.stow_acked) + len(history.cstore_acked)}"
            f" instances acknowledged so far ({time.monotonic() - t_kill:.1f}s)"
        )
