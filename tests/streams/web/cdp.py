"""A tiny Chrome DevTools Protocol client: headless Chromium driven over a websocket.

Enough for the venue and booth-app tests: navigate, evaluate JavaScript, click and
type like a user, emulate a phone or tablet, a time zone and a lost network, take a
screenshot. Debian's ``/usr/bin/chromium``; no Selenium, no Node.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.procs import Child

CHROMIUM = "/usr/bin/chromium"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--mute-audio", "--remote-debugging-port=0")


class Browser:
    """One headless Chromium with one page; use as an async context manager."""

    def __init__(self, width: int = 1920, height: int = 1080, flags: tuple[str, ...] = ()) -> None:
        self.width, self.height = width, height
        self.flags = flags
        self._dir = Path(tempfile.mkdtemp(prefix="rekap-chromium-"))
        self._proc: Child | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self.console: list[str] = []

    async def __aenter__(self) -> Browser:
        self._proc = Child(
            [CHROMIUM, *FLAGS, *self.flags, f"--user-data-dir={self._dir / 'profile'}",
             f"--window-size={self.width},{self.height}", "about:blank"],
            log_path=self._dir / "chromium.log", name="chromium")
        port_file = self._dir / "profile" / "DevToolsActivePort"
        # Chromium writes the port it picked (--remote-debugging-port=0) there once it listens.
        first_line = await asyncio.to_thread(self._proc.wait_ready, lambda: port_file.read_text().strip(),
                                             30, "DevToolsActivePort written", 0.1)
        port = int(first_line.split()[0])
        self._session = aiohttp.ClientSession()
        async with self._session.get(f"http://127.0.0.1:{port}/json/list") as resp:
            targets = await resp.json()
        page = next(t for t in targets if t["type"] == "page")
        self._ws = await self._session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        await self.send("Page.enable")
        await self.send("Runtime.enable")
        await self.send("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                        deviceScaleFactor=1, mobile=False)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()
        if self._proc is not None:
            self._proc.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        assert self._ws is not None
        msg_id = next(self._ids)
        await self._ws.send_str(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = await asyncio.wait_for(self._ws.receive(), 30)
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"CDP socket closed: {msg}")
            data = json.loads(msg.data)
            if data.get("method") == "Runtime.consoleAPICalled":
                self.console.append(" ".join(str(a.get("value")) for a in data["params"]["args"]))
            elif data.get("method") == "Runtime.exceptionThrown":
                self.console.append("EXCEPTION " + json.dumps(data["params"]["exceptionDetails"])[:500])
            if data.get("id") == msg_id:
                if "error" in data:
                    raise RuntimeError(f"{method}: {data['error']}")
                return data["result"]

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", url=url)

    async def eval(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                                 awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"JS error: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 10.0,  # noqa: ASYNC109
                       interval: float = 0.05) -> Any:
        """Evaluate until truthy; return the value (or raise TimeoutError with the last one)."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            try:
                value = await self.eval(expression)
            except RuntimeError:
                value = None
            if value:
                return value
            await asyncio.sleep(interval)
        raise TimeoutError(f"{expression!r} still {value!r} after {timeout}s; console: {self.console}")

    async def on_new_document(self, source: str) -> None:
        """Run ``source`` in every document before its own scripts (CSP does not apply to it)."""
        await self.send("Page.addScriptToEvaluateOnNewDocument", source=source)

    async def reload(self) -> None:
        await self.send("Page.reload", ignoreCache=False)

    async def viewport(self, width: int, height: int, *, mobile: bool = False,
                       scale: float = 1) -> None:
        """Emulate a screen of this CSS size (``mobile``: phone viewport and touch)."""
        self.width, self.height = width, height
        await self.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                        deviceScaleFactor=scale, mobile=mobile)
        await self.send("Emulation.setTouchEmulationEnabled", enabled=mobile)

    async def timezone(self, zone: str) -> None:
        """The page's time zone (an IANA name): Date and Intl see it, as on a tablet there."""
        await self.send("Emulation.setTimezoneOverride", timezoneId=zone)

    async def offline(self, offline: bool) -> None:
        """Cut (or restore) the page's network; ``navigator.onLine`` and its events follow.

        This covers the page's own requests only: a service worker's fetches go out
        regardless, so a test of "offline" must also make the server unreachable.
        """
        await self.send("Network.enable")
        await self.send("Network.emulateNetworkConditions", offline=offline, latency=0,
                        downloadThroughput=-1, uploadThroughput=-1)

    async def center(self, selector: str) -> tuple[float, float]:
        """The viewport centre of the first element matching ``selector``, scrolled into view."""
        box = await self.eval(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null;"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.left + r.width / 2, r.top + r.height / 2]; })()")
        if not box:
            raise LookupError(f"no element {selector!r} on the page")
        return float(box[0]), float(box[1])

    async def click(self, selector: str) -> None:
        """A real mouse click (press and release) in the middle of the element."""
        x, y = await self.center(selector)
        for kind in ("mousePressed", "mouseReleased"):
            await self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left",
                            clickCount=1)

    async def type_text(self, selector: str, text: str) -> None:
        """Focus the element by clicking it and type ``text`` one character at a time."""
        await self.click(selector)
        for char in text:
            await self.send("Input.insertText", text=char)

    async def screenshot(self, path: Path) -> None:
        data = await self.send("Page.captureScreenshot", format="png")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data["data"]))  # noqa: ASYNC240 - small file
