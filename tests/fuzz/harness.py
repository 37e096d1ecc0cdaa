"""The fuzzing harness of tests/fuzz/test_fuzz.py: bounds on one example (time, memory, message
length), the values that have broken readers elsewhere, and damaged safetensors files made from valid
ones. What Hypothesis prints for a failure is a :class:`Damage`, not bytes."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
import resource
import signal
import sys
import tempfile
import time
import unittest.mock
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from hypothesis import settings
from hypothesis import strategies as st
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from smu.core.errors import SmuError
from smu.io import schema as S

# ── Bounds on one example ───────────────────────────────────────────────────────────────────────────

SECONDS = 10.0
"""Longest one input may take a reader."""
GROWTH = 500 * 2**20
"""Most the process's peak memory may grow while one input is read."""
HEADROOM = 2**30
"""Address space one example may add: beyond it an allocation fails (and the example with it) instead of
the machine running out of memory while smu is still broken."""
HANG = 20
"""After this long an example is stopped (an exception raised from SIGALRM) and fails."""
MESSAGE = 500
"""Longest error message (smu.cli.ui.LINE: the CLI cuts any longer one there)."""


def examples(share: float) -> int:
    """This test's number of examples: ``share`` of the profile's (ci: 200, nightly: 2000)."""
    return max(1, round(settings.default.max_examples * share))


class Hung(BaseException):
    """Raised from SIGALRM: a BaseException, so that no ``except Exception`` in smu swallows it."""


def address_space() -> int | None:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def peak_rss(reset: bool = False) -> int:
    """The process's peak resident memory in bytes; with ``reset``, first set the peak to the current
    size (Linux's VmHWM, reset through /proc/self/clear_refs), so that an earlier example's peak cannot
    hide this one's. Elsewhere ru_maxrss, which only tells growth beyond every earlier peak."""
    status = Path("/proc/self/status")
    try:
        if reset:
            Path("/proc/self/clear_refs").write_text("5")
        return int(status.read_text().split("VmHWM:")[1].split()[0]) * 1024
    except (OSError, IndexError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


@contextlib.contextmanager
def bounded() -> Iterator[None]:
    """Run one example under the bounds: the time it took and how far peak memory grew are checked after
    it; its address space is capped at ``HEADROOM`` above the current one, and it is stopped after HANG s."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    now = address_space()
    if now is not None:
        cap = now + HEADROOM if hard == resource.RLIM_INFINITY else min(now + HEADROOM, hard)
        if soft == resource.RLIM_INFINITY or soft > cap:
            resource.setrlimit(resource.RLIMIT_AS, (cap, hard))

    def hung(signum: int, frame: Any) -> None:
        raise Hung(f"still running after {HANG} s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, HANG, 1)  # then every second: a raise inside a gc callback is lost
    peak, start = peak_rss(reset=True), time.perf_counter()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    elapsed, grown = time.perf_counter() - start, peak_rss() - peak
    assert elapsed <= SECONDS, f"one input took {elapsed:.1f} s (at most {SECONDS:g})"
    assert grown <= GROWTH, f"one input grew peak memory by {grown / 2**20:,.0f} MB (at most {GROWTH >> 20})"


def refused(e: SmuError) -> SmuError:
    """A refusal must be one short line."""
    text = str(e)
    if len(text) > MESSAGE or "\n" in text or "\r" in text:
        # ``from e``: Hypothesis tells failures apart by where they come from, here smu's raise.
        raise AssertionError(
            f"{type(e).__name__} of {len(text):,} characters"
            f"{' with a line break' if chr(10) in text or chr(13) in text else ''}: {text[:300]!r}"
        ) from e
    return e


def outcome(read: Callable[[], Any]) -> Any:
    """What a reader makes of one input: its value, or the SmuError it refused the input with. Any other
    exception goes through to Hypothesis, as does a broken bound or an over-long message."""
    with bounded():
        try:
            return read()
        except SmuError as e:
            return refused(e)


def listing(folder: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*"))


@contextlib.contextmanager
def unchanged(*folders: Path) -> Iterator[None]:
    """Nothing may be written, removed or changed in ``folders`` (where the inputs lie)."""
    before = [listing(f) for f in folders]
    yield
    for folder, was in zip(folders, before, strict=True):
        assert listing(folder) == was, f"{folder} changed: {was} -> {listing(folder)}"


@contextlib.contextmanager
def nothing_new_here() -> Iterator[None]:
    """Nothing may appear in the working folder (a default ``runs/...`` --out): only its names are
    compared, as the files in it may change while the tests run."""
    caches = {".hypothesis", ".pytest_cache"}  # the test tools' own
    before = set(os.listdir()) | caches
    yield
    assert set(os.listdir()) <= before, f"written into {os.getcwd()}: {sorted(set(os.listdir()) - before)}"


def offline(*args: Any, **kwargs: Any) -> Any:
    raise OSError("network is unreachable (tests/fuzz/test_fuzz.py)")


@contextlib.contextmanager
def no_downloads() -> Iterator[None]:
    """A model's header can name any dataset: reading it must not fetch one."""
    import smu.data.sources as sources

    with unittest.mock.patch.object(sources, "_download", offline):
        yield


def cli(args: list[Any]) -> tuple[Any, str, str]:
    """(exit code, stdout, stderr) of ``smu ARGS`` run in this process, under the bounds."""
    from smu.cli.app import main

    out, err = io.StringIO(), io.StringIO()
    shown = warnings.showwarning  # main() wraps it on every call: in one process the wrappers would pile up
    code: Any = "no SystemExit"
    try:
        with bounded(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), no_downloads():
            try:
                main([str(a) for a in args])
            except SystemExit as e:
                code = e.code
    finally:
        warnings.showwarning = shown
    return code, out.getvalue(), err.getvalue()


def check_cli(
    code: Any, stdout: str, stderr: str, not_intact_ok: bool = False, as_json: bool = False
) -> None:
    """Exit 0 (with one JSON object on stdout for ``--json``); or 1 or 2 with exactly one line on stderr,
    ``Error: ...``, and no traceback."""
    assert "Traceback" not in stderr, stderr[-2000:]
    assert code in (0, 1, 2), f"exit code {code!r}; stderr: {stderr[-1000:]!r}"
    if code == 0:
        if as_json:
            assert isinstance(json.loads(stdout), dict), stdout[:1000]
        return
    if not_intact_ok and code == 1 and not stderr.strip():
        assert json.loads(stdout)["intact"] is False, stdout[:1000]  # smu inspect: a damaged file
        return
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), f"exit {code}, stderr: {stderr[:2000]!r}"
    assert len(lines[0]) <= MESSAGE, f"an error line of {len(lines[0]):,} characters: {lines[0][:300]!r}"


# ── Values that have broken readers elsewhere ─────────────────────────────────────────────────────


class Long(str):
    """A long string that Hypothesis shows as ``'x'*5000``."""

    @classmethod
    def of(cls, c: str, n: int) -> Long:
        return cls(c * n)

    def __repr__(self) -> str:
        return f"{str(self[:1])!r}*{len(self)}"


class Named(str):
    """A made-up text (an alias bomb, a deep nesting) that Hypothesis shows by its name."""

    label: str

    def __new__(cls, text: str, label: str) -> Named:
        s = super().__new__(cls, text)
        s.label = label
        return s

    def __repr__(self) -> str:
        return f"<{self.label}: {len(self):,} characters>"


long_text = st.builds(
    Long.of,
    st.sampled_from(["x", "9", "é", "\x1b", "[", "\n"]),
    st.sampled_from([301, 5000]),
)
# fmt: off
NASTY = [
    "", " ", "-1", "0", "1", "2", "10", "1e308", "-1e308", "1e400", "999999999999", "99999999", "2147483648",
    "nan", "NaN", "inf", "-inf", "0.5", "1x8", "1x8x8x8", "100000x100000x3", "1x8x8", "3x32x32", "0x8x8",
    "1x0x0", "-1x8x8", "1x-8x8", "1x8x8 ", "x", "1.5", " 10", "10 ", "1_0", "١٠", "²", "True", "None",
    "\x1b[31m", "\x1b]0;title\x07", "[bold red]x[/]", "[/]", "\r", "\n", "a\nb", "\u202e", "\x00",
    "../x", "/etc/passwd", "mask.safetensors", "model.safetensors", ".", "..", "a/b", "nonexistent",
    "model", "mask", "forget-set", "saliency", "audit", "member-stats", "checkpoint", "cnn", "cnn_gn",
    "resnet18", "resnet20", "vgg16_bn", "resnet50", "digits", "mnist", "fashion-mnist", "cifar10",
    "imagefolder", "conv", "all", "logit", "loss", "both", "above", "class:1", "random:10", "{}", "[]",
    "0" * 64, "f" * 64,
]
# fmt: on
nasty = st.one_of(
    st.sampled_from(NASTY),
    st.sampled_from(NASTY),
    st.text(max_size=20),
    st.integers().map(str),
    st.floats().map(repr),
    long_text,
)
META_KEYS = sorted({str(k) for k in S.KEYS} | {"format"})
meta_key = st.one_of(st.sampled_from(META_KEYS), st.sampled_from(META_KEYS), st.text(max_size=10))
IDENTITY = [S.ARCH, S.NUM_CLASSES, S.INPUT_SHAPE, S.DATASET, S.KIND, S.MASK_FILE, S.SCOPE, S.VAL_FRACTION,
            S.SPLIT_SEED, S.SUBSET, S.TRAIN_SIZE, S.SIZE, S.CLASS, S.SALIENCY_RATIO, S.FORMAT]  # fmt: skip
MASK_NAMES = ["../x", "/etc/passwd", "", ".", "..", "mask.safetensors/", "a/b", "mask.safetensors\x00",
              "model.safetensors", "saliency.safetensors", Long("m" * 300)]  # fmt: skip
identity_op = st.one_of(
    st.tuples(st.just("meta"), st.sampled_from(IDENTITY), nasty),
    st.tuples(st.just("meta"), st.just(str(S.MASK_FILE)), st.sampled_from(MASK_NAMES)),
)
"""The values the readers act on: a class count, an input shape, a mask's file name."""
# fmt: off
TENSOR_NAMES = [
    "net.fc.weight", "net.fc.bias", "net.features.0.weight", "net.features.4.weight", "normalize.mean",
    "indices", "epsilon", "bin", "score", "statistic_unlearned", "logit", "loss", "__metadata__", "",
    "../x", "/etc/passwd", "\x1b[31m", "[bold red]x[/]", "net.fc.weight\n", "module.net.fc.weight",
]
# fmt: on
tensor_name = st.one_of(st.sampled_from(TENSOR_NAMES), st.text(max_size=20), long_text)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
big = st.one_of(
    st.integers(-2, 10),
    st.sampled_from([2**31, 2**32, 2**40, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 10**6, 10**9]),
    st.integers(0, 2**64 - 1),
)
# fmt: off
ST_DTYPES = ["BOOL", "U8", "I8", "I16", "U16", "I32", "U32", "I64", "U64", "F16", "BF16", "F32", "F64",
             "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4", "F6_E2M3", "C64", "C128", "f32", "", "F32 "]
# fmt: on
# fmt: off
TORCH_DTYPES = {
    str(d).removeprefix("torch."): d
    for d in (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float16,
              torch.bfloat16, torch.float32, torch.float64, torch.complex64)
}
# fmt: on
for _name in ("uint16", "uint32", "uint64", "float8_e4m3fn", "float8_e5m2"):
    if hasattr(torch, _name):
        TORCH_DTYPES[_name] = getattr(torch, _name)
small_shape = st.one_of(
    st.lists(st.integers(0, 6), max_size=4),
    st.sampled_from([[], [0], [1], [0, 3], [10**5], [1, 1, 1, 1, 1], [128, 64, 3, 3], [10, 128], [10]]),
)
special = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 2, 0.5, -1, 0, 1, 1e30, 255, -(2**31), 2**40]),
    st.floats(),
)
index = st.integers(0, 63)
"""A tensor of the file, by position (modulo their number)."""


# ── Damaged safetensors files ───────────────────────────────────────────────────────────────────────


def split(data: bytes) -> tuple[dict[str, Any], bytes]:
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def join(header: Any, body: bytes, length: int | None = None) -> bytes:
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return (len(text) if length is None else length).to_bytes(8, "little") + text + body


def set_meta(data: bytes, key: str, value: str) -> bytes:
    """``data`` with one metadata value changed (unchanged when its header is no JSON object any more)."""
    try:
        header, body = split(data)
        header["__metadata__"][key] = value
    except (ValueError, TypeError, KeyError, AttributeError):
        return data
    return join(header, body)


def forget_sha256(indices: torch.Tensor, meta: Mapping[str, str]) -> str:
    """The smu.sha256 that ``indices`` would have in a forget set made for the split ``meta`` names."""
    from smu.data.forget import ForgetSet

    fs = ForgetSet(
        indices.to(torch.int64),
        "",
        meta[S.DATASET],
        int(meta[S.TRAIN_SIZE]),
        float(meta[S.VAL_FRACTION]),
        int(meta[S.SPLIT_SEED]),
        None,
        int(meta.get(S.SUBSET, 0)),
    )
    return fs.sha256


@dataclasses.dataclass(frozen=True)
class Damage:
    """How a valid file (``base``, a key of the ``valid`` fixture) is damaged:

    - ``bytes``: made-up bytes instead (ops: the bytes)
    - ``truncate``: cut at ops[0] (modulo the length)
    - ``flip``: ops are (header|data, position, byte): bytes replaced in the header or in the data
    - ``header``: the JSON header rewritten, the data kept (so offsets, dtypes, shapes can disagree)
    - ``tensors``: read, changed tensor by tensor and saved again: a well-formed file saying odd things
    """

    base: str
    how: str
    ops: tuple = ()

    def apply(self, valid: Mapping[str, bytes]) -> bytes:
        if self.how == "bytes":
            return self.ops[0]
        data = valid[self.base]
        if self.how == "truncate":
            return data[: self.ops[0] % (len(data) + 1)]
        if self.how == "flip":
            out, n = bytearray(data), int.from_bytes(data[:8], "little")
            for where, position, value in self.ops:
                i = position % (8 + n) if where == "header" else 8 + n + position % max(1, len(data) - 8 - n)
                if i < len(out):
                    out[i] = value
            return bytes(out)
        if self.how == "header":
            return edit_header(data, self.ops)
        return edit_tensors(data, self.ops)


def edit_header(data: bytes, ops: tuple) -> bytes:
    header, body = split(data)
    names = sorted(k for k in header if k != "__metadata__")
    length = None
    for op in ops:
        kind = op[0]
        if kind == "meta":
            meta = header.setdefault("__metadata__", {})
            if isinstance(meta, dict):
                if op[2] is None:
                    meta.pop(op[1], None)
                else:
                    meta[op[1]] = op[2]
        elif kind == "metadata":
            header["__metadata__"] = op[1]
        elif kind == "no-metadata":
            header.pop("__metadata__", None)
        elif kind == "length":
            length = op[1]
        elif kind == "top":
            header[op[1]] = op[2]
        else:
            name = names[op[1] % len(names)] if names else ""
            entry = header.get(name)
            if kind == "drop":
                header.pop(name, None)
            elif kind == "rename" and name in header:
                header[op[2]] = header.pop(name)
            elif kind == "entry":
                header[name] = op[2]
            elif isinstance(entry, dict):
                entry[{"dtype": "dtype", "shape": "shape", "offsets": "data_offsets"}[kind]] = op[2]
    return join(header, body, length)


def edited(t: torch.Tensor, op: tuple) -> torch.Tensor:
    """``t`` after one edit: ("dtype", _, NAME), ("shape", _, SHAPE) (zeros), ("set", _, VALUE, AT) or
    ("fill", _, VALUE)."""
    kind = op[0]
    if kind == "dtype":
        return t.to(TORCH_DTYPES[op[2]])
    if kind == "shape":
        return torch.zeros(op[2]).to(t.dtype)
    if kind == "set" and t.numel():
        t = t.clone()
        t.view(-1)[op[3] % t.numel()] = op[2]
        return t
    if kind == "fill":
        return t.clone().fill_(op[2])
    return t


def edit_tensors(data: bytes, ops: tuple) -> bytes:
    header, _ = split(data)
    original = dict(header.get("__metadata__") or {})
    meta = dict(original)
    tensors = dict(st_load(data))
    names = sorted(tensors)
    fix = False
    for op in ops:
        kind = op[0]
        if kind == "meta":
            if op[2] is None:
                meta.pop(op[1], None)
            else:
                meta[op[1]] = op[2]
            continue
        if kind == "fix-sha256":
            fix = True
            continue
        if kind == "add":
            with contextlib.suppress(RuntimeError, ValueError, TypeError, OverflowError):
                tensors[str(op[1])] = torch.zeros(op[2]).to(TORCH_DTYPES[op[3]])
            continue
        name = names[op[1] % len(names)] if names else ""
        if name not in tensors:
            continue
        t = tensors[name]
        # The harness's own failures (a value a dtype cannot hold) skip that change: they are no finding.
        with contextlib.suppress(RuntimeError, ValueError, TypeError, OverflowError):
            if kind == "drop":
                del tensors[name]
            elif kind == "rename":
                tensors[str(op[2])] = tensors.pop(name)
            elif kind in ("dtype", "shape", "set", "fill"):
                tensors[name] = edited(t, op)
    if fix and "indices" in tensors:
        with contextlib.suppress(RuntimeError, ValueError, TypeError, KeyError):
            meta[S.SHA256] = forget_sha256(tensors["indices"], original)
    meta = {str(k): str(v) for k, v in meta.items()}
    return st_save({k: v.contiguous() for k, v in tensors.items()}, metadata=meta)


made_up = st.one_of(
    st.binary(max_size=2000),
    st.builds(
        lambda n, rest: n.to_bytes(8, "little") + rest, big.filter(lambda n: n >= 0), st.binary(max_size=300)
    ),
    st.builds(
        lambda h, rest: join(h, rest),
        st.dictionaries(st.text(max_size=10), json_value, max_size=4),
        st.binary(max_size=100),
    ),
)
header_op = st.one_of(
    identity_op,
    st.tuples(st.just("meta"), meta_key, st.none() | nasty),
    st.tuples(st.just("meta"), meta_key, nasty),
    st.tuples(st.just("metadata"), json_value),
    st.just(("no-metadata",)),
    st.tuples(st.just("length"), big.filter(lambda n: n >= 0)),
    st.tuples(st.just("top"), tensor_name, json_value),
    st.tuples(st.just("dtype"), index, st.sampled_from(ST_DTYPES) | st.text(max_size=6)),
    st.tuples(st.just("shape"), index, st.lists(big, max_size=4) | json_value),
    st.tuples(st.just("offsets"), index, st.lists(big, max_size=3) | json_value),
    st.tuples(st.just("rename"), index, tensor_name),
    st.tuples(st.just("drop"), index),
    st.tuples(st.just("entry"), index, json_value),
)
tensor_op = st.one_of(
    identity_op,
    identity_op,
    st.tuples(st.just("meta"), meta_key, st.none() | nasty),
    st.tuples(st.just("meta"), meta_key, nasty),
    st.tuples(st.just("drop"), index),
    st.tuples(st.just("rename"), index, tensor_name),
    st.tuples(st.just("dtype"), index, st.sampled_from(sorted(TORCH_DTYPES))),
    st.tuples(st.just("shape"), index, small_shape),
    st.tuples(st.just("set"), index, special, st.integers(0, 2**20)),
    st.tuples(st.just("fill"), index, special),
    st.tuples(st.just("add"), tensor_name, small_shape, st.sampled_from(sorted(TORCH_DTYPES))),
    st.just(("fix-sha256",)),
)


def damage(*bases: str) -> st.SearchStrategy[Damage]:
    base = st.sampled_from(bases)
    flips = st.tuples(st.sampled_from(["header", "data"]), st.integers(0, 2**20), st.integers(0, 255))

    def ops(op: st.SearchStrategy) -> st.SearchStrategy[tuple]:
        return st.lists(op, min_size=1, max_size=4).map(tuple)

    return st.one_of(
        st.builds(Damage, st.just("-"), st.just("bytes"), st.tuples(made_up)),
        st.builds(Damage, base, st.just("truncate"), st.tuples(st.integers(0, 2**20))),
        st.builds(Damage, base, st.just("flip"), st.lists(flips, min_size=1, max_size=8).map(tuple)),
        st.builds(Damage, base, st.just("header"), ops(header_op)),
        st.builds(Damage, base, st.just("tensors"), ops(tensor_op)),
        st.builds(Damage, base, st.just("tensors"), ops(tensor_op)),
    )


@dataclasses.dataclass(frozen=True)
class Sparse:
    """A sparse model file and the mask beside it, either damaged (None: the valid one). With
    ``same_sha256`` the model records the sha256 of the mask beside it, so that the mask is read."""

    model: Damage | None
    mask: Damage | None
    same_sha256: bool

    def write(self, folder: Path, valid: Mapping[str, bytes]) -> Path:
        mask = self.mask.apply(valid) if self.mask else valid["mask"]
        model = self.model.apply(valid) if self.model else valid["model"]
        if self.same_sha256:
            model = set_meta(model, S.MASK_SHA256, hashlib.sha256(mask).hexdigest())
        (folder / "mask.safetensors").write_bytes(mask)
        (folder / "model.safetensors").write_bytes(model)
        return folder / "model.safetensors"


sparse = st.builds(
    Sparse,
    st.none() | damage("model", "dense") | damage("model"),
    st.none() | damage("mask", "mask", "saliency"),
    st.booleans(),
).filter(lambda s: s.model is not None or s.mask is not None)


@contextlib.contextmanager
def folder_with(write: Callable[[Path], Path]) -> Iterator[tuple[Path, Path]]:
    """A fresh temporary folder with the input written into ``in/`` (a folder of its own, so that
    ``smu inspect``'s look for parents one folder up stays inside the temporary one): (the input's
    path, the temporary folder)."""
    with tempfile.TemporaryDirectory(prefix="smu-fuzz-") as tmp:
        root = Path(tmp)
        (root / "in").mkdir()
        yield write(root / "in"), root


def write_damaged(damaged: Damage, valid: Mapping[str, bytes], name: str) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        (folder / name).write_bytes(damaged.apply(valid))
        return folder / name

    return write


# ── The valid files every example starts from ───────────────────────────────────────────────────────


class Held(dict):
    """What a module fixture holds (valid files, a loaded model), shown by its keys alone: Hypothesis
    writes out a failing test's arguments, and these hold megabytes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        return f"<{', '.join(map(str, self))}>"
