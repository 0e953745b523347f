from captcha_queue.cli import main

main()
