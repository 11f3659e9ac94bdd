#!/usr/bin/env python3
"""Drives the gateway's dashboard in a real browser (headless Chromium through selenium 4).

  dashboard_browser.py --url http://127.0.0.1:PORT --service helloworld \\
      --endpoint Helloworld.Greeting --request '{"name":"browser"}' --expect 'Hello browser' \\
      --topic dashboard.events --screenshots DIR \\
      [--stream-endpoint E --stream-request JSON --stream-expect N]

Steps, each waited for explicitly (WebDriverWait, at most 60 s per wait, no sleeps):
  1. `/` lists --service in #services                                   -> DIR/services.png
  2. its page shows a healthy node (ok or SERVING); calling --endpoint with --request answers --expect
                                                                         -> DIR/service.png
  3. invalid JSON in the same form is refused in the page, and nothing is sent
  4. (with --stream-endpoint) Stream answers --stream-expect times, then ends -> DIR/stream.png
  5. the events page watches --topic and sees what it publishes there  -> DIR/events.png
  6. every screenshot is a PNG that is not blank (decoded with zlib + struct only)
Prints "ok: ..." per check and exits 0; on a failure prints "FAIL: ..." (with the browser's
console log and a piece of the page source on stderr) and exits 1. The browser is always quit.
"""
import argparse
import json
import os
import shutil
import struct
import sys
import tempfile
import zlib
from collections import Counter

from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

WAIT_SECONDS = 60


class Failure(Exception):
    """A check that did not hold; its message says which."""


def ok(what):
    print(f"ok: {what}", flush=True)


# ------------------------------------------------------------------------------------ browser

def make_driver(profile):
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,900", f"--user-data-dir={profile}", "--no-proxy-server",
                     "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                     "--lang=en-US"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path="/usr/bin/chromedriver")
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_window_size(1280, 900)
    driver.set_page_load_timeout(WAIT_SECONDS)
    driver.set_script_timeout(WAIT_SECONDS)
    return driver


def wait_for(driver, what, condition):
    """Waits until condition(driver) is truthy and returns its value; a Failure naming `what` if not."""
    def attempt(d):
        try:
            return condition(d)
        except WebDriverException:
            return False  # the element was replaced while we looked (the page re-renders live)
    try:
        return WebDriverWait(driver, WAIT_SECONDS, poll_frequency=0.1).until(attempt)
    except TimeoutException:
        raise Failure(f"timed out after {WAIT_SECONDS} s waiting for {what}") from None


def css_string(text):
    """A CSS string literal for an attribute selector."""
    return json.dumps(text)


def find(driver, selector):
    elements = driver.find_elements(By.CSS_SELECTOR, selector)
    return elements[0] if elements else None


def set_text(driver, element, text):
    """Replaces a text field's content as a user would, falling back to script if keys got lost."""
    element.clear()
    element.send_keys(text)
    if element.get_property("value") != text:
        driver.execute_script(
            "arguments[0].value = arguments[1];"
            "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));", element, text)
    if element.get_property("value") != text:
        raise Failure(f"could not type {text!r} into {element.tag_name}")


def click(driver, element):
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
    element.click()


def click_when_there(driver, what, selector):
    """Finds and clicks an element, again if the page replaced it in between (live lists do)."""
    def clicked(d):
        click(d, d.find_element(By.CSS_SELECTOR, selector))
        return True
    wait_for(driver, what, clicked)


def form_selector(endpoint):
    return f"form[data-endpoint={css_string(endpoint)}]"


def endpoint_form(driver, endpoint):
    return wait_for(driver, f"the form of {endpoint}", lambda d: find(d, form_selector(endpoint)))


def answer_of(driver, endpoint):
    """The .answer of an endpoint's form (raises NoSuchElementException if not there, yet)."""
    return driver.find_element(By.CSS_SELECTOR, form_selector(endpoint) + " .answer")


def classes(element):
    return (element.get_attribute("class") or "").split()


def api_requests(driver):
    """How many requests to /api/ the page has made (the Resource Timing buffer)."""
    return driver.execute_script(
        "return performance.getEntriesByType('resource')"
        ".filter(e => new URL(e.name).pathname.startsWith('/api/')).length;")


def screenshot(driver, path, shots):
    if not driver.save_screenshot(path):
        raise Failure(f"could not save the screenshot {path}")
    shots.append(path)


# ------------------------------------------------------------------------------------ steps

def services_page(driver, args, shots):
    driver.get(args.url.rstrip("/") + "/")
    # a larger Resource Timing buffer, so counting requests later is exact
    driver.execute_script("performance.setResourceTimingBufferSize(10000);")
    selector = f"#services a[data-service={css_string(args.service)}]"
    wait_for(driver, f"{args.service} in #services", lambda d: find(d, selector))
    ok(f"{args.service} is listed in #services")
    wait_for(driver, "the registry event stream to be open",
             lambda d: d.find_element(By.ID, "live").get_attribute("data-state") == "open")
    ok("the registry event stream is open")
    screenshot(driver, os.path.join(args.screenshots, "services.png"), shots)


def service_page(driver, args, shots):
    click_when_there(driver, f"a click on the link of {args.service}",
                     f"#services a[data-service={css_string(args.service)}]")
    wait_for(driver, "#service-name to name the service",
             lambda d: d.find_element(By.ID, "service-name").text.strip() == args.service)

    def serving_node(d):
        for node in d.find_elements(By.CSS_SELECTOR, "#nodes [data-node]"):
            health = node.find_elements(By.CSS_SELECTOR, ".health")
            if health and health[0].text.strip() in ("SERVING", "ok"):
                return node.get_attribute("data-node")
        return None
    node = wait_for(driver, "a node in #nodes whose health is ok (SERVING)", serving_node)
    ok(f"node {node} of {args.service} is healthy")

    form = endpoint_form(driver, args.endpoint)
    textarea = form.find_element(By.CSS_SELECTOR, "textarea.request")
    set_text(driver, textarea, args.request)
    click(driver, form.find_element(By.CSS_SELECTOR, "button.call"))

    def answered(d):
        answer = answer_of(d, args.endpoint)
        if "error" in classes(answer):
            raise Failure(f"{args.endpoint} answered with an error: {answer.text!r}")
        return "ok" in classes(answer) and args.expect in answer.text
    wait_for(driver, f"the answer of {args.endpoint} to contain {args.expect!r}", answered)
    ok(f"{args.endpoint} answered {args.expect!r}")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", endpoint_form(driver, args.endpoint))
    screenshot(driver, os.path.join(args.screenshots, "service.png"), shots)


def invalid_json(driver, args):
    form = endpoint_form(driver, args.endpoint)
    sent_by_page = int(form.get_attribute("data-calls") or 0)
    sent_on_wire = api_requests(driver)
    set_text(driver, form.find_element(By.CSS_SELECTOR, "textarea.request"), '{"name":')
    click(driver, form.find_element(By.CSS_SELECTOR, "button.call"))

    def refused(d):
        answer = answer_of(d, args.endpoint)
        return "error" in classes(answer) and "JSON" in answer.text
    wait_for(driver, "an error about the invalid JSON", refused)
    form = endpoint_form(driver, args.endpoint)
    if int(form.get_attribute("data-calls") or 0) != sent_by_page or api_requests(driver) != sent_on_wire:
        raise Failure("the page sent a request with invalid JSON")
    ok("invalid JSON is reported in the page and not sent")


def stream(driver, args, shots):
    form = endpoint_form(driver, args.stream_endpoint)
    buttons = form.find_elements(By.CSS_SELECTOR, "button.stream")
    if not buttons:
        raise Failure(f"{args.stream_endpoint} has no Stream button")
    set_text(driver, form.find_element(By.CSS_SELECTOR, "textarea.request"), args.stream_request)
    click(driver, buttons[0])

    def ended(d):
        answer = answer_of(d, args.stream_endpoint)
        if "error" in classes(answer):
            raise Failure(f"the stream of {args.stream_endpoint} failed: {answer.text!r}")
        if "ok" in classes(answer) and answer.find_elements(By.CSS_SELECTOR, ".end"):
            return len(answer.find_elements(By.CSS_SELECTOR, ".chunk"))
        return False
    chunks = wait_for(driver, f"the stream of {args.stream_endpoint} to end", ended)
    if chunks != args.stream_expect:
        raise Failure(f"the stream of {args.stream_endpoint} gave {chunks} answers, not {args.stream_expect}")
    ok(f"{args.stream_endpoint} streamed {chunks} answers, then ended")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", endpoint_form(driver, args.stream_endpoint))
    screenshot(driver, os.path.join(args.screenshots, "stream.png"), shots)


def events_page(driver, args, shots):
    click_when_there(driver, "a click on the Events link", 'a[data-nav="events"]')
    wait_for(driver, "the events page", lambda d: d.find_element(By.ID, "watch-topic").is_displayed())

    set_text(driver, driver.find_element(By.ID, "watch-topic"), args.topic)
    click(driver, driver.find_element(By.ID, "watch-button"))
    wait_for(driver, f"the watch of {args.topic} to be open",
             lambda d: d.find_element(By.ID, "watch-status").get_attribute("data-state") == "open")
    ok(f"watching {args.topic}")

    set_text(driver, driver.find_element(By.ID, "publish-topic"), args.topic)
    set_text(driver, driver.find_element(By.ID, "publish-body"), '{"hello":"dashboard"}')
    click(driver, driver.find_element(By.ID, "publish-button"))

    def published(d):
        result = d.find_element(By.ID, "publish-result")
        if "error" in classes(result):
            raise Failure(f"publishing failed: {result.text!r}")
        return "ok" in classes(result)
    wait_for(driver, "#publish-result to show success", published)
    ok(f"published to {args.topic}")

    def seen(d):
        return any("dashboard" in m.text for m in d.find_elements(By.CSS_SELECTOR, "#watch-messages .message"))
    wait_for(driver, "the published message in #watch-messages", seen)
    ok(f"the message published to {args.topic} arrived in #watch-messages")
    screenshot(driver, os.path.join(args.screenshots, "events.png"), shots)


def no_script_errors(driver):
    try:
        entries = driver.get_log("browser")
    except WebDriverException:
        return
    uncaught = [e.get("message", "") for e in entries if "Uncaught" in e.get("message", "")]
    if uncaught:
        raise Failure("the page threw: " + " | ".join(uncaught))
    ok("no uncaught JavaScript errors")


# ------------------------------------------------------------------------------------ PNG

def png_pixels(path):
    """(width, height, channels, rows) of an 8-bit RGB/RGBA, non-interlaced PNG; rows unfiltered."""
    with open(path, "rb") as file:
        data = file.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise Failure(f"{path} is not a PNG (magic bytes)")
    position, header, idat = 8, None, []
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        chunk = data[position + 8:position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat.append(chunk)
        elif kind == b"IEND":
            break
    if header is None or not idat:
        raise Failure(f"{path} has no IHDR or no IDAT")
    width, height, depth, colour, _, _, interlace = header
    channels = {2: 3, 6: 4}.get(colour)
    if depth != 8 or channels is None or interlace != 0:
        raise Failure(f"{path}: unsupported PNG (depth {depth}, colour type {colour}, interlace {interlace})")
    raw = zlib.decompress(b"".join(idat))
    stride = width * channels
    if len(raw) != height * (stride + 1):
        raise Failure(f"{path}: {len(raw)} bytes of image data, expected {height * (stride + 1)}")
    rows, previous = [], bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, row = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        if kind == 1:    # Sub
            for i in range(channels, stride):
                row[i] = (row[i] + row[i - channels]) & 0xFF
        elif kind == 2:  # Up
            for i in range(stride):
                row[i] = (row[i] + previous[i]) & 0xFF
        elif kind == 3:  # Average
            for i in range(stride):
                left = row[i - channels] if i >= channels else 0
                row[i] = (row[i] + ((left + previous[i]) >> 1)) & 0xFF
        elif kind == 4:  # Paeth
            for i in range(stride):
                a = row[i - channels] if i >= channels else 0
                b = previous[i]
                c = previous[i - channels] if i >= channels else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                predictor = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                row[i] = (row[i] + predictor) & 0xFF
        elif kind != 0:
            raise Failure(f"{path}: unknown PNG filter {kind} in row {y}")
        rows.append(bytes(row))
        previous = row
    return width, height, channels, rows


def check_screenshot(path):
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        raise Failure(f"{path} is missing or empty")
    width, height, channels, rows = png_pixels(path)
    colours = Counter()
    for row in rows:
        colours.update(row[i:i + channels] for i in range(0, len(row), channels))
    total = width * height
    common, most = colours.most_common(1)[0]
    different = (total - most) / total
    if different < 0.01:
        raise Failure(f"{path} looks blank: {different:.2%} of its pixels differ from {common.hex()}")
    ok(f"{os.path.basename(path)} is a {width}x{height} PNG, {different:.1%} of it not background, "
       f"{len(colours)} colours")


# ------------------------------------------------------------------------------------ main

def report(driver, failure):
    print(f"FAIL: {failure}", flush=True)
    print(f"FAIL: {failure}", file=sys.stderr)
    if driver is None:
        return
    try:
        print("--- browser console:", file=sys.stderr)
        for entry in driver.get_log("browser"):
            print(f"  [{entry.get('level')}] {entry.get('message')}", file=sys.stderr)
    except WebDriverException as error:
        print(f"  (no console log: {error.msg})", file=sys.stderr)
    try:
        print(f"--- at {driver.current_url}, page source (first 4000 characters):", file=sys.stderr)
        print(driver.page_source[:4000], file=sys.stderr)
    except WebDriverException as error:
        print(f"  (no page source: {error.msg})", file=sys.stderr)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the gateway, e.g. http://127.0.0.1:8080")
    parser.add_argument("--service", required=True)
    parser.add_argument("--endpoint", required=True, help="e.g. Helloworld.Greeting")
    parser.add_argument("--request", required=True, help="the request JSON to send")
    parser.add_argument("--expect", required=True, help="text the answer must contain")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--screenshots", required=True, help="a directory for the PNG files")
    parser.add_argument("--stream-endpoint", help="a server-streaming endpoint to stream")
    parser.add_argument("--stream-request", default="{}", help="its request JSON (default {})")
    parser.add_argument("--stream-expect", type=int, default=1, help="how many answers it must give")
    args = parser.parse_args()
    for name, text in (("--request", args.request), ("--stream-request", args.stream_request)):
        try:
            json.loads(text)
        except ValueError as error:
            parser.error(f"{name} is not JSON: {error}")
    os.makedirs(args.screenshots, exist_ok=True)

    profile = tempfile.mkdtemp(prefix="dashboard-chromium-")
    driver, shots = None, []
    try:
        driver = make_driver(profile)
        services_page(driver, args, shots)
        service_page(driver, args, shots)
        invalid_json(driver, args)
        if args.stream_endpoint:
            stream(driver, args, shots)
        events_page(driver, args, shots)
        no_script_errors(driver)
        for path in shots:
            check_screenshot(path)
    except Failure as failure:
        report(driver, failure)
        return 1
    except WebDriverException as error:
        report(driver, f"the browser failed: {error.msg or error}")
        return 1
    finally:
        if driver is not None:
            try:
                driver.quit()
            except WebDriverException:
                pass
        shutil.rmtree(profile, ignore_errors=True)
    ok("dashboard checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
