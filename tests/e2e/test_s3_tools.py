"""S3 tools nobody here wrote, used as their users do: s3cmd (PyPI) with the
configuration `s3cmd --configure` writes (signing region `US`), and rclone
(Debian) with its generic S3 provider. Both check what they transfer by MD5
(the ETag of a single-part upload, or their own metadata for multipart).
And restic (Debian), backing up into a Fulcrum bucket.
"""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ACCESS_KEY, MiB, SECRET_KEY, write_random_file


def _tool(name: str) -> str:
    venv = Path(sys.executable).parent / name
    found = str(venv) if venv.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found: scripts/test.sh installs it", pytrace=False)
    return found


def _run(cmd: list, check=True, binary=False) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("AWS_CA_BUNDLE", None)  # rclone refuses a CA bundle on plain HTTP
    res = subprocess.run([str(c) for c in cmd], env=env, capture_output=True, text=not binary, timeout=600)
    if check and res.returncode != 0:
        raise AssertionError(f"$ {' '.join(map(str, cmd))}\nexit {res.returncode}\n{res.stdout}\n{res.stderr}")
    return res


def _tree(root: Path) -> None:
    """small.bin, big.bin (multipart size), sub/note.txt and an empty file."""
    (root / "sub").mkdir(parents=True)
    write_random_file(root / "small.bin", 10_000, seed=71)
    write_random_file(root / "big.bin", 12 * MiB + 3, seed=72)
    (root / "sub" / "note.txt").write_text("hello from a county hospital\n")
    (root / "empty").write_bytes(b"")


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_s3cmd_with_its_default_region_us(fulcrum, tmp_path):
    # What `s3cmd --configure` writes for a non-AWS endpoint; `US` is not a
    # region name, so the first request is answered with the region to sign
    # for (as AWS does) and s3cmd retries with it.
    cfg = tmp_path / "s3cfg"
    host = fulcrum.endpoint.removeprefix("http://")
    cfg.write_text(
        "[default]\n"
        f"access_key = {ACCESS_KEY}\nsecret_key = {SECRET_KEY}\n"
        f"host_base = {host}\nhost_bucket = {host}\n"
        "bucket_location = US\nuse_https = False\nsignature_v2 = False\n"
        "multipart_chunk_size_mb = 5\n"
    )
    s3cmd = [_tool("s3cmd"), "-c", cfg]
    src = tmp_path / "src"
    _tree(src)

    _run([*s3cmd, "mb", "s3://tools-s3cmd"])
    _run([*s3cmd, "put", src / "small.bin", "s3://tools-s3cmd/one/small.bin"])
    _run([*s3cmd, "put", src / "big.bin", "s3://tools-s3cmd/one/big.bin"])
    head = fulcrum.aws("s3api", "head-object", "--bucket", "tools-s3cmd", "--key", "one/big.bin").stdout
    assert '-3\\""' in head, head  # 12 MiB in 5 MiB parts: a multipart upload
    _run([*s3cmd, "sync", f"{src}/", "s3://tools-s3cmd/tree/"])
    listing = _run([*s3cmd, "ls", "-r", "s3://tools-s3cmd"]).stdout
    for key in ["one/small.bin", "one/big.bin", "tree/small.bin", "tree/big.bin", "tree/sub/note.txt", "tree/empty"]:
        assert f"s3://tools-s3cmd/{key}" in listing, listing

    info = _run([*s3cmd, "info", "s3://tools-s3cmd/one/small.bin"]).stdout
    assert _md5(src / "small.bin") in info, info
    assert "FULL_CONTROL" in info, info

    got = tmp_path / "big.out"
    _run([*s3cmd, "get", "s3://tools-s3cmd/tree/big.bin", got])
    assert _md5(got) == _md5(src / "big.bin")
    # A second sync has nothing to send.
    again = _run([*s3cmd, "sync", f"{src}/", "s3://tools-s3cmd/tree/"]).stdout
    assert "upload:" not in again, again

    # Only the private ACL exists: making an object public is refused, not ignored.
    res = _run([*s3cmd, "setacl", "s3://tools-s3cmd/one/small.bin", "--acl-public"], check=False)
    assert res.returncode != 0 and "NotImplemented" in res.stderr, res
    _run([*s3cmd, "setacl", "s3://tools-s3cmd/one/small.bin", "--acl-private"])

    _run([*s3cmd, "del", "-r", "s3://tools-s3cmd/tree"])
    listing = _run([*s3cmd, "ls", "-r", "s3://tools-s3cmd"]).stdout
    assert "tree/" not in listing and "one/big.bin" in listing, listing
    _run([*s3cmd, "rb", "-r", "s3://tools-s3cmd"])
    assert "tools-s3cmd" not in _run([*s3cmd, "ls"]).stdout


def test_rclone_copy_check_sync_and_purge(fulcrum, tmp_path):
    conf = tmp_path / "rclone.conf"
    conf.write_text(
        "[fulcrum]\ntype = s3\nprovider = Other\n"
        f"access_key_id = {ACCESS_KEY}\nsecret_access_key = {SECRET_KEY}\n"
        f"endpoint = {fulcrum.endpoint}\nregion = us-east-1\n"
    )
    rclone = [_tool("rclone"), "--config", conf, "--s3-upload-cutoff", "1M", "--s3-chunk-size", "5M"]
    src = tmp_path / "src"
    _tree(src)

    _run([*rclone, "mkdir", "fulcrum:tools-rclone"])
    _run([*rclone, "copy", src, "fulcrum:tools-rclone/tree"])
    # `check` compares sizes and MD5s of every file, multipart ones included.
    out = _run([*rclone, "check", src, "fulcrum:tools-rclone/tree"])
    assert "0 differences found" in out.stderr, out.stderr
    sums = dict(
        reversed(line.split(None, 1))
        for line in _run([*rclone, "md5sum", "fulcrum:tools-rclone/tree"]).stdout.splitlines()
    )
    assert sums == {name: _md5(src / name) for name in ["small.bin", "big.bin", "sub/note.txt", "empty"]}, sums

    # A byte range, through rclone's own reader.
    cut = [*rclone, "cat", "fulcrum:tools-rclone/tree/big.bin", "--offset", 5 * MiB - 7, "--count", 100]
    raw = _run(cut, binary=True).stdout
    assert raw == (src / "big.bin").read_bytes()[5 * MiB - 7 : 5 * MiB + 93]

    # Server-side copy and move, then sync deletes what the source lost.
    _run([*rclone, "copyto", "fulcrum:tools-rclone/tree/big.bin", "fulcrum:tools-rclone/copy/big.bin"])
    _run([*rclone, "moveto", "fulcrum:tools-rclone/copy/big.bin", "fulcrum:tools-rclone/moved/big.bin"])
    (src / "small.bin").unlink()
    _run([*rclone, "sync", src, "fulcrum:tools-rclone/tree"])
    files = set(_run([*rclone, "lsf", "-R", "--files-only", "fulcrum:tools-rclone"]).stdout.split())
    assert files == {"moved/big.bin", "tree/big.bin", "tree/empty", "tree/sub/note.txt"}, files
    out = _run([*rclone, "check", src, "fulcrum:tools-rclone/tree"])
    assert "0 differences found" in out.stderr, out.stderr

    _run([*rclone, "purge", "fulcrum:tools-rclone"])
    res = _run([*rclone, "lsf", "fulcrum:tools-rclone"], check=False)
    assert res.returncode != 0 and "directory not found" in res.stderr, res


def test_restic_backs_up_into_fulcrum(fulcrum, tmp_path):
    # A hospital server backed up with restic (Debian) into a Fulcrum bucket:
    # init, two backups, a full check of the data, restore, forget + prune.
    src = tmp_path / "src"
    _tree(src)
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
               RESTIC_PASSWORD="county-hospital", RESTIC_REPOSITORY=f"s3:{fulcrum.endpoint}/restic-repo",
               RESTIC_CACHE_DIR=str(tmp_path / "cache"))

    def restic(*args):
        res = subprocess.run([_tool("restic"), *map(str, args)], env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, f"restic {' '.join(map(str, args))}: exit {res.returncode}\n{res.stdout}\n{res.stderr}"
        return res.stdout

    restic("init")
    restic("backup", src)
    write_random_file(src / "sub" / "later.bin", 3 * MiB, seed=73)
    restic("backup", src)
    restic("check", "--read-data")
    out = tmp_path / "out"
    restic("restore", "latest", "--target", out)
    restored = next(p for p in out.rglob("small.bin")).parent
    for f in src.rglob("*"):
        if f.is_file():
            assert _md5(restored / f.relative_to(src)) == _md5(f), f
    restic("forget", "--keep-last", "1", "--prune")
    restic("check", "--read-data")
    assert restic("snapshots", "--json").count('"id"') == 1
