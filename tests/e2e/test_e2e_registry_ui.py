"""The registry's web UI in a real headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by selenium): a real ``portside registry serve`` with token
auth, an image pushed by skopeo, then in the browser — sign in, browse to the image and
read its tag, digest and layers, create a webhook pointing at a receiver on 127.0.0.1,
push again, and watch the delivery appear in the deliveries page. Needs no root.
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from portside.testing.registry import OCILayout, layer_tar
from portside.testing.registryserver import RegistryServer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SECRET = "ui-test-secret"


def _unavailable() -> str | None:
    if not os.access(CHROMIUM, os.X_OK) or not os.access(CHROMEDRIVER, os.X_OK):
        return (
            "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "needs selenium (pip install 'selenium>=4', in the dev extras)"
    if shutil.which("skopeo") is None:
        return "needs skopeo to push the images (apt-get install skopeo)"
    return None


pytestmark = pytest.mark.skipif(_unavailable() is not None, reason=str(_unavailable()))


class Receiver:
    """A webhook receiver on 127.0.0.1 (an ``http.server`` thread): answers 200 and
    keeps (headers, body) of each POST."""

    def __init__(self) -> None:
        self.seen: list[tuple[dict[str, str], bytes]] = []
        self.cond = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.cond:
                    receiver.seen.append((dict(self.headers), body))
                    receiver.cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait(self, count: int, timeout: float = 30.0) -> list[tuple[dict[str, str], bytes]]:
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.seen) >= count, timeout):
                raise AssertionError(f"{len(self.seen)} of {count} deliveries after {timeout}s")
            return list(self.seen)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.close()


@pytest.fixture
def browser(tmp_path: Any) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-proxy-server", "--window-size=1280,1024", f"--user-data-dir={tmp_path}/chrome",
    ):  # fmt: skip
        options.add_argument(arg)
    service = Service(CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def skopeo_push(reg: RegistryServer, layout: OCILayout, tag: str, dest: str) -> None:
    proc = subprocess.run(
        ["skopeo", "copy", "--dest-tls-verify=false", "--dest-creds", "alice:alice-pw",
         f"oci:{layout.path}:{tag}", f"docker://{reg.host}/{dest}"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def test_sign_in_browse_create_a_webhook_see_its_delivery(
    tmp_path: Any, receiver: Receiver, browser: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def find(css: str) -> Any:
        """The element once the page shows it: the page a click submits to may still be
        loading when the click returns (seen under load: the old page's source read)."""
        return WebDriverWait(browser, 10).until(lambda b: b.find_element(By.CSS_SELECTOR, css))

    layout = OCILayout(str(tmp_path / "layout"))
    first = layout.image(
        [layer_tar({"etc/hello": b"hello\n"}), layer_tar({"app/data": os.urandom(4096)})],
        name="app:1", arch="amd64",
    )  # fmt: skip
    second = layout.image([layer_tar({"etc/v2": b"2\n"})], name="app:2", arch="amd64")
    manifest = json.loads(layout.read(str(first["digest"])))
    with RegistryServer(str(tmp_path / "reg"), auth="token") as reg:
        reg.add_user("alice", "alice-pw")
        skopeo_push(reg, layout, "1", "alice/app:1")

        # sign in
        browser.get(f"{reg.url}/ui/")
        assert "alice/app" not in browser.page_source  # private: anonymous sees nothing
        find("#sign-in").click()
        find("#username").send_keys("alice")
        find("#password").send_keys("alice-pw")
        find("#submit-login").click()
        assert find("#whoami").text == "alice"

        # browse to the image: its tag, digest and layers
        browser.find_element(By.LINK_TEXT, "alice/app").click()
        row = find('tr.tag-row[data-tag="1"]')
        assert str(first["digest"])[:19] in row.text and "linux/amd64" in row.text
        row.find_element(By.LINK_TEXT, "1").click()
        assert find("#digest").text == first["digest"]
        layers = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#layers tr.layer")]
        assert len(layers) == 2
        for layer, shown in zip(manifest["layers"], layers, strict=True):
            assert layer["digest"] in shown
        assert find("#platform").text == "linux/amd64"
        assert "portside.testing.registry" in find("#history").text

        # a webhook on the repository, to the receiver
        browser.find_element(By.LINK_TEXT, "alice/app").click()
        find("#settings").click()
        find("#hook-url").send_keys(receiver.url)
        find("#new-hook input[name=secret]").send_keys(SECRET)
        find("#create-hook").click()
        assert find("#hook-state").text == "enabled"
        assert receiver.url in find("#hook").text
        assert find("#no-deliveries")
        hook_page = browser.current_url

        # push again: the push and tag events are delivered, signed
        skopeo_push(reg, layout, "2", "alice/app:2")
        seen = receiver.wait(2)
        for headers, body in seen:
            want = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            assert headers["X-Portside-Signature-256"] == want
        actions = sorted(json.loads(body)["events"][0]["action"] for _, body in seen)
        assert actions == ["push", "tag"]
        assert {json.loads(b)["events"][0]["target"]["digest"] for _, b in seen} == {
            second["digest"]
        }

        # ... and they show in the deliveries page
        deadline = time.monotonic() + 20
        while True:
            browser.get(hook_page)
            rows = browser.find_elements(By.CSS_SELECTOR, "#deliveries tr.delivery")
            states = [r.find_element(By.CSS_SELECTOR, ".badge").text for r in rows]
            if len(rows) == 2 and states == ["delivered", "delivered"]:
                break
            assert time.monotonic() < deadline, browser.page_source[-3000:]
            time.sleep(0.3)
        for row in rows:
            assert row.find_element(By.CSS_SELECTOR, ".status-code").text == "200"
            assert row.find_element(By.CSS_SELECTOR, ".attempts").text == "1"
            assert "alice/app" in row.text
        rows[0].find_element(By.CSS_SELECTOR, "a").click()
        assert second["digest"] in find("#payload").text
        assert "200" in find("#attempts").text

        # sign out: the repository is private again
        find("#sign-out").click()
        find("#sign-in")  # the signed-out page has loaded
        assert "alice/app" not in browser.page_source
