"""report.html in a real browser: headless Chromium renders it, takes a screenshot, and nothing on
the page asks the network for anything.

Every request Chromium makes goes through a recording proxy on localhost (`--proxy-server`), so a
page that loaded a font, a stylesheet or an image from the web would show up there. Chromium also
talks to a few Google service hosts by itself whatever the page holds (network time, component
updates, account checks); those hosts are listed in `CHROMIUM_OWN_HOSTS` and are the only requests
allowed. A control page that does reference the web proves the recorder sees page requests.
"""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from callgate.conformance.report import diagrams, reporting
from callgate.conformance.results import read_stream
from tests import streams
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
INSTALL = ROOT / "tools" / "install-system-packages.sh"
CHROMIUM_OWN_HOSTS = frozenset({
    "clients2.google.com", "update.googleapis.com", "accounts.google.com",
    "clientservices.googleapis.com", "safebrowsing.googleapis.com",
    "optimizationguide-pa.googleapis.com", "content-autofill.googleapis.com",
    "redirector.gvt1.com", "edgedl.me.gvt1.com", "dl.google.com",
})
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-default-apps", "--no-default-browser-check",
         "--hide-scrollbars", "--proxy-bypass-list=<-loopback>")
TIMEOUT = 120


def _find_browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


@pytest.fixture(scope="module")
def chromium() -> str:
    """The browser; installed through the project's setup script if it is missing."""
    found = _find_browser()
    if found:
        return found
    try:
        done = subprocess.run([str(INSTALL), "chromium:chromium"], capture_output=True, text=True,
                              timeout=1800, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"Chromium is not installed and {INSTALL.name} could not install it ({exc}); "
                    f"run `make system` or `apt-get install chromium`")
    found = _find_browser()
    if not found:
        pytest.skip(f"Chromium is not installed and {INSTALL.name} could not install it "
                    f"(exit {done.returncode}: {(done.stderr or done.stdout)[-300:]!r}); "
                    f"run `make system` or `apt-get install chromium`")
    return found


class RecordingProxy:
    """A TCP listener that records the first line of every request sent to it, and answers none."""

    def __init__(self) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(32)
        self.port = self.server.getsockname()[1]
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    data = conn.recv(4096)
                except OSError:
                    data = b""
                self.lines.append(data.split(b"\r\n", 1)[0].decode("latin-1"))

    def hosts(self) -> set[str]:
        found = set()
        for line in self.lines:
            parts = line.split()
            if len(parts) < 2:
                continue
            target = parts[1].split("://", 1)[-1]
            found.add(target.split("/", 1)[0].rsplit(":", 1)[0] if parts[0] == "CONNECT"
                      else target.split("/", 1)[0].split(":", 1)[0])
        return found

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def proxy() -> Iterator[RecordingProxy]:
    recorder = RecordingProxy()
    yield recorder
    recorder.close()


def _run_browser(browser: str, page: Path, profile: Path, proxy: RecordingProxy, *extra: str
                 ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [browser, *FLAGS, f"--user-data-dir={profile}", f"--proxy-server=http://127.0.0.1:{proxy.port}",
         *extra, page.resolve().as_uri()],
        capture_output=True, text=True, timeout=TIMEOUT, check=False)


def read_png(path: Path) -> tuple[int, int, int, bytes]:
    """Width, height, channels and raw pixel bytes of an 8-bit, non-interlaced RGB(A) PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pos, idat = 8, b""
    width = height = channels = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    high = int.from_bytes(b"\x80" * stride, "big")
    low = int.from_bytes(b"\x7f" * stride, "big")
    out = bytearray()
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        if kind == 2:  # Up, the common case: add the rows bytewise at once, without carries
            a, b = int.from_bytes(line, "big"), int.from_bytes(prev, "big")
            line = bytearray((((a & low) + (b & low)) ^ ((a ^ b) & high)).to_bytes(stride, "big"))
        elif kind:
            _unfilter(kind, line, prev, channels)
        out += line
        prev = line
    return width, height, channels, bytes(out)


def _unfilter(kind: int, line: bytearray, prev: bytearray, channels: int) -> None:
    for i in range(len(line)):
        left = line[i - channels] if i >= channels else 0
        up = prev[i]
        corner = prev[i - channels] if i >= channels else 0
        if kind == 1:
            line[i] = (line[i] + left) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + (left + up) // 2) & 0xFF
        elif kind == 4:
            p = left + up - corner
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
            line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF


def _pixels_of(pixels: bytes, channels: int, colour: str, rows: range, width: int) -> int:
    """How many pixels in `rows` have exactly the CSS colour `colour` (#rrggbb)."""
    want = bytes.fromhex(colour.lstrip("#"))
    stride = width * channels
    region = pixels[rows.start * stride:rows.stop * stride]
    if channels == 4:
        region = b"".join(region[i:i + 3] for i in range(0, len(region), 4))
    return region.count(want)


@pytest.fixture(scope="module")
def report_html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("browser")
    record = read_stream(streams.write_stream(out / "results.jsonl"))
    reporting.write_reports(record, out)
    return out / "report.html"


def test_the_proxy_sees_what_a_page_asks_the_network_for(chromium: str, proxy: RecordingProxy,
                                                         tmp_path: Path) -> None:
    page = tmp_path / "leaky.html"
    page.write_text('<html><body>leaky<img src="http://leak.example.invalid/x.png">'
                    '<link rel="stylesheet" href="https://fonts.example.invalid/a.css"></body></html>')
    _run_browser(chromium, page, tmp_path / "profile", proxy, "--dump-dom")
    assert {"leak.example.invalid", "fonts.example.invalid"} <= proxy.hosts(), proxy.lines


def test_the_report_renders_and_asks_the_network_for_nothing(
        chromium: str, proxy: RecordingProxy, report_html: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    done = _run_browser(chromium, report_html, tmp_path / "profile", proxy,
                        f"--screenshot={shot}", "--window-size=1280,2000")
    assert shot.is_file(), done.stderr[-2000:]
    dom = _run_browser(chromium, report_html, tmp_path / "profile2", proxy, "--dump-dom")
    assert proxy.hosts() <= CHROMIUM_OWN_HOSTS, proxy.lines

    width, height, channels, pixels = read_png(shot)
    assert (width, height) == (1280, 2000)
    sample = pixels[::97]
    assert len(set(sample)) > 20, "the screenshot is blank"
    # The dark header band, the red status badge (failures outrank the error beside them) and
    # the red failure marks are on screen.
    assert _pixels_of(pixels, channels, "#1f2933", range(0, 40), width) > 20000
    assert _pixels_of(pixels, channels, "#c62828", range(0, 400), width) > 500
    assert _pixels_of(pixels, channels, "#c62828", range(0, 1400), width) > 1000

    html = dom.stdout
    assert 'id="status">non-conformant</span>' in html
    assert '<table class="counts" id="counts">' in html
    assert '<table class="trace">' in html and '<tr class="bad">' in html
    assert "e0.Wait(timeout=zero)" in html and "RPC_S_CALLPENDING (0x80010115) [timed out]" in html
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert" in html
    if diagrams.dot_available():
        # The machines the adapter implements: event and com_call.
        assert html.count("<svg") == 2 and "Finish_ (failed)" in html


def _png(rows: list[bytes], filters: list[int], width: int) -> bytes:
    """A tiny RGB PNG whose rows are stored with the given filter types."""
    raw, prev = b"", bytes(width * 3)
    for row, kind in zip(rows, filters, strict=True):
        out = bytearray()
        for i, value in enumerate(row):
            left = row[i - 3] if i >= 3 else 0
            up, corner = prev[i], prev[i - 3] if i >= 3 else 0
            p = left + up - corner
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
            paeth = left if pa <= pb and pa <= pc else up if pb <= pc else corner
            base = [0, left, up, (left + up) // 2, paeth][kind]
            out.append((value - base) & 0xFF)
        raw += bytes([kind]) + bytes(out)
        prev = row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, len(rows), 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def test_the_png_reader_undoes_every_filter_and_sees_a_blank_image(tmp_path: Path) -> None:
    rows = [bytes((x * 37 + y * 101 + k * 53) % 256 for x in range(4) for k in range(3))
            for y in range(5)]
    path = tmp_path / "t.png"
    path.write_bytes(_png(rows, [0, 1, 2, 3, 4], 4))
    assert read_png(path) == (4, 5, 3, b"".join(rows))
    path.write_bytes(_png([bytes(12)] * 5, [0, 2, 2, 1, 4], 4))
    *_, blank = read_png(path)
    assert len(set(blank)) == 1
    assert _pixels_of(blank, 3, "#000000", range(0, 5), 4) == 20
