"""Swagger UI as a person uses it, in Debian's Chromium driven by Selenium: open /docs/, Authorize
with a token `mailsensor dev` printed, Try it out on GET smtp-integration (200) and on a PUT that
answers 422, and read the answers off the page. Every address but loopback goes to a dead proxy, so
the page can only work offline. Leaves a screenshot at $SCREENSHOT.

Run by scripts/sdk-test, which starts `mailsensor dev` and passes MAILSENSOR_API, TENANT,
PCN_SENSOR and ADMIN_PCN.
"""
import json
import os
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

API = os.environ["MAILSENSOR_API"]
TENANT = os.environ["TENANT"]
SENSOR = os.environ["PCN_SENSOR"]
TOKEN = os.environ["ADMIN_PCN"]
SCREENSHOT = os.environ.get("SCREENSHOT", "swagger-ui.png")

options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for flag in [
    "--headless=new",
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--window-size=1400,2400",
    # Offline: anything not on loopback would go through a proxy that is not there.
    "--proxy-server=http://127.0.0.1:9",
    "--proxy-bypass-list=127.0.0.1;localhost",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
]:
    options.add_argument(flag)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
wait = WebDriverWait(driver, 20)


def fail(what):
    driver.save_screenshot(SCREENSHOT)
    print(f"swagger ui: FAILED: {what} (screenshot: {SCREENSHOT})", file=sys.stderr)
    driver.quit()
    sys.exit(1)


def css(selector, within=None):
    return (within or driver).find_element(By.CSS_SELECTOR, selector)


def click(element):
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
    element.click()


def try_operation(tag, operation_id, body=None):
    """Expands an operation, fills the ids (and the body), executes it; returns (status, body text)."""
    block = wait.until(ec.presence_of_element_located((By.ID, f"operations-{tag}-{operation_id}")))
    click(css(".opblock-summary", block))
    click(wait.until(lambda d: css("button.try-out__btn", block)))
    for name, value in [("tenant_id", TENANT), ("sensor_id", SENSOR)]:
        field = css(f'tr[data-param-name="{name}"] input', block)
        field.clear()
        field.send_keys(value)
    if body is not None:
        area = css("textarea.body-param__text", block)
        # The example is pre-filled; select it all and type over it, as a person would.
        area.send_keys(Keys.CONTROL, "a")
        area.send_keys(Keys.DELETE)
        area.send_keys(json.dumps(body))
    click(css("button.execute", block))
    row = ".live-responses-table tbody tr.response"
    status = wait.until(lambda d: css(f"{row} td.response-col_status", block)).text.strip()
    text = wait.until(lambda d: css(f"{row} td.response-col_description .highlight-code pre", block)).text
    return status, text


try:
    driver.get(f"{API}/docs/")
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".information-container")))
    title = css(".information-container .title").text
    if "mailsensor API" not in title:
        fail(f"title {title!r}")

    # Authorize with the token dev printed.
    click(css("button.authorize"))
    dialog = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".dialog-ux .modal-ux")))
    css('input[type="text"], input[type="password"]', dialog).send_keys(TOKEN)
    click(css("button.modal-btn.auth.authorize", dialog))
    click(wait.until(lambda d: css("button.btn-done", dialog)))

    status, text = try_operation("smtp-integration", "get_smtp_integration")
    if status != "200" or '"revision"' not in text:
        fail(f"GET smtp-integration answered {status}: {text[:300]}")

    bad = {
        "enabled": True,
        "destination_domains": ["*.example.org"],
        "clients": ["10.0.0.5/24"],
        "message_size_limit": {"unlimited": True},
    }
    status, text = try_operation("smtp-integration", "replace_smtp_integration", bad)
    if status != "422" or "/destination_domains/0" not in text or "/clients/0" not in text:
        fail(f"PUT smtp-integration answered {status}: {text[:300]}")

    # Nothing was fetched from anywhere but this server.
    fetched = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    foreign = [url for url in fetched if not url.startswith(API)]
    if foreign:
        fail(f"the page fetched from elsewhere: {foreign}")
    driver.save_screenshot(SCREENSHOT)
    print(f"swagger ui: Authorize, GET 200 and PUT 422 shown on the page (screenshot: {SCREENSHOT})")
finally:
    driver.quit()
