"""2captcha-python (pip install 2captcha-python) through the gateway: only server= changes.

The client always speaks https://, so the gateway runs with --tls-cert/--tls-key; a private CA is
trusted through REQUESTS_CA_BUNDLE. GATEWAY_SERVER is host:port, GATEWAY_KEY a gateway client key.
"""

import os

from twocaptcha import TwoCaptcha

solver = TwoCaptcha(os.environ["GATEWAY_KEY"], server=os.environ["GATEWAY_SERVER"], pollingInterval=1)
token = solver.recaptcha(sitekey="6Le-wvkSAAAAAPBMRTvw0Q4Muexq9bi0DJwx_mJ-", url="https://example.com/login")
print("solved", token["captchaId"], token["code"][:16])
print("balance", solver.balance())
