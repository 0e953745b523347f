"""The accounts registry: a namespace's solver accounts with key references (never keys), in routing
order. Workers started with `captcha-queue worker --accounts all` serve them."""

import asyncio
import os

from captcha_queue import AccountSpec, AsyncCaptchaQueue, InvalidArgument

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
NAMESPACE = os.environ.get("CAPTCHA_QUEUE_NAMESPACE", "captcha")


async def main() -> None:
    async with AsyncCaptchaQueue.from_url(REDIS_URL, namespace=NAMESPACE) as q:
        await q.add_account(
            AccountSpec(name="main", provider="captchaai", priority=10, key_env="CAPTCHAAI_KEY")
        )
        await q.add_account(
            AccountSpec(
                name="backup",
                provider="2captcha",
                base_url="https://2captcha.com",
                limit=20,  # 2captcha reports no thread limit: give it
                cost=2.99,
                key_file="/run/secrets/solvers",
                key_entry="twocaptcha",
            )
        )
        try:
            await q.add_account(AccountSpec(name="oops", provider="2captcha", key_env="TWO_KEY"))
        except InvalidArgument as exc:
            print("refused:", exc.field, "-", exc)
        for account in await q.accounts():
            print(account.name, account.provider, account.limit or "threads", account.key_source)
        await q.remove_account("backup")
        print("left:", [a.name for a in await q.accounts()])


asyncio.run(main())
