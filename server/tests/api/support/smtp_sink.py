"""A real SMTP server for the tests: aiosmtpd, storing each message as a file.

    python3 smtp_sink.py HOST PORT DIR

Listens on HOST:PORT (PORT 0 picks a free one), prints the bound port on one line once it
accepts connections, and writes each message to DIR as `<seq>.eml`: the bytes as received,
after one `Delivered-To:` line per envelope recipient (as a mailbox delivery would add).
The file appears whole (temp file, then rename). Exits when its standard input closes, so it
dies with the test process however that ends.
"""

import asyncio
import os
import sys
import threading

from aiosmtpd.smtp import SMTP


class DirectoryHandler:
    def __init__(self, directory):
        self.directory = directory
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        name = f"{self.count:06d}.eml"
        delivered = "".join(f"Delivered-To: {rcpt}\r\n" for rcpt in envelope.rcpt_tos)
        temp = os.path.join(self.directory, f".{name}.tmp")
        with open(temp, "wb") as file:
            file.write(delivered.encode() + envelope.original_content)
        os.replace(temp, os.path.join(self.directory, name))
        return "250 Message accepted for delivery"


def exit_when_stdin_closes():
    sys.stdin.buffer.read()
    os._exit(0)


async def serve(host, port, directory):
    loop = asyncio.get_running_loop()
    handler = DirectoryHandler(directory)
    # A fixed hostname: the default resolves the machine's FQDN, which can stall on DNS.
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="smtp-sink.test"), host, port
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


def main():
    host, port, directory = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    asyncio.run(serve(host, port, directory))


if __name__ == "__main__":
    main()
