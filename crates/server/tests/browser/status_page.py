"""Drives the status page in headless chromium: usage: status_page.py BASE_URL TOKEN CONNECTION_ID.

Loads the page with the token, checks that the connection's row is there with its schedule,
presses its "Sync now" button, checks that the page comes back showing a run of it, and once
the run succeeded, its rows per table (the emulator holds 10 opportunities)."""

import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By

base, token, connection = sys.argv[1:4]

options = webdriver.ChromeOptions()
for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
    options.add_argument(arg)
options.binary_location = "/usr/bin/chromium"
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
try:
    driver.set_page_load_timeout(30)
    driver.get(f"{base}/?token={token}")
    assert driver.title == "sluice", driver.title
    row = driver.find_element(By.CSS_SELECTOR, f'tr[data-connection="{connection}"]')
    assert "never" in row.text, row.text
    assert "every 30 min" in row.text, row.text
    row.find_element(By.XPATH, './/button[text()="Sync now"]').click()
    # The form posts, the server starts the run and redirects back to the page.
    deadline = time.time() + 60
    seen = ""
    while True:
        # The click navigates (post, then redirect): an element found while the old page is
        # still up goes stale under us, so each look finds the row anew.
        try:
            row = driver.find_element(By.CSS_SELECTOR, f'tr[data-connection="{connection}"]')
            seen = row.text
            status = [s.text for s in row.find_elements(By.CSS_SELECTOR, ".status")]
        except (StaleElementReferenceException, NoSuchElementException):
            status = []
        if status and status[0] in ("queued", "running", "succeeded"):
            print("after the click the page shows the run:", status[0])
            break
        if time.time() > deadline:
            raise AssertionError(f"no run shown after the click: {seen}")
        time.sleep(0.5)
        driver.get(f"{base}/")
    # Once the run succeeded, the rows cell shows what it wrote.
    deadline = time.time() + 120
    while True:
        driver.get(f"{base}/")
        row = driver.find_element(By.CSS_SELECTOR, f'tr[data-connection="{connection}"]')
        status = [s.text for s in row.find_elements(By.CSS_SELECTOR, ".status")]
        if status and status[0] == "succeeded":
            break
        assert not (status and status[0] in ("failed", "cancelled")), row.text
        if time.time() > deadline:
            raise AssertionError(f"the run did not succeed: {row.text}")
        time.sleep(0.5)
    rows_cell = row.find_elements(By.TAG_NAME, "td")[3].text
    assert "opportunity: +10 ~0 -0" in rows_cell, rows_cell
    print("rows per table:", rows_cell.replace("\n", ", "))
    # Without the cookie the page is closed.
    driver.delete_all_cookies()
    driver.get(f"{base}/")
    assert "Enter the API token" in driver.page_source
finally:
    driver.quit()
