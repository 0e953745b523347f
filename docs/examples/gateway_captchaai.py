"""The official CaptchaAI SDK (pip install captchaai) through the gateway: only base_url changes.

GATEWAY_URL is the gateway's base URL, GATEWAY_KEY a client key from `captcha-queue gateway keys create`.
"""

import base64
import os

from captchaai import CaptchaAI

# A 1x1 PNG (padded above the 100-byte minimum) stands in for a captcha image; the SDK also takes a
# path, a URL or a base64 string.
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
IMAGE = base64.b64decode(PNG) + bytes(100)

solver = CaptchaAI(os.environ["GATEWAY_KEY"], base_url=os.environ["GATEWAY_URL"])
try:
    print("threads", solver.threads_info())  # the fleet's view: slots in use / the fleet limit
    result = solver.normal(IMAGE)
    print("solved", result.task_id, result.solution)
finally:
    solver.close()
