"""A fix, put into the page, for a gradio bug that keeps every open studio tab busy.

A gradio StatusTracker times a pending event by asking for an animation frame from each frame
until its status leaves "pending". The page's loading screen is such a tracker, and it is removed
while still pending, so its timer never stops: the browser draws 60 frames a second, for as long
as the page is open, on a page where nothing moves. An idle studio page costs Chromium 0.05-0.06
cores for it, and on a laptop's two cores that is taken from training (README, "Speed").

The frames the status trackers ask for are paced: WATCHED_FPS while a tracker is on screen
(gradio shows its timer in tenths of a second). While none is, a timer's next frame is parked,
and one look every LOOK_SECONDS, for all of them, lets them go once one is shown: a frame a
second for nothing cost training about 1% of its speed on two cores, and a look per timer adds
up, since each event on a component leaves its timer's last frame parked (the timer has stopped
by the time it would run, so it runs once and ends). Every other animation (plots, transitions)
is left as it was. The status trackers keep the browser's own requestAnimationFrame from when
their module loads, before anything that gradio lets an app add to its page (`head=`, `js=`)
runs, so the fix is put first into the page's <head> as it is served. If gradio renames the
trackers' module, nothing is paced and nothing else changes.
"""
from __future__ import annotations

from starlette.middleware import Middleware

WATCHED_FPS = 10
LOOK_SECONDS = 1
PACE_STATUS_TIMERS = f"""<script>
(() => {{
  const requestFrame = window.requestAnimationFrame.bind(window);
  const watched = () => document.querySelector('[data-testid="status-tracker"]:not(.hide)');
  const parked = [];
  const look = () => watched() ? parked.splice(0).forEach(requestFrame) : setTimeout(look, {LOOK_SECONDS * 1000});
  window.requestAnimationFrame = (callback) => {{
    if (!/statustracker/.test(new Error().stack)) return requestFrame(callback);
    return setTimeout(() => {{
      if (watched()) return requestFrame(callback);
      if (parked.push(callback) === 1) setTimeout(look, {LOOK_SECONDS * 1000});
    }}, {1000 // WATCHED_FPS});
  }};
}})();
</script>"""


class FirstInHead:
    """ASGI middleware that puts `html` first into the <head> of every HTML page served."""

    def __init__(self, app, html: str):
        self.app = app
        self.html = html.encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start: dict = {}
        body: list[bytes] = []

        async def send_with_html(message: dict) -> None:
            if message["type"] == "http.response.start":
                if _is_html(message):
                    start.update(message)     # held until the whole page is here
                    return
            elif message["type"] == "http.response.body" and start:
                body.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                page = b"".join(body).replace(b"<head>", b"<head>" + self.html, 1)
                headers = [(name, value) for name, value in start["headers"] if name.lower() != b"content-length"]
                await send({**start, "headers": [*headers, (b"content-length", str(len(page)).encode())]})
                message = {"type": "http.response.body", "body": page}
            await send(message)

        await self.app(scope, receive, send_with_html)


def _is_html(start: dict) -> bool:
    return any(name.lower() == b"content-type" and value.startswith(b"text/html") for name, value in start["headers"])


def middleware() -> list[Middleware]:
    """For launch(app_kwargs=dict(middleware=...)): inside gradio's compression, so it sees the page as written."""
    return [Middleware(FirstInHead, html=PACE_STATUS_TIMERS)]
